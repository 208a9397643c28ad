"""Record streams: text and JSONL, row alignment, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from xl.errors import InputError
from xl.io.records import RecordReader, count_lines


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
