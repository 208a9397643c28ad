"""Property-based tests of the record reader (text and JSONL) over generated, often malformed, bytes.

Every input is either read with row *i* = line *i* or refused with an ``XlError``; never another exception.
Derandomized and database-less, so every run (and CI) sees the same examples.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import fuzz_settings
from xl.errors import InputError, XlError
from xl.io.records import DecodeErrors, InputFormat, RecordReader, check_input_format, count_lines

FUZZ = fuzz_settings()

BOM = b"\xef\xbb\xbf"

# Text without line feeds, NULs or surrogates (these cannot be written as UTF-8); a trailing \r is
# kept out of the content because the reader removes it by design.
_line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"),
    max_size=40,
).filter(lambda s: not s.endswith("\r"))

# Pieces that readers trip over, glued together in random order.
_NASTY = [
    b"\n", b"\r\n", b"\r", BOM, b"\x00", b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xb0\x80",
    b"\xf4\x90\x80\x80", b"\xc0\xaf", b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b'"text"', b'"text":',
    b'"\\ud800"', b'"\\udc00"', b'"\\ud83d\\ude00"', b'"\\u0000"', b"null", b"true", b"1e999", b"NaN",
    b"123456789012345678901234567890", b'{"text": "a"}', b'{"text": "a", "text": 1}', b"\xe2\x80\xa8", b"\t",
    b" ", "é".encode(), "한".encode(), b"a,b,c",
]  # fmt: skip
_garbage = st.lists(st.one_of(st.sampled_from(_NASTY), st.binary(max_size=8)), max_size=24).map(b"".join)

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _line_text,
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_line_text, inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_records")


def _read(
    path: Path, input_format: InputFormat = "auto", errors: DecodeErrors = "strict", field: str = "text"
) -> tuple[list[tuple[str, int, object]], RecordReader]:
    with RecordReader(path, input_format=input_format, errors=errors, field=field) as reader:
        return [(r.text, r.line, r.obj) for r in reader], reader


def _expected_text_rows(data: bytes, errors: str) -> list[str]:
    """The documented rules, written out once more: split on \\n, drop one \\r, drop a BOM on line 1."""
    if data == BOM:
        return []  # a byte order mark alone is an empty file
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    rows = []
    for i, raw in enumerate(pieces):
        raw = raw.removesuffix(b"\r")
        if i == 0:
            raw = raw.removeprefix(BOM)
        rows.append(raw.replace(b"\x00", "\ufffd".encode()).decode("utf-8", errors))
    return rows


# --------------------------------------------------------------------------------------- valid input


@FUZZ
@given(
    lines=st.lists(_line_text, max_size=12),
    crlf=st.lists(st.booleans(), min_size=12, max_size=12),
    bom=st.booleans(),
    final_newline=st.booleans(),
    named=st.booleans(),
)
@pytest.mark.slow
def test_valid_text_round_trips(
    folder: Path, lines: list[str], crlf: list[bool], bom: bool, final_newline: bool, named: bool
) -> None:
    ends = ["\r\n" if c else "\n" for c in crlf]
    body = "".join(line + end for line, end in zip(lines, ends, strict=False))
    if lines and not final_newline:
        body = body.removesuffix(ends[len(lines) - 1])
    data = (BOM if bom else b"") + body.encode()
    path = folder / ("in.txt" if named else "in")
    path.write_bytes(data)
    expected = list(lines)
    if expected and not final_newline and expected[-1] == "":
        expected.pop()  # "a\n" + "" is one line: a missing last line is no row
    if expected and not bom:
        expected[0] = expected[0].removeprefix("\ufeff")  # a U+FEFF at the start of line 1 is a BOM
    rows, reader = _read(path, "auto" if named else "text")
    assert [text for text, _, _ in rows] == expected
    assert [line for _, line, _ in rows] == list(range(1, len(expected) + 1))
    assert reader.count == len(expected) == count_lines(path)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


@FUZZ
@given(
    records=st.lists(
        st.tuples(_line_text, st.dictionaries(_line_text.filter(lambda k: k != "text"), _json_value, max_size=3)),
        max_size=8,
    ),
    ascii_escapes=st.booleans(),
    crlf=st.booleans(),
    bom=st.booleans(),
    named=st.booleans(),
)
@pytest.mark.slow
def test_valid_jsonl_round_trips(
    folder: Path,
    records: list[tuple[str, dict[str, object]]],
    ascii_escapes: bool,
    crlf: bool,
    bom: bool,
    named: bool,
) -> None:
    objects = [{"text": text, **extra} for text, extra in records]
    # ensure_ascii writes every non-ASCII character as \\uXXXX escapes (surrogate pairs beyond the BMP).
    dump = (lambda o: json.dumps(o, ensure_ascii=True).encode()) if ascii_escapes else orjson.dumps
    data = (BOM if bom else b"") + b"".join(dump(o) + (b"\r\n" if crlf else b"\n") for o in objects)
    path = folder / ("in.jsonl" if named else "in")
    path.write_bytes(data)
    rows, reader = _read(path)
    if objects:
        assert reader.format == "jsonl"
    assert [text for text, _, _ in rows] == [o["text"] for o in objects]
    assert [obj for _, _, obj in rows] == objects
    assert reader.count == len(objects) and reader.sha256 == hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------- malformed input


@FUZZ
@given(
    data=_garbage,
    input_format=st.sampled_from(["auto", "text", "jsonl"]),
    errors=st.sampled_from(["strict", "replace"]),
)
@pytest.mark.slow
def test_garbage_is_read_consistently_or_refused(
    folder: Path, data: bytes, input_format: InputFormat, errors: DecodeErrors
) -> None:
    path = folder / "garbage"
    path.write_bytes(data)
    try:
        rows, reader = _read(path, input_format, errors)
    except XlError as exc:
        assert isinstance(exc, InputError) and exc.source == str(path)
        if exc.line is not None:
            assert 1 <= exc.line <= max(1, data.count(b"\n") + 1)
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        if errors == "replace" and input_format == "text":
            assert utf16, f"replace mode refused text input: {exc.render()}"
        return
    assert reader.count == len(rows) == count_lines(path)
    assert [line for _, line, _ in rows] == list(range(1, len(rows) + 1))
    if reader.format == "text":
        assert [text for text, _, _ in rows] == _expected_text_rows(data, errors)
        if errors == "strict":
            assert b"\x00" not in data
    else:
        lines = data.split(b"\n")
        for (text, line, obj), raw in zip(rows, lines, strict=False):
            raw = raw.removesuffix(b"\r").removeprefix(BOM if line == 1 else b"")
            decoded = raw.replace(b"\x00", "\ufffd".encode()).decode("utf-8", errors)
            assert obj == orjson.loads(decoded) and isinstance(obj, dict) and obj["text"] == text
    assert reader.sha256 == hashlib.sha256(data).hexdigest()


@FUZZ
@given(
    value=_json_value,
    field=st.sampled_from(["text", "sentence"]),
)
@pytest.mark.slow
def test_jsonl_field_of_any_type_is_read_or_refused_naming_the_line(folder: Path, value: object, field: str) -> None:
    path = folder / "fields.jsonl"
    path.write_bytes(b'{"text": "fine", "sentence": "fine"}\n' + orjson.dumps({field: value}) + b"\n")
    try:
        rows, _ = _read(path)
    except InputError as exc:
        assert exc.line == 2 and not (field == "text" and isinstance(value, str))
        assert "'text'" in exc.message and "--field" in (exc.hint or "")
        return
    assert field == "text" and isinstance(value, str) and rows[1][0] == value


# --------------------------------------------------------------------------------- chosen cases


def test_surrogates_as_bytes_are_invalid_utf8_and_replace_gives_u_fffd(folder: Path) -> None:
    path = folder / "surrogate.txt"
    path.write_bytes(b"ok\nbad \xed\xa0\x80 here\n")
    with pytest.raises(InputError, match="invalid UTF-8") as info:
        _read(path)
    assert info.value.line == 2
    rows, _ = _read(path, errors="replace")
    assert rows[1][0] == "bad \ufffd\ufffd\ufffd here"


@pytest.mark.parametrize("errors", ["strict", "replace"])
@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\udc00\\ud800", b"x\\ud83d"])
def test_lone_surrogate_escapes_in_json_are_refused(folder: Path, escape: bytes, errors: DecodeErrors) -> None:
    path = folder / "surrogate.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "' + escape + b'"}\n')
    with pytest.raises(InputError, match="surrogate") as info:
        _read(path, errors=errors)
    assert info.value.line == 2 and "surrogate" in (info.value.hint or "")


def test_a_surrogate_pair_escape_is_one_character(folder: Path) -> None:
    path = folder / "pair.jsonl"
    path.write_bytes(b'{"text": "\\ud83d\\ude00"}\n')
    assert _read(path)[0][0][0] == "\U0001f600"


def test_duplicate_keys_keep_the_last_value_like_json_loads(folder: Path) -> None:
    line = b'{"text": "first", "id": 1, "text": "last", "id": 2}'
    path = folder / "dup.jsonl"
    path.write_bytes(line + b"\n")
    rows, _ = _read(path)
    assert rows[0][0] == "last" and rows[0][2] == json.loads(line) == {"text": "last", "id": 2}
    path.write_bytes(b'{"text": "a", "text": 3}\n')
    with pytest.raises(InputError, match="non-string"):
        _read(path)


def test_null_field_is_named_as_null(folder: Path) -> None:
    path = folder / "null.jsonl"
    path.write_bytes(b'{"text": null}\n')
    with pytest.raises(InputError, match="null field 'text'"):
        _read(path)


def test_nul_bytes_and_json_escaped_nul(folder: Path) -> None:
    path = folder / "nul"
    path.write_bytes(b"a\x00b\n")
    with pytest.raises(InputError, match="NUL"):
        _read(path)
    assert _read(path, errors="replace")[0][0][0] == "a\ufffdb"
    path.write_bytes(b'{"text": "a\\u0000b"}\n')  # an escaped NUL is content the JSON asked for
    assert _read(path)[0][0][0] == "a\x00b"


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_utf16_is_refused_with_an_iconv_hint(folder: Path, bom: bytes, errors: DecodeErrors) -> None:
    path = folder / "utf16.txt"
    path.write_bytes(bom + "hi\n".encode("utf-16-le" if bom == b"\xff\xfe" else "utf-16-be"))
    with pytest.raises(InputError, match="UTF-16") as info:
        _read(path, errors=errors)
    assert "iconv" in (info.value.hint or "")


def test_very_long_lines(folder: Path) -> None:
    long_text = "Wörter " * 600_000  # 4.8 MB of UTF-8 on one line
    path = folder / "long"
    path.write_bytes(orjson.dumps({"text": long_text}) + b"\n" + orjson.dumps({"text": "short"}) + b"\n")
    rows, reader = _read(path)  # no suffix: the whole first line is sniffed, not a peek of it
    assert reader.format == "jsonl" and [r[0] for r in rows] == [long_text, "short"]
    path.write_bytes(b"short\n" + long_text.encode() + b"\r\n")
    rows, reader = _read(path)
    assert reader.format == "text" and [r[0] for r in rows] == ["short", long_text]


@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_bad_first_jsonl_record_is_refused_not_read_as_text(folder: Path, errors: DecodeErrors) -> None:
    path = folder / "records"
    path.write_bytes(b'{"text": "caf\xe9"}\n{"text": "ok"}\n')
    if errors == "strict":
        with pytest.raises(InputError, match="UTF-8") as info:
            _read(path, errors=errors)
        assert info.value.line == 1
    else:
        rows, reader = _read(path, errors=errors)
        assert reader.format == "jsonl" and [r[0] for r in rows] == ["caf\ufffd", "ok"]
    path.write_bytes(b'{"text": "\\ud800"}\n')
    with pytest.raises(InputError, match="invalid JSON") as info:
        _read(path, errors=errors)
    assert info.value.line == 1


def test_text_lines_with_braces_stay_text(folder: Path) -> None:
    path = folder / "braces"
    path.write_bytes(b"{not json}\n{\n{ and more\n")
    rows, reader = _read(path)
    assert reader.format == "text" and [r[0] for r in rows] == ["{not json}", "{", "{ and more"]


def test_a_csv_is_a_table_whose_field_is_a_column_unless_text_is_forced(folder: Path) -> None:
    path = folder / "data.csv"
    path.write_bytes(b'id,sentence\n1,"Hallo, Welt"\n2,zwei\n')
    RecordReader(path).close()  # opening alone reads nothing
    rows, reader = _read(path, field="sentence")
    assert reader.format == "csv" and [r[0] for r in rows] == ["Hallo, Welt", "zwei"]
    with pytest.raises(InputError, match="no column 'text'") as info:
        _read(path)
    assert info.value.found == "columns id, sentence" and "--field" in (info.value.hint or "")
    rows, _ = _read(path, input_format="text")
    assert [r[0] for r in rows] == ["id,sentence", '1,"Hallo, Welt"', "2,zwei"]
    path.write_bytes(b'{"text": "x"}\n')
    assert _read(path, input_format="jsonl")[0][0][0] == "x"
    with pytest.raises(InputError, match="stdin is not read as csv"):
        check_input_format("-", "csv")


def test_opening_stdin_consumes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'{"text": "one"}\n{"text": "two"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    RecordReader("-").close()
    with RecordReader("-") as reader:
        assert [r.text for r in reader] == ["one", "two"] and reader.format == "jsonl"


def test_second_iteration_goes_on_numbering(folder: Path) -> None:
    path = folder / "two.txt"
    path.write_bytes(b"a\nb\nc\n")
    with RecordReader(path) as reader:
        first = next(iter(reader))
        rest = list(reader)
    assert (first.text, first.line) == ("a", 1) and [(r.text, r.line) for r in rest] == [("b", 2), ("c", 3)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_input_error(folder: Path) -> None:
    path = folder / "secret.txt"
    path.write_bytes(b"x\n")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="cannot open"):
            RecordReader(path)
    finally:
        path.chmod(0o600)
