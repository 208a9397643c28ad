"""``xl eval sts | classify | qa | retrieval``: zero-shot evaluation, one JSON line per data set."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xl.cli._common import DeviceOpt, DtypeOpt, ModelOpt, QuietOpt, handle_errors
from xl.errors import UsageError


def render_markdown(result: dict[str, Any]) -> str:
    """A small table of the headline metrics of one retrieval result."""
    lines = ["| direction | accuracy | 95% CI | F1 | xSIM error |", "|---|---:|---|---:|---:|"]
    for direction in ("src2tgt", "tgt2src"):
        r = result.get(direction) or {}
        ci = r.get("accuracy_ci") or [None, None]
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {direction} | {fmt(r.get('accuracy'))} | {fmt(ci[0])}–{fmt(ci[1])} | "
                     f"{fmt(r.get('f1'))} | {fmt(r.get('xsim_error'))} |")  # fmt: skip
    return "\n".join(lines)


def parse_tags(items: list[str]) -> dict[str, str]:
    """``["lang=ko", "method=lstsq"]`` -> {"lang": "ko", "method": "lstsq"}."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r} is not KEY=VALUE", hint="e.g. --tag lang=ko")
        tags[key] = value
    return tags


@handle_errors("eval retrieval")
def retrieval_cli(
    src: Annotated[str, typer.Option("--src", help="Source embeddings (NPY; - for stdin).")],
    tgt: Annotated[str, typer.Option("--tgt", help="Target embeddings; row i is the translation of src row i.")],
    proj: Annotated[str | None, typer.Option("--proj", help="Map the source with this W.npy first.")] = None,
    scoring: Annotated[str, typer.Option(help="nn (cosine), csls or margin.")] = "nn",
    csls_k: Annotated[int, typer.Option(help="Neighbours for CSLS.")] = 10,
    margin_k: Annotated[int, typer.Option(help="Neighbours for the ratio margin (xSIM).")] = 4,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    output_format: Annotated[str, typer.Option("--format", help="jsonl (one JSON line) or md.")] = "jsonl",
    force: Annotated[bool, typer.Option("--force", help="Use --proj even if fitted on another model.")] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE added to the JSON line (repeatable), e.g. --tag lang=ko --tag method=lstsq."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No messages on stderr.")] = False,
) -> None:
    """Bitext retrieval, both directions: accuracy (XTREME Tatoeba), xSIM error, F1 (MTEB), with CIs.

    Chunked top-k: 100,000 × 100,000 runs in bounded memory. Prints one JSON line.

    Examples:

        xl eval retrieval --src ko.npy --tgt en.npy

        xl eval retrieval --src ko.npy --tgt en.npy --proj W.npy --scoring csls --format md
    """
    from xl.align import evaluate_retrieval_files

    if output_format not in ("jsonl", "md"):
        raise UsageError(f"--format {output_format!r} is not jsonl or md")
    tags = parse_tags(tag or [])
    from xl.cli._common import Messages
    from xl.io.jsonl import JsonlWriter

    result = evaluate_retrieval_files(src, tgt, proj=proj, scoring=scoring, csls_k=csls_k, margin_k=margin_k,
                                      n_resamples=bootstrap, seed=seed, force=force,
                                      log=Messages("eval retrieval", quiet).info)  # fmt: skip
    result = {**tags, **result}
    if output_format == "md":
        print(render_markdown(result))
    else:
        with JsonlWriter("-") as writer:
            writer.write_objects([result])


DataArg = Annotated[
    list[str] | None,
    typer.Argument(help="Task files (PATH or LANG=PATH) or datasets DATASET:SPLIT:LANG[,LANG…] (see `xl data list`)."),
]
BootstrapOpt = Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs (0: none).")]
PredictionsOpt = Annotated[
    str | None, typer.Option("--predictions", help="Write predictions here, one file per data set and language.")
]
FormatOpt = Annotated[str, typer.Option("--format", help="jsonl (a line per set, then a summary) or md.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Score a seeded random N records of each set.")]
TagOpt = Annotated[
    list[str] | None, typer.Option("--tag", help="KEY=VALUE added to every JSON line (repeatable), e.g. --tag run=sts.")
]


def _run_eval(task: str, output_format: str, quiet: bool, **kwargs: Any) -> None:
    from xl.cli._common import Messages
    from xl.evaluate import EvalOptions, evaluate, render_markdown

    if output_format not in ("jsonl", "md"):
        raise UsageError(f"--format {output_format!r} is not jsonl or md")
    from xl.io.jsonl import JsonlWriter

    messages = Messages(f"eval {task}", quiet)
    lines: list[dict[str, Any]] = []
    # Result lines stream out as each set is scored; a failure later ends them so no reader takes them whole.
    writer = JsonlWriter("-") if output_format == "jsonl" else None

    def emit(result: dict[str, Any]) -> None:
        if writer is None:
            lines.append(result)
        else:
            writer.write_objects([result])

    tags = parse_tags(kwargs.pop("tag", None) or [])
    try:
        evaluate(EvalOptions(task=task, tags=tags, **kwargs), emit, log=messages.info)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    else:
        print(render_markdown(task, lines))


@handle_errors("eval sts")
def sts_cli(
    data: DataArg = None,
    model: ModelOpt = "default",
    embeddings1: Annotated[
        str | None, typer.Option(help="Precomputed embeddings of text1 (NPY), instead of a model.")
    ] = None,
    embeddings2: Annotated[str | None, typer.Option(help="Precomputed embeddings of text2 (NPY).")] = None,
    proj: Annotated[str | None, typer.Option(help="Map embeddings with this W.npy (from xl fit-proj) first.")] = None,
    proj_side: Annotated[str, typer.Option(help="Which side --proj maps: both, text1 or text2.")] = "both",
    max_length: Annotated[int | None, typer.Option(help="Tokens per text (default 512).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of --bootstrap and --limit.")] = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    output_format: FormatOpt = "jsonl",
    force: Annotated[bool, typer.Option("--force", help="Use --proj even if fitted on another model.")] = False,
    tag: TagOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """STS: Spearman and Pearson × 100 of the cosine of each pair's embeddings against the gold scores.

    Embeddings come from a model (the default, a hub id, or an `xl finetune` output) or from
    precomputed NPY files; `--proj` maps them into another space first (both texts by default).

    Examples:

        xl eval sts --model runs/sts stsb-multi-mt:test:de,es,fr korsts:test --bootstrap 1000

        xl eval sts --embeddings1 a.npy --embeddings2 b.npy --proj W.npy ko=korsts-test.jsonl
    """
    _run_eval("sts", output_format, quiet, data=list(data or []), model=model, embeddings1=embeddings1,
              embeddings2=embeddings2, proj=proj, proj_side=proj_side, max_length=max_length, device=device,
              dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit, predictions=predictions, force=force,
              tag=tag)  # fmt: skip


@handle_errors("eval classify")
def classify_cli(
    data: DataArg = None,
    model: ModelOpt = "default",
    max_length: Annotated[int | None, typer.Option(help="Tokens per input (default: as trained).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of --bootstrap and --limit.")] = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    output_format: FormatOpt = "jsonl",
    tag: TagOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Classification: accuracy and macro-F1 × 100 of a fine-tuned classifier (`xl finetune --task classify`).

    Examples:

        xl eval classify --model runs/sst2 nsmc:test:ko --bootstrap 1000

        xl eval classify --model runs/umsab umsab:test:ar,de,es,fr,hi,it,pt --format md
    """
    _run_eval("classify", output_format, quiet, data=list(data or []), model=model, max_length=max_length,
              device=device, dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit, predictions=predictions,
              tag=tag)  # fmt: skip


@handle_errors("eval qa")
def qa_cli(
    data: DataArg = None,
    model: ModelOpt = "default",
    normalize: Annotated[
        str, typer.Option(help="Answer normalisation: squad (v1.1 script) or mlqa (language-aware).")
    ] = "squad",  # fmt: skip
    max_length: Annotated[int | None, typer.Option(help="Tokens per window (default: as trained).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of --bootstrap and --limit.")] = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    output_format: FormatOpt = "jsonl",
    tag: TagOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Extractive QA: exact match and F1 × 100 of a fine-tuned span model (`xl finetune --task qa`).

    Examples:

        xl eval qa --model runs/qa xquad:test:de,ru,zh korquad:dev --bootstrap 1000

        xl eval qa --model runs/qa mlqa-de:test:de --normalize mlqa --predictions preds/
    """
    _run_eval("qa", output_format, quiet, data=list(data or []), model=model, normalization=normalize,
              max_length=max_length, device=device, dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit,
              predictions=predictions, tag=tag)  # fmt: skip
