"""JSONL outputs: each input record with fields added (e.g. ``"embedding"``), one object per line.

Outputs go through :class:`xl.io.atomic.OutputTarget`: atomic for ``-o``, truncated back on failure for a
regular-file stdout, and ended with an invalid (unterminated) last line on a pipe when a run fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from xl.io.atomic import OutputTarget
from xl.io.manifest import commit_with_manifest, manifest_path

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def dumps_line(obj: Any) -> bytes:
    """One JSON line (numpy arrays and scalars serialised natively)."""
    return orjson.dumps(obj, option=_OPTIONS)


class JsonlWriter:
    """Write JSON lines to stdout or atomically to a file (temp file beside it, renamed on close), with an
    optional manifest beside a file (renamed into place together with it)."""

    def __init__(self, target: str | Path, manifest: dict[str, Any] | None = None) -> None:
        self.rows = 0
        self.manifest = manifest
        self._closed = False
        self._out = OutputTarget(target, kind="jsonl")
        if manifest is not None and self._out.mode == "stdout-file" and self._out.final and self._out.start == 0:
            manifest_path(self._out.final).unlink(missing_ok=True)  # it described lines the shell removed

    @property
    def path(self) -> Path | None:
        return self._out.final

    def write_objects(self, objects: list[dict[str, Any]]) -> None:
        self._out.write(b"".join(dumps_line(obj) for obj in objects))
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
        try:
            self._finish(manifest_extra or {})
        except BaseException:
            self._out.abort("could not finish the output")
            raise

    def _finish(self, extra: dict[str, Any]) -> None:
        manifest = None if self.manifest is None else {**self.manifest, **extra, "rows": self.rows}
        commit_with_manifest(self._out, manifest)

    def abort(self, reason: str = "the run failed") -> None:
        if self._closed:
            return
        self._closed = True
        self._out.abort(reason)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
