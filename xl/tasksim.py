"""``xl tasksim``: files in, files out, around ``xl.core.tasksim`` (embedding tasks needs a model; the rest
never imports torch)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import xl
from xl.core.languages import language_table
from xl.core.stats import METHODS
from xl.core.tasksim import SIMILARITY_METHODS, Similarity, correlate, parse_gains, similarity_matrix
from xl.errors import InputError, UsageError
from xl.io.atomic import absolute
from xl.io.manifest import base_manifest
from xl.io.npy import read_matrix_with_manifest, write_matrix


@dataclass
class TaskEmbedOptions:
    model: str = "default"
    sample: int = 1000
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    #: npy (a matrix, labels in the manifest) or jsonl (``{task, lang, method, vector}`` per task); None:
    #: jsonl when the output ends in .jsonl, else npy
    output_format: str | None = None


def output_format_for(output: str, requested: str | None) -> str:
    """The task-embedding output format: ``requested``, else from ``output``'s suffix (npy for stdout)."""
    if requested is None:
        return "jsonl" if output.endswith(".jsonl") else "npy"
    if requested not in ("npy", "jsonl"):
        raise UsageError(f"unknown --format {requested!r}", hint="use npy or jsonl")
    return requested


def write_task_embeddings(output: str, names: Sequence[str], E: np.ndarray, manifest: dict[str, Any],
                          output_format: str) -> None:  # fmt: skip
    """One row per task: an NPY matrix with ``manifest`` beside it, or JSON lines ``{task, lang, method,
    vector}`` (a name ``task@lang`` is split at the ``@``; lang is null otherwise), manifest beside the file."""
    if output_format == "npy":
        write_matrix(output, E, manifest)
        return
    from xl.io.jsonl import JsonlWriter

    writer = JsonlWriter(output, manifest)
    try:
        for name, row in zip(names, E, strict=True):
            task, _, lang = name.partition("@")
            writer.write_objects([{"task": task, "lang": lang or None, "method": manifest["method"],
                                   "vector": row.tolist()}])  # fmt: skip
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    """Every record of a JSONL file, or of stdin for ``-``."""
    from xl.tasks.schemas import iter_jsonl

    if path == "-":
        return list(iter_jsonl(sys.stdin.buffer, source="<stdin>"))
    try:
        with open(path, "rb") as handle:
            return list(iter_jsonl(handle, source=path))
    except FileNotFoundError:
        raise InputError("file not found", source=path) from None


def read_task_embeddings(path: str) -> tuple[np.ndarray, list[str] | None]:
    """Task embeddings from NPY (labels from the manifest, or None) or from the JSONL of ``tasksim embed``
    (labels ``task`` or ``task@lang``); ``-`` reads either from stdin."""
    is_jsonl = path.endswith(".jsonl")
    if path == "-":
        is_jsonl = sys.stdin.buffer.peek(1)[:1] == b"{"
    if not is_jsonl:
        # labels from the manifest beside the file, or from the frames of a pipe (xl tasksim embed | …)
        E, manifest = read_matrix_with_manifest(path)
        labels = (manifest or {}).get("labels")
        return E, list(labels) if labels else None
    records = _read_jsonl(path)
    labels, rows = [], []
    for number, record in enumerate(records, start=1):
        task, lang, vector = record.get("task"), record.get("lang"), record.get("vector")
        if not isinstance(task, str) or not task or not isinstance(vector, list) or not vector:
            raise InputError(f"{path}:{number}: not a task embedding", expected='{"task", "lang", "vector": [...]}')
        labels.append(f"{task}@{lang}" if lang else task)
        rows.append(vector)
    if not rows:
        raise InputError("no task embeddings", source=path)
    if len({len(r) for r in rows}) != 1:
        raise InputError("task vectors of different lengths", source=path, found=str(sorted({len(r) for r in rows})))
    try:
        E = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("a task vector holds something other than numbers", source=path) from None
    if not np.isfinite(E).all():
        raise InputError("a task vector holds NaN or infinity", source=path)
    return E, labels


def _task_texts(spec: str, sample: int, seed: int) -> tuple[str, list[str]]:
    """``NAME=DATA`` → (NAME, input texts of a seeded sample of DATA's records)."""
    name, sep, data = spec.partition("=")
    if not sep or not name or not data:
        raise UsageError(f"{spec!r} is not NAME=DATA", hint="e.g. sst2=sst2:train:en or nli=xnli-de.jsonl")
    records: list[Any]
    is_file = Path(data).exists() and not Path(data).is_dir()  # a FIFO or <(…) is a file too
    if is_file and not data.endswith((".jsonl", ".json")):
        try:
            lines = Path(data).read_bytes().decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", source=data,
                             hint="give a text file (one input per line) or task JSONL") from None  # fmt: skip
        records = [{"text": line} for line in lines if line]
    else:
        from xl.tasks import TASKS, detect_schema
        from xl.tasks.schemas import iter_task_file

        if is_file:
            with Path(data).open("rb") as handle:
                records = list(iter_task_file(handle, source=data)[0])
        else:
            from xl.evaluate import iter_eval_sets
            from xl.tasks import DATASETS, get_dataset

            dataset = data.split(":")[0]
            if dataset not in DATASETS:
                raise InputError("no such file or dataset", source=data, hint="a task file, or DATASET:SPLIT:LANG")
            records = [r for s in iter_eval_sets([data], get_dataset(dataset).task) for r in s.records]
        if records and detect_schema(records[0]) not in TASKS:
            raise InputError("records of no known task schema", source=data)
    if not records:
        raise InputError("no records", source=data)
    from xl.tasks import seeded_subset

    records = seeded_subset(records, sample, seed)
    texts: list[str] = []
    for record in records:
        for field in ("text", "text1", "text2", "question", "context"):
            if isinstance(record.get(field), str):
                texts.append(record[field])
    return name, texts


def embed_tasks(specs: Sequence[str], output: str, options: TaskEmbedOptions, method: str = "textemb") -> int:
    """Task embeddings, one row per task (Vu et al. 2020): ``textemb``, the mean sentence embedding of each
    task's inputs (``NAME=DATA``); ``taskemb``, the pooled Fisher diagonal of a model fine-tuned on the task
    (``NAME=RUN_DIR`` or ``NAME=RUN_DIR@DATA``; see ``xl.models.fisher``)."""
    if not specs:
        raise UsageError("no tasks given", hint="e.g. xl tasksim embed sst2=sst2:train:en stsb=stsb:train:en")
    output_format_for(output, options.output_format)  # a bad --format fails before any model is loaded
    if method == "taskemb":
        return _embed_taskemb(specs, output, options)
    if method != "textemb":
        raise UsageError(f"unknown --method {method!r}", hint="use textemb or taskemb")
    tasks = [_task_texts(spec, options.sample, options.seed) for spec in specs]
    names = [name for name, _ in tasks]
    if len(set(names)) != len(names):
        raise UsageError("task names must be unique")
    from xl.models.embedding import EmbedOptions, embed_texts
    from xl.models.encoder import Encoder
    from xl.models.registry import resolve_model

    ref = resolve_model(options.model)
    encoder = Encoder(ref, device=options.device, dtype=options.dtype)
    rows = [embed_texts(encoder, texts, EmbedOptions(model=options.model)).astype(np.float64).mean(axis=0)
            for _, texts in tasks]  # fmt: skip
    manifest = {**base_manifest("task-embeddings"), "method": "textemb", "labels": names, "model": ref.name,
                "model_fingerprint": ref.fingerprint, "sample": options.sample, "seed": options.seed,
                "inputs": {name: len(texts) for name, texts in tasks}, "tasks": list(specs)}  # fmt: skip
    write_task_embeddings(output, names, np.stack(rows).astype(np.float32), manifest,
                          output_format_for(output, options.output_format))  # fmt: skip
    return len(rows)


def _embed_taskemb(specs: Sequence[str], output: str, options: TaskEmbedOptions) -> int:
    from xl.models.fisher import fisher_source, task_fisher
    from xl.models.registry import resolve_model

    jobs = []
    for spec in specs:  # every run and its data are checked before the first (slow) Fisher
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"{spec!r} is not NAME=RUN_DIR[@DATA]", hint="e.g. sst2=runs/sst2")
        run_dir, _, data = rest.partition("@")
        ref = resolve_model(run_dir)
        fisher_source(ref, data or None)
        jobs.append((name, run_dir, data, ref))
    names, rows, described = [], [], []
    for name, run_dir, data, ref in jobs:
        vector, info = task_fisher(ref, data=data or None, sample=options.sample, seed=options.seed,
                                   device=options.device)  # fmt: skip
        if rows and vector.shape != rows[0].shape:
            raise InputError(f"{name}: its Fisher vector has {vector.size} values, the first task's {rows[0].size}",
                             hint="TaskEmb compares models of one architecture")  # fmt: skip
        names.append(name)
        rows.append(vector)
        described.append({"name": name, "model": absolute(run_dir), "fingerprint": ref.fingerprint, **info})
    if len(set(names)) != len(names):
        raise UsageError("task names must be unique")
    manifest = {**base_manifest("task-embeddings"), "method": "taskemb", "labels": names, "sample": options.sample,
                "seed": options.seed, "tasks": described}  # fmt: skip
    write_task_embeddings(output, names, np.stack(rows), manifest, output_format_for(output, options.output_format))
    return len(rows)


def similarity_file(path: str, output: str, *, method: str = "cosine", labels: Sequence[str] | None = None,
                    plot: str | None = None) -> int:  # fmt: skip
    """Read task embeddings, write their similarity matrix (manifest: labels, method)."""
    if method not in SIMILARITY_METHODS:
        raise UsageError(f"unknown similarity {method!r}", hint="use cosine, centered or task2vec")
    E, stored = read_task_embeddings(path)
    names = list(labels) if labels else list(stored or [f"task{i}" for i in range(len(E))])
    S = Similarity(tuple(names), similarity_matrix(E, method))  # type: ignore[arg-type]
    write_matrix(output, S.matrix.astype(np.float32), {**base_manifest("task-similarity"), "labels": names,
                                                       "method": method, "embeddings": absolute(path)})  # fmt: skip
    if plot:
        _heatmap(S, plot, method)
    return len(names)


def read_similarity(path: str) -> Similarity:
    """A similarity matrix: NPY with ``labels`` in its manifest, or JSON ``{"labels": [...], "matrix": [[...]]}``."""
    if path.endswith(".json"):
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise InputError(f"cannot read the similarity JSON ({exc})", source=path) from None
        return Similarity(tuple(str(x) for x in data.get("labels", [])), np.asarray(data.get("matrix"), dtype=float))
    M, manifest = read_matrix_with_manifest(path)
    labels = (manifest or {}).get("labels")
    if not labels:
        raise InputError("the similarity matrix has no labels", source=path,
                         hint="write it with `xl tasksim similarity`, or give JSON {labels, matrix}")  # fmt: skip
    return Similarity(tuple(str(x) for x in labels), M.astype(np.float64))


def correlate_files(sim_path: str, gains_path: str, *, methods: Sequence[str] = METHODS, n_perm: int = 10_000,
                    n_boot: int = 2_000, seed: int = 0, languages: str | None = None,
                    plot: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Correlate similarity with gains (see ``xl.core.tasksim.correlate``); every line carries xl's version."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown --methods {', '.join(unknown) or '(none)'}", hint="use pearson, spearman, kendall")
    sim = read_similarity(sim_path)

    source = "<stdin>" if gains_path == "-" else gains_path
    rows = parse_gains(_read_jsonl(gains_path), source_name=source)
    table = language_table(Path(languages) if languages else None)
    lines = correlate(sim, rows, table=table, methods=methods, n_perm=n_perm, n_boot=n_boot, seed=seed)  # type: ignore[arg-type]
    if plot:
        _scatter(sim, rows, table, plot)
    return [{**line, "xl_version": xl.__version__} for line in lines]


def _heatmap(sim: Similarity, path: str, method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.35 * len(sim.labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(sim.matrix, cmap="viridis")
    ax.set_xticks(range(len(sim.labels)), sim.labels, rotation=90)
    ax.set_yticks(range(len(sim.labels)), sim.labels)
    ax.set_title(f"task similarity ({method})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _scatter(sim: Similarity, rows: Sequence[Any], table: Mapping[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xl.core.languages import normalize_lang_codes

    codes = normalize_lang_codes([r.lang for r in rows], table)
    x = np.array([sim.lookup(r.source, r.target, r.lang) for r in rows], dtype=float)
    y = np.array([r.gain for r in rows])
    families = np.array([table[c].family for c in codes])
    fig, ax = plt.subplots(figsize=(7, 5))
    for family in sorted(set(families)):
        mask = families == family
        ax.scatter(x[mask], y[mask], s=12, alpha=0.7, label=family)
        if mask.sum() >= 3 and np.ptp(x[mask]) > 0:
            slope, intercept = np.polyfit(x[mask], y[mask], 1)
            grid = np.linspace(x[mask].min(), x[mask].max(), 2)
            ax.plot(grid, slope * grid + intercept, linewidth=1)
    ax.set_xlabel("task similarity (source, target)")
    ax.set_ylabel("transfer gain")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
