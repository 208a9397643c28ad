"""Property-based tests of the task-schema validators over generated records and task files.

Valid records pass unchanged; a record with one bad field raises ``RecordError`` naming its number and
that field; garbage of any shape is refused with an ``XlError``, never another exception.
Derandomized and database-less, so every run (and CI) sees the same examples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import fuzz_settings
from xl.errors import UsageError, XlError
from xl.tasks.schemas import TASK_FIELDS, RecordError, detect_schema, read_task_file, validate_records

FUZZ = fuzz_settings(150)

TEXT_FIELDS = {"text", "text1", "text2", "question", "context"}
INT_LABELS = (0, 1, 2)
STR_LABELS = ("entailment", "neutral", "contradiction")

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)

# Values that no schema field accepts as they are, or only some: wrong types, NaN/Inf, huge ints,
# booleans, nested garbage (deeper than orjson writes), non-string keys, odd Python objects.
_deep: list[Any] = ["deep"]
for _ in range(300):  # deeper than orjson writes (254)
    _deep = [_deep]
_writable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64, -(2**63) - 1, 10**400, 0, 1, 5, 6, -1]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5.0000001, 4.9999999, 1e308]),
    _text,
    st.sampled_from(["", "1", "-1", "--1", "²", "١", "٣", "9" * 5000, "entailment", "\ud800", "\x00"]),
    st.just(_deep),
    st.builds(lambda n: [n] * 10_000, st.integers(0, 3)),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.sampled_from([(1, 2), {1, 2}, b"bytes", object()]),
)
# An int too long for str() cannot be written to a file, nor described by a sampled_from.
_weird = st.one_of(_writable, st.builds(lambda: -(10**5000)))


def _nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(_text, st.integers()), inner, max_size=3),
        max_leaves=6,
    )


_garbage = _nested(_weird)
_file_garbage = _nested(_writable)


@st.composite
def _qa_record(draw: st.DrawFn, qid: str) -> dict[str, Any]:
    context = draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
    spans = draw(st.lists(st.tuples(st.integers(0, len(context) - 1), st.integers(1, 10)), min_size=1, max_size=3))
    starts = [start for start, _ in spans]
    texts = [context[start : start + width] for start, width in spans]
    return {"id": qid, "context": context, "question": draw(_text), "answers": {"text": texts, "answer_start": starts}}


@st.composite
def _valid_records(draw: st.DrawFn, task: str, labels: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 5))
    kind = draw(st.sampled_from([INT_LABELS, STR_LABELS])) if labels is None else labels
    records: list[dict[str, Any]] = []
    for i in range(n):
        if task == "sts":
            score = draw(st.one_of(st.floats(0.0, 5.0), st.integers(0, 5)))
            record: dict[str, Any] = {"text1": draw(_text), "text2": draw(_text), "score": score}
        elif task == "qa":
            record = draw(_qa_record(f"q{i}"))
        elif task == "align":
            record = {"text1": draw(_text.filter(str.strip)), "text2": draw(_text.filter(str.strip))}
        else:
            record = {"text": draw(_text)} if task == "classification" else {"text1": draw(_text), "text2": draw(_text)}
            record["label"] = draw(st.sampled_from(kind))
        if draw(st.booleans()):
            record["lang"] = draw(st.sampled_from(["de", "en-ar", ""]))
        if draw(st.booleans()):
            record["extra"] = draw(st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.none()))
        records.append(record)
    return records


@st.composite
def _task_and_records(draw: st.DrawFn) -> tuple[str, tuple[Any, ...] | None, list[dict[str, Any]]]:
    task = draw(st.sampled_from(["sts", "classification", "pair-classification", "qa", "align"]))
    labels = draw(st.sampled_from([None, INT_LABELS, STR_LABELS])) if "classification" in task else None
    return task, labels, draw(_valid_records(task, labels))


def _expect_ok(value: object, field: str, task: str, labels: tuple[Any, ...] | None, prior: list[Any]) -> bool:
    """Whether ``value`` in ``field`` of the last record is valid: the schema, said once more plainly."""
    if field in TEXT_FIELDS and task == "align":
        return isinstance(value, str) and bool(value.strip())  # a pair has a sentence on each side
    if field in TEXT_FIELDS or field == "lang":
        return isinstance(value, str)
    if field == "score":
        return type(value) in (int, float) and 0 <= value <= 5  # type: ignore[operator]
    if field == "label":
        if type(value) not in (int, str):
            return False
        if labels is not None:
            return value in labels
        return all(type(r["label"]) is type(value) for r in prior)
    if field == "id" and task == "qa":
        return isinstance(value, str) and all(r["id"] != value for r in prior)
    return True  # fields the schema does not know


def _check_error(err: XlError, n: int) -> None:
    """What every refusal carries: a position in range, a field name or None, a message that renders."""
    assert isinstance(err, RecordError)
    assert err.record is None or 1 <= err.record <= n
    assert err.field is None or isinstance(err.field, str)
    rendered = err.render()
    assert isinstance(rendered, str) and len(rendered) < 2_000  # found values are shortened


# ------------------------------------------------------------------------------------------ properties


@FUZZ
@given(case=_task_and_records())
@pytest.mark.slow
def test_valid_records_pass_unchanged(case: tuple[str, tuple[Any, ...] | None, list[dict[str, Any]]]) -> None:
    task, labels, records = case
    assert list(validate_records(records, task, labels=labels)) == records  # type: ignore[arg-type]


@FUZZ
@given(case=_task_and_records(), data=st.data())
@pytest.mark.slow
def test_one_bad_field_is_named_with_its_record(
    case: tuple[str, tuple[Any, ...] | None, list[dict[str, Any]]], data: st.DataObject
) -> None:
    task, labels, records = case
    *prior, last = records
    fields = [*TASK_FIELDS[task], "lang", "extra"]  # type: ignore[index]
    field = data.draw(st.sampled_from([f for f in fields if not (task == "qa" and f in ("context", "answers"))]))
    delete = field in TASK_FIELDS[task] and data.draw(st.booleans())  # type: ignore[index]
    bad = dict(last)
    if delete:
        del bad[field]
    else:
        bad[field] = data.draw(_garbage)
    try:
        out = list(validate_records([*prior, bad], task, source="dev.jsonl", labels=labels))  # type: ignore[arg-type]
    except RecordError as err:
        _check_error(err, len(records))
        assert (err.record, err.line, err.source) == (len(records), len(records), "dev.jsonl")
        other = detect_schema(bad)
        if delete and other is not None and other != task:
            assert err.field is None and "looks like" in err.message
        else:
            assert err.field == field, err.render()
        assert not (not delete and _expect_ok(bad[field], field, task, labels, prior)), err.render()
        return
    assert not delete and _expect_ok(bad[field], field, task, labels, prior)
    assert out == [*prior, bad]


@FUZZ
@given(record=_qa_record("q"), data=st.data())
@pytest.mark.slow
def test_bad_answers_are_refused_naming_the_answer(record: dict[str, Any], data: st.DataObject) -> None:
    answers = record["answers"]
    i = data.draw(st.integers(0, len(answers["text"]) - 1))
    how = data.draw(st.sampled_from(["shift", "negative", "huge", "empty", "elsewhere", "bool", "float", "string"]))
    texts, starts = list(answers["text"]), list(answers["answer_start"])
    if how == "shift":
        starts[i] += data.draw(st.integers(-50, 50).filter(bool))
    elif how == "negative":
        starts[i] = data.draw(st.integers(max_value=-1))
    elif how == "huge":
        starts[i] = data.draw(st.sampled_from([2**63, 10**30, 10**400]))
    elif how == "empty":
        texts[i] = ""
    elif how == "elsewhere":
        texts[i] = texts[i] + data.draw(_text.filter(bool))
    else:
        starts[i] = {"bool": True, "float": float(starts[i]), "string": str(starts[i])}[how]
    bad = {**record, "answers": {"text": texts, "answer_start": starts}}
    context = record["context"]
    span_ok = type(starts[i]) is int and starts[i] >= 0 and texts[i] != "" and context[starts[i] :].startswith(texts[i])
    try:
        list(validate_records([bad], "qa"))
    except RecordError as err:
        _check_error(err, 1)
        assert err.record == 1 and err.field is not None and not span_ok
        first_bad = next(
            j
            for j, (t, s) in enumerate(zip(texts, starts, strict=True))
            if t == "" or type(s) is not int or s < 0 or not context[s:].startswith(t)
        )
        assert err.field in (f"answers.text[{first_bad}]", f"answers.answer_start[{first_bad}]"), err.render()
        return
    assert span_ok  # only a shift onto another copy of the same text keeps it valid


@FUZZ
@given(
    records=st.lists(_garbage, max_size=4),
    task=st.sampled_from(["sts", "classification", "pair-classification", "qa"]),
    labels=st.sampled_from([None, INT_LABELS, STR_LABELS]),
)
@pytest.mark.slow
def test_garbage_records_are_refused_with_record_errors(records: list[Any], task: str, labels: Any) -> None:
    try:
        out = list(validate_records(records, task, labels=labels))  # type: ignore[arg-type]
    except RecordError as err:
        _check_error(err, len(records))
        return
    assert out == records and records


@FUZZ
@given(
    records=st.lists(
        st.dictionaries(st.sampled_from(["text", "text1", "text2", "score", "label", "lang"]), _garbage, max_size=5),
        max_size=4,
    ),
    task=st.sampled_from(["sts", "classification", "pair-classification"]),
)
@pytest.mark.slow
def test_records_with_the_right_names_and_garbage_values(records: list[dict[str, Any]], task: str) -> None:
    try:
        list(validate_records(records, task))  # type: ignore[arg-type]
    except RecordError as err:
        _check_error(err, len(records))


# ------------------------------------------------------------------------------------------ task files

_PIECES = [
    b"\n", b"\r\n", b"\xef\xbb\xbf", b"\x00", b"\xff", b"\xed\xa0\x80", b"{", b"}", b"[", b"]", b'"', b":", b",",
    b'"data"', b'"version"', b'"paragraphs"', b'"qas"', b'"answers"', b'"answer_start"', b'"\\ud800"', b"NaN",
    b"123456789012345678901234567890", b'{"text": "x", "label": 1}', b'{"text1": "a", "text2": "b", "score": 9}',
    b'{"data": []}', b'{"data": [{"paragraphs": [{"context": "ab", "qas": [{}]}]}]}', b"  ",
]  # fmt: skip
_file_bytes = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=6)), max_size=20).map(b"".join)


@st.composite
def _squad_like(draw: st.DrawFn) -> object:
    """A SQuAD v1.1 document with garbage put in at random places."""

    def maybe(value: object) -> object:
        return draw(_file_garbage) if draw(st.integers(0, 9)) == 0 else value

    record = draw(_qa_record("q"))
    answers = [
        maybe({"text": maybe(t), "answer_start": maybe(s)})
        for t, s in zip(record["answers"]["text"], record["answers"]["answer_start"], strict=True)
    ]
    qa = maybe({"id": maybe("q"), "question": maybe(record["question"]), "answers": maybe(answers)})
    paragraph = maybe({"context": maybe(record["context"]), "qas": maybe([qa])})
    return maybe({"version": "1.1", "data": maybe([maybe({"title": maybe("t"), "paragraphs": maybe([paragraph])})])})


def _dump(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, default=repr).encode()  # NaN, huge ints, sets: what other writers emit


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_schemas")


def _read(path: Path, task: str) -> list[Mapping[str, Any]]:
    return list(read_task_file(path, task))  # type: ignore[arg-type]


@FUZZ
@given(data=_file_bytes, task=st.sampled_from(["sts", "classification", "pair-classification", "qa"]))
def test_task_files_of_garbage_bytes_are_read_or_refused(folder: Path, data: bytes, task: str) -> None:
    path = folder / "garbage.jsonl"
    path.write_bytes(data)
    try:
        records = _read(path, task)
    except XlError as err:
        assert err.source == str(path) and not isinstance(err, UsageError)
        err.render()
        return
    assert records and all(isinstance(r, dict) for r in records)


@FUZZ
@given(doc=_squad_like(), indent=st.booleans())
@pytest.mark.slow
def test_squad_json_with_garbage_is_read_or_refused(folder: Path, doc: object, indent: bool) -> None:
    path = folder / "squad.json"
    path.write_bytes(json.dumps(doc, indent=2, default=repr).encode() if indent else _dump(doc))
    try:
        records = _read(path, "qa")
    except XlError as err:
        assert err.source == str(path)
        err.render()
        return
    assert len(records) == 1 and isinstance(records[0]["id"], str)  # garbage put in where a str is fine


@FUZZ
@given(case=_task_and_records(), bom=st.booleans(), crlf=st.booleans())
@pytest.mark.slow
def test_valid_task_files_round_trip(
    folder: Path, case: tuple[str, tuple[Any, ...] | None, list[dict[str, Any]]], bom: bool, crlf: bool
) -> None:
    task, _, records = case
    path = folder / "valid.jsonl"
    end = b"\r\n" if crlf else b"\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(orjson.dumps(r) + end for r in records))
    assert _read(path, task) == records


# --------------------------------------------------------------------------------------- chosen cases


def test_huge_ints_from_json_become_floats_and_are_refused(folder: Path) -> None:
    path = folder / "huge.jsonl"
    path.write_bytes(b'{"text": "x", "label": 123456789012345678901234567890}\n')
    with pytest.raises(RecordError, match="not an int or a string") as info:
        _read(path, "classification")
    assert info.value.field == "label"
    path.write_bytes(b'{"text1": "a", "text2": "b", "score": 1e400}\n')
    with pytest.raises(XlError, match="invalid JSON"):
        _read(path, "sts")


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({"text1": "a", "text2": "b", "score": 10**400}, "score", "an int of about 401 digits"),
        ({"text1": "a", "text2": "b", "score": -(10**5000)}, "score", "an int of about 5001 digits"),
        ({"text": "x", "label": 10**5000}, "label", "an int of about 5001 digits"),
        ({"text": "x", "label": "9" * 5000}, "label", "999"),
        ({"text": "x", "label": "²"}, "label", '"²"'),
        ({"text": "x", "label": "--1"}, "label", '"--1"'),
        ({"text": "x", "label": _deep}, "label", "a list"),
        ({"text": "x", "label": {1: 2}}, "label", "an object"),
        ({"text": "x", "label": True}, "label", "true"),
    ],
)
def test_odd_values_are_shown_without_failing(record: dict[str, Any], field: str, words: str) -> None:
    task = "sts" if "score" in record else "classification"
    with pytest.raises(RecordError) as info:
        list(validate_records([record], task, labels=INT_LABELS if task == "classification" else None))  # type: ignore[arg-type]
    assert info.value.field == field and words in (info.value.found or ""), info.value.render()


def test_label_digit_strings_get_the_json_number_hint() -> None:
    with pytest.raises(RecordError) as info:
        list(validate_records([{"text": "x", "label": "١"}], "classification", labels=INT_LABELS))
    assert "JSON numbers" in (info.value.hint or "")  # int("١") == 1: Arabic-Indic digits are decimal


def test_non_string_keys_are_named_not_a_crash() -> None:
    with pytest.raises(RecordError, match='missing field "text"') as info:
        list(validate_records([{1: "x", None: 2}], "classification"))
    assert info.value.found == "fields 1, null"
    record = {"id": "q", "context": "ab", "question": "?", "answers": {1: [], "answer_start": [0]}}
    with pytest.raises(RecordError, match="answers.text") as info:
        list(validate_records([record], "qa"))
    assert info.value.found == "fields 1, answer_start"


def test_empty_answer_text_is_refused_even_in_range() -> None:
    record = {"id": "q", "context": "ab", "question": "?", "answers": {"text": [""], "answer_start": [10**9]}}
    with pytest.raises(RecordError, match="is empty") as info:
        list(validate_records([record], "qa"))
    assert info.value.field == "answers.text[0]"


def test_nan_and_inf_scores_are_out_of_range() -> None:
    for score in (math.nan, math.inf, -math.inf):
        with pytest.raises(RecordError, match="out of range") as info:
            list(validate_records([{"text1": "a", "text2": "b", "score": score}], "sts"))
        assert info.value.found == str(score)


def test_duplicate_keys_keep_the_last_value(folder: Path) -> None:
    path = folder / "dup.jsonl"
    path.write_bytes(b'{"text": "x", "label": "a", "label": 1}\n')
    assert _read(path, "classification") == [{"text": "x", "label": 1}]


def test_task_file_problems_are_input_errors(folder: Path) -> None:
    with pytest.raises(XlError, match="cannot open"):
        _read(folder, "sts")  # a directory
    with pytest.raises(UsageError, match="unknown task"):
        path = folder / "squad_doc.json"
        path.write_bytes(b'{"version": "1.1", "data": []}')
        _read(path, "nli")
    path = folder / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"version": "1.1", "data": []}, indent=2).encode())
    with pytest.raises(RecordError, match="no qa records"):
        _read(path, "qa")  # the BOM is dropped: an empty SQuAD document, not invalid JSON


def test_lone_surrogate_escapes_in_task_files_are_invalid_json(folder: Path) -> None:
    path = folder / "surrogate.jsonl"
    path.write_bytes(b'{"text": "ok", "label": 1}\n{"text": "\\ud800", "label": 1}\n')
    with pytest.raises(XlError, match="invalid JSON") as info:
        _read(path, "classification")
    assert info.value.line == 2
