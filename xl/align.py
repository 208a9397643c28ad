"""Cross-lingual alignment as library functions behind ``xl fit-proj``, ``xl apply-proj`` and
``xl eval retrieval``: matrices in from files or pipes, maths from :mod:`xl.core`, maps out with manifests.

A map is ``W.npy`` (float32; (d+1, d') with the bias as last row when affine) plus ``W.npy.json``, which holds
everything needed to reproduce it: method, hyperparameters, both preprocessing chains with their learned
means, the number of pairs, languages, the model and layer of both inputs, fit diagnostics and held-out
retrieval before and after the map. No torch is imported unless ``--method sgd`` is asked for.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xl.core.languages import canonical_lang
from xl.core.projection import (
    Preprocessing,
    Projection,
    SufficientStats,
    dev_row_mask,
    evaluate_projection,
    fit_preprocessing_pair,
    fit_projection,
    fit_warnings,
    parse_normalize,
    projection_diagnostics,
    zip_row_chunks,
)
from xl.core.retrieval import retrieval_metrics
from xl.errors import InputError, ManifestError, ShapeError, UsageError
from xl.io.atomic import absolute, check_input_path, is_regular_file, refuse_stdin_twice, spool
from xl.io.manifest import base_manifest
from xl.io.npy import (
    DEFAULT_CHUNK_ROWS,
    MatrixStream,
    MatrixWriter,
    iter_matrix_chunks,
    matrix_manifest,
    matrix_rows,
    read_matrix_with_manifest,
    write_matrix,
)
from xl.progress import Progress, no_progress

Log = Callable[[str], None]

#: Fields of an embedding manifest that must agree between a map and the matrices it is applied to.
_IDENTITY_FIELDS = ("model_fingerprint", "layer", "pooling", "prefix", "normalize")


def _quiet(_: str) -> None:
    pass


@dataclass
class FitOptions:
    """Everything that changes the fitted map (all of it recorded in the manifest)."""

    method: str = "lstsq"
    ridge: float = 0.0
    center: bool = False
    normalize_src: str | None = None
    normalize_tgt: str | None = None
    dev_frac: float = 0.1
    dev_max: int = 10_000
    seed: int = 0
    src_lang: str | None = None
    tgt_lang: str | None = None
    # sgd only
    lr: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    patience: int = 5
    chunk_rows: int = 65_536


def _embedding_identity(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    keys = ("model", "model_fingerprint", "layer", "pooling", "prefix", "normalize", "dtype_compute",
            "input", "input_sha256")  # fmt: skip
    return {k: manifest.get(k) for k in keys if k in manifest}


def _spool_stream(path: str, tmp: Path, name: str) -> str:
    """A pipe, a FIFO or a process substitution can be read once; fits that need several passes read a
    spooled copy (disk, not memory). A regular file is read in place."""
    if is_regular_file(path):
        return path
    return str(spool(path, tmp / f"{name}.npy", "a matrix"))


class _PairStream:
    """Row-aligned (X, Y) train chunks of two matrix files; the first pass also collects the dev rows.

    Each pass reports the rows read to ``progress`` (stage ``read``, with ``what`` the pass is for: the means of a
    ``center`` step, the statistics, an sgd epoch), and the end of the statistics pass starts stage ``fit``."""

    def __init__(self, src: str, tgt: str, labels: tuple[str, str], options: FitOptions,
                 progress: Progress = no_progress) -> None:  # fmt: skip
        self.src, self.tgt, self.labels, self.options = src, tgt, labels, options
        self.dev_x: list[NDArray[np.float32]] = []
        self.dev_y: list[NDArray[np.float32]] = []
        self.n_dev = 0
        self.n_total = 0
        self.passes = 0
        self.progress = progress
        self.total = matrix_rows(src)  # known before the first pass for a file; after it for any input
        # the passes before the map: one per `center` step of the longer chain, then the statistics
        chains = (parse_normalize(options.normalize_src), parse_normalize(options.normalize_tgt))
        self.mean_passes = max(chain.count("center") for chain in chains)

    def _what(self, number: int) -> str:
        if number <= self.mean_passes:
            return f"means, pass {number} of {self.mean_passes + 1}"
        if number == self.mean_passes + 1:
            return f"statistics, pass {number} of {self.mean_passes + 1}"
        return f"sgd epoch {number - self.mean_passes - 1}"

    def __call__(self) -> Iterator[tuple[NDArray[np.float32], NDArray[np.float32]]]:
        first = self.passes == 0
        self.passes += 1
        what = self._what(self.passes)
        offset = 0
        n_dev = 0
        self.progress("read", 0, self.total, what=what)
        # sgd shuffles inside chunks, so it gets big ones; the closed forms read the reader's own chunk size,
        # which avoids re-blocking copies (peak RSS at 1M x 384: 650 -> 180 MB).
        rows = self.options.chunk_rows if self.options.method == "sgd" else DEFAULT_CHUNK_ROWS
        pairs = zip_row_chunks(
            iter_matrix_chunks(self.src, chunk_rows=rows, mapped=True),
            iter_matrix_chunks(self.tgt, chunk_rows=rows, mapped=True),
            chunk_rows=rows, x_label=self.labels[0], y_label=self.labels[1],
        )  # fmt: skip
        for X, Y in pairs:
            rows = np.arange(offset, offset + len(X))
            offset += len(X)
            mask = dev_row_mask(rows, self.options.dev_frac, self.options.seed)
            # The first dev_max rows picked for dev are held out; later picks train (bounded memory).
            picked = np.flatnonzero(mask)[: max(0, self.options.dev_max - n_dev)]
            mask = np.zeros(len(X), dtype=bool)
            mask[picked] = True
            n_dev += len(picked)
            if first and len(picked):
                self.dev_x.append(np.array(X[picked], dtype=np.float32))
                self.dev_y.append(np.array(Y[picked], dtype=np.float32))
            self.progress("read", offset, self.total, what=what)
            yield (X[~mask], Y[~mask]) if len(picked) else (X, Y)
        if first:
            self.n_total, self.n_dev = offset, n_dev
            self.total = offset
        self.progress("read", offset, offset, what=what)
        if self.passes == self.mean_passes + 1:
            self.progress("fit", 0, 1, method=self.options.method)

    def dev(self) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
        if not self.dev_x:
            return None
        return np.concatenate(self.dev_x), np.concatenate(self.dev_y)


def _fit_other(stream: _PairStream, options: FitOptions, log: Log) -> Projection:
    """``identity`` (W = I, the no-map baseline; with ``--center`` the bias moves the source mean onto the
    target mean) and ``sgd`` (:func:`xl.models.linear_map.fit_linear_map`): preprocessing, one pass of
    statistics for the diagnostics, then the map."""
    steps_x, steps_y = parse_normalize(options.normalize_src), parse_normalize(options.normalize_tgt)
    pre_x, pre_y, _ = fit_preprocessing_pair(steps_x, steps_y, stream, x_label=stream.labels[0],
                                             y_label=stream.labels[1])  # fmt: skip
    stats = SufficientStats(x_label=stream.labels[0], y_label=stream.labels[1])
    for X, Y in stream():
        stats.update(pre_x.apply(X), pre_y.apply(Y))
    if stats.n == 0 or stats.d_x is None:
        raise InputError("no pairs to fit on (the input is empty)", hint="check that both matrices have rows")
    training: dict[str, Any] | None = None
    if options.method == "identity":
        if stats.d_x != stats.d_y:
            raise ShapeError(f"the identity map needs equal widths, not {stats.d_x} and {stats.d_y}")
        W = np.eye(stats.d_x, dtype=np.float32)
        if options.center:
            bias = (stats.sum_y - stats.sum_x) / stats.n
            W = np.vstack([W, bias[None, :].astype(np.float32)])
    else:
        from xl.models.linear_map import fit_linear_map

        def train_chunks() -> Iterator[tuple[NDArray[np.float32], NDArray[np.float32]]]:
            for X, Y in stream():
                yield pre_x.apply(X), pre_y.apply(Y)

        dev = stream.dev()
        dev_pre = None if dev is None else (pre_x.apply(dev[0]), pre_y.apply(dev[1]))
        fit = fit_linear_map(train_chunks, dev_pre, center=options.center, lr=options.lr, epochs=options.epochs,
                             batch_size=options.batch_size, patience=options.patience, seed=options.seed,
                             log=log)  # fmt: skip
        W, training = fit.W, fit.record()
    diagnostics = projection_diagnostics(stats, W, center=options.center, method=options.method)
    if training is not None:
        # Which epoch's weights were kept, where training stopped and why (patience or the epoch limit).
        diagnostics["sgd"] = training
    return Projection(W, options.method, options.center, 0.0, pre_x, pre_y, diagnostics)


def fit_projection_files(src: str, tgt: str, output: str, options: FitOptions, log: Log = _quiet,
                         progress: Progress = no_progress) -> dict[str, Any]:  # fmt: skip
    """Fit a map from ``src`` rows to ``tgt`` rows (row i ↔ row i), write it with its manifest.

    Returns the manifest written. lstsq and procrustes stream sufficient statistics (memory O(d²)); the
    dev rows (seeded hash of the row index, at most ``dev_max``) are held out and scored before/after.
    ``progress`` (see :mod:`xl.progress`) hears ``read`` (rows read in each pass over the inputs), ``fit`` (0 of 1
    while the map is solved or trained, 1 when it is) and ``dev`` (dev pairs scored).
    """
    refuse_stdin_twice({"--src": src, "--tgt": tgt})
    if options.method not in ("lstsq", "procrustes", "sgd", "identity"):
        raise UsageError(f"unknown method {options.method!r}", hint="use lstsq, procrustes, sgd or identity")
    for path in (src, tgt):
        check_input_path(path, "a matrix")
    labels = ("stdin" if src == "-" else src, "stdin" if tgt == "-" else tgt)
    with tempfile.TemporaryDirectory(prefix="xl-fit-") as tmp_name:
        src_path, tgt_path = _spool_stream(src, Path(tmp_name), "src"), _spool_stream(tgt, Path(tmp_name), "tgt")
        # The manifest beside a file, or the leading frame of an xl stream (xl embed | xl fit-proj --src -).
        src_manifest, tgt_manifest = matrix_manifest(src_path), matrix_manifest(tgt_path)
        stream = _PairStream(src_path, tgt_path, labels, options, progress)
        if options.method in ("sgd", "identity"):
            projection = _fit_other(stream, options, log)
        else:
            projection = fit_projection(
                stream, options.method, ridge=options.ridge, center=options.center,
                normalize_x=options.normalize_src, normalize_y=options.normalize_tgt,
                x_label=labels[0], y_label=labels[1],
            )  # fmt: skip
    progress("fit", 1, 1, method=options.method)
    dev = stream.dev()
    dev_report = None
    if dev is not None:
        progress("dev", 0, len(dev[0]))
        dev_report = evaluate_projection(dev[0], dev[1], projection)
        progress("dev", len(dev[0]), len(dev[0]))
    manifest = {
        **base_manifest("projection"),
        "projection": projection.to_dict(),
        "pairs": stream.n_total,
        "pairs_train": stream.n_total - stream.n_dev,
        "pairs_dev": stream.n_dev,
        "dev_frac": options.dev_frac,
        "dev_max": options.dev_max,
        "seed": options.seed,
        "hyperparameters": {
            "lr": options.lr,
            "epochs": options.epochs,
            "batch_size": options.batch_size,
            "patience": options.patience,
        }
        if options.method == "sgd"
        else None,  # fmt: skip
        "src": absolute(src) if src != "-" else "stdin",
        "tgt": absolute(tgt) if tgt != "-" else "stdin",
        "src_lang": None if options.src_lang is None else canonical_lang(options.src_lang),
        "tgt_lang": None if options.tgt_lang is None else canonical_lang(options.tgt_lang),
        "src_embeddings": _embedding_identity(src_manifest),
        "tgt_embeddings": _embedding_identity(tgt_manifest),
        "dev": dev_report,
    }
    write_matrix(output, projection.W, manifest)
    _log_fit(manifest, log)
    return manifest


def _log_fit(manifest: dict[str, Any], log: Log) -> None:
    projection = manifest["projection"]
    diag, method = projection["diagnostics"], projection["method"]
    cond = diag.get("condition_number")
    log(f"{method}: {manifest['pairs_train']} train pairs, fit residual {diag['fit_residual']:.4f}, "
        f"orthogonality error {diag['orthogonality_error']:.3g}, ‖W‖₂ {_num(diag.get('spectral_norm'), '.3g')}"
        + (f", condition number of XᵀX {cond:.3g}" if cond is not None else ""))  # fmt: skip
    if diag.get("sgd"):
        log(_sgd_line(diag["sgd"]))
    dev = manifest.get("dev")
    if dev:
        for stage in ("before", "after"):
            report = dev.get(stage)
            if report:
                parts = [f"{direction} {scoring} {_num(acc, '.3f')}" for direction in ("src2tgt", "tgt2src")
                         for scoring, acc in report[direction].items()]  # fmt: skip
                parts.append(f"mean pair cosine {_num(report['mean_pair_cosine'], '.3f')}")
                if "margin" in report:
                    parts.append("src2tgt/tgt2src mean rank " + _pair(report["mean_rank"], ".3f")
                                 + ", margin " + _pair(report["margin"], ".4f")
                                 + " (" + _pair(report["margin_sd"], ".3f") + " sd)")  # fmt: skip
                log(f"dev ({dev['n_dev']} pairs) {stage}: accuracy " + ", ".join(parts))
    for warning in fit_warnings(diag, dev, method=method):
        log(f"warning: {warning}")


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _pair(values: dict[str, float | None], spec: str) -> str:
    return f"{_num(values.get('src2tgt'), spec)}/{_num(values.get('tgt2src'), spec)}"


def _sgd_line(record: dict[str, Any]) -> str:
    """Which epoch sgd kept, where it stopped and why."""
    kept = f"sgd kept epoch {record['best_epoch']}"
    if record.get("best_dev_mse") is not None:
        kept += f" (best dev mse {record['best_dev_mse']:.6f})"
    stopped = f"stopped after epoch {record['stopped_epoch']} of {record['epochs']}"
    if record["stop_reason"] == "patience":
        return f"{kept}, {stopped}: no better dev mse for {record['patience']} epochs (--patience)"
    if record.get("best_dev_mse") is None:
        return f"{kept}, {stopped}: the epoch limit (no dev pairs to stop early on)"
    return f"{kept}, {stopped}: the epoch limit, before the patience ran out (more --epochs may help)"


def load_projection(path: str, *, force: bool = False) -> tuple[Projection, dict[str, Any]]:
    """A saved map and its manifest.

    The manifest holds the map's preprocessing (e.g. ``unit,center,unit`` with the learned means) and what it
    was fitted on: a W.npy without it would be applied without its preprocessing, silently wrong. So a bare
    W.npy is refused unless ``force``, which applies it as a plain linear (or, with d+1 rows, affine) map."""
    W, manifest = read_matrix_with_manifest(path)
    if manifest is None or "projection" not in manifest:
        if not force:
            raise ManifestError(
                f"this map has no manifest{f' ({Path(path).name}.json)' if path != '-' else ''}: its "
                "preprocessing and provenance are unknown",
                source=path,
                hint=f"copy {path}.json along with the map, or pass --force to apply W as a plain linear map",
            )
        empty = Preprocessing()
        return Projection(W, "unknown", False, 0.0, empty, empty, {}), {}
    return Projection.from_dict(manifest["projection"], W), manifest


def check_not_mapped(data: dict[str, Any] | None, what: str, force: bool) -> None:
    """Refuse embeddings that a map was already applied to (their manifest says ``projected_with``)."""
    if force or not data or not data.get("projected_with"):
        return
    raise ManifestError(
        f"{what} was already mapped with {data['projected_with']}",
        hint="apply a map to the embeddings xl embed wrote, not to its output; --force applies it again",
    )


def check_same_embeddings(
    map_side: dict[str, Any] | None, data: dict[str, Any] | None, what: str, map_path: str, force: bool
) -> None:
    """Refuse to apply a map to embeddings made by another model/layer/pooling (unless ``force``)."""
    if force or not map_side or not data:
        return
    for key in _IDENTITY_FIELDS:
        if key in map_side and key in data and map_side[key] != data[key]:
            raise ManifestError(
                f"{map_path} was fitted on embeddings with {key} {map_side[key]!r}, but {what} has {data[key]!r}",
                hint="embed with the same model, layer and options, or pass --force",
            )


def apply_projection_file(
    map_path: str, input_path: str, output: str, *, side: str = "src", force: bool = False
) -> int:
    """Stream ``input_path`` through the map (with its preprocessing) into ``output``; return rows."""
    if side not in ("src", "tgt"):
        raise UsageError(f"--side {side!r} is not src or tgt")
    refuse_stdin_twice({"the map": map_path, "the embeddings": input_path},
                       hint="write the map to a file first: xl fit-proj … -o W.npy")  # fmt: skip
    projection, manifest = load_projection(map_path, force=force)
    # The input's manifest: beside its file, or the leading frame of a pipe (xl embed … | xl apply-proj).
    source = MatrixStream(input_path)
    try:
        what = "stdin" if input_path == "-" else input_path
        check_not_mapped(source.manifest, what, force)
        check_same_embeddings(manifest.get(f"{side}_embeddings"), source.manifest, what, map_path, force)
    except BaseException:
        source.close()
        raise
    apply = projection.apply_source if side == "src" else projection.apply_target
    width = int(projection.W.shape[1])
    out_manifest = {
        **(source.manifest or {}),
        **base_manifest("embeddings"),
        "projected_with": absolute(map_path),
        "projected_input": absolute(input_path),
        "projection_side": side,
        "projection_method": projection.method,
    }
    rows = 0
    with MatrixWriter(output, width, out_manifest) as writer:
        for chunk in source.chunks():
            mapped = apply(chunk)
            if mapped.shape[1] != width:
                raise InputError("the mapped rows do not have the map's width")
            writer.write(mapped)
            rows += len(chunk)
        # A pipe's producer says at its end what it learnt while writing (the input's sha256, truncations);
        # the writer counts rows, dims and dtype itself.
        writer.close({k: v for k, v in source.closing.items() if k not in ("rows", "dims", "dtype")})
    return rows


#: The fields of an ``xl eval retrieval`` line: a ``--tag`` may not reuse them.
RETRIEVAL_FIELDS = frozenset(
    ("task src tgt proj scoring n d csls_k margin_k mean_pair_cosine src2tgt tgt2src bootstrap src_embeddings "
     "tgt_embeddings proj_method xl_version").split()
)  # fmt: skip


def evaluate_retrieval_files(
    src: str,
    tgt: str,
    *,
    proj: str | None = None,
    scoring: str = "nn",
    csls_k: int = 10,
    margin_k: int = 4,
    n_resamples: int = 1000,
    seed: int = 0,
    limit: int | None = None,
    force: bool = False,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Bitext retrieval between two matrices (row i ↔ row i), optionally mapping ``src`` with ``proj``.

    The result records what was compared: each side's embeddings (model, fingerprint, layer, pooling, prefix,
    input and its hash, and the map already applied, from the manifests or the stream frames) and the map.
    Embeddings of two different models are compared, but with a warning (``log``). ``limit``: score a seeded
    random ``limit`` of the row pairs (the same rows of both sides, chosen as every ``--limit`` of xl chooses
    records); ``n_resamples`` 0: no confidence intervals."""
    refuse_stdin_twice({"--src": src, "--tgt": tgt})
    for path in (src, tgt):
        check_input_path(path, "a matrix")
    (X, src_manifest), (Y, tgt_manifest) = read_matrix_with_manifest(src), read_matrix_with_manifest(tgt)
    map_manifest: dict[str, Any] | None = None
    if proj is not None:
        projection, map_manifest = load_projection(proj, force=force)
        check_not_mapped(src_manifest, src, force)
        check_same_embeddings(map_manifest.get("src_embeddings"), src_manifest, src, proj, force)
        check_same_embeddings(map_manifest.get("tgt_embeddings"), tgt_manifest, tgt, proj, force)
        X, Y = projection.apply_source(X), projection.apply_target(Y)
    src_id, tgt_id = _compared(src_manifest), _compared(tgt_manifest)
    models = {side.get("model_fingerprint") for side in (src_id, tgt_id) if side}
    if len(models) > 1:
        log(f"warning: {src} and {tgt} were embedded with different models "
            f"({src_id.get('model')} and {tgt_id.get('model')}): their vectors live in different spaces")  # fmt: skip
    if limit is not None and limit < len(X) and len(X) == len(Y):
        from xl.tasks import seeded_subset

        rows = np.asarray(seeded_subset(range(len(X)), limit, seed), dtype=np.int64)
        X, Y = X[rows], Y[rows]
    result = retrieval_metrics(X, Y, scoring, csls_k=csls_k, margin_k=margin_k, n_resamples=n_resamples,
                               seed=seed)  # fmt: skip
    import xl

    return {"task": "retrieval", "src": src, "tgt": tgt, "proj": proj, **result,
            "src_embeddings": src_id or None, "tgt_embeddings": tgt_id or None,
            "proj_method": (map_manifest or {}).get("projection", {}).get("method") if proj else None,
            "xl_version": xl.__version__}  # fmt: skip


def _compared(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """What a retrieval result records of one side's embeddings."""
    identity = _embedding_identity(manifest) or {}
    if manifest and manifest.get("projected_with"):
        identity["projected_with"] = manifest["projected_with"]
    return identity
