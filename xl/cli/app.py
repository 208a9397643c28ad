"""The ``xl`` command: every command is listed here (:data:`COMMANDS`, :data:`GROUPS`), so the whole list reads
at a glance.

Commands are thin: they parse, call one library function and render errors. Nothing here imports torch
at module level (``xl --help`` stays fast; a test checks it).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

import xl
from xl.cli._common import err, install_signal_handlers, silence


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


#: The command list: a command's name → (module under ``xl.cli``, function); a group's name → its help and its
#: commands. ``xl CMD …`` imports and builds only CMD's module and command (typer builds every parameter of
#: every registered command up front, about 0.1 s for the whole list), so a numpy-only command starts sooner.
COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("embed", "embed_cli"),
    "fit-proj": ("align", "fit_proj_cli"),
    "apply-proj": ("align", "apply_proj_cli"),
    "finetune": ("finetune", "finetune_cli"),
    "merge": ("embed", "merge_cli"),
}
GROUPS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "eval": (
        "Zero-shot evaluation: sts, classify, qa, retrieval (also `xl eval --task TASK …`).",
        {"sts": ("eval", "sts_cli"), "classify": ("eval", "classify_cli"), "qa": ("eval", "qa_cli"),
         "retrieval": ("eval", "retrieval_cli")},
    ),
    "tasksim": (
        "Task embeddings, task similarity, and its correlation with transfer gains.",
        {"embed": ("tasksim", "embed_cli"), "similarity": ("tasksim", "similarity_cli"),
         "gains": ("tasksim", "gains_cli"), "decompose": ("tasksim", "decompose_cli"),
         "correlate": ("tasksim", "correlate_cli"), "covariates": ("tasksim", "covariates_cli"),
         "predict": ("tasksim", "predict_cli")},
    ),
    "data": (
        "Benchmark data under $XL_DATA as task JSONL.",
        {"convert": ("data", "convert_cli"), "list": ("data", "list_cli")},
    ),
    "model": (
        "Install and inspect models (the offline default model).",
        {"install": ("model", "install_cli"), "list": ("model", "list_cli"), "info": ("model", "info_cli")},
    ),
}  # fmt: skip


def _version(value: bool) -> None:
    if value:
        print(f"xl {xl.__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Unix-style tools for zero-shot cross-lingual transfer research."""


def _function(where: tuple[str, str]) -> Any:
    module, name = where
    return getattr(importlib.import_module(f"xl.cli.{module}"), name)


def _group(help: str) -> typer.Typer:
    """A command group (``xl eval …``) with the same conventions as the root."""
    return typer.Typer(help=help, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


@functools.cache
def build_app(only: tuple[str, ...] = ()) -> typer.Typer:
    """The ``xl`` app with every command, or with only the command ``only`` names (``("apply-proj",)``,
    ``("eval", "sts")``); its help, usage line and errors are those of the full app. Built once per selection."""
    root = typer.Typer(
        name="xl",
        cls=XlGroup,
        help="Unix-style tools for zero-shot cross-lingual transfer research.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root.callback()(_root)
    for name, where in COMMANDS.items():
        if not only or only == (name,):
            root.command(name)(_function(where))
    for name, (help, commands) in GROUPS.items():
        if only and only[0] != name:
            continue
        group = _group(help)
        for sub, where in commands.items():
            if len(only) < 2 or only[1] == sub:
                group.command(sub)(_function(where))
        root.add_typer(group, name=name)
    return root


def _selection(argv: list[str]) -> tuple[str, ...]:
    """The command ``argv`` runs, when it names one (``()`` otherwise: ``xl --help``, a typo, no arguments)."""
    argv = _task_as_subcommand(argv)
    if argv and argv[0] in COMMANDS:
        return (argv[0],)
    if argv and argv[0] in GROUPS:
        if len(argv) > 1 and argv[1] in GROUPS[argv[0]][1]:
            return (argv[0], argv[1])
        return (argv[0],)
    return ()


def __getattr__(name: str) -> Any:
    """``xl.cli.app.app``: the full app (tests and documentation tools read every command from it)."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Run one command (``argv``, else ``sys.argv[1:]``) and raise ``SystemExit`` with its exit code: usage
    errors render as ``xl CMD: error: …`` (see :class:`XlGroup`). The in-process entry point (tests, Python
    callers); the ``xl`` process runs it through :func:`run`."""
    install_signal_handlers()
    args = list(sys.argv[1:] if argv is None else argv)
    typer.main.get_command(build_app(_selection(args))).main(args=args, prog_name="xl")


def run() -> NoReturn:
    """The ``xl`` console script and ``python -m xl``: :func:`main`, then :func:`exit_process`."""
    try:
        main()
    except SystemExit as exc:
        exit_process(exc.code)
    exit_process(0)


def exit_process(code: object) -> NoReturn:
    """End the ``xl`` process with ``code`` without the interpreter's teardown once a model stack is loaded.

    Tearing down torch and transformers (freeing the tokenizer, then every module) takes about 2 s on this
    CPU, a quarter of ``xl embed``'s whole run on one sentence, and does nothing a finished command needs. So
    what a normal exit does that matters is done here, in its order: the ``atexit`` callbacks (logging's final
    flush, ``weakref.finalize`` clean-ups, multiprocessing's), then stdout and stderr are flushed; then
    ``os._exit``. The normal exit is kept (``SystemExit``) wherever the shortcut could lose something: a
    numpy-only command (no torch, nothing to save), another thread still running, a torch.distributed
    process group still open, an exit code that is not a number, a flush that fails other than on a closed
    pipe (the interpreter then reports it as it always does)."""
    torch = sys.modules.get("torch")
    if torch is None or not (code is None or isinstance(code, int)) or threading.active_count() > 1:
        raise SystemExit(code)
    distributed = getattr(torch, "distributed", None)
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:  # the reader left: quiet, as everywhere in xl
            silence(stream)
        except (OSError, ValueError):
            raise SystemExit(code) from None
    os._exit(code or 0)
