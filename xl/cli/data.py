"""``xl data convert | list``: the benchmark files under ``$XL_DATA`` as task JSONL on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from xl.cli._common import Messages, OutputOpt, QuietOpt, handle_errors, resolve_output_format
from xl.io.jsonl import dumps_line


@handle_errors("data convert")
def convert_cli(
    dataset: Annotated[str, typer.Argument(help="A dataset of `xl data list` (e.g. stsb, korsts, xquad).")],
    split: Annotated[str, typer.Argument(help="train, dev, test (as the dataset names them).")],
    lang: Annotated[str | None, typer.Argument(help="Language code; optional for one-language datasets.")] = None,
    output: OutputOpt = "-",
    limit: Annotated[int | None, typer.Option(min=1, help="Keep a seeded random N records (in file order).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --limit.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Convert one benchmark file of $XL_DATA into xl's task JSONL (schemas in the README).

    Every record is validated; the row count is checked against the folder's README, and a damaged file
    leaves no output behind (-o is atomic).

    Examples:

        xl data convert stsb train en > stsb-train.jsonl

        xl data convert xquad test ko -o xquad-ko.jsonl
    """
    from xl.tasks import convert_to

    resolve_output_format(output, None, ("jsonl",))
    spec, split, lang, n = convert_to(output, dataset, split, lang, limit=limit, seed=seed)
    Messages("data convert", quiet).info(f"{dataset} {split} {lang}: {n} {spec.task} records")


@handle_errors("data list")
def list_cli(quiet: QuietOpt = False) -> None:
    """List the benchmark files on disk under $XL_DATA that xl converts: one JSON line per (dataset, split,
    language) with its task and rows ("rows": null for a file the registry does not list, whose row count is
    then not checked).

    Examples:

        xl data list

        xl data list | grep '"xquad"'
    """
    from xl.config import data_dir
    from xl.tasks import available, get_dataset

    n = 0
    for dataset, split, lang, rows in available():
        task = get_dataset(dataset).task
        sys.stdout.buffer.write(dumps_line({"dataset": dataset, "split": split, "lang": lang, "task": task,
                                            "rows": rows}))  # fmt: skip
        n += 1
    if n == 0:
        Messages("data list", quiet).info(f"no benchmark files under {data_dir()} (set XL_DATA to the folder "
                                          "that holds them)")  # fmt: skip
