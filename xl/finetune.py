"""``xl finetune``: train an encoder with a task head on English data (the source task of zero-shot transfer).

This module owns the run: its options, its inputs, its directory and its manifest; the loop itself is
:class:`xl.models.training.Trainer`, the task (head, loss, dev metric) a :mod:`xl.tasks.objects` object. A run is
seeded and resumable:

- **The loop** (data order, batches, DDP shares, optimisation, autocast): see :mod:`xl.models.training`; the
  losses are the task objects'.
- **Model choice**: evaluated on the English dev set before training (step 0: the starting model), every
  ``eval_steps`` and at the end; the best is kept (step 0 included: a run that only makes the model worse
  keeps the starting model), and the choice is recorded. Target-language labels are never read: a dev set
  whose records say another ``lang`` is refused unless ``dev_lang`` names it. Without a dev set, the last step.
- **Inputs** are read once each (hashed while read), so pipes and process substitution work; they are
  validated, and the model spec resolved, before the output directory is touched or a model loaded.
- **Checkpoints** every ``save_steps`` in ``DIR/checkpoints/step-N`` (model, optimizer, scheduler, RNG),
  written beside and renamed into place, then named in ``latest.json``: a crash never leaves a partial
  checkpoint as the latest. ``resume`` continues from it to the same result as an uninterrupted run. When
  training ends, a final checkpoint (weights and state) is written before the kept model is saved, so a save
  that fails (a full disk) leaves a run that ``resume`` finishes without training again.
- **The run directory** holds only what the run writes (``RUN_OWNED``, ``MODEL_FILES``, the manifest's
  ``files``); ``overwrite`` removes those and refuses a directory holding anything else, and no input may
  lie inside it. Write failures name the final target (never a temporary file) and say how to resume.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import xl
from xl.errors import ModelError, OutputError, UsageError, XlError
from xl.io.atomic import atomic_write, temp_dir_beside
from xl.io.tables import table_format
from xl.model_card import CARD, render_card
from xl.models.registry import DEFAULT_ALIASES, MODEL_MANIFEST, ModelRef, read_model_info, resolve_model
from xl.models.st_format import ST_ENTRIES
from xl.models.training import Dist, Prepared, RunState, Trainer
from xl.progress import Progress, no_progress
from xl.tasks.objects import STS, TRAINABLE, task_named

Log = Callable[[str], None]

FINETUNE_MANIFEST = "xl-finetune.json"
LOG_FILE = "log.jsonl"
RUN_STATE = "run.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
#: The run's own entries of DIR besides the model: what ``overwrite`` may remove.
RUN_OWNED = (FINETUNE_MANIFEST, RUN_STATE, LOG_FILE, CHECKPOINTS, BEST, CARD)
#: What ``save_task_model`` writes: the encoder (transformers; sharded when large), tokenizer, head, description,
#: and sentence-transformers' module files (``ST_ENTRIES``: two of them folders).
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "generation_config.json",
               "tokenizer.json", "xl-head.safetensors", MODEL_MANIFEST, *ST_ENTRIES)  # fmt: skip
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_OS_ERROR = re.compile(r"os error (\d+)")  # how Rust libraries (safetensors, tokenizers) report an errno
#: ``--class-weight``: none, or scikit-learn's balanced weights of the training labels.
CLASS_WEIGHTS = ("none", "balanced")
#: Options added after runs were first fingerprinted, with the default that leaves a run as it was.
_LATER_OPTIONS: dict[str, Any] = {"class_weight": "none", "columns": None}


def _quiet(_message: str) -> None:
    pass


@dataclass
class FinetuneOptions:
    """Everything that shapes a fine-tuning run (all of it recorded in the manifest)."""

    task: str  # sts | classify | qa | align
    train: str
    output: str
    dev: str | None = None
    model: str = "default"
    init: str | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 2e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int | None = None
    doc_stride: int = 128
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    loss: str = "cosine"
    dropout: float | None = None
    freeze_embeddings: bool = False
    group_by_length: bool = True
    eval_steps: int | None = None
    save_steps: int | None = None
    keep_checkpoints: int = 2
    train_limit: int | None = None
    dev_limit: int | None = None
    log_every: int = 50
    resume: bool = False
    overwrite: bool = False
    dev_lang: str = "en"  # the language of the dev set; anything but English is the user's explicit choice
    class_weight: str = "none"  # classify: none | balanced (n / (classes × count) of the training labels)
    columns: dict[str, str] | None = None  # xl field → the --train/--dev column (tables) or JSON field

    def result_fields(self) -> dict[str, Any]:
        """The options that change the trained model (not where it goes or how often it is logged)."""
        skip = {"output", "resume", "overwrite", "log_every", "keep_checkpoints", "save_steps", "device"}
        fields = {k: v for k, v in asdict(self).items() if k not in skip}
        # An option added later counts only when set: runs written before it keep their fingerprint (and resume).
        for name, default in _LATER_OPTIONS.items():
            if fields[name] == default:
                del fields[name]
        return fields


# --------------------------------------------------------------------------------------------- checks


def check_options(o: FinetuneOptions, world: int = 1) -> None:
    """Refuse options that cannot make a run, before anything is read."""
    if o.task not in TRAINABLE:
        raise UsageError(f"--task {o.task} is not trainable", hint=f"use {', '.join(TRAINABLE)}")
    task = task_named(o.task)
    if o.loss not in STS.losses:
        raise UsageError(f"unknown loss {o.loss!r}", hint=f"use {' or '.join(STS.losses)} (sts only)")
    task.loss_name(o.loss)
    if o.class_weight not in CLASS_WEIGHTS:
        raise UsageError(f"unknown --class-weight {o.class_weight!r}", hint=f"use {' or '.join(CLASS_WEIGHTS)}")
    if o.class_weight != "none" and not task.weighs_classes:
        raise UsageError(f"--class-weight has no effect with --task {task.name}", hint="it weighs classify's classes")
    for name in ("batch_size", "grad_accum", "keep_checkpoints", "log_every"):
        if getattr(o, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if o.epochs <= 0 and not o.max_steps:
        raise UsageError("--epochs must be positive (or give --max-steps)")
    if o.max_steps is not None and o.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    if not 0 <= o.warmup < 1:
        raise UsageError(f"--warmup {o.warmup} is not a fraction in [0, 1)")
    if o.lr <= 0:
        raise UsageError("--lr must be positive")
    if o.resume and o.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    if world > 1 and re.fullmatch(r"cuda:\d+", o.device):
        raise UsageError(f"--device {o.device} under torchrun would put every process on one GPU",
                         hint="use --device auto or cuda: each process takes cuda:$LOCAL_RANK")  # fmt: skip
    if o.batch_size % world:
        raise UsageError(f"--batch-size {o.batch_size} is not divisible by the {world} processes",
                         hint="each process takes an equal share of every batch")  # fmt: skip
    if o.init is not None and o.model != "default":
        raise UsageError("pass either --model (continue a model, its head included) or --init (its encoder, a "
                         "fresh head), not both")  # fmt: skip
    if not re.fullmatch(r"[A-Za-z]{2,3}", o.dev_lang):
        raise UsageError(f"--dev-lang {o.dev_lang!r} is not a language code", hint="e.g. --dev-lang pl (ISO 639)")
    if o.dev is None and o.dev_lang.lower() != "en":
        raise UsageError("--dev-lang names the language of --dev, and there is no --dev")
    if o.train == "-" and o.dev == "-":
        raise UsageError("--train and --dev cannot both be stdin", hint="pass one of them as a file")


def run_fingerprint(options: FinetuneOptions, train_sha: str | None, dev_sha: str | None, model_fp: str,
                    init_fp: str | None) -> str:  # fmt: skip
    payload = {"options": options.result_fields(), "train": train_sha, "dev": dev_sha, "model": model_fp,
               "init": init_fp}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_owned(name: str, listed: Collection[str] = ()) -> bool:
    """Whether an entry of DIR is one that an ``xl finetune`` run writes: its files, the model files, the
    names its manifest lists, and the hidden ``.NAME.XXXX.tmp`` files and folders it builds them in."""
    if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
        name = name[1:-4].rsplit(".", 1)[0]
    return name in RUN_OWNED or name in MODEL_FILES or name in listed or bool(_SHARD.fullmatch(name))


def _prepare_output(out: Path, fingerprint: str, options: FinetuneOptions) -> dict[str, Any] | None:
    """Check the output directory; return the latest checkpoint record to resume from (or None).

    ``overwrite`` removes only the run's own entries (``run_owned``) and refuses a directory that is not an
    xl finetune run or that holds anything else: it never deletes what it did not write.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory", hint="choose another -o")
    manifest_path = out / FINETUNE_MANIFEST
    latest_path = out / CHECKPOINTS / "latest.json"
    entries = sorted(out.iterdir()) if out.is_dir() else []
    existing = [p for p in entries if not p.name.startswith(".")]
    if not existing:
        if options.resume:
            raise UsageError(f"nothing to resume in {out}", hint="drop --resume to start the run")
        return None
    run = _read_json(out / RUN_STATE)
    finished = _read_json(manifest_path)
    if run is None and finished is None:
        raise UsageError(f"{out} is not empty and holds no xl finetune run",
                         hint="choose an empty or new directory for -o")  # fmt: skip
    listed = [str(n) for n in (finished or {}).get("files", []) if isinstance(n, str)]
    foreign = [p.name for p in entries if not run_owned(p.name, listed)]
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    if options.overwrite:
        if foreign:
            raise UsageError(f"{out} holds files that xl finetune did not write: {shown}",
                             hint="--overwrite removes only a run's own files; move those elsewhere, or choose "
                                  "another -o")  # fmt: skip
        for path in entries:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as exc:
                raise OutputError(f"cannot remove the old run's {path}: {_reason(exc)}",
                                  hint=f"check the permissions of {out}, or choose another -o") from None  # fmt: skip
        return None
    replace_hint = (f"choose another -o ({out} also holds {shown}, which xl did not write)" if foreign
                    else "pass --overwrite to replace it, or choose another -o")  # fmt: skip
    if (run or finished or {}).get("fingerprint") != fingerprint:
        raise UsageError(f"{out} holds a different run (other data, model or options)", hint=replace_hint)
    if finished is not None and not options.resume:
        raise UsageError(f"{out} already holds this finished run",
                         hint=replace_hint if foreign else "pass --overwrite to train it again")  # fmt: skip
    if not options.resume:
        again = "" if foreign else ", or --overwrite to start again"
        raise UsageError(f"{out} holds an unfinished run of these options", hint=f"pass --resume to continue it{again}")
    if finished is not None:
        return {"finished": True}
    for stale in [*out.glob(".*.tmp"), *(out / CHECKPOINTS).glob(".*.tmp")]:  # left by a kill mid-write
        if run_owned(stale.name):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    latest = _read_json(latest_path)
    return latest if latest is not None else {"step": 0}


# --------------------------------------------------------------------------------------------- write errors


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind ``exc``: an OSError, one in its chain (torch.save wraps it in a
    RuntimeError), one that a Rust library (safetensors, tokenizers) spells as ``(os error N)``, or the
    reason an :class:`OutputError` of ``xl.io.atomic`` names."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current.errno
        match = _OS_ERROR.search(str(current))
        if match:
            return int(match.group(1))
        if isinstance(current, OutputError):
            return next((code for code in _WRITE_ERRNOS if os.strerror(code) in current.message), errno.EIO)
        current = current.__cause__ or current.__context__
    return None


def _reason(exc: BaseException) -> str:
    code = _errno_of(exc)
    if code is not None:
        return os.strerror(code).lower()
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def absolute_paths(options: FinetuneOptions) -> FinetuneOptions:
    """``options`` with --train, --dev, -o and a local --model / --init directory made absolute (``-``,
    ``default`` and hub ids stay as they are): what a run records must not depend on the working directory."""

    def file(path: str) -> str:
        return path if path == "-" else os.path.abspath(os.path.expanduser(path))

    def model(spec: str) -> str:
        local = Path(spec).expanduser()
        return spec if spec in DEFAULT_ALIASES or not local.exists() else os.path.abspath(local)

    return replace(options, train=file(options.train), dev=None if options.dev is None else file(options.dev),
                   output=file(options.output), model=model(options.model),
                   init=None if options.init is None else model(options.init))  # fmt: skip


def _source(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _model_record(ref: ModelRef) -> dict[str, Any]:
    """How a run names its base model: the spec (absolute when a directory), name, fingerprint and path."""
    return {"spec": ref.spec, "name": ref.name, "fingerprint": ref.fingerprint,
            "path": None if ref.path is None else os.path.abspath(ref.path)}  # fmt: skip


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _truncate_log(path: Path, state: RunState) -> None:
    """Keep the log rows of what ``state`` has done, so that a resumed run writes the rest again once: steps up
    to ``state.step``, the dev evaluations it holds, no "kept" row (a fresh start keeps nothing)."""
    if not path.is_file():
        return
    evaluated = {e["step"] for e in state.evaluations}
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a row cut short by a kill
            continue
        step = row.get("step", 0)
        if "kept" in row or step > state.step or ("dev" in row and step not in evaluated):
            continue
        keep.append(line)
    _write_atomic(path, ("\n".join(keep) + "\n" if keep else "").encode())


# --------------------------------------------------------------------------------------------- the run directory


class RunDirectory:
    """DIR of one run (``-o``): what it may hold, the run's state and log, checkpoints, the kept model and the
    manifest. Every write failure becomes one line naming the final target, with a hint that says how to go on.
    Only the main process of a torchrun job writes."""

    def __init__(self, out: Path, options: FinetuneOptions, main: bool = True) -> None:
        self.out = out
        self.options = options
        self.main = main

    @property
    def log_path(self) -> Path:
        return self.out / LOG_FILE

    @property
    def best(self) -> Path:
        return self.out / BEST

    def prepare(self, fingerprint: str) -> dict[str, Any] | None:
        """Check DIR (see :func:`_prepare_output`) and record the run's fingerprint and options in ``run.json``;
        the checkpoint record to resume from, ``{"finished": True}``, or None for a fresh start."""
        resume_from = _prepare_output(self.out, fingerprint, self.options)
        if not (resume_from and resume_from.get("finished")):
            with self.writing(self.out / RUN_STATE, "the run's state"):
                self.out.mkdir(parents=True, exist_ok=True)
                _write_atomic(self.out / RUN_STATE, json.dumps({"fingerprint": fingerprint,
                                                                "options": asdict(self.options)},
                                                               indent=2, default=str).encode())  # fmt: skip
        return resume_from

    def finished_manifest(self) -> dict[str, Any]:
        return json.loads((self.out / FINETUNE_MANIFEST).read_text())  # type: ignore[no-any-return]

    def append_log(self, row: Mapping[str, Any]) -> None:
        if self.main:
            with self.writing(self.log_path, "the training log"), self.log_path.open("a") as handle:
                handle.write(json.dumps(row, default=float) + "\n")

    def truncate_log(self, state: RunState) -> None:
        if self.main:
            with self.writing(self.log_path, "the training log"):
                _truncate_log(self.log_path, state)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, step: int) -> Path:
        return self.out / CHECKPOINTS / f"step-{step}"

    @contextlib.contextmanager
    def new_checkpoint(self, step: int, *, final: bool = False) -> Iterator[Path]:
        """A staging folder for the checkpoint of ``step``, renamed into place and named in ``latest.json`` when
        the block ends (removed when it fails); then the older checkpoints beyond ``--keep-checkpoints`` go (all
        of them after a ``final`` one)."""
        folder = self.checkpoint(step)
        with self.writing(folder, f"the {'final ' if final else ''}checkpoint of step {step}"):
            staging = temp_dir_beside(folder)
            try:
                yield staging
                if folder.exists():
                    shutil.rmtree(folder)
                staging.rename(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)  # a failed write frees its space
                raise
            latest = {"step": step, "final": True} if final else {"step": step}
            _write_atomic(self.out / CHECKPOINTS / "latest.json", json.dumps(latest).encode())
        kept = sorted((p for p in (self.out / CHECKPOINTS).glob("step-*") if p.name[5:].isdigit()),
                      key=lambda p: int(p.name[5:]))  # fmt: skip
        for old in kept[:-1] if final else kept[: -self.options.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ the end

    def keep_model(self, trainer: Trainer, state: RunState, has_dev: bool) -> tuple[dict[str, Any], list[str]]:
        """Move the kept model (``DIR/best``, or the last step's without a dev set) into DIR; the choice and the
        model's files."""
        o, out, best = self.options, self.out, self.best
        if not has_dev:
            with self.writing(out, "the trained model"):
                trainer.save_model(best)
            chosen: dict[str, Any] = {"step": state.step, "metric": None, "by": "last step (no dev set)", "dev": None}
        else:
            if not best.is_dir() and not (out / "model.safetensors").is_file():
                raise ModelError("the model kept on the dev set is missing", source=str(best),
                                 hint="rerun with --overwrite to train again")  # fmt: skip
            lang = o.dev_lang.lower()
            by = "best on the English dev set" if lang == "en" else \
                f"best on the {lang} dev set (--dev-lang {lang}: selected on target-language labels)"  # fmt: skip
            names = [e["dev"].get("selection_name") for e in state.evaluations if e["step"] == state.best_step]
            if state.best_step == 0:
                by += "; step 0 is the starting model"
            chosen = {"step": state.best_step, "metric": state.best_metric, "metric_name": names[0] if names else None,
                      "by": by, "dev": o.dev, "dev_lang": lang, "starting_model": state.best_step == 0}  # fmt: skip
        moved: list[str] = []
        with self.writing(out, "the trained model"):
            if best.is_dir():  # renames within DIR: a rerun after a failure here moves what is left
                for path in sorted(best.iterdir()):
                    os.replace(path, out / path.name)
                    moved.append(path.name)
                shutil.rmtree(best)
        files = sorted({*moved, *(p.name for p in out.iterdir() if p.name in MODEL_FILES),
                        *(p.name for p in out.iterdir() if _SHARD.fullmatch(p.name))})  # fmt: skip
        return chosen, files

    def write_card(self, manifest: dict[str, Any]) -> None:
        """``DIR/README.md``, the model card (:mod:`xl.model_card`), written before the manifest marks the run
        finished: a finished run always has its card."""
        target = self.out / CARD
        defaults = {f.name: f.default for f in fields(FinetuneOptions)}
        card = render_card(manifest, read_model_info(self.out), self.out, defaults)
        with self.writing(target, "the model card"):
            _write_atomic(target, card.encode())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """``DIR/xl-finetune.json`` (what marks the run finished); the checkpoints go."""
        target = self.out / FINETUNE_MANIFEST
        with self.writing(target, "the run's manifest"):
            _write_atomic(target, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
        shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)

    # ------------------------------------------------------------------ write errors

    @contextlib.contextmanager
    def writing(self, target: Path, what: str) -> Iterator[None]:
        """Turn an OS error while writing ``what`` into one line naming ``target`` (the final path, never the
        temporary file it was being built in) with a hint that says how to go on."""
        try:
            yield
        except XlError as exc:
            if not isinstance(exc, OutputError):
                raise
            known = _errno_of(exc) or errno.EIO
            raise OutputError(f"cannot write {what} to {target}: {os.strerror(known)}",
                              hint=self._write_hint(known)) from None  # fmt: skip
        except Exception as exc:
            code = _errno_of(exc)
            if code is None:
                raise
            raise OutputError(f"cannot write {what} to {target}: {os.strerror(code)}",
                              hint=self._write_hint(code)) from None  # fmt: skip

    def _write_hint(self, code: int) -> str:
        out = self.out
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = f"make {out} writable, or move it where it can be written and pass that as -o"
        elif code == errno.EFBIG:
            fix = f"a file size limit (`ulimit -f`, or the file system's) stopped the write: raise it, or move {out} " \
                  "to another file system and pass that as -o"  # fmt: skip
        elif code in (errno.ENOSPC, errno.EDQUOT):
            fix = f"free space on the disk of {out}, or move {out} to a disk with room and pass that as -o"
        else:
            fix = f"check the disk of {out}"
        if not (out / RUN_STATE).is_file():
            return f"{fix}, then run the command again"
        latest = _read_json(out / CHECKPOINTS / "latest.json") or {}
        if latest.get("final"):
            where = f"the final checkpoint (step {latest.get('step')}): no training is repeated"
        elif latest.get("step"):
            where = f"the checkpoint of step {latest['step']}"
        else:
            where = (
                "the start (no checkpoint yet"
                + ("" if self.options.save_steps else "; --save-steps N writes them")
                + ")"
            )
        return f"{fix}; then rerun the same command with --resume: it continues from {where}"


# --------------------------------------------------------------------------------------------- the run


class FinetuneRun:
    """One ``xl finetune`` (see the module docstring)."""

    def __init__(self, options: FinetuneOptions, log: Log = _quiet, progress: Progress = no_progress) -> None:
        self.given = options  # as typed: the names said in messages
        self.options = absolute_paths(options)  # as recorded
        self.out = Path(self.options.output)
        self.dist = Dist.from_env()
        self.log = log if self.dist.main else _quiet  # one voice under torchrun: the main process's
        self.progress = progress if self.dist.main else no_progress
        check_options(self.options, self.dist.world)
        self.directory = RunDirectory(self.out, self.options, self.dist.main)

    def check_paths(self) -> None:
        """Refuse an -o that is or holds an input (a run would mix with it, --overwrite would delete it), and
        inputs that the processes of a torchrun job cannot each read for themselves."""
        o, given = self.options, self.given
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"{given.output} exists and is not a directory", hint="choose another -o")
        resolved_out = self.out.resolve()
        inputs = (("--train", o.train, given.train), ("--dev", o.dev, given.dev), ("--model", o.model, given.model),
                  ("--init", o.init, given.init))  # fmt: skip
        for flag, path, spelled in inputs:
            if path is None or path == "-" or path in DEFAULT_ALIASES:
                continue
            candidate = Path(path)
            if flag in ("--model", "--init") and not candidate.exists():
                continue  # a hub id
            resolved = candidate.resolve()
            if resolved == resolved_out or resolved_out in resolved.parents:
                verb = "is" if resolved == resolved_out else "holds"
                raise UsageError(f"-o {given.output} {verb} the {flag} input {spelled}",
                                 hint="give the run a directory of its own, outside its inputs")  # fmt: skip
            if (self.dist.world > 1 and flag in ("--train", "--dev") and candidate.exists() and not candidate.is_file()
                    and table_format(path) is None):  # fmt: skip
                raise UsageError(f"{flag} {spelled} is not a regular file", hint="under torchrun every process reads "
                                 "the data itself: write it to a file first")  # fmt: skip
        if self.dist.world > 1 and "-" in (o.train, o.dev):
            raise UsageError("under torchrun the data cannot come from stdin", hint="write it to a file first")

    def run(self) -> dict[str, Any]:
        """Check, read, train, keep; the manifest written to ``DIR/xl-finetune.json``."""
        self.check_paths()
        trainer = Trainer(self.options, self.dist, self.directory, self.log, self.progress)
        trainer.start()
        # The inputs first, each read once (hashed as it is read: pipes work) and validated, then the model
        # spec and its tokenizer: -o is not touched, nor a model loaded, before all of them are known good.
        inputs = self._read_inputs()
        o, task = self.options, inputs["task"]
        base_ref = resolve_model(o.init or o.model, log=self.log)
        from xl.models.task_model import check_head_fits

        head = None if o.init else check_head_fits(base_ref, task, inputs["labels"] or None)
        fingerprint = run_fingerprint(o, inputs["train_sha"], inputs["dev_sha"], base_ref.fingerprint, None)
        prepared = self._tokenize(inputs, base_ref, head)
        resume_from = self.directory.prepare(fingerprint) if self.dist.main else None
        resume_from = self.dist.broadcast(resume_from)
        if resume_from and resume_from.get("finished"):
            self.log(f"{self.out} already holds this finished run; nothing to do")
            return self.directory.finished_manifest() if self.dist.main else {}
        # The base's description, fidelity, sources and build date are the base's; `xl model info` describes the run.
        base_only = ("head", "weights_sha256", "description", "fidelity", "sources", "built")
        info = {**{k: v for k, v in base_ref.info.items() if k not in base_only},
                "name": f"{base_ref.name}+{task.name}", "prefix": base_ref.prefix,
                "base_model": _model_record(base_ref), "xl_version": xl.__version__}  # fmt: skip
        trainer.build(prepared, info)
        state = trainer.train(resume_from)
        manifest = self._finish(trainer, state, prepared, fingerprint, inputs) if self.dist.main else {}
        self.dist.barrier()
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        return manifest

    def _read_inputs(self) -> dict[str, Any]:
        from xl.tasks import seeded_subset
        from xl.tasks.data import check_dev_lang, read_task_input

        o, given = self.options, self.given
        task = task_named(o.task)
        schema, records, train_sha = read_task_input(given.train, "training", task, columns=o.columns)
        for note in task.check_training(records, _source(given.train)):  # the whole file: its line numbers
            self.log(note)
        train_records = list(seeded_subset(records, o.train_limit, o.seed))
        labels = task.labels_of(train_records)
        dev_records, dev_sha = None, None
        if given.dev is not None:
            _, records, dev_sha = read_task_input(given.dev, "dev", task, schema=schema, labels=labels or None,
                                                  columns=o.columns)  # fmt: skip
            check_dev_lang(records, o.dev_lang, _source(given.dev), task)
            dev_records = list(seeded_subset(records, o.dev_limit, o.seed))
        return {"task": task, "schema": schema, "train": train_records, "train_sha": train_sha, "labels": labels,
                "dev": dev_records, "dev_sha": dev_sha}  # fmt: skip

    def _tokenize(self, inputs: Mapping[str, Any], base_ref: ModelRef, head: Mapping[str, Any] | None) -> Prepared:
        """The splits as model inputs, at the one max-length rule (``--max-length``, else the length of a continued
        head, else the task's training default)."""
        from xl.models.inference import from_pretrained, load_config, load_tokenizer, resolve_max_length
        from xl.tasks.data import balanced_class_weights

        o, task, schema = self.options, inputs["task"], inputs["schema"]
        tokenizer = from_pretrained(load_tokenizer, base_ref)
        max_length = resolve_max_length(o.max_length, base_ref, task.train_max_length, load_config(base_ref))
        common = {"schema": schema, "prefix": base_ref.prefix, "max_length": max_length, "doc_stride": o.doc_stride,
                  "labels": inputs["labels"]}  # fmt: skip
        train = task.tokenize(inputs["train"], tokenizer, **common)
        if o.class_weight == "balanced":  # on the labels trained on (after --train-limit)
            train.class_weights = balanced_class_weights(train.targets, len(inputs["labels"]))
        dev = task.tokenize(inputs["dev"], tokenizer, **common, with_labels=False) if inputs["dev"] else None
        return Prepared(task, schema, train, dev, inputs["labels"], base_ref, head, tokenizer, max_length)

    def _finish(self, trainer: Trainer, state: RunState, prepared: Prepared, fingerprint: str,
                inputs: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        o, train, dev = self.options, prepared.train, prepared.dev
        chosen, files = self.directory.keep_model(trainer, state, dev is not None)
        if dev is not None:
            if state.best_step == 0:
                self.log("step 0 (the starting model) scored best; kept it")
            self.directory.append_log({"step": state.step, "kept": chosen})
        manifest = {
            "kind": "finetune",
            "xl_version": xl.__version__,
            "task": o.task,
            "fingerprint": fingerprint,
            "options": asdict(o),
            "base_model": _model_record(prepared.base_ref),
            "train": {"path": o.train, "sha256": inputs["train_sha"], "examples": len(train.records),
                      "inputs": len(train.inputs), "truncated": train.truncated,
                      "langs": sorted({str(r["lang"]) for r in train.records if r.get("lang")})},
            "dev": None if dev is None else {"path": o.dev, "sha256": inputs["dev_sha"], "examples": len(dev.records),
                                             "lang": o.dev_lang.lower()},
            "device": trainer.device,
            "dtype": trainer.dtype_name,
            "processes": self.dist.world,
            "steps": state.step,
            "examples_seen": state.examples,
            "seconds": round(state.seconds, 3),
            "examples_per_second": state.examples / max(state.seconds, 1e-9),
            "chosen": chosen,
            "evaluations": state.evaluations,
            "class_weights": None if train.class_weights is None else _class_weights(train, prepared.labels, o),
            "head": trainer.head_info,
            "files": [*files, CARD, LOG_FILE, RUN_STATE, FINETUNE_MANIFEST],
        }  # fmt: skip
        self.directory.write_card(manifest)
        self.directory.write_manifest(manifest)
        self.log(f"done: {state.step} steps in {state.seconds:.0f} s; kept step {chosen['step']} "
                 f"({chosen['by']}) in {self.out}")  # fmt: skip
        return manifest


def _class_weights(train: Any, labels: list[Any], options: FinetuneOptions) -> dict[str, Any]:
    """What the manifest says of a class-weighted run: the mode, and each label's training count and weight."""
    counts = [sum(1 for t in train.targets if t == i) for i in range(len(labels))]
    return {"mode": options.class_weight, "labels": labels, "counts": counts, "weights": train.class_weights}


def finetune(options: FinetuneOptions, log: Log = _quiet, progress: Progress = no_progress) -> dict[str, Any]:
    """Run ``xl finetune``; returns the manifest written to ``DIR/xl-finetune.json``. ``progress`` (see
    :mod:`xl.progress`) hears ``train`` (step of total steps, with ``loss``, the mean over the last ``log_every``
    steps, and ``examples_per_s``) after every step and ``dev`` (rows scored, with the ``step``) while the dev set
    is scored."""
    return FinetuneRun(options, log, progress).run()
