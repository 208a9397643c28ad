"""Cross-lingual linear maps fitted from streamed sufficient statistics.

Given source-language sentence embeddings ``X`` (n, d) and target-language ones ``Y`` (n, d'), row *i* of
each a translation pair, find ``W`` so that ``X W ≈ Y``:

- ``lstsq``: minimise ``‖XW − Y‖_F² + λ‖W‖_F²``, i.e. ``W = (XᵀX + λI)⁻¹ XᵀY`` (ridge when ``λ > 0``).
- ``procrustes``: the orthogonal ``W`` closest in that sense, ``W = U Vᵀ`` from the SVD ``XᵀY = U Σ Vᵀ``
  (Schönemann 1966, "A generalized solution of the orthogonal Procrustes problem"; used for embedding
  spaces by Xing et al. 2015, "Normalized word embedding and orthogonal transform"). Needs d == d'.

Both need only ``n, Σx, Σy, XᵀX, XᵀY`` (and ``tr(YᵀY)`` for the residual), so :class:`SufficientStats`
accumulates them chunk by chunk into float64 totals: memory O(d²) whatever n. lstsq keeps everything in
float64 (the normal equations amplify rounding by the condition number of XᵀX), so the fit matches the
in-memory one up to float64 rounding (about 1e-12 relative) however the rows are chunked. Procrustes needs
neither XᵀX (only its trace, for the residual: a third of the work saved) nor float64 products: it takes XᵀY
from float32 products of shifted blocks summed in float64 (twice the speed, no float64 copies of the rows),
and its map still comes out about 1e-7 from the float64 one (see :class:`SufficientStats`).
With ``center=True`` the map is affine: it is fitted on centred statistics and returned as a (d+1, d')
matrix whose last row is the bias, so that ``[x, 1] @ W`` maps a raw ``x`` (:func:`apply_projection`).

Preprocessing chains follow VecMap (Artetxe et al. 2018): ``--preprocess unit,center,unit`` applies row L2
normalisation and column centring in order, with the means learned on the fitting data and kept in a
serialisable :class:`Preprocessing`, so a saved map is applied with exactly the preprocessing it was fitted
with (MUSE loses the mean). Learning the mean of a ``center`` step on streamed data needs one pass over the
data per ``center`` step; streaming functions therefore take a zero-argument callable that returns a fresh
iterator of chunks each time it is called (re-open the files). A pipe can be read only once: use a chain
without ``center`` there, or save the input to a file first.

The d×d solves, eigenvalues and SVDs use numpy's LAPACK (``numpy.linalg``), not ``scipy.linalg``: importing
scipy.linalg costs 0.3–0.4 s on a 2-core CPU, more than the solves themselves take at d = 384 or 1024.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.core.retrieval import _as_matrix, _prepare_pair, retrieval_accuracies
from xl.errors import InputError, ManifestError, ShapeError, UsageError

Method = Literal["lstsq", "procrustes"]
METHODS: tuple[str, ...] = get_args(Method)
NORMALIZE_STEPS: tuple[str, ...] = ("unit", "center")

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: A zero-argument callable returning a fresh iterable of (X_chunk, Y_chunk) row-aligned pairs.
PairChunks = Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]]

#: Above this condition number of XᵀX + λI the least-squares solution is dominated by rounding error.
MAX_CONDITION = 1e12
#: Rows folded in at a time by :meth:`SufficientStats.update`: cast to float64 (12 MiB per side at d = 384),
#: or, with float32 products, shifted into a reused float32 buffer (6 MiB per side).
STATS_BLOCK_ROWS = 4096
#: Rows per float32 product with ``float32_products``: larger blocks keep the BLAS kernel busy (a 16,384-row
#: block runs about 1.2x faster than a 4,096-row one here) at a rounding of about 2⁻²⁴·√16384 ≈ 8e-6 of
#: the shifted products, still far below scipy's single float32 product over all rows.
FLOAT32_BLOCK_ROWS = 16_384
#: Without XᵀX, the residual is known only for maps this close to orthogonal (``‖WᵀW − I‖_F / sqrt(d)``).
ORTHOGONAL_TOL = 1e-4
#: Above this condition number of XᵀX + λI an lstsq fit is warned about (the fit is still numerically sound,
#: but its smallest-variance directions carry a millionth of the largest one's: the map fits noise there).
#: On 897 FLORES-200 en→ko pairs of multilingual-e5-small (condition number 4e9, ‖W‖₂ = 779), held-out
#: retrieval (FLORES devtest, Tatoeba) improved with each tenfold ridge from 1e-3 to 1 (condition numbers
#: 1.5e7 to 1.5e4, ‖W‖₂ 23 to 1.7).
WARN_CONDITION = 1e6
#: Above this spectral gain (``‖W‖₂ · rms‖x‖ / rms‖y‖``: 1 for a rotation between equally scaled sides)
#: any map is warned about: it stretches some direction ten times more than the data's scale change.
WARN_GAIN = 10.0
#: A dev accuracy at or above this before and after the map is saturated: it cannot tell maps apart.
SATURATED_ACCURACY = 0.99
#: Elements of one similarity block of :func:`pair_rank_margins` (16 MiB of float32).
_MARGIN_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _raise_nonfinite(A: NDArray[Any], label: str, row_offset: int) -> None:
    """Raise InputError naming the first row (counting from 0 over the whole stream) with a NaN or Inf."""
    bad = np.flatnonzero(~np.isfinite(A).all(axis=1))
    if bad.size == 0:  # the sums overflowed although every value is finite
        raise InputError(
            f"{label} rows {row_offset}–{row_offset + A.shape[0] - 1} overflow the sums",
            hint="the values are far too large for embeddings; check how the matrix was produced",
        )
    row = int(bad[0])
    raise InputError(
        f"{label} row {row_offset + row} (counting from 0) contains NaN or Inf",
        found="NaN" if np.isnan(A[row]).any() else "Inf",
        hint="drop or re-embed that pair; the encoder probably overflowed (try --dtype float32)",
    )


def _check_pair_chunk(
    X: ArrayLike, Y: ArrayLike, row_offset: int, x_label: str, y_label: str
) -> tuple[NDArray[Any], NDArray[Any]]:
    Xm, Ym = _as_matrix(X, x_label), _as_matrix(Y, y_label)
    if Xm.shape[0] != Ym.shape[0]:
        raise ShapeError(
            f"{x_label} has {Xm.shape[0]} rows but {y_label} has {Ym.shape[0]} in the chunk starting at row "
            f"{row_offset}",
            hint="row i of the source must be the translation of row i of the target",
        )
    return Xm, Ym


def _check_width(found: int, expected: int | None, label: str, row_offset: int) -> None:
    if expected is not None and found != expected:
        raise ShapeError(
            f"{label} has {found} columns from row {row_offset} on but {expected} before",
            expected=f"{expected} columns",
            found=str(found),
            hint="every chunk of a stream must come from the same model and layer",
        )


# --------------------------------------------------------------------------------------------------
# preprocessing chains
# --------------------------------------------------------------------------------------------------


def parse_normalize(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"unit,center,unit"`` → ``("unit", "center", "unit")``; ``None``, ``""`` and ``"none"`` → ``()``."""
    if spec is None:
        return ()
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else [str(p) for p in spec]
    steps = tuple(p for p in parts if p and p != "none")
    for step in steps:
        if step not in NORMALIZE_STEPS:
            raise UsageError(
                f"unknown normalisation step {step!r}",
                hint=f"use a comma-separated chain of {', '.join(NORMALIZE_STEPS)}, e.g. unit,center,unit",
            )
    return steps


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """A fitted VecMap-style normalisation chain (Artetxe et al. 2018), applied row-wise and chunk-wise.

    ``steps``: names in order, each ``unit`` (rows scaled to L2 norm 1; zero rows stay zero) or ``center``
    (subtract a column mean). ``means``: one (d,) float64 vector per ``center`` step, in order, learned on
    the fitting data after the steps before it. ``apply`` always returns float32, so a chain applied to any
    chunking of the same rows gives bit-identical results.
    """

    steps: tuple[str, ...] = ()
    means: tuple[F64, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        parse_normalize(self.steps)  # validates the names
        n_center = self.steps.count("center")
        if len(self.means) != n_center:
            raise ManifestError(
                f"preprocessing {','.join(self.steps)} needs {n_center} mean vectors, found {len(self.means)}",
                hint="fit it with fit_preprocessing, or read it back with Preprocessing.from_dict",
            )
        widths = {m.shape for m in self.means}
        if len(widths) > 1 or any(len(w) != 1 for w in widths):
            raise ManifestError(f"preprocessing means must be vectors of one length, found shapes {widths}")

    @property
    def dim(self) -> int | None:
        """The width the means were learned on, or None for a chain without ``center``."""
        return int(self.means[0].shape[0]) if self.means else None

    def apply(self, X: ArrayLike) -> F32:
        """Apply the chain. X: (n, d) real. Returns (n, d) float32 (X itself if float32 and no steps)."""
        out = np.asarray(_as_matrix(X, "input"), dtype=np.float32)
        dim = self.dim
        if dim is not None and out.shape[1] != dim:
            raise ShapeError(
                f"input has {out.shape[1]} dimensions but the preprocessing was fitted on {dim}",
                hint="apply a map only to embeddings from the model and layer it was fitted on",
            )
        means = iter(self.means)
        for step in self.steps:
            if step == "unit":
                # A row with Inf becomes NaN here on purpose: callers report it by row, so no warning.
                with np.errstate(invalid="ignore", over="ignore"):
                    norms = np.linalg.norm(out, axis=1, keepdims=True)
                    norms[norms == 0] = 1.0
                    out = out / norms
            else:
                out = out - next(means).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"steps": [...], "means": [[float, ...], ...]}`` (floats round-trip exactly)."""
        return {"steps": list(self.steps), "means": [m.tolist() for m in self.means]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; ManifestError when ``data`` does not have that shape."""
        try:
            steps = tuple(str(s) for s in data["steps"])
            means = tuple(np.asarray(m, dtype=np.float64) for m in data.get("means", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"unreadable preprocessing entry: {exc}",
                expected='{"steps": [...], "means": [[...], ...]}',
                hint="the manifest beside the map was edited or written by another tool",
            ) from exc
        try:
            parse_normalize(steps)
        except UsageError as exc:
            raise ManifestError(f"preprocessing: {exc.message}", hint=exc.hint) from exc
        return cls(steps, means)


def _prefix(steps: tuple[str, ...], center_index: int) -> tuple[str, ...]:
    """The steps before the ``center_index``-th (0-based) ``center`` step."""
    seen = -1
    for i, step in enumerate(steps):
        if step == "center":
            seen += 1
            if seen == center_index:
                return steps[:i]
    raise AssertionError("unreachable: fewer center steps than asked for")


def fit_preprocessing_pair(
    steps_x: tuple[str, ...],
    steps_y: tuple[str, ...],
    chunks: PairChunks,
    *,
    x_label: str = "X",
    y_label: str = "Y",
) -> tuple[Preprocessing, Preprocessing, int]:
    """Learn the means of both chains from paired chunks; returns (pre_x, pre_y, n rows).

    One pass over ``chunks()`` per ``center`` step (the larger count of the two sides); no pass without
    ``center``. Each pass applies the part of the chain already learned, chunk by chunk, and accumulates the
    column sums in float64. Raises InputError if a later pass sees a different number of rows (a pipe can be
    read only once) or if there are no rows; ShapeError/InputError for mismatched or non-finite chunks.
    """
    n_passes = max(steps_x.count("center"), steps_y.count("center"))
    means_x: list[F64] = []
    means_y: list[F64] = []
    n_rows: int | None = None
    for p in range(n_passes):
        pre_x = Preprocessing(_prefix(steps_x, p), tuple(means_x)) if p < steps_x.count("center") else None
        pre_y = Preprocessing(_prefix(steps_y, p), tuple(means_y)) if p < steps_y.count("center") else None
        sum_x: F64 | None = None
        sum_y: F64 | None = None
        n = 0
        d_x: int | None = None
        d_y: int | None = None
        for X, Y in chunks():
            Xm, Ym = _check_pair_chunk(X, Y, n, x_label, y_label)
            _check_width(Xm.shape[1], d_x, x_label, n)
            _check_width(Ym.shape[1], d_y, y_label, n)
            d_x, d_y = Xm.shape[1], Ym.shape[1]
            for pre, M, label, is_x in ((pre_x, Xm, x_label, True), (pre_y, Ym, y_label, False)):
                if pre is None:
                    continue
                s = pre.apply(M).sum(axis=0, dtype=np.float64)
                if not np.isfinite(s).all():
                    _raise_nonfinite(M, label, n)
                if is_x:
                    sum_x = s if sum_x is None else sum_x + s
                else:
                    sum_y = s if sum_y is None else sum_y + s
            n += Xm.shape[0]
        _check_pass_rows(n, n_rows)
        n_rows = n
        if sum_x is not None:
            means_x.append(sum_x / n)
        if sum_y is not None:
            means_y.append(sum_y / n)
    return Preprocessing(steps_x, tuple(means_x)), Preprocessing(steps_y, tuple(means_y)), n_rows or 0


def _check_pass_rows(n: int, n_before: int | None) -> None:
    if n == 0:
        raise InputError(
            "no pairs to fit on (the input is empty)",
            hint="check that the source and target matrices have rows",
        )
    if n_before is not None and n != n_before:
        raise InputError(
            f"the input changed between passes ({n_before} rows, then {n})",
            hint="a normalisation chain with `center` reads the input once per center step: read from files, not pipes",
        )


def fit_preprocessing(steps: str | Sequence[str], chunks: Callable[[], Iterable[ArrayLike]]) -> Preprocessing:
    """Learn the means of one chain from ``chunks()`` (one pass per ``center`` step; see module docstring).

    steps: ``"unit,center,unit"`` or a sequence of step names. chunks: a zero-argument callable returning a
    fresh iterable of (rows, d) arrays. For an in-memory matrix ``X`` pass ``lambda: [X]``.
    """
    parsed = parse_normalize(steps)
    if "center" not in parsed:
        return Preprocessing(parsed)

    def pairs() -> Iterator[tuple[ArrayLike, ArrayLike]]:
        # The pair machinery with an empty (m, 0) partner: one code path for one side and two.
        for X in chunks():
            Xm = _as_matrix(X, "X")
            yield Xm, np.empty((Xm.shape[0], 0), dtype=np.float32)

    return fit_preprocessing_pair(parsed, (), pairs)[0]


# --------------------------------------------------------------------------------------------------
# sufficient statistics
# --------------------------------------------------------------------------------------------------


class SufficientStats:
    """Streaming sufficient statistics of paired rows for linear and orthogonal maps.

    Accumulates, in float64, ``n``, ``sum_x = Σx`` (d,), ``sum_y = Σy`` (d'), ``XtX = XᵀX`` (d, d),
    ``XtY = XᵀY`` (d, d'), ``yy = tr(YᵀY)`` and ``xx = tr(XᵀX)``. Memory is O(d² + d d') whatever the number
    of rows: each chunk is cast to float64 ``STATS_BLOCK_ROWS`` rows at a time and folded in with one BLAS
    product per statistic (``XᵀX`` as ``X.T @ X``, which numpy runs as a symmetric rank-k update).

    ``need_xtx=False`` (what procrustes needs) skips ``XᵀX`` (``XtX`` is None; a third of the work) and keeps
    only its trace ``xx``: the residual of an orthogonal map needs no more, since ``tr(WᵀXᵀXW) = tr(XᵀX)``
    when ``WWᵀ = I``. Without ``XᵀX`` there is no lstsq and no condition number.

    ``float32_products=True`` (only with ``need_xtx=False``, and only for float32 chunks, which is what the
    streams carry) folds ``XᵀY`` in as float32 products of ``FLOAT32_BLOCK_ROWS`` rows summed into float64
    totals: half the cost of float64 products and no float64 copies of the rows, which is what makes the
    procrustes fit as fast as ``scipy.linalg.orthogonal_procrustes``. The rows are first shifted by the
    mean of the first block (rounded to float32), and the shift is added back in float64 from the sums of
    the shifted rows when ``XtY``, ``xx`` or ``yy`` is read, so the float32 products round relative to the
    spread of the rows, not to their common component (large in sentence embeddings, and what makes a plain
    float32 XᵀY lose about 1e-4 of the map). Rounding per block is about ``2⁻²⁴·√FLOAT32_BLOCK_ROWS`` of the
    shifted products, far below one float32 product over all n rows (scipy's): the maps come out about
    1e-7 from the float64 ones.

    ``x_label``/``y_label`` name the two sides in error messages (e.g. file names).
    """

    def __init__(
        self,
        *,
        x_label: str = "X",
        y_label: str = "Y",
        need_xtx: bool = True,
        float32_products: bool = False,
    ) -> None:
        if float32_products and need_xtx:
            raise UsageError("float32_products works only with need_xtx=False (lstsq needs float64 XᵀX)")
        self.x_label = x_label
        self.y_label = y_label
        self.need_xtx = need_xtx
        self.float32_products = float32_products
        self.n = 0
        self.d_x: int | None = None
        self.d_y: int | None = None
        self.sum_x: F64 = np.zeros(0)
        self.sum_y: F64 = np.zeros(0)
        self.XtX: F64 | None = np.zeros((0, 0)) if need_xtx else None
        # The float32 path adds the products of shifted rows x̃ = x − s, ỹ = y − t to _XtY, _xx, _yy and
        # their sums and count to _shifted; the properties add the shift back (see _unshift).
        self._XtY: F64 = np.zeros((0, 0))
        self._xx = 0.0  # tr(XᵀX) when XᵀX itself is not kept
        self._yy = 0.0
        self._shift: tuple[F32, F32] | None = None
        self._shifted: tuple[int, F64, F64] = (0, np.zeros(0), np.zeros(0))  # m, Σx̃, Σỹ over shifted rows
        self._scratch: tuple[F32, F32] | None = None  # the shifted block, reused
        self._conditions: dict[tuple[bool, float], float] = {}

    @property
    def XtY(self) -> F64:
        """``XᵀY`` (d, d') float64."""
        return self._unshift()[0]

    @property
    def yy(self) -> float:
        """``tr(YᵀY) = Σ‖y‖²``."""
        return self._unshift()[2]

    @property
    def xx(self) -> float:
        """``tr(XᵀX) = Σ‖x‖²``."""
        return float(np.trace(self.XtX)) if self.XtX is not None else self._unshift()[1]

    def _unshift(self) -> tuple[F64, float, float]:
        """(XᵀY, Σ‖x‖², Σ‖y‖²) with the shift added back: with x = x̃ + s, y = ỹ + t over m shifted rows,
        ``Σ x yᵀ = Σ x̃ ỹᵀ + (Σx̃) tᵀ + s (Σỹ + m t)ᵀ`` and ``Σ‖x‖² = Σ‖x̃‖² + 2 sᵀΣx̃ + m‖s‖²``, in float64."""
        if self._shift is None:
            return self._XtY, self._xx, self._yy
        s, t = (v.astype(np.float64) for v in self._shift)
        m, sx, sy = self._shifted
        XtY = self._XtY + np.outer(sx, t) + np.outer(s, sy + m * t)
        return XtY, self._xx + 2.0 * float(s @ sx) + m * float(s @ s), self._yy + 2.0 * float(t @ sy) + m * float(t @ t)

    def __getstate__(self) -> dict[str, Any]:
        # Statistics travel between processes to be merged: leave the scratch buffer behind.
        return {**self.__dict__, "_scratch": None}

    def _start(self, d_x: int, d_y: int) -> None:
        self.d_x, self.d_y = d_x, d_y
        self.sum_x = np.zeros(d_x)
        self.sum_y = np.zeros(d_y)
        if self.need_xtx:
            self.XtX = np.zeros((d_x, d_x))
        self._XtY = np.zeros((d_x, d_y))

    def update(self, X: ArrayLike, Y: ArrayLike) -> None:
        """Fold in a chunk of pairs. X: (m, d), Y: (m, d') real (float32 expected); m may be 0."""
        Xm, Ym = _check_pair_chunk(X, Y, self.n, self.x_label, self.y_label)
        _check_width(Xm.shape[1], self.d_x, self.x_label, self.n)
        _check_width(Ym.shape[1], self.d_y, self.y_label, self.n)
        if self.d_x is None:
            self._start(Xm.shape[1], Ym.shape[1])
        fast = self.float32_products and Xm.dtype == np.float32 and Ym.dtype == np.float32
        block = FLOAT32_BLOCK_ROWS if fast else STATS_BLOCK_ROWS
        for start in range(0, Xm.shape[0], block):
            Xb = Xm[start : start + block]
            Yb = Ym[start : start + block]
            if fast:
                self._fold_float32(Xb, Yb)
            else:
                self._fold_float64(Xb.astype(np.float64), Yb.astype(np.float64))
        if Xm.shape[0]:
            self._conditions.clear()

    def _check_sums(self, sx: NDArray[Any], sy: NDArray[Any], Xb: NDArray[Any], Yb: NDArray[Any]) -> None:
        # NaN and Inf propagate into the sums, so checking the sums costs nothing per row.
        if not np.isfinite(sx).all():
            _raise_nonfinite(Xb, self.x_label, self.n)
        if not np.isfinite(sy).all():
            _raise_nonfinite(Yb, self.y_label, self.n)

    def _fold_float64(self, Xb: F64, Yb: F64) -> None:
        sx, sy = Xb.sum(axis=0), Yb.sum(axis=0)
        self._check_sums(sx, sy, Xb, Yb)
        if self.XtX is not None:
            self.XtX += Xb.T @ Xb
        else:
            self._xx += float(np.vdot(Xb, Xb))
        self._XtY += Xb.T @ Yb
        self._yy += float(np.vdot(Yb, Yb))
        self.sum_x += sx
        self.sum_y += sy
        self.n += Xb.shape[0]

    def _fold_float32(self, Xb: F32, Yb: F32) -> None:
        m = Xb.shape[0]
        if self._shift is None:
            sx, sy = Xb.sum(axis=0, dtype=np.float64), Yb.sum(axis=0, dtype=np.float64)
            self._check_sums(sx, sy, Xb, Yb)
            self._shift = ((sx / m).astype(np.float32), (sy / m).astype(np.float32))
            self._shifted = (0, np.zeros(Xb.shape[1]), np.zeros(Yb.shape[1]))
        d_x, d_y = Xb.shape[1], Yb.shape[1]
        if self._scratch is None or self._scratch[0].shape[0] < m:
            rows = m if self._scratch is None else max(m, FLOAT32_BLOCK_ROWS)
            # Each side gets a last column of ones, so one product [x̃ 1]ᵀ[ỹ 1] yields x̃ᵀỹ and both column
            # sums (no separate reduction passes over the block).
            self._scratch = (np.ones((rows, d_x + 1), np.float32), np.ones((rows, d_y + 1), np.float32))
        s, t = self._shift
        Xs = self._scratch[0][:m, :d_x]
        Ys = self._scratch[1][:m, :d_y]
        # The element-wise passes are memory-bound and single-threaded in numpy: run the two sides on two
        # threads (numpy releases the GIL), as the product after them runs on all cores anyway.
        squares = list(_pool().map(_shift_and_square, ((Xb, s, Xs), (Yb, t, Ys))))
        product = (self._scratch[0][:m].T @ self._scratch[1][:m]).astype(np.float64)
        # Sums of the shifted rows are small, so float32 sums of one block lose nothing that matters
        # (the shift goes back in float64); NaN and Inf still propagate into them.
        ax, ay = product[:d_x, d_y], product[d_x, :d_y]
        self._check_sums(ax, ay, Xb, Yb)
        self._XtY += product[:d_x, :d_y]
        self._xx += squares[0]
        self._yy += squares[1]
        n_shifted, sx_shifted, sy_shifted = self._shifted
        self._shifted = (n_shifted + m, sx_shifted + ax, sy_shifted + ay)
        self.sum_x += ax + m * s.astype(np.float64)
        self.sum_y += ay + m * t.astype(np.float64)
        self.n += m

    def merge(self, other: SufficientStats) -> None:
        """Add the statistics of another shard of pairs (e.g. computed by another process)."""
        if other.d_x is None:
            return
        if self.d_x is None:
            self._start(other.d_x, other.d_y or 0)
        _check_width(other.d_x, self.d_x, self.x_label, self.n)
        _check_width(other.d_y or 0, self.d_y, self.y_label, self.n)
        if self.XtX is not None:
            if other.XtX is None:
                raise UsageError(
                    "cannot merge statistics without XᵀX into statistics that need it",
                    hint="accumulate every shard with the same need_xtx",
                )
            self.XtX += other.XtX
        else:
            self._xx += other.xx
        other_XtY, _, other_yy = other._unshift()
        self._XtY += other_XtY
        self._yy += other_yy
        self.sum_x += other.sum_x
        self.sum_y += other.sum_y
        self.n += other.n
        self._conditions.clear()

    def centered(self) -> tuple[F64 | None, F64, float]:
        """(XᵀX or None, XᵀY, tr(YᵀY)) of the rows centred by their means, from the sums: no second pass."""
        mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n
        B = self.XtY - self.n * np.outer(mean_x, mean_y)
        yy = self.yy - self.n * float(mean_y @ mean_y)
        if self.XtX is None:
            return None, B, yy
        A = self.XtX - self.n * np.outer(mean_x, mean_x)
        return (A + A.T) / 2.0, B, yy

    def condition_number(self, *, center: bool = False, ridge: float = 0.0) -> float | None:
        """Condition number of ``XᵀX + λI`` (centred XᵀX when ``center``); inf when singular, None without
        XᵀX (``need_xtx=False``). Computed once per (center, ridge) until the next update or merge."""
        A = self.centered()[0] if center else self.XtX
        if A is None:
            return None
        key = (center, ridge)
        if key not in self._conditions:
            self._conditions[key] = _condition(A + ridge * np.eye(A.shape[0]))
        return self._conditions[key]

    def residual(self, W: ArrayLike) -> float:
        """Relative fit residual ``‖X W − Y‖_F / ‖Y‖_F`` from the statistics alone (W linear or affine).

        W: (d, d') or (d+1, d') with the bias as last row. Uses
        ``‖XW + 1bᵀ − Y‖² = tr(WᵀXᵀXW) + 2bᵀWᵀΣx + n‖b‖² − 2tr(WᵀXᵀY) − 2bᵀΣy + tr(YᵀY)``. Without XᵀX
        (``need_xtx=False``) W must be orthogonal (then ``tr(WᵀXᵀXW) = tr(XᵀX)``); UsageError otherwise.
        With ``float32_products`` the terms that cancel carry float32 rounding of XᵀY, so a near-perfect fit
        reads as about 1e-4 instead of 0 (negligible for real residuals: 2e-7 of a residual of 0.01).
        """
        W_lin, bias = _split_affine(np.asarray(W, dtype=np.float64), self.d_x or 0)
        b = np.zeros(W_lin.shape[1]) if bias is None else bias
        XtY, _, yy = self._unshift()
        if self.XtX is not None:
            quadratic = float(np.sum(W_lin * (self.XtX @ W_lin)))
        else:
            error = _orthogonality_error(W_lin)
            if W_lin.shape[0] != W_lin.shape[1] or error > ORTHOGONAL_TOL:
                raise UsageError(
                    f"the residual of a non-orthogonal map (orthogonality error {error:.2g}) needs XᵀX, and these "
                    "statistics were accumulated without it",
                    hint="accumulate with SufficientStats(need_xtx=True)",
                )
            # One Newton–Schulz step of the polar decomposition makes W orthogonal to float64 rounding (it
            # moves W by about its float32 rounding); otherwise tr(WᵀXᵀXW) = tr(XᵀX) holds only to about
            # 1e-7, which floors the residual of a near-perfect fit at about 1e-4.
            W_lin = W_lin @ (3.0 * np.eye(W_lin.shape[1]) - W_lin.T @ W_lin) / 2.0
            quadratic = self.xx
        sq = (
            quadratic
            - 2.0 * float(np.sum(W_lin * XtY))
            + yy
            + 2.0 * float(b @ (W_lin.T @ self.sum_x))
            + self.n * float(b @ b)
            - 2.0 * float(b @ self.sum_y)
        )
        # Rounding can make a perfect fit come out slightly negative.
        return math.sqrt(max(sq, 0.0) / yy) if yy > 0 else math.nan


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xl-stats")
    return _POOL


def _shift_and_square(job: tuple[F32, F32, F32]) -> float:
    """``out = block − shift``; returns ``Σ‖out row‖²``."""
    block, shift, out = job
    np.subtract(block, shift, out=out)
    return _sum_of_squares(out)


def _sum_of_squares(A: F32) -> float:
    """``Σ‖a‖²`` of float32 rows: each row's (d terms) in float32, their total in float64."""
    return float(np.einsum("ij,ij->i", A, A).sum(dtype=np.float64))


def _orthogonality_error(W: F64) -> float:
    """``‖WᵀW − I‖_F / sqrt(d')`` (0 for an exact rotation)."""
    gram = W.T @ W
    return float(np.linalg.norm(gram - np.eye(gram.shape[0])) / math.sqrt(max(gram.shape[0], 1)))


def _split_affine(W: NDArray[Any], d_x: int) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """(linear part (d, d'), bias (d',) or None) of a linear (d, d') or affine (d+1, d') map."""
    if W.ndim != 2 or W.shape[0] not in (d_x, d_x + 1):
        raise ShapeError(
            f"the map has shape {W.shape} but the inputs have {d_x} dimensions",
            expected=f"({d_x}, d') or ({d_x + 1}, d')",
            found=str(W.shape),
            hint="apply a map only to embeddings from the model and layer it was fitted on",
        )
    if W.shape[0] == d_x + 1:
        return W[:-1], W[-1]
    return W, None


def _condition(A: F64) -> float:
    """Condition number of a symmetric positive semi-definite matrix (inf when singular)."""
    eig = np.linalg.eigvalsh(A)
    if eig.size == 0:
        return 1.0
    return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf


def solve_projection(stats: SufficientStats, method: str = "lstsq", *, ridge: float = 0.0, center: bool = False) -> F32:
    """The map fitted on ``stats``: (d, d') float32, or (d+1, d') with the bias as last row when ``center``.

    ``lstsq``: ``W = (XᵀX + λI)⁻¹ XᵀY`` by Cholesky (λ = ``ridge``, absolute, not scaled by n).
    ``procrustes``: ``W = U Vᵀ`` from ``XᵀY = U Σ Vᵀ`` (Schönemann 1966; Xing et al. 2015).
    With ``center`` both use the centred statistics and bias = mean_y − mean_x @ W_lin.

    Raises InputError for empty input, for lstsq without ridge on fewer pairs than dimensions, and for a
    singular or ill-conditioned XᵀX + λI (condition number above 1e12); ShapeError for procrustes with
    d != d'; UsageError for an unknown method or a negative ridge.
    """
    d_x, d_y = _check_solvable(stats, method, ridge)
    n = stats.n
    A, B, _ = stats.centered() if center else (stats.XtX, stats.XtY, stats.yy)
    if method == "procrustes":
        W_lin = _procrustes_map(stats, B, d_x, d_y)
    else:
        W_lin = _lstsq_map(stats, A, B, d_x, ridge=ridge, center=center)
    if center:
        bias = stats.sum_y / n - (stats.sum_x / n) @ W_lin
        return np.vstack([W_lin, bias[None, :]]).astype(np.float32)
    return W_lin.astype(np.float32)


def _check_solvable(stats: SufficientStats, method: str, ridge: float) -> tuple[int, int]:
    """(d, d') of ``stats`` after checking the method, the ridge, that there are pairs and that the products
    are finite (UsageError or InputError otherwise)."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    if ridge < 0 or not math.isfinite(ridge):
        raise UsageError(f"ridge must be a finite number >= 0, not {ridge}")
    if method == "procrustes" and ridge > 0:
        raise UsageError("--ridge applies to lstsq only", hint="drop --ridge or use --method lstsq")
    if stats.n == 0 or stats.d_x is None or stats.d_y is None:
        raise InputError("no pairs to fit on (the input is empty)", hint="check that both matrices have rows")
    if not (np.isfinite(stats.XtY).all() and (stats.XtX is None or np.isfinite(stats.XtX).all())):
        raise InputError("the products XᵀX or XᵀY overflowed", hint="the values are far too large")
    return stats.d_x, stats.d_y


def _procrustes_map(stats: SufficientStats, B: F64, d_x: int, d_y: int) -> F64:
    """The orthogonal ``W = U Vᵀ: (d, d) float64`` from ``B = XᵀY = U Σ Vᵀ`` (ShapeError when d != d')."""
    if d_x != d_y:
        raise ShapeError(
            f"procrustes needs the same dimension on both sides, but {stats.x_label} has {d_x} and "
            f"{stats.y_label} has {d_y}",
            hint="use --method lstsq to map between spaces of different dimension",
        )
    U, _, Vt = np.linalg.svd(B, full_matrices=False)
    W_lin: F64 = U @ Vt
    return W_lin


def _lstsq_map(stats: SufficientStats, A: F64 | None, B: F64, d_x: int, *, ridge: float, center: bool) -> F64:
    """The least-squares ``W = (A + λI)⁻¹ B: (d, d') float64`` with ``A = XᵀX``, ``B = XᵀY`` (centred when
    ``center``); InputError when underdetermined without ridge, ill-conditioned or singular, UsageError
    without XᵀX."""
    n = stats.n
    rank_bound = n - 1 if center else n  # centring removes one degree of freedom
    if ridge == 0 and rank_bound < d_x:
        raise InputError(
            f"only {n} pairs for {d_x} dimensions: least squares is underdetermined",
            expected=f"more than {d_x} pairs" if center else f"at least {d_x} pairs",
            found=str(n),
            hint="add --ridge (e.g. --ridge 1e-3), use --method procrustes, or give more pairs",
        )
    if A is None:
        raise UsageError(
            "lstsq needs XᵀX, and these statistics were accumulated without it",
            hint="accumulate with SufficientStats(need_xtx=True)",
        )
    cond = stats.condition_number(center=center, ridge=ridge)
    if cond is not None and cond > MAX_CONDITION:
        raise InputError(
            f"XᵀX is singular or ill-conditioned (condition number {cond:.3g} > {MAX_CONDITION:.0e})",
            hint="add --ridge (e.g. --ridge 1e-3) or use --method procrustes; "
            "duplicate or constant dimensions cause this",
        )
    try:
        # LU rather than Cholesky: the condition check above has already ruled out what would tell them apart
        W_lin: F64 = np.linalg.solve(A + ridge * np.eye(d_x), B).astype(np.float64, copy=False)
    except np.linalg.LinAlgError as exc:
        raise InputError(f"XᵀX is numerically singular: {exc}", hint="add --ridge (e.g. --ridge 1e-3)") from exc
    return W_lin


def projection_diagnostics(
    stats: SufficientStats,
    W: ArrayLike,
    *,
    ridge: float = 0.0,
    center: bool | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Diagnostics of a map against the statistics of the pairs, as a JSON-able dict.

    ``fit_residual``: ``‖XW − Y‖_F / ‖Y‖_F`` (affine maps include the bias; computed from the statistics).
    ``orthogonality_error``: ``‖WᵀW − I‖_F / sqrt(d')`` of the linear part (0 for an exact rotation).
    ``condition_number``: of ``XᵀX + λI`` (centred when the map is affine); None when singular, and for
    statistics without XᵀX (procrustes: ``need_xtx=False``).
    ``spectral_norm``: ``‖W‖₂``, the largest singular value of the linear part.
    ``spectral_gain``: ``‖W‖₂ · rms‖x‖ / rms‖y‖`` over the fitted rows (centred when affine): how much W
    stretches its most stretched direction relative to the scale change between the sides (1 for a rotation
    between equally scaled sides, whatever the norms of the embeddings); None when Y is all zero.
    ``ill_conditioned``: ``method == "lstsq"`` and the condition number above ``WARN_CONDITION`` (or
    singular), or the gain above ``WARN_GAIN`` (any method). ``suggested_ridge`` (lstsq only, when
    ill-conditioned, else None): the smallest power of ten λ (and at least ten times ``ridge``) with
    ``cond(XᵀX + λI) ≤ WARN_CONDITION``.
    ``center`` defaults to whether W has the extra bias row. ``method`` (the method W was fitted with)
    decides whether the condition number concerns the map: it does for lstsq only.
    """
    Wm = np.asarray(W, dtype=np.float64)
    W_lin, _ = _split_affine(Wm, stats.d_x or 0)
    affine = Wm.shape[0] == (stats.d_x or 0) + 1 if center is None else center
    cond = stats.condition_number(center=affine, ridge=ridge)
    if method == "procrustes" and W_lin.size:
        spectral_norm = 1.0  # U Vᵀ is orthogonal by construction (orthogonality_error says how exactly): no SVD
    else:
        spectral_norm = float(np.linalg.svd(W_lin, compute_uv=False)[0]) if W_lin.size else 0.0
    gain = _spectral_gain(stats, spectral_norm, affine)
    # A singular XᵀX (cond inf) counts as ill-conditioned; without XᵀX (cond None) there is nothing to judge.
    cond_ill = method == "lstsq" and cond is not None and not cond < WARN_CONDITION
    ill = bool(cond_ill or (gain is not None and gain > WARN_GAIN))
    return {
        "n": stats.n,
        "d_x": stats.d_x,
        "d_y": stats.d_y,
        "fit_residual": stats.residual(Wm),
        "orthogonality_error": _orthogonality_error(W_lin),
        "condition_number": cond if cond is not None and math.isfinite(cond) else None,
        "spectral_norm": spectral_norm,
        "spectral_gain": gain,
        "ill_conditioned": ill,
        "suggested_ridge": _suggested_ridge(stats, affine, ridge) if ill and method == "lstsq" else None,
    }


def _spectral_gain(stats: SufficientStats, spectral_norm: float, affine: bool) -> float | None:
    """``‖W‖₂ · rms‖x‖ / rms‖y‖`` from the traces of the (centred when ``affine``) statistics."""
    if stats.n == 0:
        return None
    xx, yy = stats.xx, stats.yy
    if affine:
        mean_x, mean_y = stats.sum_x / stats.n, stats.sum_y / stats.n
        xx -= stats.n * float(mean_x @ mean_x)
        yy -= stats.n * float(mean_y @ mean_y)
    if not yy > 0:
        return None
    return spectral_norm * math.sqrt(max(xx, 0.0) / yy)


def _suggested_ridge(stats: SufficientStats, affine: bool, ridge: float) -> float | None:
    """Smallest power of ten λ ≥ 10·ridge with ``cond(XᵀX + λI) ≤ WARN_CONDITION``: since
    ``cond(A + λI) = (λ_max + λ) / (λ_min + λ) ≤ (λ_max + λ) / λ``, ``λ ≥ λ_max / (WARN_CONDITION − 1)``
    is enough whatever λ_min. None without XᵀX."""
    A = stats.centered()[0] if affine else stats.XtX
    if A is None or A.shape[0] == 0:
        return None
    top = float(np.linalg.eigvalsh(A)[-1])
    need = max(top / (WARN_CONDITION - 1.0), 10.0 * ridge)
    if not need > 0:
        return None
    return float(10.0 ** math.ceil(math.log10(need) - 1e-9))


# --------------------------------------------------------------------------------------------------
# in-memory fits and application
# --------------------------------------------------------------------------------------------------


def _new_stats(method: str, *, x_label: str = "X", y_label: str = "Y") -> SufficientStats:
    """Statistics for ``method``: procrustes skips XᵀX and takes XᵀY from float32 products (see
    :class:`SufficientStats`); lstsq (and anything unknown, rejected later) keeps everything in float64."""
    procrustes = method == "procrustes"
    return SufficientStats(x_label=x_label, y_label=y_label, need_xtx=not procrustes, float32_products=procrustes)


def _stats_of(X: ArrayLike, Y: ArrayLike, method: str) -> SufficientStats:
    stats = _new_stats(method)
    stats.update(X, Y)
    return stats


def fit_lstsq(X: ArrayLike, Y: ArrayLike, *, ridge: float = 0.0, center: bool = False) -> F32:
    """Least-squares map ``W = (XᵀX + λI)⁻¹ XᵀY``. X: (n, d), Y: (n, d') float32.

    Returns (d, d') float32, or (d+1, d') with the bias as last row when ``center``. Same result as
    streaming the rows through :class:`SufficientStats` in any chunking.
    """
    return solve_projection(_stats_of(X, Y, "lstsq"), "lstsq", ridge=ridge, center=center)


def fit_procrustes(X: ArrayLike, Y: ArrayLike, *, center: bool = False) -> F32:
    """Orthogonal map ``W = U Vᵀ`` with ``XᵀY = U Σ Vᵀ`` (Schönemann 1966; Xing et al. 2015).

    X: (n, d), Y: (n, d) float32. Returns (d, d) float32, or (d+1, d) with the bias as last row when
    ``center``.
    """
    return solve_projection(_stats_of(X, Y, "procrustes"), "procrustes", center=center)


def apply_projection(X: ArrayLike, W: ArrayLike) -> F32:
    """``X @ W`` for a linear (d, d') map, ``[X, 1] @ W`` for an affine (d+1, d') one.

    X: (n, d) real. W: (d, d') or (d+1, d'). Returns (n, d') float32.
    """
    Xm = _as_matrix(X, "input")
    W_lin, bias = _split_affine(np.asarray(W, dtype=np.float32), Xm.shape[1])
    out: F32 = np.asarray(Xm, dtype=np.float32) @ W_lin
    if bias is not None:
        out += bias
    return out


# --------------------------------------------------------------------------------------------------
# the fitted object, streaming fit, chunk helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Projection:
    """A fitted map with the preprocessing of both sides, as saved by ``xl fit-proj``.

    ``W``: (d, d') float32, or (d+1, d') with the bias as last row when ``center``. ``W`` maps
    ``pre_x.apply(X)`` to the space of ``pre_y.apply(Y)``. ``to_dict`` holds everything but W (for the
    manifest beside ``W.npy``); ``from_dict(meta, W)`` rebuilds it.
    """

    W: F32
    method: str
    center: bool
    ridge: float
    pre_x: Preprocessing
    pre_y: Preprocessing
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def apply_source(self, X: ArrayLike) -> F32:
        """Map source rows: ``apply_projection(pre_x.apply(X), W)``. X: (n, d) → (n, d') float32."""
        return apply_projection(self.pre_x.apply(X), self.W)

    def apply_target(self, Y: ArrayLike) -> F32:
        """Bring target rows into the space the map was fitted to: ``pre_y.apply(Y)``. (n, d') float32."""
        return self.pre_y.apply(Y)

    def to_dict(self) -> dict[str, Any]:
        d_x = self.W.shape[0] - (1 if self.center else 0)
        return {
            "method": self.method,
            "center": self.center,
            "ridge": self.ridge,
            "d_x": d_x,
            "d_y": int(self.W.shape[1]),
            "normalize_x": self.pre_x.to_dict(),
            "normalize_y": self.pre_y.to_dict(),
            "diagnostics": dict(self.diagnostics),
        }

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any], W: ArrayLike) -> Projection:
        """Rebuild from :meth:`to_dict` output and the saved W; ManifestError if they disagree."""
        Wm = np.asarray(W, dtype=np.float32)
        try:
            center = bool(meta["center"])
            d_x, d_y = int(meta["d_x"]), int(meta["d_y"])
            method, ridge = str(meta["method"]), float(meta["ridge"])
            pre_x = Preprocessing.from_dict(meta["normalize_x"])
            pre_y = Preprocessing.from_dict(meta["normalize_y"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"unreadable projection manifest: missing or bad {exc}") from exc
        expected = (d_x + (1 if center else 0), d_y)
        if Wm.shape != expected:
            raise ManifestError(
                "the map and its manifest disagree",
                expected=f"shape {expected}",
                found=f"shape {Wm.shape}",
                hint="keep W.npy and W.npy.json together; refit with `xl fit-proj`",
            )
        return cls(Wm, method, center, ridge, pre_x, pre_y, dict(meta.get("diagnostics", {})))


def fit_projection(
    chunks: PairChunks,
    method: str = "lstsq",
    *,
    ridge: float = 0.0,
    center: bool = False,
    normalize_x: str | Sequence[str] | None = None,
    normalize_y: str | Sequence[str] | None = None,
    x_label: str = "X",
    y_label: str = "Y",
) -> Projection:
    """Fit a map on streamed pairs, with preprocessing, in bounded memory.

    chunks: a zero-argument callable returning a fresh iterable of row-aligned (X_chunk (m, d),
    Y_chunk (m, d')) float32 pairs; it is called once per ``center`` step of the normalisation chains plus
    once for the statistics (see :func:`iter_pair_chunks` and :func:`zip_row_chunks` to build it).
    normalize_x / normalize_y: chains such as ``"unit,center,unit"`` for each side.
    Returns a :class:`Projection` whose ``diagnostics`` hold :func:`projection_diagnostics`.
    """
    steps_x, steps_y = parse_normalize(normalize_x), parse_normalize(normalize_y)
    pre_x, pre_y, n_pre = fit_preprocessing_pair(steps_x, steps_y, chunks, x_label=x_label, y_label=y_label)
    stats = _new_stats(method, x_label=x_label, y_label=y_label)
    for X, Y in chunks():
        Xm, Ym = _check_pair_chunk(X, Y, stats.n, x_label, y_label)
        # Both steps work row by row, so a NaN or Inf stays in its row and update() names the right one.
        stats.update(pre_x.apply(Xm), pre_y.apply(Ym))
        # Let this chunk go before the stream reads the next one: otherwise both are alive at the peak.
        del X, Y, Xm, Ym
    if n_pre:
        _check_pass_rows(stats.n, n_pre)
    W = solve_projection(stats, method, ridge=ridge, center=center)
    diagnostics = projection_diagnostics(stats, W, ridge=ridge, center=center, method=method)
    return Projection(W, method, center, ridge, pre_x, pre_y, diagnostics)


def iter_pair_chunks(
    X: ArrayLike, Y: ArrayLike, rows: ArrayLike | None = None, *, chunk_rows: int = 65536
) -> Iterator[tuple[NDArray[Any], NDArray[Any]]]:
    """Row-aligned chunks of two matrices (in memory or ``np.load(..., mmap_mode="r")``), optionally only
    the row indices ``rows`` (e.g. the train part of :func:`dev_split`, sorted for sequential reads).

    ``lambda: iter_pair_chunks(X, Y, train_idx)`` is a valid ``chunks`` argument of :func:`fit_projection`.
    """
    Xm, Ym = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if Xm.shape[0] != Ym.shape[0]:
        raise ShapeError(
            f"X has {Xm.shape[0]} rows but Y has {Ym.shape[0]}",
            hint="row i of the source must be the translation of row i of the target",
        )
    if rows is None:
        for start in range(0, Xm.shape[0], chunk_rows):
            yield Xm[start : start + chunk_rows], Ym[start : start + chunk_rows]
        return
    idx = np.asarray(rows, dtype=np.int64)
    for start in range(0, idx.shape[0], chunk_rows):
        part = idx[start : start + chunk_rows]
        yield Xm[part], Ym[part]


def zip_row_chunks(
    x_chunks: Iterable[ArrayLike],
    y_chunks: Iterable[ArrayLike],
    *,
    chunk_rows: int = 65536,
    x_label: str = "X",
    y_label: str = "Y",
) -> Iterator[tuple[NDArray[Any], NDArray[Any]]]:
    """Re-block two independent row streams (e.g. two NPY streams with different array boundaries) into
    row-aligned pairs of at most ``chunk_rows`` rows.

    Raises ShapeError naming both totals when one stream ends before the other, e.g.
    ``src.npy has 5000 rows but tgt.npy has 4998`` (the longer stream is read to the end to count it),
    and when the width of a stream changes.
    """
    x_side = _RowBuffer(iter(x_chunks), x_label)
    y_side = _RowBuffer(iter(y_chunks), y_label)
    while True:
        x_side.fill(chunk_rows)
        y_side.fill(chunk_rows)
        take = min(x_side.rows, y_side.rows, chunk_rows)
        if take == 0:
            break
        yield x_side.take(take), y_side.take(take)
    if x_side.rows or y_side.rows:
        raise ShapeError(
            f"{x_label} has {x_side.count_all()} rows but {y_label} has {y_side.count_all()}",
            hint="row i of the source must be the translation of row i of the target",
        )


class _RowBuffer:
    """Arrays pulled from one row stream and not yet handed out, for :func:`zip_row_chunks`."""

    def __init__(self, it: Iterator[ArrayLike], label: str) -> None:
        self.it, self.label = it, label
        self.parts: list[NDArray[Any]] = []
        self.rows = 0  # buffered
        self.read = 0  # pulled so far
        self.width: int | None = None
        self.done = False

    def fill(self, want: int) -> None:
        while not self.done and self.rows < want:
            try:
                M = _as_matrix(next(self.it), self.label)
            except StopIteration:
                self.done = True
                return
            _check_width(M.shape[1], self.width, self.label, self.read)
            self.width = M.shape[1]
            self.parts.append(M)
            self.rows += M.shape[0]
            self.read += M.shape[0]

    def take(self, n: int) -> NDArray[Any]:
        """The next ``n`` buffered rows: a view when one array holds them, else a new array."""
        self.rows -= n
        first = self.parts[0]
        if first.shape[0] >= n:
            if first.shape[0] == n:
                self.parts.pop(0)
                return first
            self.parts[0] = first[n:]
            return first[:n]
        # Copy array by array into the result and drop each as soon as it is copied: the peak is the
        # buffered rows plus one array, where np.concatenate would hold the buffered rows twice.
        count = k = 0
        while count < n:
            count += self.parts[k].shape[0]
            k += 1
        out = np.empty((n, first.shape[1]), dtype=np.result_type(*self.parts[:k]))
        del first
        got = 0
        while got < n:
            M = self.parts.pop(0)
            step = min(M.shape[0], n - got)
            out[got : got + step] = M[:step]
            if step < M.shape[0]:
                self.parts.insert(0, M[step:])
            got += step
            del M
        return out

    def count_all(self) -> int:
        """Total rows of the stream: those read so far plus the rest, read to the end."""
        for M in self.it:
            self.read += int(np.asarray(M).shape[0])
        return self.read


def dev_split(n: int, dev_frac: float, seed: int = 0) -> tuple[I64, I64]:
    """Seeded random split of ``range(n)`` into (train_idx, dev_idx), both sorted int64.

    ``round(n * dev_frac)`` rows go to dev; ``dev_frac`` must be in [0, 1). Same (n, dev_frac, seed) → same
    split (``np.random.default_rng(seed).permutation(n)``).
    """
    if not 0.0 <= dev_frac < 1.0:
        raise UsageError(f"dev fraction must be in [0, 1), not {dev_frac}", hint="e.g. --dev-frac 0.1")
    if n < 0:
        raise UsageError(f"n must be >= 0, not {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_dev = int(round(n * dev_frac))
    return np.sort(perm[n_dev:]).astype(np.int64), np.sort(perm[:n_dev]).astype(np.int64)


def dev_row_mask(rows: ArrayLike, dev_frac: float, seed: int = 0) -> NDArray[np.bool_]:
    """Which global row indices belong to the held-out dev set: a seeded hash of each index.

    Streaming-friendly counterpart of :func:`dev_split`: membership depends only on (row, seed), never
    on the number of rows or the chunking, so a stream of unknown length is split the same way every time.
    About ``dev_frac`` of the rows are dev. The hash is SplitMix64 (Steele et al. 2014).
    """
    if not 0.0 <= dev_frac < 1.0:
        raise UsageError(f"dev fraction must be in [0, 1), not {dev_frac}", hint="e.g. --dev-frac 0.1")
    z = np.asarray(rows, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    mask: NDArray[np.bool_] = uniform < dev_frac
    return mask


def pair_rank_margins(X: ArrayLike, Y: ArrayLike, *, block_rows: int | None = None) -> dict[str, Any]:
    """Graded retrieval diagnostics of row-aligned pairs, in both directions, from cosine similarities.

    X, Y: (n, d) real, row i ↔ row i. For query i (``src2tgt``: X[i] against all rows of Y; ``tgt2src``:
    Y[i] against all rows of X), with true cosine ``s_ii`` and wrong candidates ``s_ij`` (j ≠ i):

    - ``mean_rank``: mean of ``1 + #{j: s_ij > s_ii} + #{j ≠ i: s_ij = s_ii} / 2`` (ties at mid-rank); 1 when
      every true pair ranks first.
    - ``margin``: mean of ``s_ii − max_j s_ij`` (negative where a wrong candidate wins): unlike accuracy, it
      keeps moving when every pair is already retrieved.
    - ``margin_sd``: mean of that margin divided by the standard deviation of the query's wrong cosines: the
      margin in units of the spread of the scores, unchanged by any per-query affine change of the scores
      (which leaves retrieval unchanged). A map that raises the wrong cosines as much as the true ones
      raises the mean pair cosine but not this. Queries whose wrong cosines are all equal are left out.

    Returns ``{"mean_rank": {"src2tgt", "tgt2src"}, "margin": {...}, "margin_sd": {...}}`` of floats; None
    where undefined (n = 0; margins for n < 2, ``margin_sd`` for n < 3). Memory: blocks of rows, at most
    about 16 MiB of similarities at a time.
    """
    Xn, Yn = _prepare_pair(X, Y, same_rows=True)
    out: dict[str, Any] = {"mean_rank": {}, "margin": {}, "margin_sd": {}}
    for direction, Q, K in (("src2tgt", Xn, Yn), ("tgt2src", Yn, Xn)):
        ranks, margins, scaled = _rank_margin_rows(Q, K, block_rows)
        out["mean_rank"][direction] = float(ranks.mean()) if ranks.size else None
        out["margin"][direction] = float(margins.mean()) if margins.size and Q.shape[0] > 1 else None
        finite = scaled[np.isfinite(scaled)]
        out["margin_sd"][direction] = float(finite.mean()) if finite.size else None
    return out


def _rank_margin_rows(Q: F32, K: F32, block_rows: int | None) -> tuple[F64, F64, F64]:
    """Per query i of unit rows Q against unit rows K (true key i): (mid-rank, margin, margin / sd)."""
    n = Q.shape[0]
    ranks, margins, scaled = np.empty(n), np.empty(n), np.empty(n)
    rows = block_rows or max(1, _MARGIN_BLOCK_ELEMENTS // max(n, 1))
    m = n - 1  # wrong candidates per query
    for start in range(0, n, rows):
        S: F32 = Q[start : start + rows] @ K.T
        b = S.shape[0]
        local = np.arange(b)
        true = S[local, start + local].copy()
        above = (S > true[:, None]).sum(axis=1)
        ties = (S == true[:, None]).sum(axis=1) - 1  # the true pair equals itself
        ranks[start : start + b] = 1.0 + above + ties / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            # Moments of the wrong cosines: the row's, less the true pair's term; squares of deviations from
            # the mean (not raw squares) so that the small spread of similar cosines keeps its digits.
            mean_wrong = (S.sum(axis=1, dtype=np.float64) - true) / m
            D = S - mean_wrong[:, None].astype(np.float32)
            sq = np.einsum("ij,ij->i", D, D, dtype=np.float64) - (true - mean_wrong) ** 2
            sd = np.sqrt(np.maximum(sq / m, 0.0))
            S[local, start + local] = -np.inf
            margin = true.astype(np.float64) - S.max(axis=1)
            # A spread below float32 rounding of the cosines is no spread: leave the query out.
            scaled[start : start + b] = np.where(sd > 1e-6, margin / sd, np.nan)
        margins[start : start + b] = margin
    return ranks, margins, scaled


def evaluate_projection(
    Xdev: ArrayLike,
    Ydev: ArrayLike,
    projection: Projection,
    *,
    csls_k: int = 10,
    block_rows: int | None = None,
) -> dict[str, Any]:
    """Held-out diagnostics of a fitted map, before and after it: retrieval accuracy (``nn`` and ``csls``,
    both directions), mean true-pair cosine, and the graded :func:`pair_rank_margins` (mean rank, margin,
    margin in standard deviations), which still tell maps apart when the accuracy is at its ceiling.

    Xdev: (n, d), Ydev: (n, d') raw dev pairs (not preprocessed). ``before`` compares the raw matrices
    (None when d != d'); ``after`` compares ``projection.apply_source(Xdev)`` with
    ``projection.apply_target(Ydev)``. Returns ``{"n_dev", "before", "after", "saturated"}``, each side
    shaped as :func:`xl.core.retrieval.retrieval_accuracies` plus the keys of :func:`pair_rank_margins`;
    ``saturated`` lists the diagnostics at their ceiling before and after (:func:`saturated_diagnostics`).
    """
    Xm, Ym = _as_matrix(Xdev, "X dev"), _as_matrix(Ydev, "Y dev")
    if Xm.shape[0] != Ym.shape[0]:
        raise ShapeError(f"X dev has {Xm.shape[0]} rows but Y dev has {Ym.shape[0]}")

    def side(A: NDArray[Any], B: NDArray[Any]) -> dict[str, Any]:
        report = retrieval_accuracies(A, B, ("nn", "csls"), csls_k=csls_k, block_rows=block_rows)
        return {**report, **pair_rank_margins(A, B, block_rows=block_rows)}

    before = side(Xm, Ym) if Xm.shape[1] == Ym.shape[1] else None
    after = side(projection.apply_source(Xm), projection.apply_target(Ym))
    return {
        "n_dev": int(Xm.shape[0]),
        "before": before,
        "after": after,
        "saturated": saturated_diagnostics(before, after),
    }


def saturated_diagnostics(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], *, ceiling: float = SATURATED_ACCURACY
) -> list[str]:
    """Names of the dev diagnostics that are at their ceiling both before and after the map (after only when
    there is no ``before``), e.g. ``["src2tgt nn", "src2tgt mean_rank"]``: they cannot tell maps apart.

    An accuracy is at its ceiling at ``≥ ceiling``; a mean rank at ``≤ 1 + (1 − ceiling)`` (e.g. 1.01: one
    pair in a hundred ranked second). before/after: sides of :func:`evaluate_projection`.
    """
    names: list[str] = []

    def at_ceiling(report: Mapping[str, Any] | None, direction: str, key: str) -> bool:
        if report is None:
            return True
        if key == "mean_rank":
            rank = report.get("mean_rank", {}).get(direction)
            return rank is not None and rank <= 1.0 + (1.0 - ceiling) + 1e-12
        acc = report.get(direction, {}).get(key)
        return acc is not None and acc >= ceiling - 1e-12

    for direction in ("src2tgt", "tgt2src"):
        keys = [*after.get(direction, {}), *(["mean_rank"] if "mean_rank" in after else [])]
        for key in keys:
            if at_ceiling(after, direction, key) and at_ceiling(before, direction, key):
                names.append(f"{direction} {key}")
    return names


def fit_warnings(diagnostics: Mapping[str, Any], dev: Mapping[str, Any] | None, *, method: str) -> list[str]:
    """One-line warnings about a fitted map, for stderr: an ill-conditioned fit (with a ``--ridge`` to try,
    for lstsq) and saturated dev diagnostics. diagnostics: :func:`projection_diagnostics`; dev:
    :func:`evaluate_projection` (or None)."""
    warnings: list[str] = []
    if diagnostics.get("ill_conditioned"):
        parts = []
        cond = diagnostics.get("condition_number")
        if method == "lstsq" and (cond is None or cond >= WARN_CONDITION):
            shown = "inf (singular)" if cond is None else f"{cond:.2g}"
            parts.append(f"condition number of XᵀX {shown} ≥ {WARN_CONDITION:.0e}".replace("e+0", "e"))
        gain = diagnostics.get("spectral_gain")
        norm = f"‖W‖₂ {diagnostics.get('spectral_norm', math.nan):.3g}"
        parts.append(f"{norm}, gain {gain:.3g} > {WARN_GAIN:g}" if gain is not None and gain > WARN_GAIN else norm)
        message = (
            f"ill-conditioned fit ({'; '.join(parts)}): the map stretches directions that the pairs barely "
            "constrain, which tends to hurt held-out retrieval"
        )
        ridge = diagnostics.get("suggested_ridge")
        if ridge is not None:
            message += f"; try --ridge {ridge:g}"
        elif method != "lstsq":
            message += "; compare with --method procrustes"
        warnings.append(message)
    saturated = list(dev.get("saturated", [])) if dev else []
    if saturated:
        grouped: dict[str, list[str]] = {}
        for name in saturated:
            direction, _, key = name.partition(" ")
            grouped.setdefault(direction, []).append(key)
        listed = ", ".join(f"{direction} {'/'.join(keys)}" for direction, keys in grouped.items())
        warnings.append(
            f"dev diagnostics at their ceiling before and after the map ({listed}; accuracy ≥ "
            f"{SATURATED_ACCURACY:g}, mean rank ≤ {2.0 - SATURATED_ACCURACY:g}): they cannot tell maps apart; "
            "compare margin_sd (the margin in standard deviations) instead, or hold out more or harder pairs"
        )
    return warnings


__all__ = [
    "METHODS",
    "NORMALIZE_STEPS",
    "Method",
    "PairChunks",
    "Preprocessing",
    "Projection",
    "SufficientStats",
    "apply_projection",
    "dev_row_mask",
    "dev_split",
    "evaluate_projection",
    "fit_lstsq",
    "fit_preprocessing",
    "fit_preprocessing_pair",
    "fit_procrustes",
    "fit_projection",
    "fit_warnings",
    "iter_pair_chunks",
    "pair_rank_margins",
    "parse_normalize",
    "projection_diagnostics",
    "saturated_diagnostics",
    "solve_projection",
    "zip_row_chunks",
]
