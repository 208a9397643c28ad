"""The prediction layouts of the XTREME and XTREME-R leaderboards (``xl eval … --predictions DIR --layout …``).

What the benchmarks expect follows google-research/xtreme: its README ("Leaderboard Submission": one folder with
a sub-folder per task, ``test-{language}.{extension}`` inside, ``json`` for QA and ``tsv`` for the other
tasks, 2-character language codes), its ``evaluate.py`` (``XTREME_GROUP2TASK``/``XTREME_R_GROUP2TASK``: the
task folder names of each version; ``XTREME_TASK2LANGS``/``XTREME_R_TASK2LANGS``: the languages it scores;
``read_label``: a classification or retrieval file is one prediction per line, compared line by line with the
label file; ``read_squad``: a QA file is a ``{question id: answer text}`` object) and its
``mock_test_data/predictions`` (XNLI labels spelt ``entailment``/``neutral``/``contradiction``, PAWS-X ``0``/``1``,
a Tatoeba line the 0-based row of the English sentence retrieved for the line's non-English sentence, as
``third_party/evaluate_retrieval.py`` writes it for ``tatoeba.{lang}-eng``). Its data preparation
(``utils_preprocess.py``) names the split files ``{split}-{lang}``, so a dev set is written as ``dev-{lang}``
(which the leaderboard does not score) and a test set as ``test-{lang}``.

XTREME-R (Ruder et al. 2021) drops PAWS-X and BUCC and adds XCOPA, LAReQA and Mewsli-X; xl writes the tasks it
has a task object for: classification (``xnli``; XTREME: also ``pawsx``), extractive QA (``xquad``, ``mlqa``,
``tydiqa``) and bitext retrieval (``tatoeba``). The layout knows xl's registry datasets of those tasks by name;
any other data set (a local file) needs ``--xtreme-task``. Torch-free: only the layout and the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from xl.errors import ModelError, UsageError

#: ``--layout``: xl's own files (one per data set and language), or a benchmark's submission folder.
LAYOUTS = ("xl", "xtreme", "xtreme-r")
_NAMES = {"xtreme": "XTREME", "xtreme-r": "XTREME-R"}


@dataclass(frozen=True)
class XtremeTask:
    """One task folder of a benchmark: its name, the xl task that writes it, its file suffix, the languages the
    benchmark's ``evaluate.py`` scores, and the spelling of its labels (classification)."""

    name: str
    xl_task: str
    suffix: str
    langs: tuple[str, ...]
    labels: tuple[str, ...] | None = None


def _langs(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


# The language lists are evaluate.py's XTREME_TASK2LANGS and XTREME_R_TASK2LANGS.
_XNLI = "ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh"
_TATOEBA = "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,ko,th,sw,zh,kk,tr,et,fi,hu"
_NLI_LABELS = ("entailment", "neutral", "contradiction")
_COMMON = {
    "xnli": XtremeTask("xnli", "classify", ".tsv", _langs(_XNLI), _NLI_LABELS),
    "mlqa": XtremeTask("mlqa", "qa", ".json", _langs("en,es,de,ar,hi,vi,zh")),
    "tydiqa": XtremeTask("tydiqa", "qa", ".json", _langs("en,ar,bn,fi,id,ko,ru,sw,te")),
}
#: The task folders xl writes, per benchmark.
TASKS: Mapping[str, Mapping[str, XtremeTask]] = {
    "xtreme": {
        **_COMMON,
        "pawsx": XtremeTask("pawsx", "classify", ".tsv", _langs("de,en,es,fr,ja,ko,zh"), ("0", "1")),
        "xquad": XtremeTask("xquad", "qa", ".json", _langs("en,es,de,el,ru,tr,ar,vi,th,zh,hi")),
        "tatoeba": XtremeTask("tatoeba", "retrieval", ".tsv", _langs(_TATOEBA)),
    },
    "xtreme-r": {
        **_COMMON,
        "xquad": XtremeTask("xquad", "qa", ".json", _langs("en,es,de,el,ru,tr,ar,vi,th,zh,hi,ro")),
        "tatoeba": XtremeTask("tatoeba", "retrieval", ".tsv", _langs(_TATOEBA + ",az,lt,pl,uk,ro")),
    },
}
#: The benchmarks' other tasks, which xl has no task object for (why, for the refusal).
UNWRITTEN: Mapping[str, Mapping[str, str]] = {
    "xtreme": {"udpos": "tagging", "panx": "tagging", "bucc2018": "bitext mining by sentence id"},
    "xtreme-r": {"udpos": "tagging", "panx": "tagging", "xcopa": "multiple choice", "mewslix": "entity linking",
                 "lareqa": "QA retrieval", "pawsx": "an XTREME task, not XTREME-R (--layout xtreme)",
                 "bucc2018": "an XTREME task, not XTREME-R (--layout xtreme)"},
}  # fmt: skip
#: xl's registry datasets that are benchmark data, by task folder (other datasets are not: kornli is KorNLI).
DATASET_TASKS: Mapping[str, str] = {"xnli-de": "xnli", "pawsx-de": "pawsx", "xquad": "xquad", "mlqa-de": "mlqa",
                                    "tatoeba": "tatoeba"}  # fmt: skip
#: A split as the benchmark's files name it (``{split}-{lang}``).
SPLITS: Mapping[str, str] = {"test": "test", "dev": "dev", "valid": "dev", "validation": "dev"}


def names_for(layout: str, xl_task: str) -> tuple[str, ...]:
    """The task folders of ``layout`` that ``xl eval {xl_task}`` writes (empty: the layout cannot hold it)."""
    return tuple(name for name, task in TASKS.get(layout, {}).items() if task.xl_task == xl_task)


def _valid(layout: str, xl_task: str) -> str:
    return ", ".join(names_for(layout, xl_task))


def check_layout(layout: str, xl_task: str, datasets: Sequence[str | None], xtreme_task: str | None) -> None:
    """Refuse, before a model loads, what ``layout`` cannot hold: an unknown layout, a task the benchmark does not
    have (STS), a ``--xtreme-task`` that is not one of the xl task's folders, a registry dataset that is not
    benchmark data, or a data file without ``--xtreme-task``. ``datasets``: each data spec's registry dataset,
    ``None`` for a file. ``UsageError`` (exit 2) with a hint naming the valid task folders."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}", hint=f"use {', '.join(LAYOUTS)}")
    if layout == "xl":
        if xtreme_task is not None:
            raise UsageError("--xtreme-task has no effect with --layout xl", hint="give --layout xtreme-r, or drop it")
        return
    bench = _NAMES[layout]
    names = names_for(layout, xl_task)
    if not names:
        kind = "STS" if xl_task == "sts" else xl_task
        raise UsageError(f"{kind} is not an {bench} task: --layout {layout} cannot hold its predictions",
                         hint=f"{bench}'s task folders that xl writes: {', '.join(TASKS[layout])}; use --layout xl "
                              "for xl's own files")  # fmt: skip
    if xtreme_task is not None and xtreme_task not in names:
        known, why = TASKS[layout].get(xtreme_task), UNWRITTEN[layout].get(xtreme_task)
        if known is not None:
            reason = f"{bench}'s {xtreme_task} is a {known.xl_task} task, not {xl_task}"
        elif why is not None:
            reason = (
                f"{xtreme_task} is {why}"
                if why.startswith("an ")
                else f"{bench}'s {xtreme_task} is {why}, which xl has no task for"
            )
        else:
            reason = f"{bench} has no task {xtreme_task!r}"
        hint = f"xl eval {xl_task} writes the {bench} task folders: {_valid(layout, xl_task)}"
        raise UsageError(f"--xtreme-task {xtreme_task}: {reason}", hint=hint)
    files = sum(dataset is None for dataset in datasets)
    if files and xtreme_task is None:
        raise UsageError(
            f"--layout {layout} needs --xtreme-task to name the task folder of a data file",
            hint=f"e.g. --xtreme-task {names[0]} (xl eval {xl_task}: {_valid(layout, xl_task)})",
        )
    if not files and xtreme_task is not None:
        raise UsageError("--xtreme-task has no effect when every data set is a registry dataset",
                         hint="the dataset names its task folder: drop --xtreme-task")  # fmt: skip
    for dataset in datasets:
        if dataset is None:
            continue
        name = DATASET_TASKS.get(dataset)
        if name is None or name not in names:
            other = next((n for n in LAYOUTS[1:] if name in names_for(n, xl_task)), None)
            what = (f"{name} data, a task of {_NAMES[other]} that {bench} does not have" if other else
                    f"not data of an {bench} task")  # fmt: skip
            ours = ", ".join(d for d, n in DATASET_TASKS.items() if n in names) or "none"
            hint = f"--layout {other} holds it" if other else f"{bench} data in xl: {ours}; or use --layout xl"
            raise UsageError(f"--layout {layout}: {dataset} is {what}", hint=hint)


def task_of(layout: str, dataset: str | None, xtreme_task: str | None) -> XtremeTask:
    """The task folder of a data set (``dataset``: its registry name, ``None`` for a file); see
    :func:`check_layout`, which has refused what this cannot answer."""
    name = DATASET_TASKS[dataset] if dataset is not None else xtreme_task
    assert name is not None
    return TASKS[layout][name]


@dataclass(frozen=True)
class LayoutFile:
    """One file of a benchmark layout: its task folder, split (``test`` or ``dev``) and language code."""

    task: XtremeTask
    split: str
    lang: str

    @property
    def path(self) -> str:
        """``{task}/{split}-{lang}{suffix}``, relative to the predictions folder."""
        return f"{self.task.name}/{self.split}-{self.lang}{self.task.suffix}"

    @property
    def scored(self) -> bool:
        """Whether the benchmark's ``evaluate.py`` reads this language of the task."""
        return self.lang in self.task.langs


def layout_file(task: XtremeTask, split: str | None, lang: str | None, source: str) -> LayoutFile:
    """The file of a data set of ``task``. ``split``: the data set's split (``None`` for a file: the test set);
    ``lang``: its language in any spelling xl reads, written in the benchmark's (ISO 639-1 where the language
    has a code: :func:`xl.core.languages.canonical_lang`). ``UsageError`` for a set without a language or of a
    split the benchmarks have no files of (train)."""
    from xl.core.languages import canonical_lang

    if lang is None:
        raise UsageError(f"the {task.name} files are named by language, and this data set has none",
                         source=source, hint="name it: LANG=PATH")  # fmt: skip
    part = SPLITS.get(split or "test")
    if part is None:
        raise UsageError(f"the {split} split has no file in a benchmark's layout", source=source,
                         hint="evaluate the test (or dev) split, or use --layout xl")  # fmt: skip
    return LayoutFile(task, part, canonical_lang(lang))


def check_labels(task: XtremeTask, labels: Sequence[Any], model: str) -> None:
    """Refuse a classifier whose labels the benchmark does not spell (a head trained on ``0/1/2`` for XNLI):
    its file would hold labels that never match. ``ModelError`` (exit 1)."""
    if task.labels is None:
        return
    foreign = [str(label) for label in labels if str(label) not in task.labels]
    if foreign:
        raise ModelError(f"{model}: the head predicts {', '.join(foreign)}, which {task.name} does not spell",
                         expected=", ".join(task.labels),
                         hint=f"fine-tune on {task.name} data with its own labels, or use --layout xl")  # fmt: skip


def prediction_bytes(task: XtremeTask, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> bytes:
    """A task file: one label per line (classification), ``{id: answer}`` JSON (QA), or per line the 0-based row
    of the English text retrieved for that line's other-language text (retrieval: xl's ``(j, k)`` prediction,
    ``k``). Rows in input order."""
    if task.xl_task == "qa":
        by_id = {str(r["id"]): p for r, p in zip(records, predictions, strict=True)}
        return orjson.dumps(by_id, option=orjson.OPT_INDENT_2) + b"\n"
    if task.xl_task == "retrieval":
        return "".join(f"{k}\n" for _, k in predictions).encode()
    return "".join(f"{p}\n" for p in predictions).encode()


def write_files(folder: str | Path, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Write ``(relative path, bytes)`` under ``folder``, all or none: every file is first written in full to a
    temporary file beside its target, and only then are they renamed into place, so a failure leaves the
    folder as it was. Files of other languages already there are kept; a file of the same name is replaced."""
    from xl.io.atomic import OutputTarget

    targets: list[OutputTarget] = []
    try:
        for relative, data in files:
            path = Path(folder) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            target = OutputTarget(path)
            targets.append(target)
            target.write(data)
            target.sync()
    except BaseException:
        for target in targets:
            target.abort()
        raise
    for target in targets:
        target.commit()
    return [Path(folder) / relative for relative, _ in files]
