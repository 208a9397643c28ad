"""The ``xl`` command: every command is registered here, so the whole list reads at a glance.

Commands are thin: they parse, call one library function and render errors. Nothing here imports torch
at module level (``xl --help`` stays fast; a test checks it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import xl
from xl.cli import align, data, embed, eval, finetune, model, tasksim
from xl.cli._common import err, install_signal_handlers


def _task_as_subcommand(argv: list[str]) -> list[str]:
    """``xl eval --task sts …`` is ``xl eval sts …`` (the spelling of the issue and of XTREME's scripts)."""
    if not argv or argv[0] != "eval":
        return argv
    for i, item in enumerate(argv[1:], start=1):
        if item == "--task" and i + 1 < len(argv):
            return ["eval", argv[i + 1], *argv[1:i], *argv[i + 2 :]]
        if item.startswith("--task="):
            return ["eval", item.split("=", 1)[1], *argv[1:i], *argv[i + 1 :]]
    return argv


def _usage_message(exc: Exception) -> str:
    """Click's message of a usage error, without the ``Value error, `` that typer's validation puts before the
    reason (``Invalid value for '--format': 'csv' is not one of 'jsonl', 'md'.``)."""
    return str(exc.format_message()).replace(": Value error, ", ": ")  # type: ignore[attr-defined]


class XlGroup(TyperGroup):
    """The root command: usage errors of every command render as one line ``xl CMD: error: …`` plus a hint,
    exit 2, nothing on stdout, whether run as ``xl`` or in process (typer's CliRunner invokes this ``main``)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:  # fmt: skip
        argv = _task_as_subcommand(list(sys.argv[1:] if args is None else args))
        try:
            code = super().main(args=argv, prog_name=prog_name or "xl", complete_var=complete_var,
                                standalone_mode=False, windows_expand_args=windows_expand_args, **extra)  # fmt: skip
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except typer.Abort:
            err("xl: interrupted")
            sys.exit(130)
        except Exception as exc:
            # Click's usage errors (typer vendors click, so match by shape, not by class).
            exit_code = getattr(exc, "exit_code", None)
            if getattr(exc, "format_message", None) is None or not isinstance(exit_code, int):
                raise
            ctx = getattr(exc, "ctx", None)
            path = ctx.command_path if ctx is not None else "xl"
            err(f"{path}: error: {_usage_message(exc)}")
            if exit_code == 2:
                err(f"  hint: {path} --help")
            sys.exit(exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="xl",
    cls=XlGroup,
    help="Unix-style tools for zero-shot cross-lingual transfer research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _group(help: str) -> typer.Typer:
    """A command group (``xl eval …``) with the same conventions as the root."""
    return typer.Typer(help=help, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


eval_app = _group("Zero-shot evaluation: sts, classify, qa, retrieval (also `xl eval --task TASK …`).")
data_app = _group("Benchmark data under $XL_DATA as task JSONL.")
tasksim_app = _group("Task embeddings, task similarity, and its correlation with transfer gains.")
model_app = _group("Install and inspect models (the offline default model).")

# ---- the command list ---------------------------------------------------------------------------
app.command("embed")(embed.embed_cli)
app.command("fit-proj")(align.fit_proj_cli)
app.command("apply-proj")(align.apply_proj_cli)
app.command("finetune")(finetune.finetune_cli)
eval_app.command("sts")(eval.sts_cli)
eval_app.command("classify")(eval.classify_cli)
eval_app.command("qa")(eval.qa_cli)
eval_app.command("retrieval")(eval.retrieval_cli)
app.add_typer(eval_app, name="eval")
tasksim_app.command("embed")(tasksim.embed_cli)
tasksim_app.command("similarity")(tasksim.similarity_cli)
tasksim_app.command("gains")(tasksim.gains_cli)
tasksim_app.command("decompose")(tasksim.decompose_cli)
tasksim_app.command("correlate")(tasksim.correlate_cli)
tasksim_app.command("covariates")(tasksim.covariates_cli)
tasksim_app.command("predict")(tasksim.predict_cli)
app.add_typer(tasksim_app, name="tasksim")
data_app.command("convert")(data.convert_cli)
data_app.command("list")(data.list_cli)
app.add_typer(data_app, name="data")
model_app.command("install")(model.install_cli)
model_app.command("list")(model.list_cli)
model_app.command("info")(model.info_cli)
app.add_typer(model_app, name="model")
# -------------------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        print(f"xl {xl.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Unix-style tools for zero-shot cross-lingual transfer research."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors render as ``xl CMD: error: …`` (see :class:`XlGroup`)."""
    install_signal_handlers()
    typer.main.get_command(app).main(args=list(sys.argv[1:] if argv is None else argv), prog_name="xl")
