"""``xl embed`` as a library function: records in, pooled sentence embeddings out, streaming.

Memory stays constant whatever the input size: records are read in windows; inside a window they are
length-sorted into token-budget batches (:func:`xl.core.batching.plan_batches`), and the window's rows
are written back in input order before the next window is read. Row *i* of the output is record *i* of
the input (of the shard, with ``--shard``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from xl.errors import InputError, UsageError, failure_reason
from xl.io.atomic import absolute, atomic_write, check_input_path, is_regular_file, spool
from xl.io.jsonl import JsonlWriter
from xl.io.manifest import base_manifest
from xl.io.npy import MatrixWriter, forget_stale_stdout_manifest, refuse_terminal_stdout
from xl.io.records import (
    DecodeErrors,
    InputFormat,
    Record,
    RecordReader,
    check_input_format,
    check_records,
    count_records,
    sha256_file,
    table_input,
)
from xl.models.inference import Encoder, Pooling
from xl.models.registry import resolve_model

OutputFormat = Literal["npy", "jsonl"]
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class EmbedOptions:
    """Everything that changes what ``xl embed`` computes (recorded in the manifest)."""

    model: str = "default"
    layers: list[int] = field(default_factory=lambda: [-1])
    pooling: Pooling | None = None  # None: the model's (a sentence-transformers directory's Pooling, else mean)
    normalize: bool | None = None  # None: the model's (a Normalize module), else off
    prefix: str | None = None  # None: the model's default ("query: " for the default model)
    max_length: int | None = None  # None: the model's own (its training length, else 512)
    batch_size: int = 32
    max_tokens: int = 8192
    window: int = 4096
    device: str = "auto"
    dtype: str = "auto"
    shard: tuple[int, int] | None = None  # (K, N), 1-based K


@dataclass
class EmbedReport:
    """What a run did: rows written, truncations, the resolved device/dtype/prefix, time."""

    rows: int
    truncated: int
    seconds: float
    device: str
    dtype: str
    prefix: str
    layers: list[int]
    outputs: list[str]


#: The launcher variables ``--shard auto`` reads, named in its error message.
SHARD_LAUNCHERS = "a Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _MAX) or torchrun (RANK, WORLD_SIZE)"


def _env_int(env: Mapping[str, str], name: str) -> int:
    value = env[name].strip()
    if not value.lstrip("-").isdigit():
        raise UsageError(f"--shard auto: {name}={env[name]!r} is not an integer",
                         hint="fix the launcher's environment, or pass --shard K/N")  # fmt: skip
    return int(value)


def _slurm_array_shard(env: Mapping[str, str]) -> tuple[int, int] | None:
    """Shard (K, N) of a Slurm job array task: array indices need not start at 0 or 1 (``--array=5-12``) and may
    step (``--array=0-30:10``), so K and N come from the index's place in MIN..MAX by STEP, not from the index."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    missing = [f"SLURM_ARRAY_TASK_{n}" for n in ("MIN", "MAX") if f"SLURM_ARRAY_TASK_{n}" not in env]
    if missing:
        raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID is set but {', '.join(missing)} is not",
                         hint="run under sbatch --array=A-B, or pass --shard K/N")  # fmt: skip
    task, low, high = (_env_int(env, f"SLURM_ARRAY_TASK_{n}") for n in ("ID", "MIN", "MAX"))
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    if step < 1 or not low <= task <= high or (task - low) % step:
        raise UsageError(f"--shard auto: array task {task} is not in {low}-{high}:{step}",
                         hint="fix the launcher's environment, or pass --shard K/N")  # fmt: skip
    parts = (high - low) // step + 1
    if "SLURM_ARRAY_TASK_COUNT" in env and _env_int(env, "SLURM_ARRAY_TASK_COUNT") != parts:
        # a list such as --array=1,4,9 gives MIN/MAX but not a contiguous range: shards would be lost
        raise UsageError(f"--shard auto: the array has {env['SLURM_ARRAY_TASK_COUNT']} tasks, not the {parts} "
                         f"of {low}-{high}:{step}", hint="use a range (--array=A-B), or pass --shard K/N")  # fmt: skip
    return (task - low) // step + 1, parts


def _torchrun_shard(env: Mapping[str, str]) -> tuple[int, int] | None:
    """Shard (K, N) of a torchrun / torch.distributed process: RANK is 0-based among WORLD_SIZE."""
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    if "RANK" not in env or "WORLD_SIZE" not in env:
        raise UsageError("--shard auto: RANK and WORLD_SIZE must both be set",
                         hint="launch with torchrun, or pass --shard K/N")  # fmt: skip
    rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    if not 0 <= rank < world:
        raise UsageError(f"--shard auto: RANK={rank} is not in 0..WORLD_SIZE-1 ({world})",
                         hint="fix the launcher's environment, or pass --shard K/N")  # fmt: skip
    return rank + 1, world


def shard_from_env(env: Mapping[str, str]) -> tuple[tuple[int, int], str]:
    """``--shard auto``: the shard (K, N), 1-based, that the launcher's environment gives, and which launcher.

    Slurm job arrays (``sbatch --array``) and torchrun (``RANK``/``WORLD_SIZE``) are read; when both are set
    they must agree (one job array of single-process tasks, or one torchrun job), else the run is refused
    rather than guessing which split the user meant. GNU parallel gives no total, so its recipes pass
    ``--shard {#}/N`` explicitly (``examples/scale/parallel.sh``)."""
    found = {name: shard for name, shard in (("Slurm array", _slurm_array_shard(env)),
                                             ("torchrun", _torchrun_shard(env))) if shard is not None}  # fmt: skip
    if not found:
        raise UsageError("--shard auto found no launcher in the environment",
                         hint=f"run it in {SHARD_LAUNCHERS}, or pass --shard K/N")  # fmt: skip
    if len(set(found.values())) > 1:
        said = "; ".join(f"{name} says {k}/{n}" for name, (k, n) in found.items())
        raise UsageError(f"--shard auto: the launchers disagree ({said})", hint="pass --shard K/N")
    return next(iter(found.values())), " and ".join(found)


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``K/N`` with 1 ≤ K ≤ N (1-based, like ``split -n K/N``), or ``auto`` (:func:`shard_from_env` of ``env``,
    by default the process environment)."""
    if text == "auto":
        return shard_from_env(os.environ if env is None else env)[0]
    k_text, _, n_text = text.partition("/")
    if not (k_text.isdigit() and n_text.isdigit()) or not 1 <= int(k_text) <= int(n_text):
        raise UsageError(
            f"--shard {text!r} is not K/N with 1 ≤ K ≤ N",
            hint="e.g. --shard 1/4 … --shard 4/4, or --shard auto under Slurm or torchrun",
        )
    return int(k_text), int(n_text)


def shard_range(n: int, k: int, parts: int) -> tuple[int, int]:
    """Contiguous rows [start, stop) of shard ``k`` (1-based) of ``parts`` over ``n`` rows."""
    return (n * (k - 1)) // parts, (n * k) // parts


def output_for(template: str, layer: int, several_layers: bool, input_path: str | Path, several_inputs: bool) -> str:
    """The output path of one (input, layer): ``{layer}`` and ``{stem}`` in ``-o`` are filled in."""
    if several_layers and "{layer}" not in template:
        raise UsageError("several layers need one output each", hint="put {layer} in the output name: "
                         "-o emb.layer{layer}.npy")  # fmt: skip
    if several_inputs and "{stem}" not in template and "{name}" not in template:
        raise UsageError("several inputs need one output each", hint="put {stem} (the input's name without "
                         "its extension) or {name} (its whole name) in the output: -o 'emb/{stem}.npy'")  # fmt: skip
    path = Path(str(input_path))
    filled = template.replace("{layer}", str(layer)).replace("{stem}", path.stem).replace("{name}", path.name)
    # The folder the template names (everything before its first placeholder) bounds where an input's name
    # can put the output: an input called ``..`` must not move it to another folder.
    cut = min((template.index(p) for p in ("{stem}", "{name}") if p in template), default=-1)
    if cut >= 0:
        folder = Path(template[:cut]).parent if not template[:cut].endswith("/") else Path(template[:cut])
        resolved, bound = Path(os.path.normpath(filled)), Path(os.path.normpath(folder))
        if os.path.normpath(resolved.parent) != os.path.normpath(bound) and bound not in resolved.parents:
            raise UsageError(f"input {str(input_path)!r} would put its output outside {str(folder) or '.'}",
                             hint="rename the input, or name the output without {stem}/{name}")  # fmt: skip
    return filled


def embed_files(
    inputs: Sequence[str | Path],
    output: str,
    options: EmbedOptions,
    *,
    output_format: OutputFormat = "npy",
    input_format: InputFormat = "auto",
    text_field: str = "text",
    errors: DecodeErrors = "strict",
    log: Log = _quiet,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int | None], None] | None = None,
    resume: bool = False,
) -> list[EmbedReport]:
    """Embed every record of each input (``-`` = stdin) into its output (``-`` = stdout), one model load.

    Output is NPY float32 (n, hidden) per layer, or JSONL records with an ``"embedding"`` list. A file
    output is atomic and gets a manifest beside it. Several inputs or layers need ``{stem}`` / ``{layer}``
    in ``output``. All inputs are checked before the model loads, a regular file to its last line (so a bad
    line fails at once); stdin, FIFOs and ``<(…)`` are read once and checked as they stream (``--shard`` on one
    of those spools it to a temporary file first, to count its rows).

    ``resume``: each output is built in a hidden partial file beside it (``.NAME.partial``) with a progress
    record (``.NAME.partial.json``) after every window; an interrupted run keeps both, and the next run with
    ``resume`` checks the input hash and the options, cuts the partial file back to the last recorded window
    and goes on from there. The result is the same matrix as an uninterrupted run (float32: the same bytes).
    Raises :class:`~xl.errors.XlError`.
    """
    several_layers, several_inputs = len(options.layers) > 1, len(inputs) > 1
    if output == "-" and (several_layers or several_inputs):
        raise UsageError("several layers or inputs need one output file each",
                         hint="pass -o 'emb/{stem}.layer{layer}.npy'")  # fmt: skip
    if len(set(options.layers)) != len(options.layers):
        raise UsageError("--layer lists a layer twice")
    if several_inputs and any(str(p) == "-" for p in inputs):
        raise UsageError("stdin (-) cannot be one of several inputs")
    targets = {output_for(output, 0, several_layers, p, several_inputs) for p in inputs}
    if len(targets) != len(inputs):
        raise UsageError("two inputs would write the same output", hint="inputs need distinct file names")
    for path in inputs:
        if table_input(path, input_format) != "hf-dataset":  # a datasets folder is a folder
            check_input_path(path, "records")  # fail before loading the model, without opening (FIFOs)
        check_input_format(path, input_format)
    if resume and (output == "-" or output_format != "npy"):
        raise UsageError("--resume needs an NPY output file", hint="pass -o FILE.npy")
    if output == "-" and output_format == "npy":
        refuse_terminal_stdout(output)  # now, not after the model has loaded
        forget_stale_stdout_manifest()
    for path in inputs:
        # a bad line of a file is found now, not after the model has loaded (streams are checked as they come)
        check_records(path, input_format=input_format, field=text_field, errors=errors)
    ref = resolve_model(options.model, log=log)
    encoder = Encoder(ref, layers=options.layers, device=options.device, dtype=options.dtype,
                      max_length=options.max_length)  # fmt: skip
    # What the command line leaves open, the model's files say (xl.models.inference.model_pooling); recorded.
    options = replace(options, pooling=options.pooling or encoder.pooling,
                      normalize=encoder.normalize if options.normalize is None else options.normalize)  # fmt: skip
    prefix = ref.prefix if options.prefix is None else options.prefix
    log(f"model {ref.name} · {encoder.device} · {encoder.dtype_name} · layers {encoder.layers} · "
        f"pooling {options.pooling}{' · normalized' if options.normalize else ''} · prefix {prefix!r} · "
        f"max length {encoder.max_length}")  # fmt: skip
    reports = []
    for path in inputs:
        job = _Job(path, output, several_inputs, output_format, input_format, text_field, errors, resume)
        reports.append(_embed_one(job, options, encoder, prefix, log, progress, on_total))
    return reports


@dataclass
class _Job:
    """One input of ``embed_files`` and how to write it."""

    input_path: str | Path
    output: str
    several_inputs: bool
    output_format: OutputFormat
    input_format: InputFormat
    text_field: str
    errors: DecodeErrors
    resume: bool


def _embed_one(
    job: _Job,
    options: EmbedOptions,
    encoder: Encoder,
    prefix: str,
    log: Log,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int | None], None] | None,
) -> EmbedReport:
    started = time.time()
    with contextlib.ExitStack() as stack:
        source = job.input_path
        table = table_input(source, job.input_format)
        if options.shard is not None and not is_regular_file(source) and table is None:
            source = _spool(source, stack)  # rows must be counted first; a pipe can be read only once
        countable = is_regular_file(source) or table is not None
        total = count_records(source, job.input_format, job.text_field) if countable else None
        start, stop = 0, total if total is not None else -1
        if options.shard is not None and total is not None:
            start, stop = shard_range(total, *options.shard)
        if on_total is not None:
            on_total(None if total is None else stop - start)
        if job.resume and not is_regular_file(source):  # a datasets folder too: it is read whole
            raise UsageError("--resume needs an input file (it is hashed to check what it resumes from)",
                             hint="save the input to a file first")  # fmt: skip
        reader = stack.enter_context(RecordReader(source, input_format=job.input_format, field=job.text_field,
                                                  errors=job.errors))  # fmt: skip
        manifest = _manifest(job, options, encoder, prefix, reader.format, start)
        writers: dict[int, MatrixWriter | JsonlWriter] = {}
        progress_file: _Progress | None = None
        try:
            for layer in encoder.layers:
                target = output_for(job.output, layer, len(encoder.layers) > 1, job.input_path, job.several_inputs)
                layer_manifest = {**manifest, "layer": layer}
                if job.output_format == "jsonl":
                    writers[layer] = JsonlWriter(target, layer_manifest)
                else:
                    writers[layer] = MatrixWriter(target, encoder.hidden, layer_manifest,
                                                  partial=_partial_path(target) if job.resume else None)  # fmt: skip
            if job.resume:
                progress_file = _Progress.open(writers, manifest, source, log)  # type: ignore[arg-type]
            rows, truncated = _run(reader, encoder, writers, options, prefix, start, stop, progress, progress_file)
            extra = {"input_sha256": reader.sha256 if reader.count == total or total is None else None,
                     "truncated": truncated}  # fmt: skip
            for writer in writers.values():
                writer.close(extra)
            if progress_file is not None:
                progress_file.remove()
        except BaseException as exc:
            for writer in writers.values():
                writer.abort(failure_reason(exc))
            if progress_file is not None and progress_file.rows:
                log(f"partial output kept ({progress_file.rows} rows done): rerun with --resume to continue")
            raise
    if truncated:
        log(f"{job.input_path}: {truncated} of {rows} inputs were longer than {encoder.max_length} tokens "
            "and were truncated")  # fmt: skip
    outputs = [str(w.path) if isinstance(w, MatrixWriter) and w.path else "-" for w in writers.values()]
    return EmbedReport(rows, truncated, time.time() - started, encoder.device, encoder.dtype_name, prefix,
                       encoder.layers, outputs)  # fmt: skip


def _manifest(
    job: _Job, options: EmbedOptions, encoder: Encoder, prefix: str, input_format: str, start: int
) -> dict[str, Any]:
    ref = encoder.ref
    return {
        **base_manifest("embeddings"),
        "model": ref.name,
        "model_spec": ref.spec,
        "model_fingerprint": ref.fingerprint,
        "model_layers": encoder.num_layers,
        "pooling": options.pooling,
        "prefix": prefix,
        "max_length": encoder.max_length,
        "normalize": options.normalize,
        "dtype_compute": encoder.dtype_name,
        "device": encoder.device,
        "input": absolute(job.input_path),
        "input_format": input_format,
        "field": job.text_field if input_format != "text" else None,
        "nfc": True,
        "shard": None if options.shard is None else f"{options.shard[0]}/{options.shard[1]}",
        "row_offset": start,
    }


def _spool(path: str | Path, stack: contextlib.ExitStack) -> str:
    """Copy a stream input (stdin, FIFO) to a temporary file that lives as long as ``stack``."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="xl-embed-"))
    return str(spool(path, Path(folder) / "input", "records"))


def _partial_path(target: str) -> Path:
    path = Path(target)
    return path.with_name(f".{path.name}.partial")


#: Manifest fields that must agree for a partial output to be continued (what changes the numbers).
_RESUME_KEYS = ("model_fingerprint", "layer", "pooling", "prefix", "max_length", "normalize", "dtype_compute",
                "device", "input_format", "field", "shard", "row_offset")  # fmt: skip


@dataclass
class _Progress:
    """The progress record of a resumable embedding: what it was computed from and how many rows are done.

    Written (atomically, after an fsync of the rows) at the end of every window; a rerun with ``--resume``
    continues only when the input's sha256, its size and every option that changes the numbers agree."""

    path: Path
    key: dict[str, Any]
    writers: list[MatrixWriter]
    rows: int = 0
    truncated: int = 0

    @classmethod
    def open(cls, writers: dict[int, MatrixWriter], manifest: dict[str, Any], source: str | Path,
             log: Log) -> _Progress:  # fmt: skip
        first = next(iter(writers.values()))
        assert first.path is not None
        path = _partial_path(str(first.path)).with_suffix(".partial.json")
        key = {k: manifest.get(k) for k in _RESUME_KEYS}
        key["layers"] = sorted(writers)
        key["input_sha256"] = sha256_file(source)
        key["input_bytes"] = os.path.getsize(source)
        progress = cls(path, key, list(writers.values()))
        # A run killed while it replaced its progress record leaves that record's temporary file behind.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        saved = _read_progress(path)
        done = 0
        if saved is not None and saved.get("key") == key:
            done = min([int(saved.get("rows", 0))] + [w.rows_on_disk() for w in progress.writers])
            progress.truncated = int(saved.get("truncated", 0)) if done == saved.get("rows") else 0
            if done < int(saved.get("rows", 0)):
                done, progress.truncated = 0, 0  # a partial file shorter than its record: start again
        elif saved is not None:
            log("the partial output was made from another input or with other options: starting again")
        for writer in progress.writers:
            writer.resume(done)
        progress.rows = done
        if done:
            log(f"resuming after {done} rows")
        return progress

    def record(self, rows: int, truncated: int) -> None:
        for writer in self.writers:
            writer.sync()
        self.rows, self.truncated = rows, truncated
        with atomic_write(self.path) as handle:
            handle.write(orjson.dumps({"key": self.key, "rows": rows, "truncated": truncated}))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _read_progress(path: Path) -> dict[str, Any] | None:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _windows(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while window := list(islice(records, size)):
        yield window


def embed_window(
    encoder: Encoder,
    texts: list[str],
    options: EmbedOptions,
    prefix: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[int, np.ndarray], int]:
    """Embed one window of texts: {layer: (len(texts), hidden) float32 in input order}, truncations."""
    tokens = encoder.tokenize(texts, prefix)
    pooled = encoder.embed_ids(tokens.ids, options.pooling, options.normalize, max_tokens=options.max_tokens,
                               max_rows=options.batch_size, progress=progress)  # fmt: skip
    return pooled, tokens.truncated


def embed_texts(encoder: Encoder, texts: list[str], options: EmbedOptions, prefix: str | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """(n, hidden) float32 embeddings of ``texts`` at the encoder's first layer, window by window; ``progress``
    hears each batch's row count."""
    use_prefix = encoder.ref.prefix if prefix is None else prefix
    layer = encoder.layers[0]
    parts = [embed_window(encoder, texts[i : i + options.window], options, use_prefix, progress)[0][layer]
             for i in range(0, len(texts), max(1, options.window))]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros((0, encoder.hidden), np.float32)


def _run(
    reader: RecordReader,
    encoder: Encoder,
    writers: dict[int, MatrixWriter | JsonlWriter],
    options: EmbedOptions,
    prefix: str,
    start: int,
    stop: int,
    progress: Callable[[int], None] | None,
    resumed: _Progress | None = None,
) -> tuple[int, int]:
    rows = truncated = 0
    all_records: Iterator[Record] = iter(reader)
    records = all_records if options.shard is None else islice(all_records, start, stop)
    if resumed is not None and resumed.rows:
        # Skip what the partial output already holds (whole windows, so the windows after it are the same).
        rows, truncated = resumed.rows, resumed.truncated
        for _ in islice(records, rows):
            pass
        if progress is not None:
            progress(rows)
    for window in _windows(records, max(1, options.window)):
        pooled, cut = embed_window(encoder, [r.text for r in window], options, prefix, progress)
        truncated += cut
        for layer, writer in writers.items():
            if isinstance(writer, MatrixWriter):
                writer.write(pooled[layer])
            else:
                objects = [r.obj if r.obj is not None else {"text": r.text} for r in window]
                writer.write_embeddings(objects, pooled[layer])
        rows += len(window)
        if resumed is not None:
            resumed.record(rows, truncated)
    if options.shard is not None:
        for _ in all_records:  # read to the end so the input hash covers the whole file
            pass
    return rows, truncated


#: Manifest fields every shard of one ``xl embed --shard`` run shares: shards that differ in one of them are not
#: parts of one matrix (another model, layer, pooling, precision or input), so :func:`merge_shards` refuses them.
#: Paths (``model``, ``input``) and ``device`` may differ between the machines of a cluster and are not compared.
SHARD_IDENTITY = ("kind", "model_fingerprint", "layer", "pooling", "prefix", "max_length", "normalize",
                  "dtype_compute", "nfc", "input_format", "field", "input_sha256", "dims", "dtype")  # fmt: skip


def _shard_of(path: str, manifest: dict[str, Any]) -> tuple[int, int]:
    text = manifest.get("shard")
    if isinstance(text, str) and text != "auto":  # a manifest records the resolved K/N, never "auto"
        with contextlib.suppress(UsageError):
            return parse_shard(text)
    raise InputError(f"not a shard: its manifest's shard is {text!r}", source=path,
                     hint="merge the outputs of xl embed --shard K/N (or --shard auto)")  # fmt: skip


def merge_shards(paths: Sequence[str], output: str, log: Callable[[str], None] = lambda _m: None) -> int:
    """Write the shards of one ``xl embed --shard`` run (NPY files with their manifests) as one (n, d) float32
    NPY ``output`` that ``np.load`` reads (atomic; ``-`` for stdout), rows in shard order whatever the order of
    ``paths``; returns n. Every shard 1..N must be there once, their manifests must agree on
    :data:`SHARD_IDENTITY`, and each must start at the row where the one before it ends (``row_offset``); else
    :class:`~xl.errors.InputError` before anything is written. Streaming consumers need no merge:
    ``cat shard-*.npy | xl apply-proj …`` reads concatenated NPY files as one stream (without these checks)."""
    from xl.io.npy import MatrixStream, matrix_manifest, matrix_rows

    if not paths:
        raise UsageError("give the shard files to merge", hint="xl merge shard-*.npy -o all.npy")
    if "-" in paths:
        raise UsageError("xl merge reads shard files: their manifests say which rows each holds",
                         hint="cat shard-*.npy | xl apply-proj … reads shards piped as one stream")  # fmt: skip
    shards: dict[int, tuple[str, dict[str, Any]]] = {}
    parts: int | None = None
    for path in paths:
        check_input_path(path, "shard")
        manifest = matrix_manifest(path)
        if manifest is None:
            raise InputError("no manifest beside it or in it", source=path,
                             hint="merge files written by xl embed --shard K/N -o FILE (with FILE.json)")  # fmt: skip
        k, n = _shard_of(path, manifest)
        if parts is not None and n != parts:
            raise InputError(f"shard {k}/{n} of another split than {shards[min(shards)][0]} (of {parts})",
                             source=path, hint="merge the shards of one run")  # fmt: skip
        if k in shards:
            raise InputError(f"shard {k}/{n} given twice ({shards[k][0]} and {path})", hint="give each shard once")
        parts, shards[k] = n, (path, manifest)
    assert parts is not None
    missing = [f"{k}/{parts}" for k in range(1, parts + 1) if k not in shards]
    if missing:
        raise InputError(f"shard {', '.join(missing)} missing", hint=f"give all {parts} shards of the run")
    first_path, first = shards[1]
    rows = 0
    for k in range(1, parts + 1):
        path, manifest = shards[k]
        for key in SHARD_IDENTITY:
            if manifest.get(key) != first.get(key):
                raise InputError(f"{key} is {manifest.get(key)!r} here but {first.get(key)!r} in {first_path}",
                                 source=path, hint="merge the shards of one run only")  # fmt: skip
        if manifest.get("row_offset") != rows:
            raise InputError(f"shard {k}/{parts} starts at row {manifest.get('row_offset')}, but the shards before "
                             f"it hold {rows} rows (a gap or an overlap)", source=path,
                             hint="merge the shards of one run, each complete")  # fmt: skip
        held = matrix_rows(path)
        if held is not None and held != manifest.get("rows"):
            raise InputError(f"holds {held} rows, its manifest says {manifest.get('rows')}", source=path,
                             hint="the file was changed after it was written; make the shard again")  # fmt: skip
        rows += int(manifest.get("rows") or 0)
    merged = {**first, **base_manifest(str(first.get("kind", "embeddings"))), "shard": None, "row_offset": 0,
              "merged_shards": [absolute(shards[k][0]) for k in range(1, parts + 1)],
              "truncated": sum(int(shards[k][1].get("truncated") or 0) for k in shards)}  # fmt: skip
    with MatrixWriter(output, int(first["dims"]), merged) as writer:
        for k in range(1, parts + 1):
            with MatrixStream(shards[k][0]) as stream:
                for chunk in stream.chunks():
                    writer.write(chunk)
    log(f"merged {parts} shards, {rows} rows, into {output if output != '-' else 'stdout'}")
    return rows
