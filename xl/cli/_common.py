"""What every command shares: error rendering, logging to stderr, progress, shared option declarations.

The library raises :class:`~xl.errors.XlError`; only this module turns it into
``xl <cmd>: error: …`` plus an optional ``  hint: …`` on stderr and exit code 1 (data) or 2 (usage).
``XL_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar

import typer

from xl.errors import Interrupted, UsageError, XlError
from xl.io.atomic import StdoutGuard, abort_open_outputs
from xl.progress import Progress, Throttled, no_progress

F = TypeVar("F", bound=Callable[..., Any])


def debug() -> bool:
    return os.environ.get("XL_DEBUG", "") not in ("", "0")


def err(line: str) -> None:
    """One line to stderr."""
    print(line, file=sys.stderr, flush=True)


class Messages:
    """Messages on stderr: ``-q`` silences info, ``-v`` adds detail."""

    def __init__(self, command: str, quiet: bool = False, verbose: bool = False) -> None:
        self.command = command
        self.quiet = quiet
        self.verbose = verbose

    def info(self, message: str) -> None:
        if not self.quiet:
            err(f"xl {self.command}: {message}")

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            err(f"xl {self.command}: {message}")


def render_error(command: str, exc: XlError) -> None:
    err(f"xl {command}: error: {exc.render()}")
    if exc.hint:
        err(f"  hint: {exc.hint}")


def silence(stream: Any = None) -> None:
    """After a closed pipe, point ``stream`` (stdout by default) at /dev/null so that a later flush, the
    interpreter's final one included, stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (stream or sys.stdout).fileno())
        os.close(devnull)


def _fail_outputs(guard: StdoutGuard, reason: str) -> None:
    """After any failure: end every open output safely, and truncate a regular-file stdout back to where the
    command started (so ``>> results.jsonl`` holds nothing of a failed run)."""
    abort_open_outputs(reason)
    guard.discard()


def handle_errors(command: str) -> Callable[[F], F]:
    """Wrap a command: render XlError, exit quietly on a closed pipe, 130 on Ctrl-C (128 + N on SIGTERM and
    SIGHUP), no tracebacks; on every failure no output is left that looks like a result."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            guard = StdoutGuard()
            try:
                return fn(*args, **kwargs)
            except XlError as exc:
                _fail_outputs(guard, exc.render())
                if debug():
                    raise
                render_error(command, exc)
                raise typer.Exit(exc.exit_code) from None
            except BrokenPipeError:
                abort_open_outputs("the reader closed the pipe")
                silence()
                raise typer.Exit(0) from None
            except Interrupted as exc:
                _fail_outputs(guard, f"terminated by {exc.name}")
                err(f"xl {command}: terminated by {exc.name}")
                raise typer.Exit(128 + exc.signum) from None
            except KeyboardInterrupt:
                _fail_outputs(guard, "interrupted")
                err(f"xl {command}: interrupted")
                raise typer.Exit(130) from None
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    abort_open_outputs("the reader closed the pipe")
                    silence()
                    raise typer.Exit(0) from None
                _fail_outputs(guard, str(exc))
                if debug():
                    raise
                err(f"xl {command}: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
                raise typer.Exit(1) from None
            except MemoryError:
                _fail_outputs(guard, "out of memory")
                err(f"xl {command}: error: out of memory")
                err("  hint: lower --batch-size / --max-tokens")
                raise typer.Exit(1) from None
            except typer.Exit:
                raise
            except Exception as exc:
                _fail_outputs(guard, f"internal error: {type(exc).__name__}")
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM / SIGHUP handler: unwind like Ctrl-C so temporary files are removed (once; a second signal
    during the clean-up is ignored, SIGKILL still works)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum, signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """Treat SIGTERM (kill, timeout, Slurm) and SIGHUP (a closed terminal) like Ctrl-C. A signal already
    ignored when xl starts (``nohup``) stays ignored."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _terminate)


def shows_progress(enabled: bool) -> bool:
    """Whether progress is drawn: ``enabled`` (no ``-q``), stderr a terminal, and not a dumb one (clig.dev: no
    animation off a terminal, so a log file or a pipe gets no bar and no carriage returns)."""
    return enabled and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def _rich_progress(*columns: Any) -> Any:
    """A transient rich display on stderr. stdout is left alone (rich would otherwise route what is printed
    there while the display is live to its console, stderr: a data product must not move); what is printed on
    stderr meanwhile (log lines) goes above the display."""
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    return RichProgress(*columns, console=Console(stderr=True), transient=True, redirect_stdout=False)


@contextlib.contextmanager
def progress_bar(
    enabled: bool, description: str
) -> Iterator[tuple[Callable[[int], None], Callable[[int | None], None]]]:
    """A rich progress bar on stderr when :func:`shows_progress`; else no-op callbacks."""
    if not shows_progress(enabled):
        yield (lambda _n: None), (lambda _t: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    with _rich_progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn()) as bar:  # fmt: skip
        task = bar.add_task(description, total=None)

        def advance(n: int) -> None:
            bar.advance(task, n)

        def set_total(total: int | None) -> None:
            bar.update(task, total=total)

        yield advance, set_total


#: How the display names a stage of :mod:`xl.progress` (others: the stage's own name).
STAGE_LABELS = {"train": "training steps", "dev": "dev scoring", "sets": "sets", "rows": "rows",
                "tasks": "tasks", "read": "rows read", "fit": "fitting"}  # fmt: skip
#: How the display shows a field of a report (others: ``name value``, floats to 4 significant digits).
FIELD_FORMATS = {"loss": "loss {:.4f}", "examples_per_s": "{:.1f} ex/s", "step": "at step {}", "set": "{}",
                 "task": "{}", "model": "{}", "what": "{}", "method": "{}", "epoch": "epoch {}"}  # fmt: skip


def format_fields(fields: dict[str, Any]) -> str:
    """The fields of one progress report as one short line, in the order given (None values left out)."""
    parts = []
    for name, value in fields.items():
        if value is None:
            continue
        spec = FIELD_FORMATS.get(name)
        if spec is None:
            spec = f"{name} {{:.4g}}" if isinstance(value, float) else f"{name} {{}}"
        parts.append(spec.format(value))
    return "  ".join(parts)


class StageDisplay:
    """Renders :mod:`xl.progress` reports on a rich display: a line per live stage (its label, a bar, done/total,
    its fields, the time left), drawn at once when a stage starts and ends and at rich's refresh rate between;
    a finished stage's line goes (the log lines above say what it did)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tasks: dict[str, tuple[Any, int]] = {}  # stage -> (rich task id, done)

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None:
        info = format_fields(fields)
        known = self.tasks.get(stage)
        if known is None:
            task = self.bar.add_task(STAGE_LABELS.get(stage, stage), total=total, completed=done, info=info)
        elif done < known[1]:  # a new round (the next set's rows): a fresh rate and time left
            task = known[0]
            self.bar.reset(task, total=total, completed=done, info=info)
        else:
            task = known[0]
            self.bar.update(task, total=total, completed=done, info=info)
        self.tasks[stage] = (task, done)
        if total is not None and done >= total:
            self.bar.refresh()  # its last state is drawn once, however short the stage was
            self.bar.remove_task(task)
            del self.tasks[stage]
            self.bar.refresh()  # and the display forgets it (else a log line redraws the last frame under it)


@contextlib.contextmanager
def progress_display(enabled: bool) -> Iterator[Progress]:
    """The :class:`xl.progress.Progress` callback a command passes to the library: a :class:`StageDisplay` (rate
    limited by :class:`xl.progress.Throttled`) when :func:`shows_progress`, else :func:`xl.progress.no_progress`
    (nothing at all is written). Never on stdout."""
    if not shows_progress(enabled):
        yield no_progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    with _rich_progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn()) as bar:  # fmt: skip
        yield Throttled(StageDisplay(bar))


def parse_int_list(text: str, option: str) -> list[int]:
    """``"4,8,-1"`` -> [4, 8, -1]; a usage error otherwise."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a comma-separated list of integers",
                         hint=f"e.g. {option} -1 or {option} 4,8,12") from None  # fmt: skip
    if not values:
        raise UsageError(f"{option} is empty")
    return values


# Shared option declarations: the same name means the same thing in every command.
ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="default (offline e5-small), a local model directory, or a hub id."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu, cuda or cuda:N.")]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DtypeOpt = Annotated[
    Dtype, typer.Option("--dtype", help="auto: bf16 on CUDA and bf16 CPUs, else float32. Changes results slightly.")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Most sentences per batch.")]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="Comma-separated FIELD=COLUMN pairs: read xl's field FIELD from the input's column COLUMN (CSV, "
        "TSV, Parquet, a datasets folder; a JSONL field too), e.g. text1=s1,score=label.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No messages or progress on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Output file (atomic), or - for stdout.")]

#: The one default of every --bootstrap (resamples for 95% percentile intervals; 0: none).
BOOTSTRAP = 1000
BootstrapOpt = Annotated[int, typer.Option("--bootstrap", min=0, help="Resamples for 95% CIs (0: none).")]
ReportFormat = Literal["jsonl", "md"]
ReportFormatOpt = Annotated[
    ReportFormat, typer.Option("--format", help="Output: jsonl (JSON lines) or md (Markdown tables).")
]
DataFormat = Literal["npy", "jsonl"]

#: What an output's suffix says its format is (other suffixes say nothing). JSON lines in a .json file pass.
_SUFFIX_FORMATS = {".npy": ("npy",), ".jsonl": ("jsonl",), ".ndjson": ("jsonl",), ".json": ("jsonl",), ".md": ("md",)}


def suffix_formats(output: str) -> tuple[str, ...] | None:
    """The formats an output path's suffix allows (``x.npy`` -> npy), or None (stdout, other suffixes)."""
    if output == "-":
        return None
    return _SUFFIX_FORMATS.get(os.path.splitext(output)[1].lower())


def resolve_output_format(
    output: str, requested: str | None, allowed: tuple[str, ...], option: str = "--format"
) -> str:
    """The format of ``output``: ``requested``, else the one its suffix names, else the first of ``allowed``.
    An -o whose suffix names another format than ``--format`` (``--format jsonl -o x.npy``) is a usage error,
    and so is a suffix naming a format the command cannot write (``-o W.jsonl`` for a matrix)."""
    implied = suffix_formats(output)
    suffix = os.path.splitext(output)[1]
    if requested is None:
        fits = [f for f in allowed if implied is None or f in implied]
        if not fits:
            raise UsageError(f"-o {output}: the output is {' or '.join(allowed)}, not {suffix}",
                             hint=f"name it *.{allowed[0]}")  # fmt: skip
        return fits[0]
    if implied is not None and requested not in implied:
        raise UsageError(f"-o {output} ends in {suffix} but {option} is {requested}",
                         hint=f"name it *.{requested}, or pass {option} {implied[0]}")  # fmt: skip
    return requested


def given(ctx: Any, *names: str) -> list[str]:
    """The options among ``names`` (parameter names) that the command line set, as spelled in --help."""
    found = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            param = next(p for p in ctx.command.params if p.name == name)
            found.append(max(param.opts, key=len))
    return found


def refuse_ignored(ctx: Any, names: tuple[str, ...], when: str, hint: str | None = None) -> None:
    """A usage error if any option of ``names`` was given although it has no effect ``when`` (e.g.
    ``with --method taskemb``): an option that a mode ignores is refused, not dropped."""
    ignored = given(ctx, *names)
    if ignored:
        verb = "has" if len(ignored) == 1 else "have"
        raise UsageError(f"{', '.join(ignored)} {verb} no effect {when}",
                         hint=hint or f"drop {' and '.join(ignored)}")  # fmt: skip


def deprecated_alias(ctx: Any, messages: Messages, new: str, old: str, value: Any, old_value: Any) -> Any:
    """The value of option ``new`` when its former spelling ``old`` (a hidden option) may have been used instead:
    the old one still works for now, with a warning; both at once with different values are refused."""
    if old_value is None:
        return value
    new_opt, old_opt = (max(p.opts, key=len) for n in (new, old) for p in ctx.command.params if p.name == n)
    if given(ctx, new) and value != old_value:
        raise UsageError(f"{old_opt} is the old name of {new_opt}: give one of them")
    messages.info(f"warning: {old_opt} is deprecated; use {new_opt}")
    return old_value
