"""``xl embed``: sentence embeddings, streaming, NPY (or JSONL) out."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

from xl.cli._common import (
    BatchSizeOpt,
    DataFormat,
    DeviceOpt,
    DtypeOpt,
    Messages,
    ModelOpt,
    OutputOpt,
    QuietOpt,
    VerboseOpt,
    handle_errors,
    parse_int_list,
    progress_bar,
    refuse_ignored,
    resolve_output_format,
)
from xl.errors import UsageError


@handle_errors("embed")
def embed_cli(
    ctx: typer.Context,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Text (one sentence per line) or JSONL files; - for stdin. "
            "Several inputs share one model load and need {stem} in -o.",
        ),
    ] = None,
    output: OutputOpt = "-",
    model: ModelOpt = "default",
    layer: Annotated[
        str,
        typer.Option(
            help="Layer(s): -1 = last, 0 = embeddings; 4,8,12 = one pass, one output each (-o 'emb.{layer}.npy')."
        ),
    ] = "-1",  # fmt: skip
    pooling: Annotated[
        Literal["mean", "cls", "max"] | None,
        typer.Option(
            help="mean (over the attention mask), cls or max. Default: the model's (a sentence-transformers "
            "directory's Pooling module), else mean."
        ),
    ] = None,  # fmt: skip
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize",
            help="L2-normalise each embedding (also the default of a sentence-transformers model with a "
            "Normalize module; --no-normalize turns that off).",
        ),
    ] = False,  # fmt: skip
    no_normalize: Annotated[bool, typer.Option("--no-normalize", hidden=True)] = False,
    prefix: Annotated[
        str | None,
        typer.Option(
            help="Text put before each input; default from the model ('query: ' for the default model, a "
            "sentence-transformers directory's default prompt, none for XLM-R)."
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            help="Longest input in tokens; longer ones are truncated (counted). Default: the model's "
            "(a sentence-transformers max_seq_length, the length an xl finetune output was trained at), else 512."
        ),
    ] = None,  # fmt: skip
    batch_size: BatchSizeOpt = 32,
    max_tokens: Annotated[int, typer.Option(min=1, help="Token budget per batch (rows × longest).")] = 8192,
    window: Annotated[
        int,
        typer.Option(min=1, help="Rows read, length-sorted and written together (memory; the unit of --resume)."),
    ] = 4096,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    shard: Annotated[
        str | None,
        typer.Option(
            help="K/N: embed only the K-th of N contiguous row ranges (1-based); auto: K and N from a Slurm job "
            "array or torchrun (RANK, WORLD_SIZE)."
        ),
    ] = None,
    input_format: Annotated[
        Literal["auto", "text", "jsonl", "csv", "tsv", "parquet", "hf-dataset"],
        typer.Option(
            help="auto: by extension (.csv, .parquet and a datasets folder are tables; .tsv is text), "
            "else a first line {…} is JSONL."
        ),
    ] = "auto",  # fmt: skip
    field: Annotated[
        str, typer.Option(help="JSONL field, or table column, that holds the text (a number: a CSV without header).")
    ] = "text",  # fmt: skip
    output_format: Annotated[
        DataFormat | None,
        typer.Option(
            "--format",
            help='npy (matrix) or jsonl (records with an "embedding" list); default: jsonl for an -o ending '
            "in .jsonl, else npy.",
        ),
    ] = None,  # fmt: skip
    errors: Annotated[
        Literal["strict", "replace"], typer.Option(help="strict: stop at invalid UTF-8; replace: use U+FFFD.")
    ] = "strict",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep a resumable partial output beside -o and continue an interrupted run from its last "
            "completed window (same result as an uninterrupted run). Needs -o FILE.npy and an input file.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Embed sentences with an XLM-R-family encoder (mean-pooled token states, or as a sentence-transformers
    model directory says).

    Row i of the output is line/record i of the input. Writes one NPY matrix to a file (with a
    manifest beside it) or a stream of NPY arrays to a pipe.

    Examples:

        xl embed en.txt > en.npy

        xl embed ko.txt --layer 4,8,12 -o 'ko.layer{layer}.npy'

        xl embed flores/*.dev -o 'emb/{stem}.npy'

        xl embed big.txt -o big.npy --resume
    """
    from xl.embed import EmbedOptions, embed_files, parse_shard, shard_from_env

    if normalize and no_normalize:
        raise UsageError("--normalize and --no-normalize contradict each other")
    if input_format == "text":
        refuse_ignored(ctx, ("field",), "with --input-format text (a line is the text)")
    output_format = resolve_output_format(output, output_format, ("npy", "jsonl"))  # type: ignore[assignment]
    messages = Messages("embed", quiet, verbose)
    parsed_shard = parse_shard(shard) if shard and shard != "auto" else None
    if shard == "auto":
        parsed_shard, launcher = shard_from_env(os.environ)
        messages.info(f"shard {parsed_shard[0]}/{parsed_shard[1]} (from the {launcher} environment)")
    options = EmbedOptions(
        model=model,
        layers=parse_int_list(layer, "--layer"),
        pooling=pooling,  # type: ignore[arg-type]
        normalize=True if normalize else False if no_normalize else None,  # None: as the model says
        prefix=prefix,
        max_length=max_length,
        batch_size=batch_size,
        max_tokens=max_tokens,
        window=window,
        device=device,
        dtype=dtype,
        shard=parsed_shard,
    )
    with progress_bar(not quiet, "embedding") as (advance, set_total):
        reports = embed_files(
            inputs or ["-"], output, options,
            output_format=output_format,  # type: ignore[arg-type]
            input_format=input_format,  # type: ignore[arg-type]
            text_field=field,
            errors=errors,  # type: ignore[arg-type]
            log=messages.info, progress=advance, on_total=set_total, resume=resume,
        )  # fmt: skip
    for path, report in zip(inputs or ["-"], reports, strict=True):
        messages.detail(f"{path} -> {', '.join(report.outputs)}: {report.rows} rows, {report.truncated} truncated, "
                        f"{report.seconds:.1f} s")  # fmt: skip
    rows, seconds = sum(r.rows for r in reports), sum(r.seconds for r in reports)
    rate = rows / seconds if seconds > 0 else 0.0
    messages.info(f"{rows} rows in {seconds:.1f} s ({rate:.0f}/s)")


@handle_errors("merge")
def merge_cli(
    shards: Annotated[list[str], typer.Argument(help="The NPY files of one xl embed --shard run, any order.")],
    output: OutputOpt = "-",
    quiet: QuietOpt = False,
) -> None:
    """Merge the shards of one `xl embed --shard` run into one NPY matrix that np.load reads.

    Rows come in shard order, whatever the order of the files. Every shard must be there once, made by the same
    model, layer, pooling and dtype from the same input, each starting where the one before ends (their
    manifests say); else nothing is written. The merged file's manifest lists the shards.

    Examples:

        xl merge shard-*.npy -o all.npy

        xl merge emb/big.*.npy > big.npy
    """
    from xl.embed import merge_shards

    merge_shards(shards, output, log=Messages("merge", quiet, False).info)
