"""Opening inputs and atomic file outputs.

Inputs: a path or ``-`` for stdin; a terminal on stdin is refused with a usage hint (nothing would ever
arrive), a missing file or a directory is a data error naming the path.

Atomic outputs: write to a temporary file in the same folder, then rename.

An interrupted run (error, Ctrl-C, kill) leaves the previous file at the path untouched, or no file,
never half of one. The rename is atomic because the temporary file lives on the same file system.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xl.errors import InputError, UsageError


def open_input(path: str | Path, what: str, example: str) -> tuple[IO[bytes], str]:
    """Open ``path`` (``-`` is stdin) for binary reading; return (stream, name for messages).

    ``what`` names the content in messages ("records", "a matrix"); ``example`` is a usage hint.
    """
    if str(path) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"refusing to read {what} from a terminal", hint=example)
        return sys.stdin.buffer, "<stdin>"
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", source=str(p), hint="check the path, or use - for stdin")
    if p.is_dir():
        raise InputError(f"is a directory, not a file of {what}", source=str(p))
    return open(p, "rb"), str(p)


def temp_path_beside(path: Path) -> Path:
    """Create an empty temporary file next to ``path`` and return its path (hidden, same folder)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(
            "output folder does not exist",
            source=str(path),
            hint=f"create it first: mkdir -p {folder}",
        )
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(name)


def temp_dir_beside(path: Path) -> Path:
    """Create an empty hidden temporary directory next to ``path`` (same file system: renames are atomic)."""
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder))


def commit(temp: Path, path: Path) -> None:
    """Move a finished temporary file onto ``path`` (atomic; keeps the umask's permissions)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


class OutputTarget:
    """Where an output goes: stdout (``-``), or a temporary file beside ``target`` renamed onto it at
    :meth:`commit`. :meth:`abort` drops the temporary file and leaves a previous file untouched."""

    def __init__(self, target: str | Path) -> None:
        self.temp: Path | None = None
        self.final: Path | None = None
        if str(target) == "-":
            sys.stdout.flush()
            self.handle: IO[bytes] = sys.stdout.buffer
            self.handle.flush()
        else:
            self.final = Path(target)
            self.temp = temp_path_beside(self.final)
            self.handle = open(self.temp, "wb")

    def commit(self) -> None:
        self.handle.flush()
        if self.temp is not None and self.final is not None:
            self.handle.close()
            commit(self.temp, self.final)

    def abort(self) -> None:
        if self.temp is not None:
            self.handle.close()
            self.temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success only."""
    target = Path(path)
    temp = temp_path_beside(target)
    try:
        with open(temp, mode) as handle:
            yield handle
        commit(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
