"""Atomic file outputs: write to a temporary file in the same folder, then rename.

An interrupted run (error, Ctrl-C, kill) leaves the previous file at the path untouched, or no file,
never half of one. The rename is atomic because the temporary file lives on the same file system.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xl.errors import InputError


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


def commit(temp: Path, path: Path) -> None:
    """Move a finished temporary file onto ``path`` (atomic; keeps the umask's permissions)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


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
