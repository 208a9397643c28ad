"""``xl embed`` as a library function: records in, pooled sentence embeddings out, streaming.

Memory stays constant whatever the input size: records are read in windows; inside a window they are
length-sorted into token-budget batches (:func:`xl.core.batching.plan_batches`), and the window's rows
are written back in input order before the next window is read. Row *i* of the output is record *i* of
the input (of the shard, with ``--shard``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np

from xl.core.batching import plan_batches
from xl.errors import UsageError
from xl.io.jsonl import JsonlWriter
from xl.io.manifest import base_manifest
from xl.io.npy import MatrixWriter
from xl.io.records import DecodeErrors, InputFormat, Record, RecordReader, count_lines
from xl.models.encoder import Encoder, Pooling
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
    pooling: Pooling = "mean"
    normalize: bool = False
    prefix: str | None = None  # None: the model's default ("query: " for the default model)
    max_length: int = 512
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


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 ≤ K ≤ N (1-based, like ``split -n K/N``)."""
    k_text, _, n_text = text.partition("/")
    if not (k_text.isdigit() and n_text.isdigit()) or not 1 <= int(k_text) <= int(n_text):
        raise UsageError(f"--shard {text!r} is not K/N with 1 ≤ K ≤ N", hint="e.g. --shard 1/4 … --shard 4/4")
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
    return template.replace("{layer}", str(layer)).replace("{stem}", path.stem).replace("{name}", path.name)


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
) -> list[EmbedReport]:
    """Embed every record of each input (``-`` = stdin) into its output (``-`` = stdout), one model load.

    Output is NPY float32 (n, hidden) per layer, or JSONL records with an ``"embedding"`` list. A file
    output is atomic and gets a manifest beside it. Several inputs or layers need ``{stem}`` / ``{layer}``
    in ``output``. All inputs are checked before the model loads. Raises :class:`~xl.errors.XlError`.
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
        RecordReader(path).close()  # fail on a missing or unreadable input before loading the model
    ref = resolve_model(options.model, log=log)
    encoder = Encoder(ref, layers=options.layers, device=options.device, dtype=options.dtype,
                      max_length=options.max_length)  # fmt: skip
    prefix = ref.prefix if options.prefix is None else options.prefix
    log(f"model {ref.name} · {encoder.device} · {encoder.dtype_name} · layers {encoder.layers} · "
        f"pooling {options.pooling} · prefix {prefix!r}")  # fmt: skip
    reports = []
    for path in inputs:
        reports.append(_embed_one(path, output, options, encoder, prefix, several_inputs, output_format,
                                  input_format, text_field, errors, log, progress, on_total))  # fmt: skip
    return reports


def _embed_one(
    input_path: str | Path,
    output: str,
    options: EmbedOptions,
    encoder: Encoder,
    prefix: str,
    several_inputs: bool,
    output_format: OutputFormat,
    input_format: InputFormat,
    text_field: str,
    errors: DecodeErrors,
    log: Log,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int | None], None] | None,
) -> EmbedReport:
    started = time.time()
    ref = encoder.ref
    total = count_lines(input_path)
    start, stop = 0, total if total is not None else -1
    if options.shard is not None:
        if total is None:
            raise UsageError("--shard needs a file input (rows are counted first)", hint="save stdin to a file")
        start, stop = shard_range(total, *options.shard)
    if on_total is not None:
        on_total(None if total is None else stop - start)
    reader = RecordReader(input_path, input_format=input_format, field=text_field, errors=errors)
    writers: dict[int, MatrixWriter | JsonlWriter] = {}
    try:
        manifest = {
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
            "input": str(input_path),
            "input_format": reader.format,
            "field": text_field if reader.format == "jsonl" else None,
            "nfc": True,
            "shard": None if options.shard is None else f"{options.shard[0]}/{options.shard[1]}",
            "row_offset": start,
        }
        for layer in encoder.layers:
            target = output_for(output, layer, len(encoder.layers) > 1, input_path, several_inputs)
            layer_manifest = {**manifest, "layer": layer}
            if output_format == "npy":
                writers[layer] = MatrixWriter(target, encoder.hidden, layer_manifest)
            else:
                writers[layer] = JsonlWriter(target, layer_manifest)
        rows, truncated = _run(reader, encoder, writers, options, prefix, start, stop, progress)
        extra = {"input_sha256": reader.sha256 if reader.count == total or total is None else None,
                 "truncated": truncated}  # fmt: skip
        for writer in writers.values():
            writer.close(extra)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        reader.close()
    if truncated:
        log(f"{input_path}: {truncated} of {rows} inputs were longer than {encoder.max_length} tokens "
            "and were truncated")  # fmt: skip
    outputs = [str(w.path) if isinstance(w, MatrixWriter) and w.path else "-" for w in writers.values()]
    return EmbedReport(rows, truncated, time.time() - started, encoder.device, encoder.dtype_name, prefix,
                       encoder.layers, outputs)  # fmt: skip


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
    pooled = {layer: np.empty((len(texts), encoder.hidden), np.float32) for layer in encoder.layers}
    lengths = [len(ids) for ids in tokens.ids]
    for batch in plan_batches(lengths, options.max_tokens, options.batch_size):
        out = encoder.embed_ids([tokens.ids[i] for i in batch], options.pooling, options.normalize)
        for layer, matrix in out.items():
            pooled[layer][batch] = matrix
        if progress is not None:
            progress(len(batch))
    return pooled, sum(tokens.truncated)


def embed_texts(encoder: Encoder, texts: list[str], options: EmbedOptions, prefix: str | None = None) -> np.ndarray:
    """(n, hidden) float32 embeddings of ``texts`` at the encoder's first layer, window by window."""
    use_prefix = encoder.ref.prefix if prefix is None else prefix
    layer = encoder.layers[0]
    parts = [embed_window(encoder, texts[i : i + options.window], options, use_prefix)[0][layer]
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
) -> tuple[int, int]:
    rows = truncated = 0
    all_records: Iterator[Record] = iter(reader)
    records = all_records if options.shard is None else islice(all_records, start, stop)
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
    if options.shard is not None:
        for _ in all_records:  # read to the end so the input hash covers the whole file
            pass
    return rows, truncated
