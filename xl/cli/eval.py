"""``xl eval sts | classify | qa | retrieval``: zero-shot evaluation, one JSON line per data set."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from xl.cli._common import (
    BOOTSTRAP,
    BootstrapOpt,
    ColumnsOpt,
    DeviceOpt,
    DtypeOpt,
    Messages,
    ModelOpt,
    QuietOpt,
    ReportFormat,
    deprecated_alias,
    handle_errors,
    progress_display,
    refuse_ignored,
)
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


def parse_tags(items: list[str], reserved: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """``["lang=ko", "method=lstsq"]`` -> {"lang": "ko", "method": "lstsq"}. The one tag rule of every ``xl eval``
    command: a tag may not reuse a field of the result line (``reserved``), which would overwrite it."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r} is not KEY=VALUE", hint="e.g. --tag inter=mnli --tag seed=1")
        if key in reserved:
            raise UsageError(f"--tag {key}=… would be overwritten by the result field {key!r}",
                             hint="choose another key, e.g. --tag run=…")  # fmt: skip
        if key in tags and tags[key] != value:
            raise UsageError(f"--tag {key}= given twice ({tags[key]!r} and {value!r})",
                             hint=f"give --tag {key}=… once")  # fmt: skip
        tags[key] = value
    return tags


# Options every `xl eval` command shares.
SeedOpt = Annotated[int, typer.Option(help="Seed of --bootstrap and --limit.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Score a seeded random N records of each set.")]
FormatOpt = Annotated[ReportFormat, typer.Option("--format", help="jsonl (a line per set, then a summary) or md.")]
TagOpt = Annotated[
    list[str] | None, typer.Option("--tag", help="KEY=VALUE added to every JSON line (repeatable), e.g. --tag run=sts.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Use --proj even if fitted on other embeddings.")]
NoSummaryOpt = Annotated[
    bool, typer.Option("--no-summary", help="No line of the means after several sets (the one with summary: true).")
]


@handle_errors("eval retrieval")
def retrieval_cli(
    ctx: typer.Context,
    data: Annotated[
        list[str] | None,
        typer.Argument(
            help="With --model: align pair files (PATH or LANG=PATH) or datasets DATASET:SPLIT:LANG[,LANG…] "
            "(tatoeba:test:de,ko, flores200:devtest:th)."
        ),
    ] = None,  # fmt: skip
    src: Annotated[str | None, typer.Option("--src", help="Source embeddings (NPY; - for stdin).")] = None,
    tgt: Annotated[
        str | None, typer.Option("--tgt", help="Target embeddings; row i is the translation of src row i.")
    ] = None,
    model: ModelOpt = "default",
    proj: Annotated[str | None, typer.Option("--proj", help="Map the source with this W.npy first.")] = None,
    scoring: Annotated[Literal["nn", "csls", "margin"], typer.Option(help="nn (cosine), csls or margin.")] = "nn",
    csls_k: Annotated[int, typer.Option(min=1, help="Neighbours for CSLS.")] = 10,
    margin_k: Annotated[int, typer.Option(min=1, help="Neighbours for the ratio margin (xSIM).")] = 4,
    max_length: Annotated[int | None, typer.Option(help="Tokens per text (default: as trained, else 512).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = BOOTSTRAP,
    seed: SeedOpt = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score a seeded random N of the row pairs (of each set).")
    ] = None,
    predictions: Annotated[
        str | None, typer.Option("--predictions", help="With --model: write the retrieved rows, a file per set.")
    ] = None,
    layout: LayoutOpt = "xl",
    xtreme_task: Annotated[RetrievalXtremeTask | None, typer.Option(help=_XTREME_TASK_HELP)] = None,
    output_format: FormatOpt = "jsonl",
    force: ForceOpt = False,
    tag: TagOpt = None,
    no_summary: NoSummaryOpt = False,
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Bitext retrieval, both directions: of embedding matrices (--src/--tgt), or of pair sets with a model.

    --src/--tgt: accuracy (XTREME Tatoeba), xSIM error, F1 (MTEB), with CIs, by chunked top-k (100,000 ×
    100,000 in bounded memory); one JSON line. DATA with --model: each set's English and xx sides embedded as
    `xl embed` embeds them and retrieved by cosine, accuracy × 100 en→xx, xx→en and their mean (`accuracy`,
    the dev metric of `xl finetune --task align`); a JSON line per set, then a summary.

    Examples:

        xl eval retrieval --src ko.npy --tgt en.npy

        xl eval retrieval --src ko.npy --tgt en.npy --proj W.npy --scoring csls --format md

        xl eval retrieval --model runs/align tatoeba:test:de,ko,sw flores200:devtest:th
    """
    _refuse_unseeded(ctx, bootstrap, limit)
    if data:
        return _retrieval_with_model(ctx, output_format, quiet, data=list(data), model=model, max_length=max_length,
                                     device=device, dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit,
                                     predictions=predictions, tag=tag, summary=not no_summary,
                                     columns=columns, layout=layout, xtreme_task=xtreme_task)  # fmt: skip
    from xl.align import RETRIEVAL_FIELDS, evaluate_retrieval_files
    from xl.io.jsonl import JsonlWriter

    if src is None or tgt is None:
        raise UsageError(
            "give --src and --tgt (embedding matrices), or --model and DATA (pair sets)",
            hint="e.g. xl eval retrieval --src ko.npy --tgt en.npy, or xl eval retrieval tatoeba:test:ko",
        )
    refuse_ignored(ctx, ("model", "max_length", "device", "dtype", "predictions", "layout", "xtreme_task",
                         "no_summary", "columns"),
                   "with --src/--tgt", hint="they choose how pair sets are embedded: drop them")  # fmt: skip
    if scoring != "csls":
        refuse_ignored(ctx, ("csls_k",), f"with --scoring {scoring}", hint="pass --scoring csls, or drop --csls-k")
    if proj is None:
        refuse_ignored(ctx, ("force",), "without --proj", hint="--force applies a map fitted on other embeddings")
    tags = parse_tags(tag or [], RETRIEVAL_FIELDS)
    result = evaluate_retrieval_files(src, tgt, proj=proj, scoring=scoring, csls_k=csls_k, margin_k=margin_k,
                                      n_resamples=bootstrap, seed=seed, limit=limit, force=force,
                                      log=Messages("eval retrieval", quiet).info)  # fmt: skip
    result = {**tags, **result}
    if output_format == "md":
        print(render_markdown(result))
    else:
        with JsonlWriter("-") as writer:
            writer.write_objects([result])


def _retrieval_with_model(ctx: typer.Context, output_format: str, quiet: bool, **kwargs: Any) -> None:
    """``xl eval retrieval DATA --model M``: the pair sets through the retrieval task and the one inference stack."""
    refuse_ignored(ctx, ("src", "tgt", "proj", "scoring", "csls_k", "margin_k", "force"), "with DATA",
                   hint="they score matrices: embed with `xl embed`, give --src/--tgt, or drop them")  # fmt: skip
    _refuse_layout_ignored(ctx, kwargs["predictions"], kwargs["layout"])
    _run_eval("retrieval", output_format, quiet, **kwargs)


DataArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Task files (PATH or LANG=PATH: JSONL, CSV, TSV, Parquet or a datasets folder) or datasets "
        "DATASET:SPLIT:LANG[,LANG…] (see `xl data list`)."
    ),
]
PredictionsOpt = Annotated[
    str | None, typer.Option("--predictions", help="Write predictions here, one file per data set and language.")
]
#: --layout: the values of xl.tasks.xtreme.LAYOUTS (declared here so that --help imports nothing).
Layout = Literal["xl", "xtreme", "xtreme-r"]
LayoutOpt = Annotated[
    Layout,
    typer.Option(help="How --predictions are written: xl's own files, or a benchmark's submission folder "
                 "(xtreme, xtreme-r: TASK/test-LANG.tsv or .json)."),
]  # fmt: skip
_XTREME_TASK_HELP = "The benchmark task folder of data files (datasets name their own)."
#: --xtreme-task of each command: the task folders of xl.tasks.xtreme.TASKS that it writes.
ClassifyXtremeTask = Literal["xnli", "pawsx"]
QaXtremeTask = Literal["xquad", "mlqa", "tydiqa"]
RetrievalXtremeTask = Literal["tatoeba"]


def _refuse_unseeded(ctx: typer.Context, bootstrap: int, limit: int | None) -> None:
    """--seed draws the resamples of --bootstrap and the records of --limit: with neither it has no effect."""
    if bootstrap == 0 and limit is None:
        refuse_ignored(ctx, ("seed",), "with --bootstrap 0 and no --limit (nothing is drawn)", hint="drop --seed")


def _refuse_layout_ignored(ctx: typer.Context, predictions: str | None, layout: str | None) -> None:
    """--layout needs --predictions, and --xtreme-task (``layout`` None: the command has none) a benchmark
    layout."""
    if predictions is None:
        refuse_ignored(ctx, ("layout",), "without --predictions", hint="give --predictions DIR, or drop --layout")
    if layout == "xl":
        refuse_ignored(ctx, ("xtreme_task",), "with --layout xl",
                       hint="give --layout xtreme-r (or xtreme), or drop --xtreme-task")  # fmt: skip


def _run_eval(task: str, output_format: str, quiet: bool, **kwargs: Any) -> None:
    from xl.evaluate import RESERVED_FIELDS, EvalOptions, evaluate, render_markdown
    from xl.io.jsonl import JsonlWriter

    messages = Messages(f"eval {task}", quiet)
    tags = parse_tags(kwargs.pop("tag", None) or [], RESERVED_FIELDS)
    lines: list[dict[str, Any]] = []
    # Result lines stream out as each set is scored; a failure later ends them so no reader takes them whole.
    writer = JsonlWriter("-") if output_format == "jsonl" else None

    def emit(result: dict[str, Any]) -> None:
        if writer is None:
            lines.append(result)
        else:
            writer.write_objects([result])

    try:
        with progress_display(not quiet) as progress:
            evaluate(EvalOptions(task=task, tags=tags, **kwargs), emit, log=messages.info, progress=progress)
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
    ctx: typer.Context,
    data: DataArg = None,
    model: ModelOpt = "default",
    embeddings1: Annotated[
        str | None, typer.Option(help="Precomputed embeddings of text1 (NPY), instead of a model.")
    ] = None,
    embeddings2: Annotated[str | None, typer.Option(help="Precomputed embeddings of text2 (NPY).")] = None,
    proj: Annotated[str | None, typer.Option(help="Map embeddings with this W.npy (from xl fit-proj) first.")] = None,
    proj_side: Annotated[
        Literal["both", "text1", "text2"], typer.Option(help="Which side --proj maps: both, text1 or text2.")
    ] = "both",
    max_length: Annotated[int | None, typer.Option(help="Tokens per text (default: as trained, else 512).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = BOOTSTRAP,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    layout: LayoutOpt = "xl",
    output_format: FormatOpt = "jsonl",
    force: ForceOpt = False,
    tag: TagOpt = None,
    no_summary: NoSummaryOpt = False,
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """STS: Spearman and Pearson × 100 of the cosine of each pair's embeddings against the gold scores.

    Embeddings come from a model (the default, a hub id, or an `xl finetune` output) or from
    precomputed NPY files; `--proj` maps them into another space first (both texts by default).

    Examples:

        xl eval sts --model runs/sts stsb-multi-mt:test:de,es,fr korsts:test --bootstrap 1000

        xl eval sts --embeddings1 a.npy --embeddings2 b.npy --proj W.npy ko=korsts-test.jsonl
    """
    if embeddings1 or embeddings2:
        refuse_ignored(ctx, ("model", "max_length", "device", "dtype", "limit"), "with precomputed embeddings",
                       hint="they choose how texts are embedded and which records: embed the subset you score "
                            "with `xl embed` instead")  # fmt: skip
    if proj is None:
        refuse_ignored(ctx, ("proj_side", "force"), "without --proj", hint="give --proj W.npy, or drop them")
    _refuse_layout_ignored(ctx, predictions, None)
    _refuse_unseeded(ctx, bootstrap, limit)
    _run_eval("sts", output_format, quiet, data=list(data or []), model=model, embeddings1=embeddings1,
              embeddings2=embeddings2, proj=proj, proj_side=proj_side, max_length=max_length, device=device,
              dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit, predictions=predictions, force=force,
              tag=tag, summary=not no_summary, columns=columns, layout=layout)  # fmt: skip


@handle_errors("eval classify")
def classify_cli(
    ctx: typer.Context,
    data: DataArg = None,
    model: ModelOpt = "default",
    max_length: Annotated[int | None, typer.Option(help="Tokens per input (default: as trained).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = BOOTSTRAP,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    layout: LayoutOpt = "xl",
    xtreme_task: Annotated[ClassifyXtremeTask | None, typer.Option(help=_XTREME_TASK_HELP)] = None,
    output_format: FormatOpt = "jsonl",
    tag: TagOpt = None,
    no_summary: NoSummaryOpt = False,
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Classification: accuracy and macro-F1 × 100 of a fine-tuned classifier (`xl finetune --task classify`).

    Examples:

        xl eval classify --model runs/sst2 nsmc:test:ko --bootstrap 1000

        xl eval classify --model runs/xnli xnli-de:test:de --predictions sub/ --layout xtreme-r
    """
    _refuse_layout_ignored(ctx, predictions, layout)
    _refuse_unseeded(ctx, bootstrap, limit)
    _run_eval("classify", output_format, quiet, data=list(data or []), model=model, max_length=max_length,
              device=device, dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit, predictions=predictions,
              tag=tag, summary=not no_summary, columns=columns, layout=layout, xtreme_task=xtreme_task)  # fmt: skip


AnswerNormalization = Literal["squad", "mlqa"]


@handle_errors("eval qa")
def qa_cli(
    ctx: typer.Context,
    data: DataArg = None,
    model: ModelOpt = "default",
    answer_normalization: Annotated[
        AnswerNormalization,
        typer.Option(
            help="squad (the v1.1 script: lower-case, punctuation, English articles) or mlqa (language-aware)."
        ),
    ] = "squad",  # fmt: skip
    normalize: Annotated[AnswerNormalization | None, typer.Option("--normalize", hidden=True)] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per window (default: as trained).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    bootstrap: BootstrapOpt = BOOTSTRAP,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    predictions: PredictionsOpt = None,
    layout: LayoutOpt = "xl",
    xtreme_task: Annotated[QaXtremeTask | None, typer.Option(help=_XTREME_TASK_HELP)] = None,
    output_format: FormatOpt = "jsonl",
    tag: TagOpt = None,
    no_summary: NoSummaryOpt = False,
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Extractive QA: exact match and F1 × 100 of a fine-tuned span model (`xl finetune --task qa`).

    Examples:

        xl eval qa --model runs/qa xquad:test:de,ru,zh korquad:dev --bootstrap 1000

        xl eval qa --model runs/qa xquad:test:de,zh --predictions sub/ --layout xtreme-r
    """
    messages = Messages("eval qa", quiet)
    normalization = deprecated_alias(ctx, messages, "answer_normalization", "normalize", answer_normalization,
                                     normalize)  # fmt: skip
    _refuse_layout_ignored(ctx, predictions, layout)
    _refuse_unseeded(ctx, bootstrap, limit)
    _run_eval("qa", output_format, quiet, data=list(data or []), model=model, normalization=normalization,
              max_length=max_length, device=device, dtype=dtype, bootstrap=bootstrap, seed=seed, limit=limit,
              predictions=predictions, tag=tag, summary=not no_summary, columns=columns, layout=layout,
              xtreme_task=xtreme_task)  # fmt: skip
