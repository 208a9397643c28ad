"""Record streams: plain text (one sentence per line) or JSONL (one object per line).

Row *i* of every output corresponds to record *i* of the input: a blank text line is still a row, and
nothing is dropped or reordered. Lines are split on ``\\n`` only (never on Unicode line separators, which
would shift rows); a trailing ``\\r`` is removed, and so is a UTF-8 byte order mark at the start of line 1.
Decoding errors name the source and the 1-based line.

What is refused, with an :class:`~xl.errors.InputError` naming the line:

- invalid UTF-8, including surrogates encoded as bytes (``ed a0 80``), and NUL bytes; ``errors="replace"``
  turns both into U+FFFD instead (one per maximal invalid byte sequence, as Python's decoder does);
- UTF-16 input (its byte order mark on line 1), in both error modes: it would decode to garbage;
- in JSONL, a lone surrogate escape such as ``"\\ud800"`` (orjson refuses it; a Python ``str`` holding one
  could not be encoded again for the tokenizer), in both error modes; a line that is blank, not JSON or
  not an object; a text field that is missing, null or not a string;
- in a table (CSV, Parquet, a ``datasets`` folder; TSV when asked for: ``.tsv`` stays text under ``auto``), a
  text column that is missing (the columns present are listed) or a cell that is not text.

Tables are read whole (:mod:`xl.io.tables`), one record a row, ``field`` naming the column (a number for a
CSV/TSV without a header row); a record's ``line`` is then its row number.

Duplicate keys in a JSON object are not an error: the last one wins, as in ``json.loads``, ``JSON.parse``
and ``jq`` (RFC 8259 leaves it to the parser; orjson keeps the last). Integers outside
[-2**63, 2**64 - 1] become floats (orjson); fields the reader does not use are kept as parsed.
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
from xl.io.atomic import is_regular_file, open_input, refuse_terminal_stdin

InputFormat = Literal["auto", "text", "jsonl", "csv", "tsv", "parquet", "hf-dataset"]
#: the formats read as tables (:mod:`xl.io.tables`): ``--field`` names the column of the text
TABLE_INPUTS = ("csv", "tsv", "parquet", "hf-dataset")
DecodeErrors = Literal["strict", "replace"]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_TEXT_SUFFIXES = (".txt", ".text", ".tsv")
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Record:
    """One input record: its text, the JSON object it came from (JSONL only) and its 1-based line."""

    text: str
    line: int
    obj: dict[str, Any] | None = None


#: The hint of a record input that cannot be read (a terminal on stdin).
RECORDS_HINT = "pass a file (xl embed sentences.txt) or pipe text in (cat sentences.txt | xl embed)"


def open_text_input(path: str | Path) -> tuple[BinaryIO, str]:
    """Open a record stream (``-`` is stdin); see :func:`xl.io.atomic.open_input`."""
    try:
        stream, name = open_input(path, "records", RECORDS_HINT)
    except OSError as exc:
        raise InputError(f"cannot open the input ({exc.strerror or exc})", source=str(path)) from None
    return stream, name  # type: ignore[return-value]


def table_input(path: str | Path, input_format: InputFormat = "auto") -> str | None:
    """The table format an input is read as (``input_format``, or under ``auto`` its name; see
    :func:`xl.io.tables.table_format`, except that ``.tsv`` stays text), or None for text and JSONL."""
    from xl.io.tables import table_format

    if input_format in TABLE_INPUTS:
        return input_format
    if input_format != "auto":
        return None
    fmt = table_format(str(path))
    return None if fmt == "tsv" else fmt


def count_records(path: str | Path, input_format: InputFormat = "auto", field: str = "text") -> int | None:
    """Number of records of an input: a table's rows, else a file's lines (:func:`count_lines`); None for stdin."""
    if table_input(path, input_format) is not None:
        with RecordReader(path, input_format=input_format, field=field) as reader:
            return len(reader.table_records())
    return count_lines(path)


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
        head = handle.read(len(_BOM) + 1)
        if head == _BOM:
            return 0  # a byte order mark alone is an empty file, as the reader sees it
        handle.seek(0)
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (0 if last == b"\n" else 1)


def check_input_format(path: str | Path, input_format: InputFormat = "auto") -> None:
    """Refuse, from its name alone (nothing is opened), an input that cannot be read as asked: a table format
    for stdin, which is not read as a table. Callers can run this before loading a model."""
    if str(path) == "-" and input_format in TABLE_INPUTS:
        raise InputError(f"stdin is not read as {input_format}", source="<stdin>",
                         hint="give the table as a file (or a datasets folder)")  # fmt: skip


def check_records(
    path: str | Path, *, input_format: InputFormat = "auto", field: str = "text", errors: DecodeErrors = "strict"
) -> None:
    """Read a regular file to its end and raise the :class:`~xl.errors.InputError` that reading its records
    for real would raise (invalid UTF-8, a NUL byte, bad JSON, a missing field; with its line number), so that
    a command finds a bad line before it loads a model rather than hours into a run. Stdin, a FIFO or a
    process substitution is left unread (read once, as it streams). Text is checked in 4 MiB blocks (about
    half a second per 100 MB here); a file that fails is read again line by line, for the line number. JSONL
    is parsed line by line (about 5 s per million records). A terminal on stdin (``-``) is refused now too, not
    after the model has loaded."""
    if str(path) == "-":
        refuse_terminal_stdin("records", RECORDS_HINT)
        return
    if table_input(path, input_format) is not None:
        with RecordReader(path, input_format=input_format, field=field, errors=errors) as reader:
            reader.table_records()
        return
    if not is_regular_file(path):
        return
    with RecordReader(path, input_format=input_format, field=field, errors=errors) as reader:
        if reader.format == "text":
            if errors == "replace" or _text_is_clean(Path(path)):
                return
        for _ in reader:
            pass


def _text_is_clean(path: Path) -> bool:
    """Whether a whole file is UTF-8 without NUL bytes (then every line of it reads as text)."""
    rest = b""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            block = rest + block
            cut = block.rfind(b"\n") + 1  # whole lines only: a block may end inside a character
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            if not _clean(block[:cut]):
                return False
    return _clean(rest)


def _clean(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _looks_like_object(line: bytes) -> bool:
    """Whether a first line (BOM, line end and outer spaces removed) is meant as a JSON object."""
    if not line.startswith(b"{"):
        return False
    if line.endswith(b"}") and line[1:].lstrip().startswith((b'"', b"}")):
        return True  # {"…": …}: JSONL even if it does not parse (the reader then says why)
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


class RecordReader:
    """Iterate over the records of a text or JSONL stream, hashing the bytes read.

    ``input_format`` ``auto`` picks JSONL for ``.jsonl``/``.ndjson``/``.json`` files, text for ``.txt``,
    refuses ``.csv``, and otherwise looks at the whole first line (an object ``{"…": …}`` means JSONL).
    The format is decided when ``format`` is first read or iteration starts, so opening a reader (to check
    that the input exists) consumes nothing, not even from stdin. ``field`` names the text field of
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
        self._table = table_input(path, input_format)
        if self._table is None:
            self.stream, self.source = open_text_input(path)
        else:  # read whole when iterated (a datasets folder is no stream)
            self.stream, self.source = None, str(path)  # type: ignore[assignment]
        self.count = 0
        self._hash = hashlib.sha256()
        self._table_sha: str | None = None
        self._rows: list[Record] | None = None
        self._input_format: InputFormat = input_format
        self._format: str | None = self._table
        self._pending: bytes | None = None  # the first line, read to sniff the format

    @property
    def sha256(self) -> str:
        return self._table_sha if self._table_sha is not None else self._hash.hexdigest()

    @property
    def format(self) -> str:
        """``text``, ``jsonl`` or a table format: as given, or sniffed (which may raise
        :class:`~xl.errors.InputError`)."""
        if self._format is None:
            self._format = self._sniff(self._input_format)
        return self._format

    def table_records(self) -> list[Record]:
        """A table's records (read once): ``text`` from the ``field`` column, ``obj`` the row, ``line`` its number."""
        from xl.io.tables import read_table

        if self._rows is None:
            assert self._table is not None
            hint = "--field names the column that holds the text (a number for a file without a header row)"
            rows, _, self._table_sha = read_table(str(self.path), self._table, {"text": self.field},  # type: ignore[arg-type]
                                                  hint=hint)  # fmt: skip
            records = []
            for n, row in enumerate(rows, 1):
                value = row.get("text")
                if not isinstance(value, str):
                    problem = "empty" if value is None else "not text"
                    raise InputError(f"row {n}: the column {self.field!r} is {problem}",
                                     source=self.source, expected="a string",
                                     found="nothing" if value is None else type(value).__name__,
                                     hint="--field names the column that holds the text")  # fmt: skip
                records.append(Record(value, n, {self.field: value, **{k: v for k, v in row.items() if k != "text"}}))
            self._rows = records
        return self._rows

    def _sniff(self, input_format: InputFormat) -> str:
        if input_format != "auto":
            return input_format
        suffix = Path(str(self.path)).suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return "jsonl"
        if suffix in _TEXT_SUFFIXES:
            return "text"
        # The whole first line, however long: a JSONL record can be longer than any peek buffer.
        self._pending = self._readline()
        first = self._pending.removeprefix(_BOM).rstrip(b"\r\n").strip()
        return "jsonl" if _looks_like_object(first) else "text"

    def _readline(self) -> bytes:
        try:
            return self.stream.readline()
        except OSError as exc:
            raise self._read_error(exc) from None

    def _read_error(self, exc: OSError) -> InputError:
        return InputError(f"cannot read the input ({exc.strerror or exc})", source=self.source, line=self.count + 1)

    def close(self) -> None:
        if self.stream is not None and self.stream is not sys.stdin.buffer:
            self.stream.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, raw: bytes, line: int) -> str:
        if line == 1 and raw.startswith(_UTF16_BOMS):
            raise InputError(
                "UTF-16 input (byte order mark on line 1)",
                source=self.source,
                line=line,
                expected="UTF-8",
                hint="convert the file to UTF-8 first: iconv -f utf-16 -t utf-8",
            )
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

    def _lines(self) -> Iterator[bytes]:
        if self._pending is not None:
            first, self._pending = self._pending, None
            if first:
                yield first
        while True:
            try:
                raw_line = self.stream.readline()
            except OSError as exc:
                raise self._read_error(exc) from None
            if not raw_line:
                return
            yield raw_line

    def __iter__(self) -> Iterator[Record]:
        if self._table is not None:
            records = self.table_records()
            for record in records[self.count :]:  # a second iteration goes on where the first stopped
                self.count = record.line
                yield record
            return
        text = self.format == "text"
        update = self._hash.update
        # A second iteration goes on where the first stopped, with the line numbers going on too.
        for index, raw_line in enumerate(self._lines(), start=self.count + 1):
            update(raw_line)
            if index == 1 and raw_line == _BOM:
                return  # a byte order mark alone is an empty file, not one blank line
            raw = raw_line[:-1] if raw_line.endswith(b"\n") else raw_line
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if index == 1:
                raw = raw.removeprefix(_BOM)
            self.count = index
            if text:
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
            surrogate = "surrogate" in str(exc)
            raise InputError(
                f"invalid JSON ({exc})",
                source=self.source,
                line=line,
                hint="a lone UTF-16 surrogate escape (\\ud800 … \\udfff) is not text; fix the producer"
                if surrogate
                else "pass --input-format text to read lines as plain sentences",
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
            if self.field not in obj:
                problem = "has no field"
            elif value is None:
                problem = "has a null field"
            else:
                problem = "has a non-string field"
            raise InputError(
                f"record {problem} {self.field!r}",
                source=self.source,
                line=line,
                expected="a string",
                found=f"fields {present}" if self.field not in obj else type(value).__name__,
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
