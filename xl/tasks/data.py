"""Task data as the models see it: a split read once, validated and tokenized (numpy, orjson and the
``tokenizers`` objects a model brings; no torch).

``read_once`` reads an input (``-`` = stdin) in one pass and hashes it; ``parse_task_input`` validates its
records against a task's schema; :class:`TaskData` holds the tokenized examples of one split, which every task
object of ``xl.tasks.objects`` builds and consumes; ``pair_repeats`` finds the repeated pairs and sides of a file
of text pairs (align).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from xl.errors import InputError, UsageError
from xl.tasks.features import QAFeatures

if TYPE_CHECKING:
    from xl.tasks.objects import TaskObject


@dataclass
class TaskData:
    """Tokenized examples of one split: ``inputs[i]`` is a list of token-id rows (two for an sts pair)."""

    records: list[Mapping[str, Any]]
    inputs: list[list[list[int]]]
    targets: list[Any]
    lengths: list[int]
    truncated: int = 0
    features: QAFeatures | None = None  # qa: windows (inputs/targets are per window)
    #: classify: the cross-entropy weight of each label, in label order (``--class-weight``); None: unweighted.
    class_weights: list[float] | None = None


def read_once(path: str, what: str) -> tuple[bytes, str]:
    """The bytes of an input (``-`` = stdin) and their sha256, from one pass over it: a FIFO, a pipe or
    ``<(process substitution)`` can be read only once, and a file that changes between two reads would
    otherwise be hashed as one thing and trained on as another."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"refusing to read the {what} set from a terminal",
                             hint=f"pass a file, or pipe the {what} data in")  # fmt: skip
        handle: Any = contextlib.nullcontext(sys.stdin.buffer)
    else:
        try:
            handle = Path(path).open("rb")
        except FileNotFoundError:
            raise InputError("file not found", source=path, hint="check the path") from None
        except IsADirectoryError:
            raise InputError(f"is a directory, not a file of {what} data", source=path) from None
        except OSError as exc:
            raise InputError(f"cannot be read: {(exc.strerror or str(exc)).lower()}", source=path,
                             hint="check the path and its permissions") from None  # fmt: skip
    with handle as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            chunks.append(block)
    return b"".join(chunks), digest.hexdigest()


def read_task_input(path: str, what: str, task: TaskObject, *, schema: str | None = None,
                    labels: Sequence[Any] | None = None,
                    columns: Mapping[str, str] | None = None) -> tuple[str, list[dict[str, Any]], str]:  # fmt: skip
    """(schema, validated records, sha256) of one input of task data, read once: a JSONL task file (or SQuAD JSON,
    ``-`` = stdin), or a table — CSV, TSV, Parquet or a ``datasets`` folder (:mod:`xl.io.tables`). ``columns``
    renames fields as they are read (xl's field → the input's column or JSON field), for a table or JSONL alike;
    ``schema`` None: sniffed from the first record (classify: single text or pair)."""
    from xl.io.tables import check_required, read_table, table_format
    from xl.tasks.schemas import TASK_FIELDS, validate_records

    source = "<stdin>" if path == "-" else path
    fmt = table_format(path)
    if fmt is None:
        data, digest = read_once(path, what)
        schema, records = parse_task_input(data, source, task, schema=schema, labels=labels, columns=columns)
        return schema, records, digest
    rows, names, digest = read_table(path, fmt, columns)
    if schema is None:
        schema = task.sniff_schema(rows[0] if rows else None)
    check_required(names, columns or {}, TASK_FIELDS[schema], path)  # type: ignore[index]
    checked = validate_records(rows, schema, source=source, labels=labels, numbering="row")  # type: ignore[arg-type]
    return schema, cast(list[dict[str, Any]], list(checked)), digest


def parse_task_input(data: bytes, source: str, task: TaskObject, *, schema: str | None = None,
                     labels: Sequence[Any] | None = None,
                     columns: Mapping[str, str] | None = None) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """(schema, validated records) of a task file's bytes. ``schema`` None: the task's, sniffed from the first
    record (classify: single text or pair) — from the records themselves, not a second read of the file.
    ``columns``: see :func:`read_task_input`."""
    from xl.io.tables import rename_fields
    from xl.tasks.schemas import TASK_FIELDS, RecordError, iter_task_file, validate_records

    records, is_squad = iter_task_file(io.BytesIO(data), source=source)
    records = rename_fields(records, columns)
    if schema is None:
        first = next(records, None)
        schema = task.sniff_schema(first)
        records = chain([] if first is None else [first], records)
    if is_squad and schema != "qa":
        raise RecordError(f"SQuAD JSON holds qa data, not {schema}", record=None, field=None, source=source,
                          expected=f"JSONL {schema} records ({', '.join(TASK_FIELDS[schema])})",  # type: ignore[index]
                          found="a SQuAD v1.1 JSON document",
                          hint="pass --task qa if that is what you meant")  # fmt: skip
    checked = validate_records(records, schema, source=source, labels=labels,  # type: ignore[arg-type]
                               numbering="question" if is_squad else "line")  # fmt: skip
    return schema, cast(list[dict[str, Any]], list(checked))


def check_dev_lang(records: Sequence[Mapping[str, Any]], dev_lang: str, source: str,
                   task: TaskObject | None = None) -> None:  # fmt: skip
    """Refuse a dev set whose records' ``lang`` is not ``dev_lang`` (a missing ``lang`` is taken as English
    by default, and as ``dev_lang`` when the user names one): choosing the kept model on target-language
    labels is not zero-shot transfer, so it has to be asked for. ``task.dev_lang_of`` reads a record's ``lang``
    (align: ``en-de`` pairs are English-side)."""
    want = dev_lang.lower()
    for n, record in enumerate(records, 1):
        lang = record.get("lang")
        if lang is not None and task is not None:
            lang = task.dev_lang_of(str(lang))
        if lang is None or str(lang).lower() in (want, f"{want}-{want}"):
            continue
        found: dict[str, int] = {}
        for r in records:
            key = str(r.get("lang", "none"))
            found[key] = found.get(key, 0) + 1
        summary = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:4])
        if want == "en":
            raise InputError(f'the dev set is not English: record {n} has "lang": "{lang}"', source=source, line=n,
                             found=f"lang {summary} of {len(records)} records",
                             hint=f"pass an English --dev (model selection on {lang} labels is not zero-shot), or "
                                  f"--dev-lang {lang} to select on it knowingly")  # fmt: skip
        raise InputError(f'record {n} has "lang": "{lang}", not the --dev-lang {dev_lang}', source=source, line=n,
                         found=f"lang {summary} of {len(records)} records",
                         hint="--dev-lang names the one language of the dev set")  # fmt: skip


@dataclass
class PairRepeats:
    """How the pairs of a file of text pairs repeat: ``duplicates`` (line, line of its first occurrence) of each
    pair given again (the same ``text1`` and ``text2``), and how many pairs share a side with another pair."""

    duplicates: list[tuple[int, int]]
    shared_text1: int
    shared_text2: int
    distinct_text1: int


def pair_repeats(records: Sequence[Mapping[str, Any]]) -> PairRepeats:
    """The repeats of ``records`` (the n-th on line n), pairs and sides compared as exact strings."""
    first: dict[tuple[str, str], int] = {}
    duplicates = []
    for line, record in enumerate(records, 1):
        pair = (record["text1"], record["text2"])
        if pair in first:
            duplicates.append((line, first[pair]))
        else:
            first[pair] = line
    counts = [Counter(pair[k] for pair in first) for k in (0, 1)]
    shared = [sum(c for c in count.values() if c > 1) for count in counts]
    return PairRepeats(duplicates, shared[0], shared[1], len(counts[0]))


def balanced_class_weights(targets: Sequence[int], n_classes: int) -> list[float]:
    """``n_samples / (n_classes * count_c)`` for each class c of ``targets`` (label indices 0 … n_classes − 1):
    scikit-learn's ``class_weight="balanced"`` (after King & Zeng 2001), so that every class weighs as much in
    the summed loss. A class without examples gets weight 0 (nothing of it to weigh)."""
    counts = [0] * n_classes
    for target in targets:
        counts[target] += 1
    n = sum(counts)
    return [n / (n_classes * count) if count else 0.0 for count in counts]


def label_set(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The sorted labels of a training set (ints numerically, strings alphabetically; one type per file)."""
    return sorted({r["label"] for r in records}, key=lambda v: (isinstance(v, str), v))
