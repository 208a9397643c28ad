"""``xl eval sts|classify|qa``: run a model (or read precomputed embeddings) on target-language data and score it.

Data are given as task files (``PATH``, or ``LANG=PATH`` to name the language) or as registry datasets
(``DATASET:SPLIT:LANG[,LANG…]``, read from ``$XL_DATA`` through ``xl.tasks.convert``). Each (dataset, language)
gives one result dict; several give a summary too (the unweighted mean over them). Gold labels are read
only to score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xl
from xl.errors import InputError, ShapeError, UsageError
from xl.io.atomic import atomic_write

Log = Callable[[str], None]

#: Fields of every result line; a --tag may not reuse them.
RESERVED_FIELDS = frozenset(
    ("task data lang n model proj source xl_version device dtype summary sets langs embeddings missing "
     "normalization per_label reason spearman pearson accuracy macro_f1 exact_match f1").split()
)  # fmt: skip

HEADLINE = {"sts": ("spearman", "pearson"), "classify": ("accuracy", "macro_f1"), "qa": ("exact_match", "f1")}


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
    bootstrap: int = 0
    seed: int = 0
    predictions: str | None = None
    normalization: str = "squad"
    limit: int | None = None
    force: bool = False
    tags: dict[str, str] | None = None


@dataclass
class EvalSet:
    """One (dataset, language) to score: its records and where they came from."""

    name: str
    lang: str | None
    records: list[Mapping[str, Any]]
    source: str


def _schema_for(task: str, pair: bool) -> str:
    return {"sts": "sts", "qa": "qa"}.get(task, "pair-classification" if pair else "classification")


def iter_eval_sets(specs: Sequence[str], schema: str, *, labels: Sequence[Any] | None = None,
                   limit: int | None = None, seed: int = 0) -> Iterator[EvalSet]:  # fmt: skip
    """Read every data spec (see the module docstring) as validated records."""
    from xl.tasks import DATASETS, convert, get_dataset, read_task_file, seeded_subset, validate_records

    if not specs:
        raise UsageError("no evaluation data given", hint="e.g. xl eval sts korsts:test  or  xl eval sts ko=ko.jsonl")
    for spec in specs:
        lang: str | None = None
        path = spec
        if "=" in spec and not Path(spec).exists():
            lang, _, path = spec.partition("=")
        if Path(path).exists() or path == "-":
            records = list(read_task_file(path, schema, labels=labels))  # type: ignore[arg-type]
            if lang is None and records:
                lang = records[0].get("lang")
            name = Path(path).stem if path != "-" else "stdin"
            yield EvalSet(name, lang, seeded_subset(records, limit, seed), path)
            continue
        dataset, _, rest = path.partition(":")
        if dataset not in DATASETS:
            raise InputError(
                "no such file or dataset",
                source=path,
                hint=f"give a task file, or DATASET:SPLIT:LANG with a dataset of: {', '.join(DATASETS)}",
            )
        split, _, langs = rest.partition(":")
        dataset_spec = get_dataset(dataset)
        if dataset_spec.task != schema and not (schema.endswith("classification") and
                                                 dataset_spec.task.endswith("classification")):  # fmt: skip
            raise UsageError(f"{dataset} is {dataset_spec.task} data, not {schema}")
        split = split or "test"
        for one in langs.split(",") if langs else [None]:  # type: ignore[list-item]
            records = list(validate_records(convert(dataset, split, one), schema, source=f"{dataset}:{split}",  # type: ignore[arg-type]
                                            labels=labels))  # fmt: skip
            code = records[0].get("lang") if records else one
            yield EvalSet(f"{dataset}.{split}", code, seeded_subset(records, limit, seed), f"{dataset}:{split}:{code}")


def _summary(task: str, results: list[dict[str, Any]], tags: Mapping[str, str] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"summary": True, "task": task, "sets": len(results)}
    for key in ("model", "proj"):
        summary[key] = results[0].get(key)
    for metric in HEADLINE[task]:
        values = [r[metric] for r in results if r.get(metric) is not None]
        summary[f"mean_{metric}"] = float(np.mean(values)) if values else None
    summary["langs"] = [r.get("lang") for r in results]
    summary["xl_version"] = xl.__version__
    return {**(tags or {}), **summary}


def _write_predictions(folder: str, task: str, eval_set: EvalSet, predictions: Sequence[Any]) -> str:
    """One file per (dataset, language), XTREME-style: a line per record, or ``{id: answer}`` JSON for qa."""
    import orjson

    name = f"{eval_set.name}.{eval_set.lang or 'xx'}"
    target = Path(folder) / (f"{name}.json" if task == "qa" else f"{name}.txt")
    target.parent.mkdir(parents=True, exist_ok=True)
    if task == "qa":
        payload = orjson.dumps({str(r["id"]): p for r, p in zip(eval_set.records, predictions, strict=True)},
                               option=orjson.OPT_INDENT_2)  # fmt: skip
    else:
        payload = "".join(f"{p:.6f}\n" if task == "sts" else f"{p}\n" for p in predictions).encode()
    with atomic_write(target) as handle:
        handle.write(payload)
    return str(target)


def evaluate(options: EvalOptions, emit: Callable[[dict[str, Any]], None], log: Log = _quiet) -> list[dict[str, Any]]:
    """Score every data set, calling ``emit`` with each result as it is ready; return them all."""
    if options.task not in HEADLINE:
        raise UsageError(f"unknown task {options.task!r}", hint="use sts, classify, qa (or retrieval)")
    if options.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    clash = sorted(set(options.tags or {}) & RESERVED_FIELDS)
    if clash:
        raise UsageError(f"--tag {clash[0]}=… would be overwritten by the result field {clash[0]!r}",
                         hint="choose another key, e.g. --tag run=…")  # fmt: skip
    if options.task == "sts" and (options.embeddings1 or options.embeddings2):
        results = [_sts_from_embeddings(options)]
        emit(results[0])
        return results
    if options.model is None:
        raise UsageError("give --model (or, for sts, --embeddings1 and --embeddings2)")
    from xl.models.registry import resolve_model

    ref = resolve_model(options.model, log=log)
    if options.task == "sts":
        results = _sts_with_model(options, ref, emit, log)
    else:
        results = _task_with_model(options, ref, emit, log)
    if len(results) > 1:
        emit(_summary(options.task, results, options.tags))
    return results


def _result(options: EvalOptions, eval_set: EvalSet, metrics: dict[str, Any], model: str | None,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {**(options.tags or {}), "task": options.task, "data": eval_set.name, "lang": eval_set.lang, **metrics,
            "model": model,
            "proj": options.proj, **(extra or {}), "source": eval_set.source, "xl_version": xl.__version__}  # fmt: skip


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
    from xl.core.metrics import sts_scores
    from xl.models.task_eval import row_cosines

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
    eval_set = next(iter_eval_sets(options.data, "sts", limit=None))
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
        _write_predictions(options.predictions, "sts", eval_set, similarity)
    return _result(options, eval_set, metrics, None, {"embeddings": [options.embeddings1, options.embeddings2]})


def _sts_with_model(options: EvalOptions, ref: Any, emit: Callable[[dict[str, Any]], None],
                    log: Log) -> list[dict[str, Any]]:  # fmt: skip
    from xl.models.embedding import EmbedOptions, embed_texts
    from xl.models.encoder import Encoder

    head = ref.info.get("head") if isinstance(ref.info.get("head"), dict) else {}
    pooling = str(head.get("pooling") or ref.info.get("pooling") or "mean")
    embed_options = EmbedOptions(
        model=options.model or "default",
        pooling=pooling,  # type: ignore[arg-type]
        max_length=options.max_length or 512,
        device=options.device,
        dtype=options.dtype,
    )
    encoder = Encoder(ref, device=options.device, dtype=options.dtype, max_length=embed_options.max_length)
    identity = {"model_fingerprint": ref.fingerprint, "layer": encoder.layers[0], "pooling": pooling,
                "prefix": ref.prefix, "normalize": False}  # fmt: skip
    apply = _load_proj(options, identity)
    results = []
    for eval_set in iter_eval_sets(options.data, "sts", limit=options.limit, seed=options.seed):
        A = embed_texts(encoder, [r["text1"] for r in eval_set.records], embed_options)
        B = embed_texts(encoder, [r["text2"] for r in eval_set.records], embed_options)
        metrics, similarity = _sts_scored(options, eval_set, A, B, apply)
        if options.predictions:
            _write_predictions(options.predictions, "sts", eval_set, similarity)
        result = _result(options, eval_set, metrics, ref.name,
                         {"device": encoder.device, "dtype": encoder.dtype_name})  # fmt: skip
        log(f"{eval_set.name} {eval_set.lang}: spearman {_fmt(metrics.get('spearman'))} (n={metrics['n']})")
        emit(result)
        results.append(result)
    return results


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


# --------------------------------------------------------------------------------------------- classify / qa


def _task_with_model(options: EvalOptions, ref: Any, emit: Callable[[dict[str, Any]], None],
                     log: Log) -> list[dict[str, Any]]:  # fmt: skip
    from xl.models.finetune import tokenize_task
    from xl.models.task_eval import predict_task_data, score_predictions
    from xl.models.task_model import TaskRunner

    if options.proj is not None:
        raise UsageError("--proj applies to sts (embedding similarity) only")
    if options.normalization not in ("squad", "mlqa"):
        raise UsageError(f"--normalize {options.normalization!r} is not squad or mlqa")
    from xl.models.task_model import TASK_SCHEMA

    task_schema = TASK_SCHEMA[options.task]
    runner = TaskRunner(ref, task_schema, device=options.device, dtype=options.dtype, max_length=options.max_length)
    schema = _schema_for(options.task, runner.pair)
    labels = runner.labels if options.task == "classify" else None
    results = []
    for eval_set in iter_eval_sets(options.data, schema, labels=labels, limit=options.limit, seed=options.seed):
        data = tokenize_task(options.task, schema, list(eval_set.records), runner.tokenizer, prefix=runner.prefix,
                             max_length=runner.max_length, doc_stride=int(runner.head.get("doc_stride", 128)),
                             labels=labels or [], with_labels=False)  # fmt: skip
        predictions, _ = predict_task_data(runner.model, options.task, data, runner.pad_id, runner.device,
                                           labels=labels)  # fmt: skip
        metrics = score_predictions(options.task, data, predictions, n_boot=options.bootstrap, seed=options.seed,
                                    normalization=options.normalization, lang=eval_set.lang)  # fmt: skip
        if options.predictions:
            _write_predictions(options.predictions, options.task, eval_set, predictions)
        result = _result(options, eval_set, metrics, ref.name, {"device": runner.device, "dtype": runner.dtype_name})
        name = HEADLINE[options.task][0]
        log(f"{eval_set.name} {eval_set.lang}: {name} {_fmt(metrics.get(name))} (n={metrics['n']})")
        emit(result)
        results.append(result)
    return results


def render_markdown(task: str, results: Sequence[Mapping[str, Any]]) -> str:
    """A table of the headline metrics (with CIs where present), one row per result."""
    metrics = HEADLINE[task]
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
