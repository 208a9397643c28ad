"""Record streams: plain text (one sentence per line) or JSONL (one object per line).

Row *i* of every output corresponds to record *i* of the input: a blank text line is still a row, and
nothing is dropped or reordered. Lines are split on ``\\n`` only (never on Unicode line separators, which
would shift rows); a trailing ``\\r`` is removed. Decoding errors name the source and the 1-based line.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from xl.errors import InputError
from xl.io.atomic import open_input

InputFormat = Literal["auto", "text", "jsonl"]
DecodeErrors = Literal["strict", "replace"]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_TEXT_SUFFIXES = (".txt", ".text", ".tsv")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    """One input record: its text, the JSON object it came from (JSONL only) and its 1-based line."""

    text: str
    line: int
    obj: dict[str, Any] | None = None


def open_text_input(path: str | Path) -> tuple[BinaryIO, str]:
    """Open a record stream (``-`` is stdin); see :func:`xl.io.atomic.open_input`."""
    stream, name = open_input(
        path, "records", "pass a file (xl embed sentences.txt) or pipe text in (cat sentences.txt | xl embed)"
    )
    return stream, name  # type: ignore[return-value]


def count_lines(path: str | Path) -> int | None:
    """Number of records in a regular file (a last line without newline counts); None for stdin."""
    if str(path) == "-":
        return None
    p = Path(path)
    if not p.is_file():
        return None
    count = 0
    last = b"\n"
    with open(p, "rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (0 if last == b"\n" else 1)


class RecordReader:
    """Iterate over the records of a text or JSONL stream, hashing the bytes read.

    ``input_format`` ``auto`` picks JSONL for ``.jsonl``/``.ndjson``/``.json`` files, text for ``.txt``,
    and otherwise looks at the first line (an object ``{…}`` means JSONL). ``field`` names the text field of
    JSONL records. ``errors="replace"`` turns invalid UTF-8 and NUL bytes into U+FFFD instead of failing.
    After iteration ``sha256`` is the hex digest of the bytes consumed and ``count`` the number of records.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_format: InputFormat = "auto",
        field: str = "text",
        errors: DecodeErrors = "strict",
    ) -> None:
        self.path = path
        self.field = field
        self.errors = errors
        self.stream, self.source = open_text_input(path)
        self.format: Literal["text", "jsonl"] = self._sniff(input_format)
        self.count = 0
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _sniff(self, input_format: InputFormat) -> Literal["text", "jsonl"]:
        if input_format != "auto":
            return input_format
        suffix = Path(str(self.path)).suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return "jsonl"
        if suffix in _TEXT_SUFFIXES:
            return "text"
        peek = getattr(self.stream, "peek", None)
        head = peek(4096) if peek is not None else b""
        first = head.split(b"\n", 1)[0].removeprefix(_BOM).strip()
        if first.startswith(b"{"):
            try:
                if isinstance(orjson.loads(first), dict):
                    return "jsonl"
            except orjson.JSONDecodeError:
                pass
        return "text"

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, raw: bytes, line: int) -> str:
        if b"\x00" in raw:
            if self.errors == "strict":
                raise InputError(
                    "NUL byte in the input (is this a binary file?)",
                    source=self.source,
                    line=line,
                    hint="pass a UTF-8 text or JSONL file; --errors replace turns bad bytes into U+FFFD",
                )
            raw = raw.replace(b"\x00", "\ufffd".encode())
        try:
            return raw.decode("utf-8", errors=self.errors)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"invalid UTF-8 at byte {exc.start + 1} of the line",
                source=self.source,
                line=line,
                hint="convert the file to UTF-8 (iconv -f … -t utf-8), or pass --errors replace",
            ) from None

    def __iter__(self) -> Iterator[Record]:
        update = self._hash.update
        for index, raw_line in enumerate(self.stream, start=1):
            update(raw_line)
            raw = raw_line[:-1] if raw_line.endswith(b"\n") else raw_line
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if index == 1:
                raw = raw.removeprefix(_BOM)
            self.count = index
            if self.format == "text":
                yield Record(self._decode(raw, index), index)
            else:
                yield self._parse_json(raw, index)

    def _parse_json(self, raw: bytes, line: int) -> Record:
        text = self._decode(raw, line)
        if not text.strip():
            raise InputError(
                "blank line in JSONL input",
                source=self.source,
                line=line,
                hint="every line of a JSONL file must be one object; remove blank lines (grep -v '^$')",
            )
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON ({exc})",
                source=self.source,
                line=line,
                hint="pass --input-format text to read lines as plain sentences",
            ) from None
        if not isinstance(obj, dict):
            raise InputError(
                "JSONL record is not an object",
                source=self.source,
                line=line,
                expected='an object like {"text": "…"}',
                found=type(obj).__name__,
                hint="pass --input-format text to read lines as plain sentences",
            )
        value = obj.get(self.field)
        if not isinstance(value, str):
            present = ", ".join(sorted(map(str, obj))) or "none"
            problem = "has no field" if value is None else "has a non-string field"
            raise InputError(
                f"record {problem} {self.field!r}",
                source=self.source,
                line=line,
                found=f"fields {present}",
                hint="--field NAME picks the field that holds the text",
            )
        return Record(value, line, obj)


def sha256_file(path: str | Path) -> str | None:
    """Hex sha256 of a file's bytes (None for stdin, which cannot be read twice)."""
    if str(path) == "-":
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
