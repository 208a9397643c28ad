"""``xl tasksim embed | similarity | correlate``: task embeddings, their similarity, and its relation to gains."""

from __future__ import annotations

from typing import Annotated

import typer

from xl.cli._common import DeviceOpt, DtypeOpt, Messages, ModelOpt, OutputOpt, QuietOpt, handle_errors
from xl.errors import UsageError


@handle_errors("tasksim embed")
def embed_cli(
    tasks: Annotated[
        list[str] | None,
        typer.Argument(
            help="NAME=DATA per task (textemb): a task file or text file, or a dataset "
            "DATASET:SPLIT:LANG; NAME=RUN_DIR[@DATA] (taskemb)."
        ),
    ] = None,  # fmt: skip
    output: OutputOpt = "-",
    method: Annotated[
        str, typer.Option(help="textemb (mean sentence embedding) or taskemb (pooled Fisher); Vu et al. 2020.")
    ] = "textemb",
    model: ModelOpt = "default",
    sample: Annotated[
        int | None, typer.Option(min=1, help="Inputs per task, a seeded random sample (default 1000; taskemb 200).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    output_format: Annotated[
        str | None,
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

    if method not in ("textemb", "taskemb"):
        raise UsageError(f"--method {method!r} is not textemb or taskemb")
    count = sample or (1000 if method == "textemb" else 200)
    options = TaskEmbedOptions(model=model, sample=count, seed=seed, device=device, dtype=dtype,
                               output_format=output_format)  # fmt: skip
    rows = embed_tasks(list(tasks or []), output, options, method)
    Messages("tasksim embed", quiet).info(f"{rows} task embeddings written")


@handle_errors("tasksim similarity")
def similarity_cli(
    embeddings: Annotated[str, typer.Argument(help="Task embeddings (NPY, one row per task; - for stdin).")],
    output: OutputOpt = "-",
    method: Annotated[
        str,
        typer.Option(
            help="cosine, centered (cosine after removing the mean task) or task2vec "
            "(normalised cosine for Fisher embeddings)."
        ),
    ] = "cosine",  # fmt: skip
    labels: Annotated[str | None, typer.Option(help="Comma-separated task names (default: the manifest's).")] = None,
    plot: Annotated[str | None, typer.Option(help="Also write a heatmap PNG here.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Pairwise similarity of task embeddings: a square NPY matrix whose manifest names its rows.

    Examples:

        xl tasksim similarity tasks.npy -o sim.npy --plot sim.png

        xl tasksim embed a=a.jsonl b=b.jsonl | xl tasksim similarity - --method centered -o sim.npy
    """
    from xl.tasksim import similarity_file

    names = [n.strip() for n in labels.split(",")] if labels else None
    size = similarity_file(embeddings, output, method=method, labels=names, plot=plot)
    Messages("tasksim similarity", quiet).info(f"{size} × {size} {method} similarity")


@handle_errors("tasksim correlate")
def correlate_cli(
    sim: Annotated[str, typer.Option("--sim", help="Similarity matrix (NPY from `xl tasksim similarity`).")],
    gains: Annotated[
        str,
        typer.Option(
            "--gains", help="JSONL rows {source, target, lang, gain} (or score_with, score_without); - for stdin."
        ),
    ],  # fmt: skip
    methods: Annotated[
        str, typer.Option(help="Comma-separated: pearson, spearman, kendall.")
    ] = "pearson,spearman,kendall",
    permutations: Annotated[int, typer.Option(min=0, help="Permutations for p-values (0: analytic only).")] = 10_000,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for 95% CIs (0: none).")] = 2_000,
    seed: Annotated[int, typer.Option(help="Seed of permutations and resamples.")] = 0,
    languages: Annotated[str | None, typer.Option(help="JSON file overriding/extending the language table.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or md.")] = "jsonl",
    plot: Annotated[str | None, typer.Option(help="Also write a scatter PNG (similarity vs gain by family).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Does task similarity predict the transfer gain? Overall and per language family, with n, p and CIs.

    Correlations (Pearson, Spearman, Kendall; analytic and permutation p-values, bootstrap CIs) and the
    ranking of sources by similarity per (target, language): NDCG, Regret@k, rank of the best source.

    Examples:

        xl tasksim correlate --sim sim.npy --gains gains.jsonl --format md

        xl tasksim correlate --sim sim.npy --gains gains.jsonl --methods spearman --plot scatter.png
    """
    from xl.tasksim import correlate_files

    if output_format not in ("jsonl", "md"):
        raise UsageError(f"--format {output_format!r} is not jsonl or md")
    wanted = [m.strip() for m in methods.split(",") if m.strip()]
    lines = correlate_files(sim, gains, methods=wanted, n_perm=permutations, n_boot=bootstrap, seed=seed,
                            languages=languages, plot=plot)  # fmt: skip
    if output_format == "md":
        from xl.core.tasksim import render_markdown

        print(render_markdown(lines))
    else:
        from xl.io.jsonl import JsonlWriter

        with JsonlWriter("-") as writer:
            writer.write_objects(lines)
    del quiet
