"""JSONL schemas of the task data that ``xl`` fine-tunes and evaluates on, and their validators.

Every task file is UTF-8 JSON Lines: one JSON object per line, record *i* on line *i* (no blank lines).
A byte order mark on line 1 is dropped; a key given twice in an object keeps its last value (orjson, as
``json.loads``); a lone surrogate escape (``"\\ud800"``) is invalid JSON.
Five schemas, one per task (fields in ``TASK_FIELDS``; further fields are allowed and ignored):

``sts``  semantic textual similarity (STS Benchmark, Cer et al. 2017; SemEval-2017 Task 1)
    ``{"text1": str, "text2": str, "score": float}``, ``score`` in [0, 5] (5 = same meaning).
``classification``  single-text classification (SST-2, NSMC, UMSAB, AMCD)
    ``{"text": str, "label": int | str}``
``pair-classification``  classification of a text pair (XNLI, KorNLI, PAWS-X)
    ``{"text1": str, "text2": str, "label": int | str}``
``qa``  extractive question answering, SQuAD v1.1 (Rajpurkar et al. 2016) flattened to one question per
    line, with answers laid out as in Hugging Face ``datasets`` (MLQA, XQuAD):
    ``{"id": str, "context": str, "question": str,``
    `` "answers": {"text": [str, ...], "answer_start": [int, ...]}}``,
    at least one answer, each non-empty and with ``context[answer_start:answer_start + len(text)] == text``
    (offsets count Unicode code points, as Python and the SQuAD scripts do).
``align``  parallel sentences, English first (FLORES-200 pairs; ``xl finetune --task align``)
    ``{"text1": str, "text2": str}``: ``text1`` English, ``text2`` its translation, neither empty (nor only
    white space). A record with a ``score`` or a ``label`` is sts or pair-classification data, not a pair.

Optional fields on every schema: ``"lang"`` (ISO 639-1 code such as ``"de"``; for a cross-lingual pair,
``"<lang of text1>-<lang of text2>"``, e.g. ``"en-ar"``) and ``"id"`` (the source's example id).

A label is an int or a string, one type per file, from the dataset's fixed label set (``LABEL_SETS`` in
``xl.tasks.convert``): ints where the source uses numbers (SST-2, NSMC, UMSAB, AMCD, PAWS-X), the source's
strings for NLI (``entailment`` / ``neutral`` / ``contradiction``). Empty texts are kept: they are rows too.

SQuAD v1.1 JSON files (``{"version", "data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``) are
read directly by ``read_task_file`` and ``flatten_squad``; each question becomes one ``qa`` record.

``validate_records`` checks a stream against a schema and raises ``RecordError`` (an ``InputError``)
naming the source, the record number (1-based; the line of a JSONL file) and the field.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from xl.errors import InputError, UsageError

Task = Literal["sts", "classification", "pair-classification", "qa", "align"]
Record = dict[str, Any]
Label = int | str

TASKS: tuple[Task, ...] = ("sts", "classification", "pair-classification", "qa", "align")

TASK_FIELDS: Mapping[Task, tuple[str, ...]] = {
    "sts": ("text1", "text2", "score"),
    "classification": ("text", "label"),
    "pair-classification": ("text1", "text2", "label"),
    "qa": ("id", "context", "question", "answers"),
    "align": ("text1", "text2"),
}

_BOM = b"\xef\xbb\xbf"

# Most specific first, so that a QA record (which has no "text") or a pair record is not reported as
# a single-text one.
#: The task (``--task``, ``xl eval TASK``) whose data each schema holds.
SCHEMA_TASK: Mapping[Task, str] = {"sts": "sts", "classification": "classify", "pair-classification": "classify",
                                   "qa": "qa", "align": "align"}  # fmt: skip
# align (text1, text2) is what sts and pair-classification records have in common: it comes after both.
_DETECT_ORDER: tuple[Task, ...] = ("qa", "sts", "pair-classification", "align", "classification")
#: The tasks that ``xl eval TASK`` scores (align pairs are scored by ``xl eval retrieval`` on ``xl embed`` outputs).
_EVAL_TASKS = ("sts", "classify", "qa")

# Field names that other tools use for ours: a record with these gets a "rename" hint instead of a bare
# "missing field".
_FIELD_SYNONYMS: Mapping[str, str] = {
    "sentence1": "text1",
    "sentence2": "text2",
    "premise": "text1",
    "hypothesis": "text2",
    "sentence": "text",
    "document": "text",
    "similarity_score": "score",
    "gold_label": "label",
}

SCHEMA_MARKDOWN = """\
### Task data: JSONL schemas

Task files are UTF-8 JSON Lines, one object per line (record *i* = line *i*, no blank lines). Extra fields
are allowed and ignored; every schema may carry `"lang"` (ISO 639-1, or `"en-ar"` style for a cross-lingual
pair: the language of `text1`, then of `text2`) and `"id"`.

```jsonl
{"text1": "A plane is taking off.", "text2": "An air plane is taking off.", "score": 5.0}
{"text": "it 's a charming and often affecting journey . ", "label": 1}
{"text1": "und er hat gesagt, Mama ich bin daheim.", "text2": "Er sagte kein Wort.", "label": "contradiction"}
{"id": "56be4db0acb8001400a502ec", "context": "Super Bowl 50 was …", "question": "Which NFL team …?",
 "answers": {"text": ["Denver Broncos", "Denver Broncos", "Denver Broncos"], "answer_start": [177, 177, 177]}}
{"text1": "On Monday, scientists from the Stanford University …", "text2": "Am Montag haben die …", "lang": "en-de"}
```
(the `qa` record is one line in a file; `answer_start` counts Unicode characters, as in SQuAD).

| task | fields | checks |
|---|---|---|
| `sts` | `text1`, `text2`, `score` | `score` a number in [0, 5] (SemEval STS scale) |
| `classification` | `text`, `label` | `label` (int or string) in the dataset's label set; one type a file |
| `pair-classification` | `text1`, `text2`, `label` | as `classification` |
| `qa` | `id`, `context`, `question`, `answers` | ≥ 1 answer, each non-empty and at its `answer_start`; unique ids |
| `align` | `text1` (English), `text2` (its translation) | both non-empty; no `score` or `label`; unique pairs (train) |

SQuAD v1.1 JSON (`{"version", "data": [{"title", "paragraphs": [{"context", "qas": […]}]}]}`) is also read
directly: each question becomes one `qa` record.

| dataset | task | labels (`xl.tasks.LABEL_SETS`) |
|---|---|---|
| sst2, nsmc | classification | `0` negative, `1` positive |
| umsab | classification | `0` negative, `1` neutral, `2` positive |
| amcd | classification | `0` not counterfactual, `1` counterfactual |
| pawsx-de | pair-classification | `0` not a paraphrase, `1` paraphrase |
| xnli-de, kornli | pair-classification | `"entailment"`, `"neutral"`, `"contradiction"` |
| flores200 | align | none: `text1` English, `text2` the `LANG` line (`lang` `en-LANG`) |

A bad record stops the run and names the file, the record number and the field, e.g.
`dev.jsonl:17: field "score" is out of range (expected a number in [0, 5], found 5.2)`.
A file of another task's schema is named as such:
`dev.jsonl:1: record looks like classification data (text, label), not sts`.
"""


class RecordError(InputError):
    """A record that does not fit its task schema.

    ``record`` is its 1-based number in the stream (= ``line`` for JSONL files), ``field`` the offending
    field (dotted for nested ones, e.g. ``answers.answer_start[0]``), ``None`` for whole-record problems.
    """

    def __init__(
        self,
        message: str,
        *,
        record: int | None,
        field: str | None,
        source: str | None = None,
        line: int | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, source=source, line=line, expected=expected, found=found, hint=hint)
        self.record = record
        self.field = field


class _Bad(Exception):
    """Internal: one problem found in one record, turned into a RecordError with its position."""

    def __init__(
        self,
        field: str | None,
        message: str,
        expected: str | None,
        found: str | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.expected = expected
        self.found = found
        self.hint = hint


def _show(value: object, limit: int = 60) -> str:
    """A short JSON-ish rendering of a found value for error messages (never raises)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # orjson would print NaN and infinities as null
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # orjson stops at 64 bits and str() at 4300 digits: say how big instead.
        return f"an int of about {math.floor(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: non-string keys, nesting deeper than 254, other types
        text = _type_name(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(mapping: Mapping[Any, Any], limit: int = 8) -> str:
    """The first field names of an object, for messages ("none" for an empty one)."""
    names = [_show(k) if not isinstance(k, str) else k for k in list(mapping)[:limit]]
    return ", ".join(names) + (", …" if len(mapping) > limit else "") if names else "none"


def _int_text(value: str) -> int | None:
    """The int a label string spells in decimal ("1", "-2"), or None."""
    if not value.lstrip("-").isdecimal() or len(value) > 20:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def detect_schema(record: Mapping[str, Any]) -> Task | None:
    """The task whose required fields ``record`` has (most specific first), or ``None``."""
    for task in _DETECT_ORDER:
        if all(name in record for name in TASK_FIELDS[task]):
            return task
    return None


def _missing_field(record: Mapping[str, Any], task: Task, name: str) -> _Bad:
    """The error for a missing required field, saying what the record looks like instead."""
    wanted = ", ".join(TASK_FIELDS[task])
    found = _names(record) if record else "no fields"
    other = detect_schema(record)
    if other is not None and other != task:
        if SCHEMA_TASK[other] == SCHEMA_TASK[task]:
            # One command, two schemas (a text or a text pair): the model's head, or the file's first record,
            # chose the schema, so another --task is no way out.
            hint = (f"{task} and {other} are both --task {SCHEMA_TASK[task]}: the schema is the model's head "
                    f"(`xl model info MODEL` says which) or, in training, the first record's; give records of "
                    f"one kind, or a model fine-tuned on {other} data")  # fmt: skip
        else:
            hint = (f"the file holds {other} data: pass --task {SCHEMA_TASK[other]}"
                    + (f" (xl eval {SCHEMA_TASK[other]})" if SCHEMA_TASK[other] in _EVAL_TASKS else "")
                    + " if that is what you meant")  # fmt: skip
        return _Bad(
            None,
            f"record looks like {other} data ({', '.join(TASK_FIELDS[other])}), not {task}",
            f"{task} fields {wanted}",
            f"fields {found}",
            hint,
        )
    if "data" in record and "version" in record:
        return _Bad(
            None,
            "record is a whole SQuAD JSON document, not a JSONL record",
            f"{task} fields {wanted}",
            "fields data, version",
            "read SQuAD JSON files with xl.tasks.read_task_file (it flattens them to qa records)",
        )
    synonym = next((s for s, ours in _FIELD_SYNONYMS.items() if ours == name and s in record), None)
    hint = f'rename field "{synonym}" to "{name}"' if synonym else f"each {task} record needs {wanted}"
    return _Bad(name, f'missing field "{name}"', f"{task} fields {wanted}", f"fields {found}", hint)


def _need_str(record: Mapping[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str):
        raise _Bad(name, f'field "{name}" is not a string', "a string", _type_name(value))
    return value


class _LabelCheck:
    """Checks labels against a fixed set, or, without one, keeps them to one type per stream."""

    def __init__(self, labels: Collection[Label] | None) -> None:
        self.labels = frozenset(labels) if labels is not None else None
        self.kind: type | None = None

    def __call__(self, value: object) -> None:
        # bool is an int subclass in Python: true/false in JSON is a mistake, not label 1/0.
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Bad("label", 'field "label" is not an int or a string', "an int or a string", _show(value))
        if self.labels is not None:
            if value not in self.labels:
                shown = ", ".join(_show(x) for x in sorted(self.labels, key=str))
                hint = None
                if isinstance(value, str) and _int_text(value) in self.labels:
                    hint = 'labels of this dataset are JSON numbers: write 1, not "1"'
                elif isinstance(value, int) and value.bit_length() <= 64 and str(value) in self.labels:
                    hint = 'labels of this dataset are strings: write "1", not 1'
                raise _Bad("label", 'field "label" is not in the label set', f"one of {shown}", _show(value), hint)
            return
        if self.kind is None:
            self.kind = type(value)
        elif not isinstance(value, self.kind):
            raise _Bad(
                "label",
                'field "label" changes type within the file',
                "int labels throughout" if self.kind is int else "string labels throughout",
                _show(value),
                "use one label type per file (ints, or strings), as the first record does",
            )


def _check_sts(record: Mapping[str, Any]) -> None:
    _need_str(record, "text1")
    _need_str(record, "text2")
    score = record["score"]
    if isinstance(score, bool) or not isinstance(score, int | float):
        hint = "write the score as a JSON number, without quotes" if isinstance(score, str) else None
        raise _Bad("score", 'field "score" is not a number', "a number in [0, 5]", _show(score), hint)
    # A chained comparison also refuses NaN (every comparison is false) and ints too big for a float.
    if not 0.0 <= score <= 5.0:
        raise _Bad(
            "score",
            'field "score" is out of range',
            "a number in [0, 5]",
            _show(score),
            "STS scores are on the 0-5 scale of SemEval STS; rescale other scales first",
        )


def _check_align(record: Mapping[str, Any]) -> None:
    """A pair of parallel sentences: two non-empty strings, and no field that makes it another task's record (an
    sts record scores its pair, a pair-classification record labels it: neither is a translation pair)."""
    other = detect_schema(record)
    if other is not None and other != "align":
        raise _Bad(
            None,
            f"record looks like {other} data ({', '.join(TASK_FIELDS[other])}), not align",
            "align fields text1, text2: a sentence and its translation",
            f"fields {_names(record)}",
            f"the file holds {other} data: pass --task {SCHEMA_TASK[other]} if that is what you meant; align pairs "
            "have no score or label (xl data convert flores200 dev LANG writes them)",
        )
    for name in ("text1", "text2"):
        if not _need_str(record, name).strip():
            raise _Bad(
                name,
                f'field "{name}" is empty',
                "a sentence on each side of the pair",
                _show(record[name]),
                "an empty side matches nothing and every empty side matches every other: drop or fix the pair",
            )


def _check_qa(record: Mapping[str, Any], seen_ids: set[str]) -> None:
    """Check a qa record: a new ``id`` (added to ``seen_ids``), string context and question, and answers that
    each sit at their ``answer_start`` in the context."""
    qid = _need_str(record, "id")
    if qid in seen_ids:
        raise _Bad("id", f"duplicate id {_show(qid)}", "ids unique within the file", _show(qid))
    seen_ids.add(qid)
    context = _need_str(record, "context")
    _need_str(record, "question")
    texts, starts = _answer_lists(record["answers"])
    _check_answer_counts(texts, starts)
    for i, (text, start) in enumerate(zip(texts, starts, strict=True)):
        _check_answer(context, i, text, start)


def _answer_lists(answers: object) -> tuple[list[object], list[object]]:
    """(answers.text, answers.answer_start) of a qa record's ``answers``, checked to be an object of two lists."""
    if not isinstance(answers, dict):
        hint = None
        if isinstance(answers, list):
            hint = 'write answers as {"text": [...], "answer_start": [...]} (flattened SQuAD), not a list'
        raise _Bad(
            "answers",
            'field "answers" is not an object',
            '{"text": [...], "answer_start": [...]}',
            _type_name(answers),
            hint,
        )
    for name in ("text", "answer_start"):
        if name not in answers:
            raise _Bad(
                f"answers.{name}",
                f'missing field "answers.{name}"',
                "text and answer_start lists",
                f"fields {_names(answers)}",
            )
        if not isinstance(answers[name], list):
            raise _Bad(
                f"answers.{name}",
                f'field "answers.{name}" is not a list',
                "a list",
                _type_name(answers[name]),
            )
    texts: list[object] = answers["text"]
    starts: list[object] = answers["answer_start"]
    return texts, starts


def _check_answer_counts(texts: Sequence[object], starts: Sequence[object]) -> None:
    """At least one answer, and as many texts as starts."""
    if len(texts) != len(starts):
        raise _Bad(
            "answers",
            "answers.text and answers.answer_start differ in length",
            "equal lengths",
            f"{len(texts)} texts, {len(starts)} starts",
        )
    if not texts:
        raise _Bad(
            "answers",
            "no answer",
            "at least one answer (SQuAD v1.1 has no unanswerable questions)",
            "empty lists",
        )


def _check_answer(context: str, i: int, text: object, start: object) -> None:
    """Answer ``i``: a non-empty string ``text`` found in ``context`` at the int offset ``start``."""
    if not isinstance(text, str):
        raise _Bad(
            f"answers.text[{i}]",
            f'field "answers.text[{i}]" is not a string',
            "a string",
            _type_name(text),
        )
    if not text:
        raise _Bad(
            f"answers.text[{i}]",
            f'field "answers.text[{i}]" is empty',
            "the answer's words as they appear in the context",
            '""',
            "an empty answer marks no span (SQuAD v1.1 answers are never empty); drop or fix the record",
        )
    if isinstance(start, bool) or not isinstance(start, int):
        raise _Bad(
            f"answers.answer_start[{i}]",
            f'field "answers.answer_start[{i}]" is not an int',
            "a character offset",
            _show(start),
        )
    span = context[start : start + len(text)] if start >= 0 else None
    if span != text:
        raise _Bad(
            f"answers.answer_start[{i}]",
            f"answer text not found in the context at answer_start {start}",
            _show(text),
            _show(span),
            "answer_start counts Unicode characters from 0; check that the context was not altered",
        )


def _check_task(task: object) -> None:
    if not isinstance(task, str) or task not in TASK_FIELDS:
        raise UsageError(f"unknown task {task!r}", expected=" | ".join(TASKS), found=str(task))


def validate_records(
    records: Iterable[Mapping[str, Any]],
    task: Task,
    *,
    source: str = "<records>",
    labels: Collection[Label] | None = None,
    numbering: Literal["line", "question", "row"] = "line",
) -> Iterator[Mapping[str, Any]]:
    """Yield ``records`` unchanged while checking each against the ``task`` schema (streaming).

    Raises ``RecordError`` at the first bad record, naming ``source``, the 1-based record number and the
    field; with ``numbering="line"`` (JSONL) the number is also the error's ``line``, with
    ``"question"`` (flattened SQuAD JSON) or ``"row"`` (a table: CSV, Parquet, a datasets folder) it is said in
    the message. ``labels`` fixes the label set of a
    classification task. An empty stream raises once it ends: there is nothing to train or evaluate on.
    """
    _check_task(task)
    check_label = _LabelCheck(labels)
    seen_ids: set[str] = set()
    n = 0
    for n, record in enumerate(records, 1):
        try:
            _check_record(record, task, check_label, seen_ids)
        except _Bad as bad:
            raise _record_error(bad, n, source=source, numbering=numbering) from None
        yield record
    if n == 0:
        raise RecordError(
            f"no {task} records",
            record=None,
            field=None,
            source=source,
            expected=f"at least one record with {', '.join(TASK_FIELDS[task])}",
            found="an empty input",
            hint="check the path, or that the converter wrote anything",
        )


def _check_record(record: object, task: Task, check_label: _LabelCheck, seen_ids: set[str]) -> None:
    """Raise ``_Bad`` for the first problem of one record against the ``task`` schema: not an object, a
    missing field, a non-string lang, then the task's own checks (``seen_ids``: the qa ids so far)."""
    if not isinstance(record, Mapping):
        raise _Bad(None, "record is not a JSON object", "a JSON object", _type_name(record))
    for name in TASK_FIELDS[task]:
        if name not in record:
            raise _missing_field(record, task, name)
    if "lang" in record and not isinstance(record["lang"], str):
        raise _Bad(
            "lang",
            'field "lang" is not a string',
            'a language code such as "de"',
            _show(record["lang"]),
        )
    if task == "sts":
        _check_sts(record)
    elif task == "align":
        _check_align(record)
    elif task == "qa":
        _check_qa(record, seen_ids)
    else:
        for name in TASK_FIELDS[task][:-1]:
            _need_str(record, name)
        check_label(record["label"])


def _record_error(bad: _Bad, n: int, *, source: str, numbering: Literal["line", "question", "row"]) -> RecordError:
    """The RecordError of problem ``bad`` in record ``n`` of ``source`` (``numbering``: see ``validate_records``)."""
    where = "" if numbering == "line" else f"{numbering} {n}: "
    return RecordError(
        where + bad.message,
        record=n,
        field=bad.field,
        source=source,
        line=n if numbering == "line" else None,
        expected=bad.expected,
        found=bad.found,
        hint=bad.hint,
    )


def iter_jsonl(stream: Iterable[bytes], *, source: str) -> Iterator[Record]:
    """Parse JSON Lines from ``stream`` (lines of bytes); one dict per line, strictly.

    A blank line or a line that is not a JSON object raises ``InputError`` with its line number: record
    numbers would otherwise stop matching line numbers. A UTF-8 byte order mark on line 1 is dropped.
    Duplicate keys keep the last value (orjson, like ``json.loads``); a lone surrogate escape (``"\\ud800"``)
    and invalid UTF-8 are invalid JSON.
    """
    for n, raw in enumerate(stream, 1):
        line = raw.rstrip(b"\r\n")
        if n == 1:
            line = line.removeprefix(_BOM)
            if line.startswith(b"\x93NUMPY"):
                raise InputError("an NPY array where JSON Lines records were expected", source=source, line=n,
                                 expected="one JSON object per line", found="the NPY magic \\x93NUMPY",
                                 hint="this input takes JSONL records; NPY embeddings go to options that read matrices "
                                 "(e.g. eval retrieval --src/--tgt)")  # fmt: skip
        if not line.strip():
            raise InputError(
                "blank line in a JSONL file",
                source=source,
                line=n,
                expected="one JSON object",
                found="an empty line",
                hint="remove blank lines (a JSONL record is one line)",
            )
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON: {exc}",
                source=source,
                line=n,
                expected="one JSON object",
                found=_show(line.decode("utf-8", "replace")),
            ) from None
        if not isinstance(value, dict):
            raise InputError(
                "JSONL record is not an object",
                source=source,
                line=n,
                expected="a JSON object",
                found=_type_name(value),
            )
        yield value


def _need(node: Mapping[str, Any], name: str, kind: type, where: str, source: str) -> Any:
    """A field of a SQuAD JSON node, of the given type, or an InputError naming its JSON path."""
    if name not in node:
        raise InputError(
            f'{where}: missing field "{name}"',
            source=source,
            expected="SQuAD v1.1 JSON",
            found=f"fields {_names(node)}",
        )
    value = node[name]
    if not isinstance(value, kind):
        raise InputError(
            f'{where}: field "{name}" has the wrong type',
            source=source,
            expected=kind.__name__,
            found=_type_name(value),
        )
    return value


def squad_paragraphs(doc: object, *, source: str) -> Iterator[tuple[str, str, list[Any]]]:
    """Yield ``(title, context, qas)`` of each paragraph of a SQuAD v1.1 document, in file order."""
    if not isinstance(doc, dict):
        raise InputError(
            "not a SQuAD JSON document",
            source=source,
            expected='{"version", "data": [...]}',
            found=_type_name(doc),
        )
    articles = _need(doc, "data", list, "top level", source)
    for a, article in enumerate(articles):
        if not isinstance(article, dict):
            raise InputError(f"data[{a}] is not an object", source=source, found=_type_name(article))
        title = article.get("title", "")
        paragraphs = _need(article, "paragraphs", list, f"data[{a}]", source)
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise InputError(f"{where} is not an object", source=source, found=_type_name(paragraph))
            context = _need(paragraph, "context", str, where, source)
            qas = _need(paragraph, "qas", list, where, source)
            yield str(title), context, qas


def qa_records_from_paragraph(
    context: str, qas: list[Any], *, source: str, where: str = "paragraph", lang: str | None = None
) -> Iterator[Record]:
    """Flatten one SQuAD paragraph's questions into ``qa`` records (answers as parallel lists)."""
    for q, qa in enumerate(qas):
        here = f"{where}.qas[{q}]"
        if not isinstance(qa, dict):
            raise InputError(f"{here} is not an object", source=source, found=_type_name(qa))
        answers = _need(qa, "answers", list, here, source)
        texts: list[Any] = []
        starts: list[Any] = []
        for i, answer in enumerate(answers):
            if not isinstance(answer, dict):
                raise InputError(f"{here}.answers[{i}] is not an object", source=source, found=_type_name(answer))
            texts.append(_need(answer, "text", str, f"{here}.answers[{i}]", source))
            starts.append(_need(answer, "answer_start", int, f"{here}.answers[{i}]", source))
        record: Record = {
            "id": _need(qa, "id", str, here, source),
            "context": context,
            "question": _need(qa, "question", str, here, source),
            "answers": {"text": texts, "answer_start": starts},
        }
        if lang is not None:
            record["lang"] = lang
        yield record


def flatten_squad(doc: object, *, source: str, lang: str | None = None) -> Iterator[Record]:
    """Flatten a parsed SQuAD v1.1 JSON document (Rajpurkar et al. 2016) into ``qa`` records, in order."""
    for p, (_title, context, qas) in enumerate(squad_paragraphs(doc, source=source)):
        yield from qa_records_from_paragraph(context, qas, source=source, where=f"paragraph {p + 1}", lang=lang)


def read_squad_json(path: Path, *, lang: str | None = None) -> Iterator[Record]:
    """Read a SQuAD v1.1 JSON file (SQuAD, XQuAD, KorQuAD) as flattened ``qa`` records."""
    yield from flatten_squad(load_json(path), source=str(path), lang=lang)


def load_json(path: Path) -> object:
    """Parse one whole JSON file with orjson (a UTF-8 byte order mark is dropped); errors name the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", source=str(path), hint="check the path (data root: $XL_DATA)") from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=str(path)) from None
    try:
        return orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc}", source=str(path), expected="a JSON document") from None


def _is_squad_document(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("data"), list) and "text1" not in value


def iter_task_file(stream: IO[bytes], *, source: str) -> tuple[Iterator[Record], bool]:
    """Sniff and parse a task file: JSONL, or one SQuAD v1.1 JSON document.

    Returns ``(records, is_squad)``. A file whose first line is not a complete JSON value but which parses
    as a whole (indented JSON), or whose only line is an object with a ``data`` list, is SQuAD JSON; anything
    else is read as JSONL, streaming.
    """
    first = stream.readline().removeprefix(_BOM)
    try:
        head: object = orjson.loads(first) if first.strip() else None
        head_ok = True
    except orjson.JSONDecodeError:
        head, head_ok = None, False
    if head_ok and _is_squad_document(head):
        rest = stream.read()
        if rest.strip():
            raise InputError(
                "a SQuAD JSON document followed by more data",
                source=source,
                line=2,
                expected="one JSON document or JSONL records",
                found="more lines",
            )
        return flatten_squad(head, source=source), True
    if not head_ok and first.lstrip().startswith(b"{"):
        whole = first + stream.read()
        try:
            doc = orjson.loads(whole)
        except orjson.JSONDecodeError:
            doc = None
        if _is_squad_document(doc):
            return flatten_squad(doc, source=source), True
        # Not a JSON document either: read as JSONL, which reports its bad first line.
        return iter_jsonl([first], source=source), False
    return iter_jsonl(chain([first] if first else [], stream), source=source), False


def read_task_file(
    path: Path | str,
    task: Task,
    *,
    labels: Collection[Label] | None = None,
    columns: Mapping[str, str] | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Read a task file (JSONL of ``task`` records, or SQuAD v1.1 JSON for ``qa``; ``-`` = stdin), validated;
    ``columns`` renames fields (xl's field → the file's) as they are read.

    Streams: records are checked as they are read and the first bad one raises ``RecordError``.
    """
    _check_task(task)
    source = "<stdin>" if str(path) == "-" else str(path)
    if str(path) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("refusing to read task records from a terminal", hint="pass a file, or pipe one in")
        stream: IO[bytes] = sys.stdin.buffer
    else:
        try:
            stream = Path(path).open("rb")
        except FileNotFoundError:
            raise InputError("file not found", source=source, hint="check the path") from None
        except OSError as exc:  # a directory, no permission
            raise InputError(f"cannot open the file ({exc.strerror or exc})", source=source) from None
    try:
        yield from _read_validated(stream, source, task, labels, columns)
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=source) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _read_validated(
    stream: IO[bytes],
    source: str,
    task: Task,
    labels: Collection[Label] | None,
    columns: Mapping[str, str] | None = None,
) -> Iterator[Mapping[str, Any]]:
    from xl.io.tables import rename_fields

    records, is_squad = iter_task_file(stream, source=source)
    records = rename_fields(records, columns)
    if is_squad and task != "qa":
        raise RecordError(
            f"SQuAD JSON holds qa data, not {task}",
            record=None,
            field=None,
            source=source,
            expected=f"JSONL {task} records ({', '.join(TASK_FIELDS[task])})",
            found="a SQuAD v1.1 JSON document",
            hint="pass --task qa if that is what you meant",
        )
    yield from validate_records(
        records, task, source=source, labels=labels, numbering="question" if is_squad else "line"
    )
