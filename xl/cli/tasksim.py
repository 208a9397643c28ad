"""``xl tasksim embed | similarity | correlate``: task embeddings, their similarity, and its relation to gains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from xl.cli._common import (
    BOOTSTRAP,
    BootstrapOpt,
    DataFormat,
    DeviceOpt,
    DtypeOpt,
    Messages,
    ModelOpt,
    OutputOpt,
    QuietOpt,
    ReportFormatOpt,
    handle_errors,
    progress_display,
    refuse_ignored,
    resolve_output_format,
)
from xl.errors import UsageError

LanguagesOpt = Annotated[str | None, typer.Option(help="JSON file that extends or overrides the language table.")]
# The choices of these options are those of xl.core (tests/cli/test_options_contract.py checks they agree).
SimilarityMethod = Literal["cosine", "centered", "task2vec"]
Unit = Literal["auto", "pair", "row"]
Centering = Literal["within-target", "none"]
Resampling = Literal["cluster", "two-way"]
FamilyTest = Literal["auto", "both", "permutation", "mixed", "none"]


def _emit(lines: list[dict[str, Any]], output_format: str, render: Callable[[list[dict[str, Any]]], str]) -> None:
    """The one data product on stdout: JSON lines, or the Markdown ``render`` makes of them (``--format md``)."""
    if output_format == "md":
        print(render(lines))
        return
    from xl.io.jsonl import JsonlWriter

    with JsonlWriter("-") as writer:
        writer.write_objects(lines)


@handle_errors("tasksim embed")
def embed_cli(
    ctx: typer.Context,
    tasks: Annotated[
        list[str] | None,
        typer.Argument(
            help="NAME=DATA per task (textemb): a task file or text file, or a dataset "
            "DATASET:SPLIT:LANG; NAME=RUN_DIR[@DATA] (taskemb)."
        ),
    ] = None,  # fmt: skip
    output: OutputOpt = "-",
    method: Annotated[
        Literal["textemb", "taskemb"],
        typer.Option(help="textemb (mean sentence embedding) or taskemb (pooled Fisher); Vu et al. 2020."),
    ] = "textemb",
    model: ModelOpt = "default",
    sample: Annotated[
        int | None, typer.Option(min=1, help="Inputs per task, a seeded random sample (default 1000; taskemb 200).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    output_format: Annotated[
        DataFormat | None,
        typer.Option(
            "--format",
            help="npy (a row per task) or jsonl ({task, lang, method, vector}); default: "
            "jsonl for an -o ending in .jsonl, else npy.",
        ),
    ] = None,  # fmt: skip
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Task embeddings: one row per task, in the order given (NPY with a manifest naming the tasks, or JSONL).

    `textemb` is the mean of the sentence embeddings (`xl embed`) of a task's input texts (text; text1 and
    text2; question and context); `taskemb` the diagonal empirical Fisher of a model fine-tuned on the task
    (`xl finetune` output), pooled per component, over its training data (or DATA).

    Examples:

        xl tasksim embed sst2=sst2:dev:en stsb=stsb:dev:en -o tasks.npy

        xl tasksim embed --method taskemb sst2=runs/sst2 stsb=runs/sts -o fisher.npy
    """
    from xl.tasksim import TaskEmbedOptions, embed_tasks

    if method == "taskemb":
        refuse_ignored(ctx, ("model", "dtype"), "with --method taskemb",
                       hint="TaskEmb runs each task's own model (NAME=RUN_DIR) in float32: drop them")  # fmt: skip
    output_format = resolve_output_format(output, output_format, ("npy", "jsonl"))  # type: ignore[assignment]
    count = sample or (1000 if method == "textemb" else 200)
    options = TaskEmbedOptions(model=model, sample=count, seed=seed, device=device, dtype=dtype,
                               output_format=output_format)  # fmt: skip
    with progress_display(not quiet) as progress:
        rows = embed_tasks(list(tasks or []), output, options, method, progress)
    Messages("tasksim embed", quiet).info(f"{rows} task embeddings written")


@handle_errors("tasksim similarity")
def similarity_cli(
    embeddings: Annotated[str, typer.Argument(help="Task embeddings (NPY, one row per task; - for stdin).")],
    output: OutputOpt = "-",
    method: Annotated[
        SimilarityMethod,
        typer.Option(
            help="cosine, centered (cosine after removing the mean task) or task2vec "
            "(normalised cosine for Fisher embeddings)."
        ),
    ] = "cosine",  # fmt: skip
    labels: Annotated[str | None, typer.Option(help="Comma-separated task names (default: the manifest's).")] = None,
    plot: Annotated[str | None, typer.Option(help="Also write a heatmap here (.png, .pdf or .svg).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Pairwise similarity of task embeddings: a square NPY matrix whose manifest names its rows.

    Examples:

        xl tasksim similarity tasks.npy -o sim.npy --plot sim.png

        xl tasksim embed a=a.jsonl b=b.jsonl | xl tasksim similarity - --method centered -o sim.npy
    """
    from xl.tasksim import similarity_file

    resolve_output_format(output, None, ("npy",))
    names = [n.strip() for n in labels.split(",")] if labels else None
    size = similarity_file(embeddings, output, method=method, labels=names, plot=plot)
    Messages("tasksim similarity", quiet).info(f"{size} × {size} {method} similarity")


@handle_errors("tasksim correlate")
def correlate_cli(
    ctx: typer.Context,
    sim: Annotated[str, typer.Option("--sim", help="Similarity matrix (NPY from `xl tasksim similarity`).")],
    gains: Annotated[
        str,
        typer.Option(
            "--gains", help="JSONL rows {source, target, lang, gain} (or score_with, score_without); - for stdin."
        ),
    ],  # fmt: skip
    methods: Annotated[
        str, typer.Option(help="Comma-separated: pearson, spearman, kendall (default: all three).", show_default=False)
    ] = "pearson,spearman,kendall",
    permutations: Annotated[int, typer.Option(min=0, help="Permutations for p-values (0: analytic only).")] = 10_000,
    bootstrap: BootstrapOpt = BOOTSTRAP,
    seed: Annotated[int, typer.Option(help="Seed of permutations and resamples.")] = 0,
    languages: LanguagesOpt = None,
    unit: Annotated[
        Unit,
        typer.Option(
            help="Unit of analysis: auto (pair when the similarity varies only by (source, target), else "
            "row), pair or row."
        ),
    ] = "auto",  # fmt: skip
    center: Annotated[
        Centering,
        typer.Option(
            help="within-target (similarity minus its target's mean, gain minus its (target, language)'s "
            "mean: the question within one target) or none (raw values)."
        ),
    ] = "within-target",  # fmt: skip
    resample: Annotated[
        Resampling,
        typer.Option(help="Bootstrap: cluster (whole pairs) or two-way (sources × languages, Owen 2007)."),
    ] = "cluster",
    no_naive: Annotated[
        bool,
        typer.Option("--no-naive", help="Leave out the row-level numbers that treat rows as independent (naive)."),
    ] = False,
    naive: Annotated[bool, typer.Option("--naive", hidden=True)] = False,  # the default, still accepted
    family_test: Annotated[
        FamilyTest,
        typer.Option(
            help="Does the slope differ between families? auto (when two families are eligible), both, "
            "permutation, mixed or none."
        ),
    ] = "auto",  # fmt: skip
    min_languages: Annotated[
        int, typer.Option(min=1, help="Languages a family needs to be compared (others are flagged, with MDE).")
    ] = 3,
    min_n: Annotated[int, typer.Option(min=3, help="Points a correlation needs (fewer: 'too small').")] = 5,
    output_format: ReportFormatOpt = "jsonl",
    plot: Annotated[
        str | None, typer.Option(help="Also write a scatter plot (.png, .pdf, .svg) of similarity vs gain by family.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Does task similarity predict the transfer gain? With inference that respects how the gains were made.

    First the design and the variance decomposition of the gains, then correlations (Pearson, Spearman,
    Kendall) at the unit where the similarity varies: over (source, target) pairs for a pair-level
    similarity, permuted among the sources of each target, bootstrapped over pairs; overall and per family
    (families under --min-languages flagged with the smallest correlation they could detect). The old
    row-level numbers follow, labelled naive. Then whether the slope differs between families (a permutation
    test of whole languages and a mixed model's likelihood-ratio test), and the ranking of sources per
    (target, language): NDCG, Regret@k, rank of the best source, top-1 picks that hurt, and the seed ceiling.

    Examples:

        xl tasksim correlate --sim sim.npy --gains gains.jsonl --format md

        xl tasksim correlate --sim sim.npy --gains gains.jsonl --methods spearman --resample two-way --plot s.png
    """
    from xl.tasksim import correlate_files

    if naive and no_naive:
        raise UsageError("--naive and --no-naive contradict each other")
    if bootstrap == 0:
        refuse_ignored(ctx, ("resample",), "with --bootstrap 0 (no intervals)",
                       hint="drop --resample, or give --bootstrap 2000")  # fmt: skip
        if permutations == 0:
            refuse_ignored(ctx, ("seed",), "with --permutations 0 --bootstrap 0 (nothing is drawn)",
                           hint="drop --seed")  # fmt: skip
    wanted = [m.strip() for m in methods.split(",") if m.strip()]
    lines = correlate_files(sim, gains, methods=wanted, n_perm=permutations, n_boot=bootstrap, seed=seed,
                            languages=languages, plot=plot, unit=None if unit == "auto" else unit,
                            center=center, resample=resample, naive=not no_naive, family_test=family_test,
                            min_languages=min_languages, min_n=min_n)  # fmt: skip
    from xl.core.tasksim import render_markdown

    _emit(lines, output_format, render_markdown)
    design = next((line for line in lines if line.get("kind") == "design"), {})
    correlations = sum(line.get("kind") == "correlation" for line in lines)
    Messages("tasksim correlate", quiet).info(
        f"unit {design.get('unit')}: {design.get('n_pairs')} pairs, {design.get('n_rows')} gain rows, "
        f"{design.get('n_languages')} languages; {correlations} correlations"
    )


def _pairs(items: list[str] | None, option: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; UsageError naming ``option`` on a malformed one."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{option} {item!r} is not KEY=VALUE", hint=f"e.g. {option} {example}")
        out[key] = value
    return out


@handle_errors("tasksim gains")
def gains_cli(
    results: Annotated[
        list[str] | None, typer.Argument(help="`xl eval` result lines (JSONL files, read in order; - for stdin).")
    ] = None,
    output: OutputOpt = "-",
    source_tag: Annotated[
        str, typer.Option(help="Tag naming the intermediate (source) task; its value `none` marks a target-only run.")
    ] = "inter",
    target_tag: Annotated[str, typer.Option(help="Tag naming the target task.")] = "target",
    seed_tag: Annotated[str, typer.Option(help="Tag naming the seed (absent everywhere: one seed per run).")] = "seed",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="TARGET=METRIC: the score a target's gain is measured in (default per task: sts "
            "spearman, classify macro_f1, qa f1, retrieval src2tgt.accuracy). Repeatable."
        ),
    ] = None,  # fmt: skip
    include_english: Annotated[
        bool, typer.Option("--include-english", help="Keep English sets (left out: not zero-shot).")
    ] = False,
    no_include_english: Annotated[bool, typer.Option("--no-include-english", hidden=True)] = False,  # the default
    exclude_set: Annotated[
        list[str] | None,
        typer.Option(
            help="DATA or DATA:LANG of an eval set to leave out (e.g. mlqa-de.dev, or sts2017.test:es-es for "
            "one language). Repeatable."
        ),
    ] = None,  # fmt: skip
    quiet: QuietOpt = False,
) -> None:
    """Transfer gains, one JSON line per (source, target, language), from the `xl eval` lines of every run.

    A run is tagged when evaluated: `--tag inter=SOURCE --tag target=TARGET --tag seed=N` (`inter=none`: the
    target alone). gain = mean score with the source over its seeds − mean score of the target alone over its
    seeds; `gain_se` from the seeds (null, with `se_reason`, under two seeds a side). English, sets that are
    not one language (`en-ar`) and a second set for a language are left out, each named on stderr.

    Examples:

        xl tasksim gains results.jsonl > gains.jsonl

        cat runs/*.jsonl | xl tasksim gains - --metric sts=pearson --exclude-set mlqa-de.dev -o gains.jsonl
    """
    from xl.core.gains import GainOptions
    from xl.io.jsonl import JsonlWriter
    from xl.io.manifest import base_manifest
    from xl.tasksim import gains_files

    if include_english and no_include_english:
        raise UsageError("--include-english and --no-include-english contradict each other")
    options = GainOptions(source_tag=source_tag, target_tag=target_tag, seed_tag=seed_tag,
                          metrics=_pairs(metric, "--metric", "sts=pearson"), include_english=include_english,
                          exclude_sets=tuple(exclude_set or ()))  # fmt: skip
    resolve_output_format(output, None, ("jsonl",))
    result = gains_files(list(results or []), options)
    messages = Messages("tasksim gains", quiet)
    for note in [*result.dropped, *result.notes]:
        messages.info(note)
    manifest = {**base_manifest("tasksim-gains"), "results": list(results or []), "options": {
        "source_tag": source_tag, "target_tag": target_tag, "seed_tag": seed_tag, "metrics": dict(options.metrics),
        "include_english": include_english, "exclude_sets": list(options.exclude_sets)}}  # fmt: skip
    with JsonlWriter(output, manifest) as writer:
        writer.write_objects(result.rows)
    messages.info(f"{len(result.rows)} gain rows")


@handle_errors("tasksim decompose")
def decompose_cli(
    gains: Annotated[str, typer.Option("--gains", help="Gain rows (`xl tasksim gains`); - for stdin.")],
    output_format: ReportFormatOpt = "jsonl",
    quiet: QuietOpt = False,
) -> None:
    """How the variance of the gains splits: target, source, (source, target) pair, (target, language) and
    residual, with the seed noise each would hold and the ceiling of any predictor that varies only by pair.

    Examples:

        xl tasksim decompose --gains gains.jsonl --format md
    """
    from xl.tasksim import decompose_file

    result = decompose_file(gains)
    from xl.core.gains import render_decomposition_markdown

    _emit([result], output_format, lambda lines: render_decomposition_markdown(lines[0]))
    Messages("tasksim decompose", quiet).info(
        f"{result.get('n_rows')} gain rows, {result.get('n_pairs')} pairs, {result.get('n_languages')} languages "
        f"in {result.get('n_target_language_cells')} (target, language) cells"
    )


@handle_errors("tasksim covariates")
def covariates_cli(
    ctx: typer.Context,
    langs: Annotated[
        list[str] | None,
        typer.Argument(
            help="CODE (family, script, URIEL distances to English) or CODE=DATA (also the subword "
            "statistics of the model's tokenizer on DATA's inputs: a task or text file, or "
            "DATASET:SPLIT:LANG)."
        ),
    ] = None,  # fmt: skip
    output: OutputOpt = "-",
    english: Annotated[
        str | None, typer.Option(help="English inputs the subword overlap is measured against (a file or dataset).")
    ] = None,
    model: ModelOpt = "default",
    sample: Annotated[int, typer.Option(min=1, help="Inputs per language, a seeded random sample.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    languages: LanguagesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Language covariates, one JSON line per language: family, script, and the syntactic, phonological,
    inventory, genetic and geographic distance to English (URIEL, from the lang2vec data files); with
    CODE=DATA and --english also tokenizer fertility and subword overlap with the English inputs.

    Examples:

        xl tasksim covariates de fr ko th -o covariates.jsonl

        xl tasksim covariates de=xquad:test:de th=xquad:test:th --english squad:dev:en -o covariates.jsonl
    """
    from xl.io.jsonl import JsonlWriter
    from xl.io.manifest import base_manifest
    from xl.tasksim import covariates_for

    if english is None and not any("=" in spec for spec in langs or []):
        refuse_ignored(ctx, ("model", "sample", "seed"), "without --english and CODE=DATA",
                       hint="they choose the tokenizer and inputs of the subword statistics: drop them")  # fmt: skip
    resolve_output_format(output, None, ("jsonl",))
    rows = covariates_for(list(langs or []), english=english, model=model, sample=sample, seed=seed,
                          languages=languages)  # fmt: skip
    manifest = {**base_manifest("tasksim-covariates"), "languages": list(langs or []), "english": english,
                "model": model if english else None, "sample": sample, "seed": seed}  # fmt: skip
    with JsonlWriter(output, manifest) as writer:
        writer.write_objects(rows)
    Messages("tasksim covariates", quiet).info(f"{len(rows)} languages")


@handle_errors("tasksim predict")
def predict_cli(
    ctx: typer.Context,
    sim: Annotated[str, typer.Option("--sim", help="Similarity matrix (NPY from `xl tasksim similarity`).")],
    gains: Annotated[str, typer.Option("--gains", help="Gain rows (`xl tasksim gains`); - for stdin.")],
    covariates: Annotated[
        str | None,
        typer.Option(
            help="Language covariates (`xl tasksim covariates`); default: the URIEL ones of the gains' languages."
        ),
    ] = None,  # fmt: skip
    folds: Annotated[
        str,
        typer.Option(
            help="Comma-separated groupings held out in turn: pair (unseen (source, target) pairs), "
            "language, family, source (default: all four).",
            show_default=False,
        ),
    ] = "pair,language,family,source",  # fmt: skip
    regressor: Annotated[
        Literal["ridge", "gbm"], typer.Option(help="ridge (closed form) or gbm (gradient-boosted trees).")
    ] = "ridge",
    alpha: Annotated[float, typer.Option(min=0.0, help="Ridge penalty on standardised features.")] = 1.0,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Resamples of the held-out groups for 95% CIs (0: none).")
    ] = BOOTSTRAP,
    seed: Annotated[int, typer.Option(help="Seed of the resamples (and of gbm).")] = 0,
    languages: LanguagesOpt = None,
    output_format: ReportFormatOpt = "jsonl",
    quiet: QuietOpt = False,
) -> None:
    """Does task similarity add predictive value beyond language covariates? Grouped cross-validation.

    gain ~ similarity + covariates (ridge, or gbm), evaluated leave-one-pair-out, leave-one-language-out,
    leave-one-family-out and leave-one-source-out against three baselines (mean gain; covariates only;
    similarity only): RMSE and MAE per feature set, and the difference "similarity + covariates − covariates"
    (and "similarity − mean") with
    a 95% bootstrap interval over the held-out groups. Negative: similarity helps.

    Examples:

        xl tasksim predict --sim sim.npy --gains gains.jsonl --format md

        xl tasksim predict --sim sim.npy --gains gains.jsonl --covariates covariates.jsonl --regressor gbm
    """
    from xl.tasksim import predict_files

    if regressor != "ridge":
        refuse_ignored(ctx, ("alpha",), f"with --regressor {regressor}", hint="--alpha is the ridge penalty: drop it")
    groupings = [f.strip() for f in folds.split(",") if f.strip()]
    lines = predict_files(sim, gains, covariates=covariates, languages=languages, folds=groupings, model=regressor,
                          alpha=alpha, n_boot=bootstrap, seed=seed)  # fmt: skip
    from xl.core.predict import render_predict_markdown

    _emit(lines, output_format, render_predict_markdown)
    scored = [line for line in lines if line.get("kind") == "prediction"]
    Messages("tasksim predict", quiet).info(f"{len(scored)} held-out scores over {len(groupings)} groupings"
                                            f" ({', '.join(groupings)})")  # fmt: skip
