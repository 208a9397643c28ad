"""``xl finetune``: train an encoder with a task head on (English) task data."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from xl.cli._common import (
    BatchSizeOpt,
    ColumnsOpt,
    DeviceOpt,
    DtypeOpt,
    Messages,
    ModelOpt,
    QuietOpt,
    handle_errors,
    progress_display,
    refuse_ignored,
)
from xl.errors import UsageError


@handle_errors("finetune")
def finetune_cli(
    ctx: typer.Context,
    task: Annotated[
        Literal["sts", "classify", "qa", "align"],
        typer.Option(
            "--task",
            help="sts (siamese bi-encoder), classify (text or pair + linear head), qa (start/end span head) or "
            "align (English-xx translation pairs, in-batch translation ranking).",
        ),
    ],  # fmt: skip
    train: Annotated[
        str,
        typer.Option(
            "--train",
            help="Training data: task JSONL (or SQuAD JSON for qa), CSV, TSV, Parquet or a "
            "datasets folder (save_to_disk); - or a pipe is read once.",
        ),
    ],  # fmt: skip
    output: Annotated[str, typer.Option("--output", "-o", help="Output directory (a transformers model + head).")],
    dev: Annotated[
        str | None, typer.Option("--dev", help="English dev set: picks the step kept (step 0, the start, included).")
    ] = None,  # fmt: skip
    dev_lang: Annotated[
        str,
        typer.Option(
            "--dev-lang",
            help="Language of --dev (default en). A dev set whose records' lang is another is refused unless named "
            "here: selecting on target-language labels is not zero-shot. Recorded in the run's manifest.",
        ),
    ] = "en",  # fmt: skip
    model: ModelOpt = "default",
    init: Annotated[
        str | None,
        typer.Option(help="Start from this earlier run's encoder with a fresh head (intermediate task training)."),
    ] = None,  # fmt: skip
    epochs: Annotated[float, typer.Option(help="Passes over the training data (fractions allowed).")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps; overrides --epochs.")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-5,
    warmup: Annotated[float, typer.Option(help="Fraction of steps of linear warm-up.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (matrices only).")] = 0.01,
    batch_size: BatchSizeOpt = 16,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    max_length: Annotated[int | None, typer.Option(help="Tokens per input (default 128; qa 384).")] = None,
    doc_stride: Annotated[int, typer.Option(help="qa: tokens shared by consecutive context windows.")] = 128,
    loss: Annotated[
        Literal["cosine", "cosent"], typer.Option(help="sts: cosine (MSE of cosine vs score/5) or cosent.")
    ] = "cosine",
    class_weight: Annotated[
        Literal["none", "balanced"],
        typer.Option(
            help="classify: weigh each class's cross-entropy by n / (classes x its count) in the training "
            "labels (balanced, as scikit-learn), or not (none). Recorded in the manifest."
        ),
    ] = "none",  # fmt: skip
    dropout: Annotated[float | None, typer.Option(help="Override the model's dropout (0 disables it).")] = None,
    freeze_embeddings: Annotated[
        bool, typer.Option("--freeze-embeddings", help="Keep the word embedding matrix fixed.")
    ] = False,  # fmt: skip
    no_group_by_length: Annotated[
        bool,
        typer.Option("--no-group-by-length", help="Batch in random order (default: examples of similar length)."),
    ] = False,
    group_by_length: Annotated[bool, typer.Option("--group-by-length", hidden=True)] = False,  # the default
    eval_steps: Annotated[
        int | None, typer.Option(help="Evaluate on --dev every N steps (default: each epoch).")
    ] = None,
    save_steps: Annotated[int | None, typer.Option(help="Write a resumable checkpoint every N steps.")] = None,
    train_limit: Annotated[int | None, typer.Option(help="Train on a seeded random N examples.")] = None,
    dev_limit: Annotated[int | None, typer.Option(help="Evaluate on a seeded random N dev examples.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds data order, head initialisation and dropout.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    log_every: Annotated[int, typer.Option(help="Log a line (and a log.jsonl row) every N steps.")] = 50,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in -o.")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the xl finetune run in -o: removes only its own files; refuses a "
            "directory holding anything else.",
        ),
    ] = False,  # fmt: skip
    columns: ColumnsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune on an English task: the source side of zero-shot cross-lingual transfer.

    The kept model is the best on the English --dev set, the starting model (step 0) included (target-language
    labels are never read). DIR gets a transformers model (`xl embed --model DIR` works), the head,
    `xl-finetune.json` and `log.jsonl`; it may not hold the inputs. A failed save (a full disk) keeps the final
    checkpoint: free space and rerun with --resume. Runs under `torchrun --nproc_per_node N` (DDP; --batch-size
    is the global batch).

    Examples:

        xl finetune --task sts --train stsb-train.jsonl --dev stsb-dev.jsonl -o runs/sts

        xl finetune --task classify --init runs/sts --train sst2-train.jsonl --dev sst2-dev.jsonl -o runs/sts-sst2
    """
    from xl.finetune import FinetuneOptions, finetune
    from xl.io.tables import parse_columns
    from xl.tasks.objects import task_named

    if group_by_length and no_group_by_length:
        raise UsageError("--group-by-length and --no-group-by-length contradict each other")
    if task != "sts":
        refuse_ignored(ctx, ("loss",), f"with --task {task}", hint="--loss chooses the sts loss: drop it")
    if task != "qa":
        refuse_ignored(ctx, ("doc_stride",), f"with --task {task}", hint="--doc-stride is for qa contexts: drop it")
    if task != "classify":
        refuse_ignored(ctx, ("class_weight",), f"with --task {task}", hint="--class-weight weighs classify's labels: "
                       "drop it")  # fmt: skip
    if dev is None:
        refuse_ignored(ctx, ("eval_steps", "dev_limit"), "without --dev", hint="give --dev DEV.jsonl, or drop them")
    options = FinetuneOptions(
        task=task, train=train, output=output, dev=dev, model=model, init=init, epochs=epochs, max_steps=max_steps,
        lr=lr, warmup=warmup, weight_decay=weight_decay, batch_size=batch_size, grad_accum=grad_accum,
        max_length=max_length, doc_stride=doc_stride, seed=seed, dtype=dtype, device=device, loss=loss,
        dropout=dropout, freeze_embeddings=freeze_embeddings, group_by_length=not no_group_by_length,
        eval_steps=eval_steps, save_steps=save_steps, train_limit=train_limit, dev_limit=dev_limit,
        log_every=log_every, resume=resume, overwrite=overwrite, dev_lang=dev_lang, class_weight=class_weight,
        columns=parse_columns(columns, task_named(task).fields()) or None,
    )  # fmt: skip
    messages = Messages("finetune", quiet)
    with progress_display(not quiet) as progress:
        finetune(options, log=messages.info, progress=progress)
