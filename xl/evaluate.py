"""``xl eval sts|classify|qa``: run a model (or read precomputed embeddings) on target-language data and score it.

Data are given as task files (``PATH``, or ``LANG=PATH`` to name the language) or as registry datasets
(``DATASET:SPLIT:LANG[,LANG…]``, read from ``$XL_DATA`` through ``xl.tasks.convert``). Each (dataset, language)
gives one result dict; several give a summary too (the unweighted mean over them). Gold labels are read
only to score. ``--predictions DIR`` writes xl's own files (a file per data set and language) or, with
``--layout xtreme|xtreme-r``, a benchmark's submission folder (:mod:`xl.tasks.xtreme`), all its files at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import xl
from xl.errors import InputError, ModelError, ShapeError, UsageError
from xl.io.atomic import atomic_write, path_exists, refuse_stdin_twice, refuse_terminal_stdin
from xl.progress import Progress, no_progress
from xl.tasks.objects import EVALUATED, STS, TaskObject, task_named

if TYPE_CHECKING:
    from xl.tasks.xtreme import LayoutFile

Log = Callable[[str], None]

#: Fields of every result line; a --tag may not reuse them.
_METRICS = "spearman pearson accuracy macro_f1 exact_match f1 en2xx_accuracy xx2en_accuracy".split()
# every field a result or summary line has (a metric's interval and its mean over sets included): a --tag of one
# of these would be overwritten, so it is refused
RESERVED_FIELDS = frozenset(
    ("task data lang n model model_path model_fingerprint max_length proj source xl_version device dtype summary "
     "sets langs embeddings missing normalization per_label reason").split()
    + _METRICS + [f"{m}_ci" for m in _METRICS] + [f"mean_{m}" for m in _METRICS]
)  # fmt: skip


def _quiet(_message: str) -> None:
    pass


@dataclass
class EvalOptions:
    """What ``xl eval sts|classify|qa`` runs."""

    task: str
    data: list[str]
    model: str | None = "default"
    embeddings1: str | None = None
    embeddings2: str | None = None
    proj: str | None = None
    proj_side: str = "both"
    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    predictions: str | None = None
    normalization: str = "squad"
    limit: int | None = None
    force: bool = False
    tags: dict[str, str] | None = None
    summary: bool = True  # a summary line (the mean over the data sets) after several
    columns: str | None = None  # --columns FIELD=COLUMN,…: how the fields of a data file are named
    layout: str = "xl"  # --layout: xl's prediction files, or a benchmark's folder (xl.tasks.xtreme)
    xtreme_task: str | None = None  # --xtreme-task: the benchmark task folder of the data files


@dataclass
class EvalSet:
    """One (dataset, language) to score: its records and where they came from."""

    name: str
    lang: str | None
    records: list[Mapping[str, Any]]
    source: str
    dataset: str | None = None  # the registry dataset (None: a file)
    split: str | None = None  # its split (None: a file)


def _canonical(lang: Any) -> str | None:
    """The one spelling of a language in result lines (``xl.core.languages.canonical_lang``)."""
    from xl.core.languages import canonical_lang

    return None if lang is None else canonical_lang(str(lang))


def _path_of(spec: str) -> str:
    """The path of a data spec (``LANG=PATH`` or ``PATH``; a dataset spec is returned as it is)."""
    return spec.partition("=")[2] if "=" in spec and not path_exists(spec) else spec


def check_specs(specs: Sequence[str]) -> None:
    """Refuse a spec that is neither a file (nor ``-``) nor a known dataset: what can be checked before a model
    loads, so that a misspelt name fails at once instead of after the load."""
    from xl.tasks import DATASETS

    if not specs:
        raise UsageError("no evaluation data given", hint="e.g. xl eval sts korsts:test  or  xl eval sts ko=ko.jsonl")
    for spec in specs:
        path = _path_of(spec)
        if not (path_exists(path) or path == "-") and path.partition(":")[0] not in DATASETS:
            raise InputError(
                "no such file or dataset",
                source=path,
                hint=f"give a task file, or DATASET:SPLIT:LANG with a dataset of: {', '.join(DATASETS)}",
            )


def check_files(options: EvalOptions, head: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """Read and validate every data file (JSONL, SQuAD JSON or a table) before the model loads, so that a bad
    record or a missing column fails in a second, not after the load. With the model's ``head`` (its
    ``xl-model.json``, read without the weights), a file is also checked against the head's labels and whether
    it takes pairs (classify). Each file is read again when it is scored; what can be read only once (stdin, a
    FIFO, ``<(process substitution)``) is read then, and checked against the head there. Returns each regular
    file spec's language as :func:`iter_eval_sets` will give it (the ``LANG=`` of the spec, else the first
    record's ``lang``; canonical spelling)."""
    from xl.tasks.data import read_task_input

    task, columns = task_named(options.task), _columns(options)
    schema = labels = None
    if head is not None:  # a task without pairs or labels has one schema and no label set whatever the head
        schema, labels = task.schema_for(bool(head.get("pair", False))), head.get("labels") or None
    langs: dict[str, str | None] = {}
    for spec in options.data:
        path = _path_of(spec)
        if path != "-" and path_exists(path) and Path(path).is_file():  # a pipe's bytes would be gone
            _, records, _ = read_task_input(path, "evaluation", task, schema=schema, labels=labels, columns=columns)
            lang = spec.partition("=")[0] if path != spec else (records[0].get("lang") if records else None)
            langs[spec] = _canonical(lang)
    return langs


def count_eval_sets(specs: Sequence[str]) -> int:
    """How many (dataset, language) sets :func:`iter_eval_sets` yields for ``specs``: one per file, one per
    language a dataset spec names (one when it names none)."""
    count = 0
    for spec in specs:
        path = _path_of(spec)
        langs = path.split(":", 2)[2] if path.count(":") >= 2 else ""
        count += 1 if path_exists(path) or path == "-" or not langs else len(langs.split(","))
    return count


def iter_eval_sets(specs: Sequence[str], schema: str, *, labels: Sequence[Any] | None = None,
                   limit: int | None = None, seed: int = 0,
                   columns: Mapping[str, str] | None = None) -> Iterator[EvalSet]:  # fmt: skip
    """Read every data spec (see the module docstring) as validated records; a file may be a table (CSV, TSV,
    Parquet, a datasets folder), and ``columns`` (xl's field → the file's column) renames the fields of files."""
    from xl.io.tables import check_required, read_table, table_format
    from xl.tasks import convert, get_dataset, read_task_file, seeded_subset, validate_records
    from xl.tasks.schemas import TASK_FIELDS

    check_specs(specs)
    for spec in specs:
        lang: str | None = None
        path = _path_of(spec)
        if path != spec:
            lang = spec.partition("=")[0]
        if path_exists(path) or path == "-":
            fmt = table_format(path)
            if fmt is None:
                records = list(read_task_file(path, schema, labels=labels, columns=columns))  # type: ignore[arg-type]
            else:
                rows, names, _ = read_table(path, fmt, columns)
                check_required(names, columns or {}, TASK_FIELDS[schema], path)  # type: ignore[index]
                records = list(validate_records(rows, schema, source=path, labels=labels,  # type: ignore[arg-type]
                                                numbering="row"))  # fmt: skip
            if lang is None and records:
                lang = records[0].get("lang")
            name = _set_name(path)
            yield EvalSet(name, _canonical(lang), seeded_subset(records, limit, seed), path)
            continue
        dataset, _, rest = path.partition(":")
        split, _, langs = rest.partition(":")
        dataset_spec = get_dataset(dataset)
        if dataset_spec.task != schema and not (schema.endswith("classification") and
                                                 dataset_spec.task.endswith("classification")):  # fmt: skip
            raise UsageError(f"{dataset} is {dataset_spec.task} data, not {schema}")
        split = split or "test"
        for one in langs.split(",") if langs else [None]:  # type: ignore[list-item]
            records = list(validate_records(convert(dataset, split, one), schema, source=f"{dataset}:{split}",  # type: ignore[arg-type]
                                            labels=labels))  # fmt: skip
            code = _canonical(records[0].get("lang") if records else one)
            yield EvalSet(f"{dataset}.{split}", code, seeded_subset(records, limit, seed), f"{dataset}:{split}:{code}",
                          dataset, split)  # fmt: skip


def _set_name(path: str) -> str:
    """A data file's name in result lines: its stem; ``stdin``; ``pipe-fd63`` for a process substitution
    (``<(…)`` is ``/dev/fd/63``, whose stem, ``63``, reads like a number)."""
    if path == "-":
        return "stdin"
    parts = Path(path).parts
    if len(parts) >= 2 and parts[-2] == "fd" and parts[-1].isdigit():
        return f"pipe-fd{parts[-1]}"
    return Path(path).stem


def _summary(task: str, results: list[dict[str, Any]], tags: Mapping[str, str] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"summary": True, "task": task, "sets": len(results)}
    for key in ("model", "model_path", "model_fingerprint", "proj"):
        summary[key] = results[0].get(key)
    for metric in task_named(task).headline:
        values = [r[metric] for r in results if r.get(metric) is not None]
        summary[f"mean_{metric}"] = float(np.mean(values)) if values else None
    summary["langs"] = [r.get("lang") for r in results]
    summary["xl_version"] = xl.__version__
    return {**(tags or {}), **summary}


def _write_predictions(folder: str, task: TaskObject, eval_set: EvalSet, predictions: Sequence[Any]) -> str:
    """One file per (dataset, language), XTREME-style (the task's format: a line per record, or qa's JSON)."""
    target = Path(folder) / f"{eval_set.name}.{eval_set.lang or 'xx'}{task.prediction_suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as handle:
        handle.write(task.prediction_bytes(eval_set.records, predictions))
    return str(target)


def evaluate(options: EvalOptions, emit: Callable[[dict[str, Any]], None], log: Log = _quiet,
             progress: Progress = no_progress) -> list[dict[str, Any]]:  # fmt: skip
    """Score every data set, calling ``emit`` with each result as it is ready; return them all. With a model,
    ``progress`` (see :mod:`xl.progress`) hears ``sets`` (sets scored of all, with the ``set`` being scored) and
    ``rows`` (the model's input rows done of the current set's)."""
    if options.task not in EVALUATED:
        raise UsageError(f"unknown task {options.task!r}", hint=f"use {', '.join(EVALUATED)}")
    if options.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    clash = sorted(set(options.tags or {}) & RESERVED_FIELDS)
    if clash:
        raise UsageError(f"--tag {clash[0]}=… would be overwritten by the result field {clash[0]!r}",
                         hint="choose another key, e.g. --tag run=…")  # fmt: skip
    _columns(options)
    if options.layout != "xl" or options.xtreme_task is not None:
        _check_layout(options)
    refuse_stdin_twice({"--embeddings1": options.embeddings1, "--embeddings2": options.embeddings2})
    if options.embeddings1 or options.embeddings2:
        results = [_sts_from_embeddings(options)]
        emit(results[0])
        return results
    if options.model is None:
        raise UsageError("give --model (or, for sts, --embeddings1 and --embeddings2)")
    check_specs(options.data)  # before the model loads, not after
    if sum(_path_of(spec) == "-" for spec in options.data) > 1:
        raise UsageError("stdin (-) given as more than one data set: it can be read once",
                         hint="give - once, and the other sets as files")  # fmt: skip
    if any(_path_of(spec) == "-" for spec in options.data):
        refuse_terminal_stdin("task records", "pipe them in, or pass a file")
    from xl.models.inference import head_of
    from xl.models.registry import resolve_model

    # Each file is checked once before the weights load, against the model's head (its labels and input kind)
    # when the model resolves without building; otherwise the model-free checks come first, since building the
    # default model takes a while and a missing model should not hide a bad file.
    try:
        ref = resolve_model(options.model, build=False)
    except ModelError:
        langs = check_files(options)
        ref = resolve_model(options.model, log=log)
        head = head_of(ref)
        if head is not None and (head.get("labels") or head.get("pair")):
            check_files(options, head)
    else:
        head = head_of(ref)
        langs = check_files(options, head)
    if options.predictions and options.layout != "xl":
        _check_layout_files(options, langs, head, ref.name)
    results = _with_model(options, ref, emit, log, progress)
    if len(results) > 1 and options.summary:
        emit(_summary(options.task, results, options.tags))
    return results


def _check_layout(options: EvalOptions) -> None:
    """Refuse, before the model loads, a ``--layout`` that cannot hold the task or the data sets (see
    :func:`xl.tasks.xtreme.check_layout`), or that has nothing to write."""
    from xl.tasks.xtreme import check_layout

    check_specs(options.data)
    paths = [_path_of(spec) for spec in options.data]
    datasets = [None if path == "-" or path_exists(path) else path.partition(":")[0] for path in paths]
    check_layout(options.layout, options.task, datasets, options.xtreme_task)
    if options.layout == "xl":
        return
    if not options.predictions:
        raise UsageError(f"--layout {options.layout} says how --predictions are written, and none are",
                         hint="give --predictions DIR, or drop --layout")  # fmt: skip
    if options.limit is not None:
        raise UsageError(f"--limit scores a subset, and a --layout {options.layout} file holds every record in order",
                         hint="drop --limit, or write xl's own files (--layout xl)")  # fmt: skip


def _check_layout_files(options: EvalOptions, langs: Mapping[str, str | None], head: Mapping[str, Any] | None,
                        model: str) -> None:  # fmt: skip
    """Refuse, before the weights load, two data sets that would be written as one benchmark file, a set whose
    file cannot be named, and a head whose labels the task folder does not spell: what :func:`_layout_file`
    checks again as each set comes up. ``langs``: each file spec's language (:func:`check_files`). Known here:
    the files, and the languages a dataset spec names; stdin and a dataset spec without languages are known
    only when they are read."""
    task = task_named(options.task)
    labels = list((head or {}).get("labels") or [])
    named: dict[str, str] = {}
    for spec in options.data:
        path = _path_of(spec)
        if spec in langs:
            sets = [(None, None, langs[spec], path)]
        elif path != "-" and not path_exists(path) and path.count(":") >= 2:
            dataset, _, rest = path.partition(":")
            split, _, codes = rest.partition(":")
            sets = [(dataset, split or "test", _canonical(one), f"{dataset}:{split or 'test'}:{_canonical(one)}")
                    for one in codes.split(",") if one]  # fmt: skip
        else:
            continue
        for dataset, split, lang, source in sets:
            _claim_layout_file(options, task, dataset, split, lang, source, labels, model, named)


def _columns(options: EvalOptions) -> dict[str, str]:
    """``--columns`` as {field: column}; refused when no data spec is a file (datasets name their own fields)."""
    from xl.io.tables import parse_columns

    columns = parse_columns(options.columns, task_named(options.task).fields())
    if columns and not any(path_exists(_path_of(spec)) or _path_of(spec) == "-" for spec in options.data):
        raise UsageError("--columns names the columns of a data file, and no data set here is a file",
                         hint="drop --columns: a DATASET:SPLIT:LANG set is read with xl's own field names")  # fmt: skip
    return columns


def _model_fields(ref: Any) -> dict[str, Any]:
    """How a result line names its model: the name, the directory (absolute; None for a hub id) and the weights'
    fingerprint — two fine-tuned runs of one base model share a name, never a path and fingerprint."""
    return {"model": ref.name, "model_path": None if ref.path is None else str(Path(ref.path).resolve()),
            "model_fingerprint": ref.fingerprint}  # fmt: skip


def _result(options: EvalOptions, eval_set: EvalSet, metrics: dict[str, Any], model: Mapping[str, Any],
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One result line; ``"summary": false`` marks it as a data set's (the summary line says true)."""
    return {**(options.tags or {}), "task": options.task, "data": eval_set.name, "lang": eval_set.lang, **metrics,
            **model, "proj": options.proj, **(extra or {}), "source": eval_set.source, "summary": False,
            "xl_version": xl.__version__}  # fmt: skip


# --------------------------------------------------------------------------------------------- sts


def _load_proj(options: EvalOptions, identity: Mapping[str, Any] | None) -> Callable[[np.ndarray], np.ndarray] | None:
    if options.proj is None:
        return None
    from xl.align import check_same_embeddings, load_projection

    if options.proj_side not in ("both", "text1", "text2"):
        raise UsageError(f"--proj-side {options.proj_side!r} is not both, text1 or text2")
    projection, manifest = load_projection(options.proj, force=options.force)
    check_same_embeddings(manifest.get("src_embeddings"), dict(identity or {}), "the model's embeddings",
                          options.proj, options.force)  # fmt: skip
    return projection.apply_source


def _sts_scored(options: EvalOptions, eval_set: EvalSet, A: np.ndarray, B: np.ndarray,
                apply: Callable[[np.ndarray], np.ndarray] | None) -> tuple[dict[str, Any], list[float]]:  # fmt: skip
    from xl.core.metrics import row_cosines, sts_scores

    if apply is not None:
        if options.proj_side in ("both", "text1"):
            A = apply(A)
        if options.proj_side in ("both", "text2"):
            B = apply(B)
    similarity = row_cosines(A, B)
    gold = [float(r["score"]) for r in eval_set.records]
    return sts_scores(similarity, gold, n_boot=options.bootstrap, seed=options.seed), similarity.tolist()


def _sts_from_embeddings(options: EvalOptions) -> dict[str, Any]:
    from xl.align import check_not_mapped
    from xl.io.npy import read_matrix_with_manifest

    if not (options.embeddings1 and options.embeddings2):
        raise UsageError("give both --embeddings1 and --embeddings2 (row i of each is text1/text2 of record i)")
    if len(options.data) != 1:
        raise UsageError("with precomputed embeddings give exactly one data set (the gold scores)")
    eval_set = next(iter_eval_sets(options.data, "sts", limit=None, columns=_columns(options)))
    A, manifest1 = read_matrix_with_manifest(options.embeddings1)
    B, _ = read_matrix_with_manifest(options.embeddings2)
    n = len(eval_set.records)
    for path, M in ((options.embeddings1, A), (options.embeddings2, B)):
        if M.shape[0] != n:
            raise ShapeError(f"{path} has {M.shape[0]} rows but {eval_set.source} has {n} records",
                             hint="embed text1 and text2 of the same file, in order")  # fmt: skip
    if options.proj is not None:
        check_not_mapped(manifest1, options.embeddings1, options.force)
    apply = _load_proj(options, manifest1)
    metrics, similarity = _sts_scored(options, eval_set, A, B, apply)
    if options.predictions:
        _write_predictions(options.predictions, STS, eval_set, similarity)
    return _result(
        options, eval_set, metrics, {"model": None}, {"embeddings": [options.embeddings1, options.embeddings2]}
    )


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


# --------------------------------------------------------------------------------------------- classify / qa


def _with_model(options: EvalOptions, ref: Any, emit: Callable[[dict[str, Any]], None],
                log: Log, progress: Progress) -> list[dict[str, Any]]:  # fmt: skip
    """Every data set through the task object and the one inference stack (what finetune's dev scoring runs)."""
    from xl.models.task_model import TaskInference

    task = task_named(options.task)
    if options.proj is not None and not task.embeds:
        raise UsageError("--proj applies to sts (embedding similarity) only")
    if options.normalization not in ("squad", "mlqa"):
        raise UsageError(f"--answer-normalization {options.normalization!r} is not squad or mlqa")
    runner = TaskInference.load(ref, task, device=options.device, dtype=options.dtype, max_length=options.max_length)
    if task.shares_inputs:
        runner.remember_outputs()
    apply = None
    if task.embeds:
        identity = {"model_fingerprint": ref.fingerprint, "layer": runner.layers, "pooling": runner.pooling,
                    "prefix": ref.prefix, "normalize": runner.normalize}  # fmt: skip
        apply = _load_proj(options, identity)
    schema = task.schema_for(runner.pair)
    results: list[dict[str, Any]] = []
    staged: list[tuple[str, bytes]] = []  # a benchmark layout's files, written together at the end
    named: dict[str, str] = {}
    n_sets = count_eval_sets(options.data)
    for eval_set in iter_eval_sets(options.data, schema, labels=runner.labels or None, limit=options.limit,
                                   seed=options.seed, columns=_columns(options)):  # fmt: skip
        label = f"{eval_set.name} {eval_set.lang or ''}".strip()
        progress("sets", len(results), n_sets, set=label)
        runner.report_rows(progress, "rows", set=label)
        layout_file = None
        if options.predictions and options.layout != "xl":
            layout_file = _layout_file(options, task, eval_set, runner.labels, ref.name, named, log)
        data = runner.tokenize(list(eval_set.records), schema)
        predictions, raw = runner.predict(data)
        if task.embeds:
            metrics, predictions = _sts_scored(options, eval_set, raw["embeddings1"], raw["embeddings2"], apply)
        else:
            metrics = task.score(data, predictions, n_boot=options.bootstrap, seed=options.seed,
                                 normalization=options.normalization, lang=eval_set.lang)  # fmt: skip
        if layout_file is not None:
            from xl.tasks.xtreme import prediction_bytes

            staged.append((layout_file.path, prediction_bytes(layout_file.task, eval_set.records, predictions)))
        elif options.predictions:
            _write_predictions(options.predictions, task, eval_set, predictions)
        run = {"device": runner.device, "dtype": runner.dtype_name, "max_length": runner.max_length}
        eval_set = replace(eval_set, lang=task.result_lang(eval_set.lang))
        result = _result(options, eval_set, metrics, _model_fields(ref), run)
        name = task.headline[0]
        log(f"{eval_set.name} {eval_set.lang}: {name} {_fmt(metrics.get(name))} (n={metrics['n']})")
        emit(result)
        results.append(result)
        progress("sets", len(results), n_sets, set=label)
    if staged and options.predictions:
        from xl.tasks.xtreme import write_files

        write_files(options.predictions, staged)
        log(f"wrote {', '.join(name for name, _ in staged)} under {options.predictions}")
    return results


def _layout_file(options: EvalOptions, task: TaskObject, eval_set: EvalSet, labels: Sequence[Any], model: str,
                 named: dict[str, str], log: Log) -> LayoutFile:  # fmt: skip
    """The file of ``eval_set`` in the benchmark layout (:class:`xl.tasks.xtreme.LayoutFile`), checked before the
    set is scored: a file given twice, or a head whose labels the task does not spell, is refused (``named``:
    the files so far, path → source)."""
    target = _claim_layout_file(options, task, eval_set.dataset, eval_set.split, eval_set.lang, eval_set.source,
                                labels, model, named)  # fmt: skip
    if not target.scored:
        log(f"note: the benchmark's scoring script reads no {target.task.name} language {target.lang}: "
            f"{target.path} is written but not scored there")  # fmt: skip
    return target


def _claim_layout_file(options: EvalOptions, task: TaskObject, dataset: str | None, split: str | None,
                       lang: str | None, source: str, labels: Sequence[Any], model: str,
                       named: dict[str, str]) -> LayoutFile:  # fmt: skip
    """The benchmark file of one data set, added to ``named`` (path → source): refused when another set has it,
    or when the head's ``labels`` are not the task folder's."""
    from xl.tasks import xtreme

    folder = xtreme.task_of(options.layout, dataset, options.xtreme_task)
    target = xtreme.layout_file(folder, split, task.result_lang(lang), source)
    if target.path in named:
        raise UsageError(f"{source} and {named[target.path]} would both be written as {target.path}",
                         hint="give each language of a task folder once")  # fmt: skip
    named[target.path] = source
    xtreme.check_labels(folder, labels, model)
    return target


def render_markdown(task: str, results: Sequence[Mapping[str, Any]]) -> str:
    """A table of the headline metrics (with CIs where present), one row per result."""
    metrics = task_named(task).headline
    head = "| data | lang | n | " + " | ".join(metrics) + " |"
    lines = [head, "|---|---|---:|" + "---:|" * len(metrics)]
    for r in results:
        if r.get("summary"):
            cells = [_fmt(r.get(f"mean_{m}")) for m in metrics]
            lines.append(f"| **mean** | {len(r.get('langs') or [])} sets | | " + " | ".join(cells) + " |")
            continue
        cells = []
        for m in metrics:
            ci = r.get(f"{m}_ci")
            cells.append(_fmt(r.get(m)) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
        lines.append(f"| {r.get('data')} | {r.get('lang') or ''} | {r.get('n')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
