"""JSONL outputs: each input record with fields added (e.g. ``"embedding"``), one object per line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from xl.io.atomic import OutputTarget
from xl.io.manifest import write_manifest

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def dumps_line(obj: Any) -> bytes:
    """One JSON line (numpy arrays and scalars serialised natively)."""
    return orjson.dumps(obj, option=_OPTIONS)


class JsonlWriter:
    """Write JSON lines to stdout or atomically to a file (temp file beside it, renamed on close)."""

    def __init__(self, target: str | Path, manifest: dict[str, Any] | None = None) -> None:
        self.rows = 0
        self.manifest = manifest
        self._closed = False
        self._out = OutputTarget(target)
        self._handle = self._out.handle

    def write_objects(self, objects: list[dict[str, Any]]) -> None:
        self._handle.write(b"".join(dumps_line(obj) for obj in objects))
        self.rows += len(objects)

    def write_embeddings(
        self, objects: list[dict[str, Any]], rows: NDArray[np.float32], key: str = "embedding"
    ) -> None:
        """Write each object with ``key`` set to its row of ``rows``."""
        self.write_objects([{**obj, key: row} for obj, row in zip(objects, rows, strict=True)])

    def close(self, manifest_extra: dict[str, Any] | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.commit()
        if self._out.final is not None and self.manifest is not None:
            write_manifest(self._out.final, {**self.manifest, **(manifest_extra or {}), "rows": self.rows})

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.abort()
