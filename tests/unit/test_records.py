"""Record streams: text and JSONL, row alignment, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from xl.errors import InputError
from xl.io.records import RecordReader, _text_is_clean, check_records, count_lines


def _texts(path: Path, **kwargs: object) -> list[str]:
    with RecordReader(path, **kwargs) as reader:  # type: ignore[arg-type]
        return [r.text for r in reader]


def test_every_line_is_a_row_even_blank_ones(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\r\n\nthird \xe2\x80\xa8 same line\nlast without newline")
    assert _texts(path) == ["first", "", "third \u2028 same line", "last without newline"]
    assert count_lines(path) == 4


def test_byte_order_mark_is_dropped_and_hash_covers_the_input(tmp_path: Path) -> None:
    import hashlib

    data = b"\xef\xbb\xbfhello\nworld\n"
    path = tmp_path / "bom.txt"
    path.write_bytes(data)
    with RecordReader(path) as reader:
        assert [r.text for r in reader] == ["hello", "world"]
        assert reader.sha256 == hashlib.sha256(data).hexdigest() and reader.count == 2


def test_jsonl_is_sniffed_and_field_is_picked(tmp_path: Path) -> None:
    path = tmp_path / "in"
    path.write_bytes(b'{"id": 1, "sentence": "a"}\n{"id": 2, "sentence": "b"}\n')
    with RecordReader(path, field="sentence") as reader:
        records = list(reader)
    assert reader.format == "jsonl"
    assert [r.text for r in records] == ["a", "b"] and records[1].obj == {"id": 2, "sentence": "b"}


def test_text_that_looks_like_braces_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "in"
    path.write_text("{not json\nsecond\n")
    assert _texts(path) == ["{not json", "second"]


def test_invalid_utf8_names_the_line_and_replace_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\nalso ok\nbad \xff byte\n")
    with pytest.raises(InputError) as info:
        _texts(path)
    assert info.value.line == 3 and "UTF-8" in info.value.message and "--errors replace" in (info.value.hint or "")
    assert _texts(path, errors="replace")[2] == "bad \ufffd byte"


def test_nul_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nul.txt"
    path.write_bytes(b"fine\nbin\x00ary\n")
    with pytest.raises(InputError, match="NUL") as info:
        _texts(path)
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [(b"[1, 2]", "not an object"), (b'{"txt": "x"}', "no field 'text'"), (b'{"text": 3}', "non-string"),
     (b"{broken", "invalid JSON"), (b"", "blank line")],
)  # fmt: skip
def test_jsonl_errors_name_the_line_and_hint(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps({"text": "ok"}) + b"\n" + line + b"\n" + orjson.dumps({"text": "z"}) + b"\n")
    with pytest.raises(InputError, match=message) as info:
        _texts(path)
    assert info.value.line == 2 and info.value.source == str(path)
    rendered = info.value.render()
    assert rendered.startswith(f"{path}:2: ")


def test_missing_field_hint_lists_fields(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"sentence": "x", "id": 1}\n')
    with pytest.raises(InputError) as info:
        _texts(path)
    assert "--field" in (info.value.hint or "") and "sentence" in (info.value.found or "")


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        RecordReader("/nonexistent/file.txt")


def test_a_file_is_checked_to_its_end_as_the_reader_would_read_it(tmp_path: Path) -> None:
    # 4 MiB blocks: put a multi-byte character across the first block boundary (valid: must pass) and a bad
    # byte well into the second block (must name its line, as the reader does)
    line = "ü" * 99 + "\n"  # 199 bytes
    head = line * ((1 << 22) // len(line.encode()))
    filler = "a" * ((1 << 22) - len(head.encode()) - 1)
    good = (head + filler + "ü\n" + line * 10).encode()
    at = len(head.encode()) + len(filler)
    assert good[at : at + 2] == "ü".encode() and at < 1 << 22 < at + 2  # the ü straddles the boundary
    path = tmp_path / "big.txt"
    path.write_bytes(good)
    assert _text_is_clean(path)  # the fast path itself, not its line-by-line fallback, accepts the file
    check_records(path)
    path.write_bytes(good + b"bad \xff here\n")
    lines = good.count(b"\n")
    with pytest.raises(InputError) as bad:
        check_records(path)
    with pytest.raises(InputError) as read:
        list(RecordReader(path))
    assert bad.value.line == read.value.line == lines + 1 and str(bad.value) == str(read.value)
    check_records(path, errors="replace")  # what the reader accepts, the check accepts
    path.write_bytes(b"ok\nnul \x00 byte\n")
    with pytest.raises(InputError, match="NUL") as nul:
        check_records(path)
    assert nul.value.line == 2
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(b'{"text": "a"}\n{"other": "b"}\n')
    with pytest.raises(InputError, match="no field 'text'") as field:
        check_records(jsonl)
    assert field.value.line == 2
    with pytest.raises(InputError):
        check_records(jsonl, field="other")


def test_a_stream_is_left_unread_by_the_check(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    check_records(fifo)  # would block if it opened the FIFO
    check_records("-")
