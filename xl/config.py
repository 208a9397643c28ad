"""Where xl finds its data and keeps its models: one setting each.

``XL_DATA`` (default ``../shared/data`` relative to the working directory, then relative to the
repository) points at the benchmark data; ``XL_HOME`` (default ``~/.cache/xl``) holds built models.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data root: ``$XL_DATA``, else ``../shared/data`` next to the working directory or the repo."""
    env = os.environ.get("XL_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def home_dir() -> Path:
    """The xl home: ``$XL_HOME``, else ``~/.cache/xl``."""
    env = os.environ.get("XL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xl"
