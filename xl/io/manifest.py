"""Manifests: ``<file>.json`` beside every matrix or model xl writes, saying how it was made.

A manifest is a flat-ish JSON object (model id and fingerprint, layer, pooling, prefix, max length,
dtype, normalisation, rows, input sha256, truncated count, xl version, command line, ...). Readers use it
to refuse nonsense, e.g. a projection fitted on another model or layer.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from pathlib import Path
from typing import Any

import orjson

import xl
from xl.errors import ManifestError
from xl.io.atomic import OutputTarget, atomic_write, temp_path_beside

MANIFEST_SUFFIX = ".json"


def manifest_path(path: str | Path) -> Path:
    """``out.npy`` -> ``out.npy.json``."""
    p = Path(path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def base_manifest(kind: str) -> dict[str, Any]:
    """Fields every manifest carries: what kind of file, xl version, command line, creation time (UTC)."""
    return {
        "kind": kind,
        "xl_version": xl.__version__,
        "command": shlex.join(["xl", *sys.argv[1:]]) if sys.argv else "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes of a manifest file (indented JSON, a final newline)."""
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` atomically beside ``path``; return the manifest's path."""
    target = manifest_path(path)
    with atomic_write(target) as handle:
        handle.write(manifest_bytes(manifest))
    return target


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest beside ``path``, or None when there is none (stdin, or a file made elsewhere)."""
    if str(path) == "-":
        return None
    target = manifest_path(path)
    if not target.is_file():
        return None
    try:
        value = orjson.loads(target.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(
            f"manifest is not valid JSON ({exc})",
            source=str(target),
            hint="delete it, or regenerate the file it describes",
        ) from None
    if not isinstance(value, dict):
        raise ManifestError("manifest is not a JSON object", source=str(target))
    return value


def commit_with_manifest(out: OutputTarget, manifest: dict[str, Any] | None) -> None:
    """Finish ``out`` and put ``manifest`` beside the file it lands in (if any).

    For ``-o PATH`` the manifest is written to a temporary file first and both are renamed into place under
    one folder lock, so two runs writing the same ``-o`` leave one output with its own manifest."""
    final = out.final
    if out.mode == "file" and final is not None and manifest is not None:
        side = manifest_path(final)
        temp = temp_path_beside(side)
        try:
            with open(temp, "wb") as handle:
                handle.write(manifest_bytes(manifest))
            out.commit(companions=((temp, side),))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return
    out.commit()
    if final is not None and manifest is not None:
        write_manifest(final, manifest)
