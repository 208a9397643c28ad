"""``xl finetune``: train an encoder with a task head on English data (the source task of zero-shot transfer).

A plain torch loop, seeded and resumable:

- **Data order**: epoch ``e`` visits the training examples in ``numpy.random.default_rng([seed, e])`` order;
  with ``group_by_length`` (the default) that order is cut into mega-batches of 50 batches whose examples
  are sorted by length before being cut into batches, and the batches are shuffled again (as Hugging Face's
  ``group_by_length``): little padding, still random batches.
- **Batches**: ``batch_size`` examples per micro-batch, ``grad_accum`` micro-batches per optimizer step.
  Under ``torchrun`` (DDP) each of the N processes takes a contiguous 1/N of every micro-batch and the
  losses are scaled so that the gradient equals the single-process one (sum over the batch / batch size).
- **Optimisation**: AdamW (weight decay on matrices only), linear warm-up then linear decay, gradient
  clipping, bf16/fp16 autocast with float32 master weights (fp16 adds a gradient scaler).
- **Losses**: sts ``cosine`` (MSE of the pair cosine against score / 5, sentence-transformers'
  CosineSimilarityLoss) or ``cosent`` (Su 2022); classification and qa: cross-entropy (qa: mean of the
  start and end losses).
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
import io
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

import xl
from xl.errors import InputError, ModelError, OutputError, UsageError, XlError
from xl.io.atomic import atomic_write, temp_dir_beside
from xl.models.features import QAFeatures, qa_features, tokenize_pairs, tokenize_texts
from xl.models.registry import DEFAULT_ALIASES, MODEL_MANIFEST, ModelRef, resolve_model

if TYPE_CHECKING:
    import torch

Log = Callable[[str], None]

FINETUNE_MANIFEST = "xl-finetune.json"
LOG_FILE = "log.jsonl"
RUN_STATE = "run.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
MEGA_BATCH = 50
#: The run's own entries of DIR besides the model: what ``overwrite`` may remove.
RUN_OWNED = (FINETUNE_MANIFEST, RUN_STATE, LOG_FILE, CHECKPOINTS, BEST)
#: What ``save_task_model`` writes: the encoder (transformers; sharded when large), tokenizer, head, description.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "generation_config.json",
               "tokenizer.json", "xl-head.safetensors", MODEL_MANIFEST)  # fmt: skip
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_OS_ERROR = re.compile(r"os error (\d+)")  # how Rust libraries (safetensors, tokenizers) report an errno


def _quiet(_message: str) -> None:
    pass


@dataclass
class FinetuneOptions:
    """Everything that shapes a fine-tuning run (all of it recorded in the manifest)."""

    task: str  # sts | classify | qa
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

    def result_fields(self) -> dict[str, Any]:
        """The options that change the trained model (not where it goes or how often it is logged)."""
        skip = {"output", "resume", "overwrite", "log_every", "keep_checkpoints", "save_steps", "device"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


# --------------------------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


# --------------------------------------------------------------------------------------------- data


@dataclass
class TaskData:
    """Tokenized examples of one split: ``inputs[i]`` is a list of token-id rows (two for an sts pair)."""

    records: list[Mapping[str, Any]]
    inputs: list[list[list[int]]]
    targets: list[Any]
    lengths: list[int]
    truncated: int = 0
    features: QAFeatures | None = None  # qa: windows (inputs/targets are per window)


def read_once(path: str, what: str) -> tuple[bytes, str]:
    """The bytes of an input (``-`` = stdin) and their sha256, from one pass over it: a FIFO, a pipe or
    ``<(process substitution)`` can be read only once, and a file that changes between two reads would
    otherwise be hashed as one thing and trained on as another."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"refusing to read the {what} set from a terminal",
                             hint=f"pass a file, or pipe the {what} data in")  # fmt: skip
        handle: Any = contextlib.nullcontext(sys.stdin.buffer)
    else:
        try:
            handle = Path(path).open("rb")
        except FileNotFoundError:
            raise InputError("file not found", source=path, hint="check the path") from None
        except IsADirectoryError:
            raise InputError(f"is a directory, not a file of {what} data", source=path) from None
        except OSError as exc:
            raise InputError(f"cannot be read: {(exc.strerror or str(exc)).lower()}", source=path,
                             hint="check the path and its permissions") from None  # fmt: skip
    with handle as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            chunks.append(block)
    return b"".join(chunks), digest.hexdigest()


def parse_task_input(data: bytes, source: str, task: str, *, schema: str | None = None,
                     labels: Sequence[Any] | None = None) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """(schema, validated records) of a task file's bytes. ``schema`` None: sniffed from the first record
    (classify: single text or pair), the records themselves, not a second read of the file."""
    from xl.tasks.schemas import TASK_FIELDS, RecordError, detect_schema, iter_task_file, validate_records

    records, is_squad = iter_task_file(io.BytesIO(data), source=source)
    if schema is None:
        if task not in ("sts", "classify", "qa"):
            raise UsageError(f"unknown task {task!r}", hint="use sts, classify or qa")
        schema = {"sts": "sts", "qa": "qa"}.get(task)
        if schema is None:
            first = next(records, None)
            schema = "pair-classification" if first is not None and detect_schema(first) == "pair-classification" \
                else "classification"  # fmt: skip
            records = chain([] if first is None else [first], records)
    if is_squad and schema != "qa":
        raise RecordError(f"SQuAD JSON holds qa data, not {schema}", record=None, field=None, source=source,
                          expected=f"JSONL {schema} records ({', '.join(TASK_FIELDS[schema])})",  # type: ignore[index]
                          found="a SQuAD v1.1 JSON document",
                          hint="pass --task qa if that is what you meant")  # fmt: skip
    checked = validate_records(records, schema, source=source, labels=labels,  # type: ignore[arg-type]
                               numbering="question" if is_squad else "line")  # fmt: skip
    return schema, cast(list[dict[str, Any]], list(checked))


def check_dev_lang(records: Sequence[Mapping[str, Any]], dev_lang: str, source: str) -> None:
    """Refuse a dev set whose records' ``lang`` is not ``dev_lang`` (a missing ``lang`` is taken as English
    by default, and as ``dev_lang`` when the user names one): choosing the kept model on target-language
    labels is not zero-shot transfer, so it has to be asked for."""
    want = dev_lang.lower()
    for n, record in enumerate(records, 1):
        lang = record.get("lang")
        if lang is None or str(lang).lower() in (want, f"{want}-{want}"):
            continue
        found: dict[str, int] = {}
        for r in records:
            key = str(r.get("lang", "none"))
            found[key] = found.get(key, 0) + 1
        summary = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:4])
        if want == "en":
            raise InputError(f'the dev set is not English: record {n} has "lang": "{lang}"', source=source, line=n,
                             found=f"lang {summary} of {len(records)} records",
                             hint=f"pass an English --dev (model selection on {lang} labels is not zero-shot), or "
                                  f"--dev-lang {lang} to select on it knowingly")  # fmt: skip
        raise InputError(f'record {n} has "lang": "{lang}", not the --dev-lang {dev_lang}', source=source, line=n,
                         found=f"lang {summary} of {len(records)} records",
                         hint="--dev-lang names the one language of the dev set")  # fmt: skip


def label_set(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The sorted labels of a training set (ints numerically, strings alphabetically; one type per file)."""
    return sorted({r["label"] for r in records}, key=lambda v: (isinstance(v, str), v))


def tokenize_task(
    task: str, schema: str, records: list[Mapping[str, Any]], tokenizer: Any, *, prefix: str, max_length: int,
    doc_stride: int = 128, labels: Sequence[Any] = (), with_labels: bool = True,
) -> TaskData:  # fmt: skip
    """Token ids (and targets) of the records of one split."""
    if task == "sts":
        first = tokenize_texts(tokenizer, [r["text1"] for r in records], prefix=prefix, max_length=max_length)
        second = tokenize_texts(tokenizer, [r["text2"] for r in records], prefix=prefix, max_length=max_length)
        inputs = [[a, b] for a, b in zip(first.ids, second.ids, strict=True)]
        targets = [float(r["score"]) / 5.0 for r in records]
        return TaskData(records, inputs, targets, [len(a) + len(b) for a, b in inputs],
                        first.truncated + second.truncated)  # fmt: skip
    if task == "classify":
        if schema == "pair-classification":
            tok = tokenize_pairs(tokenizer, [r["text1"] for r in records], [r["text2"] for r in records],
                                 prefix=prefix, max_length=max_length)  # fmt: skip
        else:
            tok = tokenize_texts(tokenizer, [r["text"] for r in records], prefix=prefix, max_length=max_length)
        index = {label: i for i, label in enumerate(labels)}
        targets = [index[r["label"]] for r in records] if with_labels else [0] * len(records)
        return TaskData(records, [[row] for row in tok.ids], targets, [len(row) for row in tok.ids], tok.truncated)
    features = qa_features(tokenizer, records, prefix=prefix, max_length=max_length, doc_stride=doc_stride,
                           with_labels=with_labels)  # fmt: skip
    targets = list(zip(features.start, features.end, strict=True)) if with_labels else [(0, 0)] * len(features.ids)
    return TaskData(records, [[row] for row in features.ids], targets, [len(row) for row in features.ids],
                    features.truncated_questions, features)  # fmt: skip


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[np.ndarray]:
    """The micro-batches (index arrays) of one epoch, in order (see the module docstring)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[np.ndarray] = []
    mega = batch_size * MEGA_BATCH
    length_of = np.asarray(lengths)
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-length_of[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


# --------------------------------------------------------------------------------------------- the run


@dataclass
class RunState:
    """What a checkpoint stores besides tensors: where the run is and what it found so far."""

    step: int = 0
    micro: int = 0  # micro-batches done in total
    examples: int = 0
    best_step: int | None = None
    best_metric: float | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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


class Trainer:
    """One fine-tuning run (see the module docstring)."""

    def __init__(self, options: FinetuneOptions, log: Log = _quiet) -> None:
        self.given = options  # as typed: the names said in messages
        self.options = absolute_paths(options)  # as recorded
        self.out = Path(self.options.output)
        self.dist = Dist.from_env()
        self.log = log if self.dist.main else _quiet  # one voice under torchrun: the main process's
        self._check_options()

    def _check_options(self) -> None:
        o = self.options
        if o.task not in ("sts", "classify", "qa"):
            raise UsageError(f"unknown task {o.task!r}", hint="use sts, classify or qa")
        if o.loss not in ("cosine", "cosent"):
            raise UsageError(f"unknown loss {o.loss!r}", hint="use cosine or cosent (sts only)")
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
        if o.batch_size % self.dist.world:
            raise UsageError(f"--batch-size {o.batch_size} is not divisible by the {self.dist.world} processes",
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

    def _check_paths(self) -> None:
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
            if self.dist.world > 1 and flag in ("--train", "--dev") and candidate.exists() and not candidate.is_file():
                raise UsageError(f"{flag} {spelled} is not a regular file", hint="under torchrun every process reads "
                                 "the data itself: write it to a file first")  # fmt: skip
        if self.dist.world > 1 and "-" in (o.train, o.dev):
            raise UsageError("under torchrun the data cannot come from stdin", hint="write it to a file first")

    # ------------------------------------------------------------------ write errors

    @contextlib.contextmanager
    def _writing(self, target: Path, what: str) -> Iterator[None]:
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

    # ------------------------------------------------------------------ set-up

    def run(self) -> dict[str, Any]:
        import torch

        o, given, out = self.options, self.given, self.out
        self._check_paths()
        if self.dist.world > 1:
            self._init_process_group()
        from xl.models.encoder import from_pretrained, load_tokenizer, resolve_device, resolve_dtype
        from xl.models.task_model import TASK_SCHEMA, check_head_fits, load_encoder, load_head, make_task_model
        from xl.tasks import seeded_subset

        device = resolve_device(o.device)
        if self.dist.world > 1 and device.startswith("cuda"):
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
        self.device = device
        self.dtype_name = resolve_dtype(o.dtype, device)
        task_schema = TASK_SCHEMA[o.task]
        # The inputs first, each read once (hashed as it is read: pipes work) and validated, then the model
        # spec and its tokenizer: -o is not touched, nor a model loaded, before all of them are known good.
        data, train_sha = read_once(given.train, "training")
        schema, records = parse_task_input(data, _source(given.train), o.task)
        train_records: list[Mapping[str, Any]] = list(seeded_subset(records, o.train_limit, o.seed))
        labels = label_set(train_records) if o.task == "classify" else []
        dev_records: list[Mapping[str, Any]] | None = None
        dev_sha = None
        if given.dev is not None:
            data, dev_sha = read_once(given.dev, "dev")
            _, records = parse_task_input(data, _source(given.dev), o.task, schema=schema, labels=labels or None)
            check_dev_lang(records, o.dev_lang, _source(given.dev))
            dev_records = list(seeded_subset(records, o.dev_limit, o.seed))
        del data, records
        base_ref = resolve_model(o.init or o.model, log=self.log)
        head = None if o.init else check_head_fits(base_ref, task_schema, labels or None)
        fingerprint = run_fingerprint(o, train_sha, dev_sha, base_ref.fingerprint, None)
        tokenizer = from_pretrained(load_tokenizer, base_ref)
        resume_from = None
        if self.dist.main:
            resume_from = _prepare_output(out, fingerprint, o)
            if not (resume_from and resume_from.get("finished")):
                with self._writing(out / RUN_STATE, "the run's state"):
                    out.mkdir(parents=True, exist_ok=True)
                    _write_atomic(out / RUN_STATE, json.dumps({"fingerprint": fingerprint, "options": asdict(o)},
                                                              indent=2, default=str).encode())  # fmt: skip
        resume_from = self._broadcast(resume_from)
        if resume_from and resume_from.get("finished"):
            self.log(f"{out} already holds this finished run; nothing to do")
            return json.loads((out / FINETUNE_MANIFEST).read_text()) if self.dist.main else {}

        max_length = o.max_length or (384 if o.task == "qa" else 128)
        limit = int(json.loads((base_ref.path / "config.json").read_text()).get("max_position_embeddings", 514)) - 2 \
            if base_ref.path is not None else 512  # fmt: skip
        max_length = min(max_length, limit)
        prefix = base_ref.prefix
        train = tokenize_task(o.task, schema, train_records, tokenizer, prefix=prefix, max_length=max_length,
                              doc_stride=o.doc_stride, labels=labels)  # fmt: skip
        dev = (tokenize_task(o.task, schema, dev_records, tokenizer, prefix=prefix, max_length=max_length,
                             doc_stride=o.doc_stride, labels=labels, with_labels=o.task != "qa")
               if dev_records else None)  # fmt: skip
        pooling = str((head or {}).get("pooling") or base_ref.info.get("pooling") or "mean")
        torch.manual_seed(o.seed)
        encoder = load_encoder(base_ref, dropout=o.dropout)
        model = make_task_model(encoder, task_schema, n_labels=len(labels), pooling=pooling)
        if head is not None and model.head is not None:
            load_head(model, base_ref.path or Path("."))
        if o.freeze_embeddings:
            encoder.get_input_embeddings().weight.requires_grad_(False)
        model.to(device)
        self.model = model
        from xl.models.task_model import pad_id_of

        self.pad_id = pad_id_of(encoder)
        self.head_info = {"task": task_schema, "pooling": pooling, "max_length": max_length,
                          "labels": labels or None, "pair": schema == "pair-classification", "doc_stride": o.doc_stride,
                          "loss": o.loss if o.task == "sts" else "cross-entropy"}  # fmt: skip
        self.info = {**{k: v for k, v in base_ref.info.items() if k not in ("head", "weights_sha256")},
                     "name": f"{base_ref.name}+{o.task}", "prefix": prefix, "pooling": pooling,
                     "base_model": _model_record(base_ref), "xl_version": xl.__version__}  # fmt: skip
        self.tokenizer = tokenizer

        n_micro = math.ceil(len(train.inputs) / o.batch_size)
        steps_per_epoch = math.ceil(n_micro / o.grad_accum)
        total_steps = o.max_steps or max(1, math.ceil(steps_per_epoch * o.epochs))
        params_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
        params_plain = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": params_decay, "weight_decay": o.weight_decay},
                  {"params": params_plain, "weight_decay": 0.0}]  # fmt: skip
        try:  # the fused kernel (one pass per tensor, CPU and CUDA) is several times faster than the default loop
            optimizer = torch.optim.AdamW(groups, lr=o.lr, fused=True)
        except (RuntimeError, TypeError):
            optimizer = torch.optim.AdamW(groups, lr=o.lr)
        warmup_steps = int(o.warmup * total_steps)

        def schedule(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        autocast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.dtype_name)
        self.autocast_dtype = autocast_dtype
        scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 and device.startswith("cuda") else None
        state = RunState()
        final_saved = bool(resume_from and resume_from.get("final"))
        if resume_from and resume_from.get("step"):
            folder = out / CHECKPOINTS / f"step-{resume_from['step']}"
            state = self._load_checkpoint(folder, optimizer, scheduler, final=final_saved)
            self.log(f"resuming at step {state.step} of {total_steps}"
                     + ("; training is done, finishing the save" if final_saved else ""))  # fmt: skip
        train_model: torch.nn.Module = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                model, device_ids=[torch.device(device)] if device.startswith("cuda") else None
            )
        self.log(f"{o.task}: {len(train_records)} training examples"
                 + (f" ({len(train.inputs)} windows)" if o.task == "qa" else "")
                 + f", {total_steps} steps of {o.batch_size * o.grad_accum}, {device} {self.dtype_name}"
                 + (f", {self.dist.world} processes" if self.dist.world > 1 else ""))  # fmt: skip
        if train.truncated:
            self.log(f"{train.truncated} training inputs truncated to {max_length} tokens")

        # ------------------------------------------------------------------ the loop
        log_path = out / LOG_FILE
        if self.dist.main:
            with self._writing(log_path, "the training log"):
                _truncate_log(log_path, state)
        if dev is not None and state.step == 0:
            self._evaluate(dev, state, out, log_path)  # step 0, the starting model: the score to beat
        started = time.perf_counter() - state.seconds
        eval_steps = o.eval_steps or steps_per_epoch
        save_steps = o.save_steps
        epoch = state.micro // n_micro
        loss_sum, loss_count = 0.0, 0
        fault_step = int(os.environ.get("XL_FAULT_AFTER_STEP", "0") or 0)  # tests: die as if killed
        train_model.train()
        while state.step < total_steps:
            batches = epoch_batches(train.lengths, o.batch_size, o.seed, epoch, o.group_by_length)
            index_in_epoch = state.micro - epoch * n_micro
            while index_in_epoch < len(batches) and state.step < total_steps:
                group = batches[index_in_epoch : index_in_epoch + o.grad_accum]
                group = group[: max(1, min(len(group), len(batches) - index_in_epoch))]
                for batch in group:
                    share = np.array_split(batch, self.dist.world)[self.dist.rank]
                    with torch.autocast(device.split(":")[0], dtype=autocast_dtype or torch.float32,
                                        enabled=autocast_dtype is not None):  # fmt: skip
                        loss_total = self._loss(train_model, train, share)
                    # Sum over this process's share / global batch size x processes (DDP averages), / accumulation:
                    # the gradient is the mean over the global batch, whatever the number of processes.
                    loss = loss_total * (self.dist.world / (len(batch) * len(group)))
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                    loss_sum += self._global_sum(loss_total.detach()) / len(batch)
                    loss_count += 1
                    state.examples += len(batch)
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if o.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                index_in_epoch += len(group)
                state.micro += len(group)
                state.step += 1
                state.seconds = time.perf_counter() - started
                if self.dist.main and (state.step % o.log_every == 0 or state.step == total_steps):
                    row = {"step": state.step, "epoch": round(state.micro / n_micro, 4),
                           "loss": loss_sum / max(1, loss_count), "lr": scheduler.get_last_lr()[0],
                           "examples": state.examples, "seconds": round(state.seconds, 3)}  # fmt: skip
                    with self._writing(log_path, "the training log"):
                        _append_log(log_path, row)
                    self.log(f"step {state.step}/{total_steps}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
                             f"{state.examples / max(state.seconds, 1e-9):.1f} ex/s")  # fmt: skip
                    loss_sum, loss_count = 0.0, 0
                if dev is not None and state.step % eval_steps == 0 and state.step < total_steps:
                    self._evaluate(dev, state, out, log_path)
                if save_steps and state.step % save_steps == 0 and state.step < total_steps:
                    self._save_checkpoint(out, state, optimizer, scheduler)
                if fault_step and state.step == fault_step:
                    os._exit(137)
            if index_in_epoch >= len(batches):
                epoch += 1
        # Training is done: the final weights and state go to disk before the (larger) save of the kept model,
        # so a save that fails leaves a run that --resume finishes without training again.
        if not final_saved:
            self._save_checkpoint(out, state, optimizer, scheduler, final=True)
        if dev is not None:
            self._evaluate(dev, state, out, log_path)
        return self._finish(out, state, log_path, train, dev, fingerprint, train_sha, dev_sha, base_ref)

    def _init_process_group(self) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and self.options.device != "cpu" else "gloo"
            dist.init_process_group(backend=backend)

    def _global_sum(self, value: torch.Tensor) -> float:
        """The sum of a scalar over all processes (for the log: the loss of the whole batch)."""
        if self.dist.world == 1:
            return float(value)
        import torch.distributed as dist

        total = value.detach().float().clone()
        dist.all_reduce(total)
        return float(total)

    def _broadcast(self, value: Any) -> Any:
        if self.dist.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ------------------------------------------------------------------ losses

    def _loss(self, model: torch.nn.Module, data: TaskData, share: np.ndarray) -> torch.Tensor:
        """Sum of the per-example losses of ``share`` (float32 scalar)."""
        return task_loss(model, self.options.task, data, share, self.pad_id, self.device, self.options.loss)

    # ------------------------------------------------------------------ evaluation and saving

    def _evaluate(self, dev: TaskData, state: RunState, out: Path, log_path: Path) -> None:
        if self.dist.main:
            from xl.models.task_eval import score_task_data

            metrics = score_task_data(self.model, self.options.task, dev, self.pad_id, self.device,
                                      labels=self.head_info["labels"], autocast=self.autocast_dtype)  # fmt: skip
            metric = metrics["selection_metric"]
            row = {"step": state.step, "dev": metrics}
            state.evaluations.append(row)
            with self._writing(log_path, "the training log"):
                _append_log(log_path, row)
            improved = state.best_metric is None or (metric is not None and metric > state.best_metric)
            where = "step 0 (the starting model)" if state.step == 0 else f"step {state.step}"
            shown = "n/a" if metric is None else f"{metric:.2f}"
            self.log(f"dev at {where}: {metrics['selection_name']} {shown}" + ("  (best so far)" if improved else ""))
            if improved:
                state.best_metric, state.best_step = metric, state.step
                with self._writing(out / BEST, f"the model of step {state.step} (the best so far on the dev set)"):
                    self._save_model(out / BEST)
        self.dist.barrier()

    def _save_model(self, directory: Path) -> None:
        from xl.models.task_model import save_task_model

        save_task_model(self.model, self.tokenizer, directory, self.info, self.head_info)

    def _save_checkpoint(self, out: Path, state: RunState, optimizer: Any, scheduler: Any, *,
                         final: bool = False) -> None:  # fmt: skip
        """Write ``checkpoints/step-N`` and name it in ``latest.json``. A ``final`` one (training done) holds the
        weights and state only, and replaces all earlier ones."""
        import torch
        from safetensors.torch import save_file

        if self.dist.main:
            folder = out / CHECKPOINTS / f"step-{state.step}"
            what = f"the {'final ' if final else ''}checkpoint of step {state.step}"
            with self._writing(folder, what):
                staging = temp_dir_beside(folder)
                try:
                    weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
                    save_file(_untie(weights), str(staging / "model.safetensors"))
                    if os.environ.get("XL_FAULT_IN_CHECKPOINT"):  # tests: die half-way through writing a checkpoint
                        os._exit(137)
                    if not final:
                        with (staging / "optimizer.pt").open("wb") as handle:  # a file object: errors keep their errno
                            cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
                            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                        "rng": torch.get_rng_state(), "cuda_rng": cuda_rng}, handle)  # fmt: skip
                    (staging / "state.json").write_text(json.dumps(asdict(state)))
                    if folder.exists():
                        shutil.rmtree(folder)
                    staging.rename(folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)  # a failed write frees its space
                    raise
                latest = {"step": state.step, "final": True} if final else {"step": state.step}
                _write_atomic(out / CHECKPOINTS / "latest.json", json.dumps(latest).encode())
            kept = sorted((p for p in (out / CHECKPOINTS).glob("step-*") if p.name[5:].isdigit()),
                          key=lambda p: int(p.name[5:]))  # fmt: skip
            for old in kept[:-1] if final else kept[: -self.options.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.dist.barrier()

    def _load_checkpoint(self, folder: Path, optimizer: Any, scheduler: Any, *, final: bool = False) -> RunState:
        import torch
        from safetensors.torch import load_file

        needed = ("model.safetensors", "state.json") + (() if final else ("optimizer.pt",))
        if not all((folder / name).is_file() for name in needed):
            raise ModelError("the latest checkpoint is incomplete", source=str(folder),
                             hint="rerun with --overwrite to start again")  # fmt: skip
        weights = load_file(str(folder / "model.safetensors"), device="cpu")
        try:
            self.model.load_state_dict(weights)
        except RuntimeError:
            raise ModelError("the checkpoint does not fit the model", source=str(folder)) from None
        if not final:  # a final checkpoint: no step is left, so no optimizer, schedule or RNG is needed
            saved = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"])
            if saved.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return RunState(**json.loads((folder / "state.json").read_text()))

    def _finish(
        self,
        out: Path,
        state: RunState,
        log_path: Path,
        train: TaskData,
        dev: TaskData | None,
        fingerprint: str,
        train_sha: str | None,
        dev_sha: str | None,
        base_ref: ModelRef,
    ) -> dict[str, Any]:
        o = self.options
        manifest: dict[str, Any] = {}
        if self.dist.main:
            best = out / BEST
            if dev is None:
                with self._writing(out, "the trained model"):
                    self._save_model(best)
                chosen: dict[str, Any] = {"step": state.step, "metric": None, "by": "last step (no dev set)",
                                          "dev": None}  # fmt: skip
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
                chosen = {"step": state.best_step, "metric": state.best_metric,
                          "metric_name": names[0] if names else None, "by": by,
                          "dev": o.dev, "dev_lang": lang, "starting_model": state.best_step == 0}  # fmt: skip
            moved: list[str] = []
            with self._writing(out, "the trained model"):
                if best.is_dir():  # renames within DIR: a rerun after a failure here moves what is left
                    for path in sorted(best.iterdir()):
                        os.replace(path, out / path.name)
                        moved.append(path.name)
                    shutil.rmtree(best)
            files = sorted({*moved, *(p.name for p in out.iterdir() if p.is_file() and p.name in MODEL_FILES),
                            *(p.name for p in out.iterdir() if _SHARD.fullmatch(p.name))})  # fmt: skip
            if dev is not None:
                if state.best_step == 0:
                    self.log("step 0 (the starting model) scored best; kept it")
                with self._writing(log_path, "the training log"):
                    _append_log(log_path, {"step": state.step, "kept": chosen})
            manifest = {
                "kind": "finetune",
                "xl_version": xl.__version__,
                "task": o.task,
                "fingerprint": fingerprint,
                "options": asdict(o),
                "base_model": _model_record(base_ref),
                "train": {"path": o.train, "sha256": train_sha, "examples": len(train.records),
                          "inputs": len(train.inputs), "truncated": train.truncated},
                "dev": None if dev is None else {"path": o.dev, "sha256": dev_sha, "examples": len(dev.records),
                                                 "lang": o.dev_lang.lower()},
                "device": self.device,
                "dtype": self.dtype_name,
                "processes": self.dist.world,
                "steps": state.step,
                "examples_seen": state.examples,
                "seconds": round(state.seconds, 3),
                "examples_per_second": state.examples / max(state.seconds, 1e-9),
                "chosen": chosen,
                "evaluations": state.evaluations,
                "head": self.head_info,
                "files": [*files, LOG_FILE, RUN_STATE, FINETUNE_MANIFEST],
            }  # fmt: skip
            with self._writing(out / FINETUNE_MANIFEST, "the run's manifest"):
                _write_atomic(out / FINETUNE_MANIFEST, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
            self.log(f"done: {state.step} steps in {state.seconds:.0f} s; kept step {chosen['step']} "
                     f"({chosen['by']}) in {out}")  # fmt: skip
        self.dist.barrier()
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        return manifest


def _model_record(ref: ModelRef) -> dict[str, Any]:
    """How a run names its base model: the spec (absolute when a directory), name, fingerprint and path."""
    return {"spec": ref.spec, "name": ref.name, "fingerprint": ref.fingerprint,
            "path": None if ref.path is None else os.path.abspath(ref.path)}  # fmt: skip


def _untie(weights: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory: store a copy of each repeat."""
    seen: set[int] = set()
    out = {}
    for name, tensor in weights.items():
        pointer = tensor.data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def task_loss(model: torch.nn.Module, task: str, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
              loss: str = "cosine") -> torch.Tensor:  # fmt: skip
    """Sum of the per-example losses of the examples ``share`` of ``data`` (float32 scalar): sts ``cosine``
    (MSE of the pair cosine against score / 5) or ``cosent``; classify and qa cross-entropy."""
    import torch
    import torch.nn.functional as F

    from xl.models.task_model import pad_batch

    if len(share) == 0:
        return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)  # type: ignore[return-value]
    if task == "sts":
        rows = [data.inputs[i][0] for i in share] + [data.inputs[i][1] for i in share]
        ids, mask = pad_batch(rows, pad_id, device)
        pooled = model(ids, mask).float()
        a, b = pooled[: len(share)], pooled[len(share) :]
        cosine = F.cosine_similarity(a, b, dim=-1)
        target = torch.tensor([data.targets[i] for i in share], dtype=torch.float32, device=cosine.device)
        if loss == "cosine":
            return F.mse_loss(cosine, target, reduction="sum")
        # CoSENT (Su 2022): log(1 + Σ_{s_i > s_j} exp(λ (cos_j − cos_i))), λ = 20, over the pairs of the share.
        scaled = cosine * 20.0
        diff = scaled[None, :] - scaled[:, None]  # [i, j] = cos_j − cos_i
        worse = target[:, None] > target[None, :]
        diff = diff.masked_fill(~worse, -1e12)
        zero = torch.zeros(1, device=diff.device)
        return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0) * len(share)
    ids, mask = pad_batch([data.inputs[i][0] for i in share], pad_id, device)
    logits = model(ids, mask).float()
    if task == "classify":
        target = torch.tensor([data.targets[i] for i in share], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum")
    starts = torch.tensor([data.targets[i][0] for i in share], dtype=torch.long, device=logits.device)
    ends = torch.tensor([data.targets[i][1] for i in share], dtype=torch.long, device=logits.device)
    logits = logits.masked_fill(mask[..., None] == 0, -1e4)
    return (F.cross_entropy(logits[..., 0], starts, reduction="sum")
            + F.cross_entropy(logits[..., 1], ends, reduction="sum")) / 2  # fmt: skip


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row, default=float) + "\n")


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


def finetune(options: FinetuneOptions, log: Log = _quiet) -> dict[str, Any]:
    """Run ``xl finetune``; returns the manifest written to ``DIR/xl-finetune.json``."""
    return Trainer(options, log).run()
