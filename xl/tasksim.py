"""``xl tasksim``: files in, files out, around ``xl.core.tasksim`` (embedding tasks needs a model; the rest
never imports torch)."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import xl
from xl.core.languages import language_table, normalize_lang_codes
from xl.core.stats import METHODS
from xl.core.tasksim import (
    SIMILARITY_METHODS,
    Similarity,
    correlate,
    parse_gains,
    similarity_matrix,
    similarity_values,
)
from xl.errors import InputError, ModelError, UsageError
from xl.io.atomic import absolute, path_exists, refuse_stdin_twice, refuse_terminal_stdin
from xl.io.manifest import base_manifest
from xl.io.npy import read_matrix_with_manifest, refuse_terminal_stdout, write_matrix
from xl.progress import Progress, counter, no_progress


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
        refuse_terminal_stdin("JSON lines", "pipe them in, or pass a file")
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
        refuse_terminal_stdin("task embeddings", "pipe them in (xl tasksim embed … | …), or pass a file")
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
    from xl.io.tables import read_table, table_format

    fmt = table_format(data)
    is_file = path_exists(data) and not Path(data).is_dir()  # a FIFO or <(…) is a file too
    if fmt is not None:  # CSV, TSV, Parquet, a datasets folder: its columns named as xl's fields
        records = read_table(data, fmt)[0]
    elif is_file and not data.endswith((".jsonl", ".json")):
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
    if not texts:
        raise InputError("no input texts: no field text, text1, text2, question or context", source=data,
                         hint="a table is read under its column names: name a column text, text1 or text2")  # fmt: skip
    return name, texts


def embed_tasks(specs: Sequence[str], output: str, options: TaskEmbedOptions, method: str = "textemb",
                progress: Progress = no_progress) -> int:  # fmt: skip
    """Task embeddings, one row per task (Vu et al. 2020): ``textemb``, the mean sentence embedding of each
    task's inputs (``NAME=DATA``); ``taskemb``, the pooled Fisher diagonal of a model fine-tuned on the task
    (``NAME=RUN_DIR`` or ``NAME=RUN_DIR@DATA``; see ``xl.models.fisher``). ``progress`` (see :mod:`xl.progress`)
    hears ``tasks`` (tasks done of all, with the ``task`` and ``model`` at work) and, within a task, ``rows``
    (texts embedded, textemb) or ``examples`` (Fisher examples, taskemb)."""
    if not specs:
        raise UsageError("no tasks given", hint="e.g. xl tasksim embed sst2=sst2:train:en stsb=stsb:train:en")
    # a bad --format, or binary NPY for a terminal, fails before any model is loaded
    if output_format_for(output, options.output_format) == "npy":
        refuse_terminal_stdout(output)
    if method == "taskemb":
        return _embed_taskemb(specs, output, options, progress)
    if method != "textemb":
        raise UsageError(f"unknown --method {method!r}", hint="use textemb or taskemb")
    tasks = [_task_texts(spec, options.sample, options.seed) for spec in specs]
    names = [name for name, _ in tasks]
    if len(set(names)) != len(names):
        raise UsageError("task names must be unique")
    from xl.embed import EmbedOptions, embed_texts
    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model

    ref = resolve_model(options.model)
    encoder = Encoder(ref, device=options.device, dtype=options.dtype)
    rows = []
    for done, (name, texts) in enumerate(tasks):
        progress("tasks", done, len(tasks), task=name, model=ref.name)
        advance = counter(progress, "rows", len(texts), task=name)
        rows.append(embed_texts(encoder, texts, EmbedOptions(model=options.model), progress=advance)
                    .astype(np.float64).mean(axis=0))  # fmt: skip
        progress("tasks", done + 1, len(tasks), task=name, model=ref.name)
    manifest = {**base_manifest("task-embeddings"), "method": "textemb", "labels": names, "model": ref.name,
                "model_fingerprint": ref.fingerprint, "sample": options.sample, "seed": options.seed,
                "inputs": {name: len(texts) for name, texts in tasks}, "tasks": list(specs)}  # fmt: skip
    write_task_embeddings(output, names, np.stack(rows).astype(np.float32), manifest,
                          output_format_for(output, options.output_format))  # fmt: skip
    return len(rows)


def _run_manifest(ref: Any) -> dict[str, Any]:
    path = (ref.path or Path(".")) / "xl-finetune.json"
    if ref.path is None or not path.is_file():
        raise ModelError("TaskEmb needs a model fine-tuned by `xl finetune` (its xl-finetune.json names the task "
                         "and training data)", source=str(ref.path or ref.spec))  # fmt: skip
    manifest = orjson.loads(path.read_bytes())
    return manifest if isinstance(manifest, dict) else {}


def fisher_source(ref: Any, data: str | None) -> tuple[str, str]:
    """(task, data path) of a fine-tuned run's Fisher: checks, before any model is loaded, that the run is a
    finished xl run and that its data (``data``, else the run's training file) is there."""
    from xl.models.registry import OLD_TASK_NAMES
    from xl.tasks.objects import TRAINABLE

    run = _run_manifest(ref)
    task = OLD_TASK_NAMES.get(str(run.get("task") or ""), str(run.get("task") or ""))
    if task not in TRAINABLE:
        raise ModelError("the run's task is unknown", source=str(ref.path))
    path = data or str(run.get("options", {}).get("train") or "")
    if not path or (path != "-" and not Path(path).exists()):
        raise InputError("the task's training data is not there", source=path or str(ref.path),
                         hint="pass the data: NAME=RUN_DIR@DATA")  # fmt: skip
    return task, path


def task_fisher(ref: Any, *, data: str | None = None, sample: int = 200, seed: int = 0, device: str = "auto",
                include_head: bool = False,
                progress: Progress = no_progress) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """TaskEmb (Vu et al. 2020) of a fine-tuned run: the pooled Fisher diagonal ``(k,)`` float32 of its model on
    ``sample`` examples of ``data`` (default: the run's own training file), tokenized as the run was (its task,
    max length, labels), and a description (task, data, examples, parameter layout). See ``xl.models.fisher``."""
    from xl.models.fisher import fisher_diagonal
    from xl.models.inference import from_pretrained, head_of, load_config, load_tokenizer, resolve_max_length
    from xl.tasks import seeded_subset
    from xl.tasks.data import read_task_input
    from xl.tasks.objects import task_named

    name, path = fisher_source(ref, data)
    task = task_named(name)
    head = head_of(ref) or {}
    if sample < 1:
        raise UsageError("--sample must be at least 1")
    labels = list(head.get("labels") or [])
    # the run's own training file is read with the run's own column mapping (a table trained with --columns)
    columns = None if data else _run_manifest(ref).get("options", {}).get("columns")
    # read once: the data may be a FIFO or stdin
    schema, all_records, _ = read_task_input(path, "task", task, labels=labels or None, columns=columns)
    if not all_records:
        raise InputError("no records in the task's data", source=path)
    records = seeded_subset(all_records, sample, seed)
    tokenizer = from_pretrained(load_tokenizer, ref)
    examples = task.tokenize(records, tokenizer, schema=schema, prefix=ref.prefix,
                             max_length=resolve_max_length(None, ref, task.train_max_length, load_config(ref)),
                             doc_stride=int(head.get("doc_stride", 128)), labels=labels)  # fmt: skip
    advance = counter(progress, "examples", len(task.fisher_examples(examples)))
    embedding, layout = fisher_diagonal(ref, task, examples, seed=seed, device=device, include_head=include_head,
                                        progress=advance)  # fmt: skip
    return embedding, {"task": task.name, "data": absolute(path), "examples": len(task.fisher_examples(examples)),
                       "layout": layout}  # fmt: skip


def _embed_taskemb(specs: Sequence[str], output: str, options: TaskEmbedOptions, progress: Progress) -> int:
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
    for done, (name, run_dir, data, ref) in enumerate(jobs):
        progress("tasks", done, len(jobs), task=name, model=run_dir)
        vector, info = task_fisher(ref, data=data or None, sample=options.sample, seed=options.seed,
                                   device=options.device, progress=progress)  # fmt: skip
        progress("tasks", done + 1, len(jobs), task=name, model=run_dir)
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
    check_plot_path(plot)
    E, stored = read_task_embeddings(path)
    names = list(labels) if labels else list(stored or [f"task{i}" for i in range(len(E))])
    S = Similarity(tuple(names), similarity_matrix(E, method))  # type: ignore[arg-type]
    figure = _heatmap(S, plot, method) if plot else None
    write_matrix(output, S.matrix.astype(np.float32), {**base_manifest("task-similarity"), "labels": names,
                                                       "method": method, "embeddings": absolute(path)})  # fmt: skip
    if plot and figure is not None:
        write_plot(plot, figure)
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
                    n_boot: int = 2_000, seed: int = 0, languages: str | None = None, plot: str | None = None,
                    **options: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Correlate similarity with gains (``xl.core.tasksim.correlate``; ``options``: its keyword options);
    every line carries xl's version. The plot path is checked first and the plot drawn before returning."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown --methods {', '.join(unknown) or '(none)'}", hint="use pearson, spearman, kendall")
    check_plot_path(plot)
    refuse_stdin_twice({"--sim": sim_path, "--gains": gains_path})
    sim = read_similarity(sim_path)
    source = "<stdin>" if gains_path == "-" else gains_path
    records = _read_jsonl(gains_path)
    rows = parse_gains(records, source_name=source)
    table = language_table(Path(languages) if languages else None)
    lines = correlate(sim, rows, table=table, methods=methods, n_perm=n_perm, n_boot=n_boot, seed=seed,  # type: ignore[arg-type]
                      records=records, **options)  # fmt: skip
    if plot:
        write_plot(plot, _scatter(sim, rows, table, plot))
    return [{**line, "xl_version": xl.__version__} for line in lines]


#: Formats a --plot may be written in (matplotlib's Agg backend), by suffix.
PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_plot_path(path: str | None) -> None:
    """Refuse a --plot target before any work: a suffix matplotlib cannot write, or a folder that is missing
    or not writable (after the computation such a failure would cost the run and leave its outputs behind)."""
    if path is None:
        return
    import os

    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: cannot write a plot as {target.suffix or 'a file without suffix'!r}",
                         hint=f"end the name in {', '.join(PLOT_FORMATS)}")  # fmt: skip
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--plot {path}: no folder {str(folder)!r}", hint="create it first")
    if target.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"--plot {path}: cannot write there", hint="choose another path")


def _figure_bytes(fig: Any, path: str) -> bytes:
    """``fig`` rendered in the format of ``path``'s suffix, in memory: the plot is drawn before any output is
    written, so that a plot that fails leaves nothing behind."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lower().lstrip("."), dpi=120)
    return buffer.getvalue()


def write_plot(path: str, data: bytes) -> None:
    """Write rendered plot bytes to ``path`` atomically."""
    from xl.io.atomic import atomic_write

    with atomic_write(path) as handle:
        handle.write(data)


def _heatmap(sim: Similarity, path: str, method: str) -> bytes:
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
    data = _figure_bytes(fig, path)
    plt.close(fig)
    return data


def _scatter(sim: Similarity, rows: Sequence[Any], table: Mapping[str, Any], path: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xl.core.languages import normalize_lang_codes

    codes = normalize_lang_codes([r.lang for r in rows], table)
    x = np.asarray(similarity_values(sim, rows, codes, table), dtype=float)
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
    data = _figure_bytes(fig, path)
    plt.close(fig)
    return data


# --------------------------------------------------------------------------------------------- gains


def read_records(paths: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The JSON records of each of ``paths`` (``-``: stdin, at most once), with the name errors use."""
    if not paths:
        raise UsageError("no result files given", hint="e.g. xl tasksim gains results.jsonl (or - for stdin)")
    if list(paths).count("-") > 1:
        raise UsageError("stdin (-) given twice")
    return [("<stdin>" if path == "-" else path, _read_jsonl(path)) for path in paths]


def gains_files(paths: Sequence[str], options: Any) -> Any:
    """Gain rows (``xl.core.gains.build_gains``) from the ``xl eval`` lines of ``paths``, read in order (the
    first of two sets for a language is the one kept)."""
    from xl.core.gains import build_gains

    named = read_records(paths)
    records = [record for _, records in named for record in records]
    try:
        return build_gains(records, options, source_name=named[0][0])
    except InputError as exc:
        # the records were numbered as one sequence: an error names the file and the line of its own record
        if exc.line is not None and len(named) > 1:
            number = exc.line
            for name, part in named:
                if number <= len(part):
                    exc.source, exc.line = name, number
                    break
                number -= len(part)
        raise


def decompose_file(path: str) -> dict[str, Any]:
    """The variance decomposition of the gain rows in ``path`` (``xl.core.gains.decompose``)."""
    from xl.core.gains import decompose

    source = "<stdin>" if path == "-" else path
    return {"kind": "decomposition", **decompose(_read_jsonl(path), source_name=source),
            "gains": absolute(path), "xl_version": xl.__version__}  # fmt: skip


# --------------------------------------------------------------------------------------------- covariates, predict


def covariates_for(specs: Sequence[str], *, english: str | None = None, model: str = "default", sample: int = 1000,
                   seed: int = 0, languages: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per-language covariates (``xl.core.covariates.language_covariates``): ``CODE`` for family, script and the
    URIEL distances to English; ``CODE=DATA`` (every spec, with ``english``) adds the subword statistics of
    ``model``'s tokenizer on a seeded sample of DATA's inputs against English's (``xl.models.tokenstats``)."""
    from xl.core.covariates import language_covariates

    if not specs:
        raise UsageError("no languages given", hint="e.g. xl tasksim covariates de fr ko, or de=xnli:test:de …")
    table = language_table(Path(languages) if languages else None)
    codes = [spec.partition("=")[0] for spec in specs]
    data = {code: spec.partition("=")[2] for code, spec in zip(codes, specs, strict=True) if "=" in spec}
    subword = None
    if data or english:
        lacking = [code for code in codes if not data.get(code)]
        if english is None or lacking:
            raise UsageError("subword covariates need --english DATA and CODE=DATA for every language"
                             + (f" (no data: {', '.join(lacking)})" if lacking else ""),
                             hint="or give plain codes for the URIEL covariates only")  # fmt: skip
        from xl.models.tokenstats import load_model_tokenizer, subword_statistics

        english_texts = _task_texts(f"en={english}", sample, seed)[1]
        texts = {code: _task_texts(f"{code}={value}", sample, seed)[1] for code, value in data.items()}
        subword = subword_statistics(load_model_tokenizer(model), english_texts, texts)
    return language_covariates(codes, table, subword=subword)


def predict_files(sim_path: str, gains_path: str, *, covariates: str | None = None, languages: str | None = None,
                  **options: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Grouped cross-validation of gain ~ similarity + language covariates (``xl.core.predict.grouped_cv``;
    ``options``: its keyword options). Without ``covariates`` (JSONL of ``xl tasksim covariates``) the
    URIEL covariates of the gains' languages are computed. The fold lines are left out of the result."""
    from xl.core.covariates import language_covariates
    from xl.core.predict import grouped_cv

    refuse_stdin_twice({"--sim": sim_path, "--gains": gains_path, "--covariates": covariates})
    sim = read_similarity(sim_path)
    source = "<stdin>" if gains_path == "-" else gains_path
    rows = parse_gains(_read_jsonl(gains_path), source_name=source)
    table = language_table(Path(languages) if languages else None)
    codes = normalize_lang_codes([r.lang for r in rows], table)
    x = similarity_values(sim, rows, codes, table)
    points = [{"source": r.source, "target": r.target, "lang": code, "gain": r.gain, "similarity": value}
              for r, code, value in zip(rows, codes, x, strict=True)]  # fmt: skip
    if covariates is not None:
        covariate_rows = _read_jsonl(covariates)
        have = set(normalize_lang_codes([str(c.get("code")) for c in covariate_rows], table))
        missing = sorted(set(codes) - have)
        if missing:
            raise InputError(f"languages missing from the covariates: {', '.join(missing)}", source=covariates,
                             hint="add them (xl tasksim covariates CODE …; a code outside the table needs "
                                  "--languages FILE.json), or drop their gain rows")  # fmt: skip
    else:
        covariate_rows = language_covariates(sorted(set(codes)), table)
    lines = grouped_cv(points, covariate_rows, table=table, **options)
    return [{**line, "xl_version": xl.__version__} for line in lines if line["kind"] != "folds"]
