"""Errors raised by the xl library and rendered by the CLI.

The library raises; only ``xl.cli`` turns these into one line on stderr and an exit code.
Every error carries where it happened (``source``, ``line``), what was expected and found,
and a ``hint`` that says how to fix it.
"""

from __future__ import annotations


class XlError(Exception):
    """Base class of every expected failure. ``exit_code`` 1 = bad data/model/I-O, 2 = usage."""

    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.expected = expected
        self.found = found
        self.hint = hint

    def render(self) -> str:
        """One line: ``source:line: message (expected …, found …)``."""
        where = ""
        if self.source is not None:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
            where += ": "
        detail = ""
        if self.expected is not None or self.found is not None:
            parts = []
            if self.expected is not None:
                parts.append(f"expected {self.expected}")
            if self.found is not None:
                parts.append(f"found {self.found}")
            detail = " (" + ", ".join(parts) + ")"
        return f"{where}{self.message}{detail}"


class UsageError(XlError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class InputError(XlError):
    """A record or file that cannot be read as the expected format."""


class ShapeError(XlError):
    """Matrices whose shapes do not fit together."""


class ModelError(XlError):
    """A model that cannot be found, built or loaded."""


class OutputError(XlError):
    """An output that could not be written in full (disk full, file-size limit, read-only, gone)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: cleanup runs as for Ctrl-C; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name


class ManifestError(XlError):
    """A manifest that is missing, unreadable, or disagrees with how an input was made."""


def failure_reason(exc: object) -> str:
    """A one-line reason for a failed run (for the error frame of a stream, or the end of a JSONL output)."""
    if isinstance(exc, XlError):
        return exc.render()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
