"""Correlation of two 1-D samples with analytic and permutation p-values and bootstrap confidence intervals.

Three statistics: Pearson's r, Spearman's ρ (Pearson's r on average ranks) and Kendall's τ-b (Kendall 1945,
"The treatment of ties in ranking problems"). Point estimates and analytic p-values come from
``scipy.stats.pearsonr`` / ``spearmanr`` / ``kendalltau`` unchanged; this module adds, for the same statistic:

- a **permutation p-value** (two-sided: the share of permutations of y against x whose statistic is at least
  as large in absolute value as the observed one), with the +1 correction ``(count + 1) / (n_perm + 1)`` of
  Phipson & Smyth 2010 ("Permutation p-values should never be zero"), which keeps the Monte-Carlo p-value
  valid.
  When ``n! <= n_perm`` all ``n!`` permutations are enumerated instead and the p-value is exact
  (``count / n!``; the identity permutation is among them). The permutations are drawn once per sample and
  shared by the three statistics.
- a **bootstrap percentile confidence interval** (Efron & Tibshirani 1993, "An Introduction to the Bootstrap",
  §13.3): pairs ``(x_i, y_i)`` are resampled with replacement, the statistic is recomputed on each resample,
  and the interval is the ``(1 ± level) / 2`` quantiles of those values. A resample in which x or y is
  constant has no correlation; it is dropped and ``n_boot_used`` says how many resamples remain.

Pearson and Spearman are vectorised: each block of permutations (or resamples) is an ``(b, n)`` index matrix
and the statistics of the whole block come from one gather and one matrix product (the average ranks of a
resample are read off per-row value counts). Kendall's τ has no such closed form; its numerator ``S = C − D``
is counted per permutation with Knight's O(n log n) algorithm (1966, "A computer method for calculating
Kendall's tau with ungrouped data") through SciPy's compiled helper, the one ``scipy.stats.kendalltau`` itself
calls (a slower path through the public ``kendalltau`` takes over if a SciPy build lacks it), on data sorted
once by the variable with more distinct values while the other is permuted. Under permutation the tie counts
of x and y are fixed, so comparing ``|S|`` is comparing ``|τ-b|``. That loop is most of the run time; leave
Kendall out of ``methods`` when speed matters.
``correlations_by_group`` splits every group's permutations and resamples into two fixed shares and, given
enough work, computes the second share in a forked process (results identical either way).

A sample too small for a statistic (n < 3, or x or y constant) gets ``value=None`` and a ``reason``,
never a number. Every result carries n and is JSON-able through ``Correlation.to_dict``.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from xl.errors import InputError, ShapeError, UsageError

Method = Literal["pearson", "spearman", "kendall"]
METHODS: tuple[Method, ...] = get_args(Method)

F64 = NDArray[np.float64]
IP = NDArray[np.intp]

#: Index elements per block of permutations or resamples. Small enough that a block's arrays (512 KiB of
#: int64 each) stay in the CPU cache: measured 2-3x faster than blocks of 2**21 elements.
BLOCK_ELEMENTS = 1 << 16
#: Permutation statistics closer than this to the observed one count as "at least as extreme": the same
#: value computed through a different summation order may differ in the last bits.
_TOLERANCE = 1e-12
#: Every group's permutations and resamples come in this many fixed shares (one stream each), so that two
#: processes can split them without changing any result.
_PARTS = 2
#: Points × max(permutations, resamples) above which ``correlations_by_group`` forks a second process.
PARALLEL_MIN_WORK = 2_000_000

try:  # SciPy's compiled Fenwick-tree count of discordant pairs, the one scipy.stats.kendalltau calls.
    from scipy.stats._stats import _kendall_dis
except ImportError:  # pragma: no cover - depends on the SciPy build
    _kendall_dis = None


@dataclass(frozen=True)
class Correlation:
    """One correlation with its p-values and confidence interval.

    ``value``: the statistic (scipy's point estimate); ``p_value``: scipy's analytic p-value (exact for small
    samples where scipy computes one); ``p_perm``: the permutation p-value over ``n_perm`` permutations
    (``perm_exact``: all of them); ``ci_low``/``ci_high``: the bootstrap percentile interval at ``ci_level``
    from ``n_boot_used`` of ``n_boot`` resamples. ``reason`` says why ``value`` is None.
    """

    method: str
    n: int
    value: float | None
    p_value: float | None
    p_perm: float | None
    n_perm: int
    perm_exact: bool
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    n_boot: int
    n_boot_used: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (plain floats, ints, strings and None)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: Method = "spearman",
    *,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """One statistic (``method``) between ``x: (n,)`` and ``y: (n,)`` (real, finite); see ``correlations``."""
    return correlations(x, y, (method,), n_perm=n_perm, n_boot=n_boot, ci_level=ci_level, seed=seed)[method]


def correlations(
    x: ArrayLike,
    y: ArrayLike,
    methods: Sequence[Method] = METHODS,
    *,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Correlation]:
    """Pearson, Spearman and/or Kendall τ-b between ``x: (n,)`` and ``y: (n,)`` (finite reals, as float64).

    ``n_perm`` permutations (0: no permutation p-value) and ``n_boot`` bootstrap resamples (0: no interval)
    are drawn from two independent streams derived from ``seed``, the same for every method, so results are
    reproducible and a method's result does not depend on which other methods are requested.
    Returns ``{method: Correlation}`` in the order of ``methods``.
    """
    X, Y = _check_pair(x, y)
    wanted = _check_options(methods, n_perm, n_boot, ci_level)
    group = _Group("", X, Y, np.random.SeedSequence(seed))
    return _correlate_groups([group], wanted, n_perm, n_boot, ci_level, parallel=False)[0]


def correlations_by_group(
    x: ArrayLike,
    y: ArrayLike,
    groups: Sequence[str],
    methods: Sequence[Method] = METHODS,
    *,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    ci_level: float = 0.95,
    seed: int = 0,
    overall: bool = False,
    parallel: bool | None = None,
) -> dict[str | None, dict[str, Correlation]]:
    """``correlations`` within each group: ``groups[i]`` names the group of point ``i`` (e.g. its family).

    Returns ``{group: {method: Correlation}}`` with groups sorted by name, preceded by ``{None: …}``, the
    statistics of all points together, when ``overall``. Each group draws from its own streams, derived from
    ``seed`` and the group's name (the overall ones from ``seed`` alone, as ``correlations`` does), so adding
    or dropping a group leaves the others' results unchanged.

    ``parallel``: split the work in two halves, one in a forked process (None: when there is enough work and
    more than one CPU). The halves are fixed (see ``_PARTS``), so the results are the same either way.
    """
    X, Y = _check_pair(x, y)
    wanted = _check_options(methods, n_perm, n_boot, ci_level)
    labels = np.asarray([str(g) for g in groups], dtype=object)
    if labels.shape != X.shape:
        raise ShapeError(f"{X.size} points but {labels.size} group labels", expected="one group per point")
    work: list[_Group] = [_Group(None, X, Y, np.random.SeedSequence(seed))] if overall else []
    for name in sorted(set(labels.tolist())):
        mask = labels == name
        ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode("utf-8")),))
        work.append(_Group(name, X[mask], Y[mask], ss))
    if parallel is None:
        size = sum(g.x.size for g in work) * max(n_perm, n_boot, 1)
        parallel = size > PARALLEL_MIN_WORK and (os.cpu_count() or 1) > 1
    results = _correlate_groups(work, wanted, n_perm, n_boot, ci_level, parallel=parallel)
    return {g.name: r for g, r in zip(work, results, strict=True)}


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _check_pair(x: ArrayLike, y: ArrayLike) -> tuple[F64, F64]:
    """``x`` and ``y`` as 1-D float64 arrays of equal length with finite values."""
    arrays: list[F64] = []
    for label, values in (("x", x), ("y", y)):
        try:
            A = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{label} is not numeric: {exc}", expected="real numbers") from None
        if A.ndim != 1:
            raise ShapeError(f"{label} must be 1-D", expected="shape (n,)", found=f"shape {A.shape}")
        bad = np.flatnonzero(~np.isfinite(A))
        if bad.size:
            raise InputError(
                f"{label} has {bad.size} non-finite value(s), the first at index {int(bad[0])}",
                expected="finite numbers",
                found=str(A[bad[0]]),
                hint="drop or fill the missing measurements before correlating",
            )
        arrays.append(A)
    if arrays[0].size != arrays[1].size:
        raise ShapeError(
            f"x has {arrays[0].size} values but y has {arrays[1].size}",
            expected="one y per x (paired samples)",
        )
    return arrays[0], arrays[1]


def _check_options(methods: Sequence[Method], n_perm: int, n_boot: int, ci_level: float) -> tuple[Method, ...]:
    """Validated methods (duplicates removed, order kept); UsageError on a bad option."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(
            f"unknown correlation method(s): {', '.join(map(str, unknown)) or '(none given)'}",
            expected=", ".join(METHODS),
        )
    if n_perm < 0 or n_boot < 0:
        raise UsageError("n_perm and n_boot must be >= 0", found=f"n_perm={n_perm}, n_boot={n_boot}")
    if not 0.0 < ci_level < 1.0:
        raise UsageError("ci_level must lie strictly between 0 and 1", found=str(ci_level))
    return tuple(dict.fromkeys(methods))


# --------------------------------------------------------------------------------------------------
# the computation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    """A sample sorted by (x, y) with everything the statistics need.

    ``zx, zy``: (n,) centred, unit-norm values, so Pearson's r is ``zx @ zy``; ``zrx, zry``: the same for the
    average ranks. ``dx, dy``: (n,) 0-based dense ranks (``kx``, ``ky`` distinct values), ``dxy`` the dense
    rank of the pair (``kxy`` distinct pairs). ``n1, n2``: pairs tied in x, in y (Kendall's tie counts).
    ``y_by_y, x_by_y``: 1-based dense ranks of y and x with the sample sorted by (y, x) instead.
    """

    n: int
    xc: F64
    yc: F64
    zx: F64
    zy: F64
    zrx: F64
    zry: F64
    dx: IP
    dy: IP
    dxy: IP
    kx: int
    ky: int
    kxy: int
    n1: int
    n2: int
    y_by_y: IP
    x_by_y: IP

    @staticmethod
    def build(x: F64, y: F64) -> _Sample:
        order = np.lexsort((y, x))
        xs, ys = x[order], y[order]
        _, dx, cx = np.unique(xs, return_inverse=True, return_counts=True)
        _, dy, cy = np.unique(ys, return_inverse=True, return_counts=True)
        ky = int(cy.size)
        _, dxy = np.unique(dx * ky + dy, return_inverse=True)
        xc, yc = xs - xs.mean(), ys - ys.mean()
        rx = scipy.stats.rankdata(xs)
        ry = scipy.stats.rankdata(ys)
        by_y = np.lexsort((dx, dy))  # the sample sorted by (y, x) instead
        return _Sample(
            n=int(xs.size),
            xc=xc,
            yc=yc,
            zx=_unit(xc),
            zy=_unit(yc),
            zrx=_unit(rx - rx.mean()),
            zry=_unit(ry - ry.mean()),
            dx=dx.astype(np.intp),
            dy=dy.astype(np.intp),
            dxy=dxy.astype(np.intp),
            kx=int(cx.size),
            ky=ky,
            kxy=int(dxy.max()) + 1,
            n1=_tied_pairs(cx),
            n2=_tied_pairs(cy),
            y_by_y=(dy[by_y] + 1).astype(np.intp),
            x_by_y=(dx[by_y] + 1).astype(np.intp),
        )


def _unit(v: F64) -> F64:
    norm = float(np.sqrt(v @ v))
    return v / norm


def _tied_pairs(counts: NDArray[Any]) -> int:
    """Number of pairs within groups of the given sizes: Σ c(c−1)/2."""
    c = counts.astype(np.int64)
    return int((c * (c - 1)).sum() // 2)


def _too_small(x: F64, y: F64) -> str | None:
    """Why no correlation can be computed on (x, y), or None."""
    if x.size < 3:
        return f"n = {x.size} < 3: too few points for a correlation"
    constant = [label for label, v in (("x", x), ("y", y)) if v.min() == v.max()]
    if constant:
        return f"{' and '.join(constant)} constant: the correlation is undefined"
    return None


@dataclass(frozen=True)
class _Group:
    name: str | None
    x: F64
    y: F64
    ss: np.random.SeedSequence


@dataclass
class _Partial:
    """One part's share of a group's work: permutation hits per method, permutations done, whether they were
    all ``n!``, and the bootstrap statistics per method."""

    hits: dict[str, int]
    count: int
    exact: bool
    boot: dict[str, list[F64]]


def _child(ss: np.random.SeedSequence, *keys: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, *keys), pool_size=ss.pool_size)


def _part_sizes(total: int) -> list[int]:
    return [total // _PARTS + (1 if i < total % _PARTS else 0) for i in range(_PARTS)]


def _run_part(groups: Sequence[_Group], methods: tuple[Method, ...], n_perm: int, n_boot: int,
              part: int) -> list[_Partial | None]:  # fmt: skip
    """Part ``part`` of every group's permutations and resamples (None for a group too small to correlate).

    Each group's permutations and resamples come in ``_PARTS`` fixed shares, each drawn from its own stream
    spawned from the group's seed, so a share's result does not depend on which process computes it."""
    out: list[_Partial | None] = []
    for g in groups:
        if _too_small(g.x, g.y) is not None:
            out.append(None)
            continue
        sample = _Sample.build(g.x, g.y)
        # Children by explicit spawn keys, as ``SeedSequence.spawn`` numbers them on a fresh sequence (spawn
        # itself counts the children already made, which would tie a stream to the order of the calls).
        perm_rng = np.random.default_rng(_child(g.ss, 0, part))
        boot_rng = np.random.default_rng(_child(g.ss, 1, part))
        if sample.n <= 10 and math.factorial(sample.n) <= n_perm:  # every permutation, all in the first part
            hits, count, exact = _permutation_hits(sample, methods, n_perm if part == 0 else 0, perm_rng)
        else:
            hits, count, exact = _permutation_hits(sample, methods, _part_sizes(n_perm)[part], perm_rng)
        boot = _bootstrap_values(sample, methods, _part_sizes(n_boot)[part], boot_rng)
        out.append(_Partial(hits, count, exact, boot))
    return out


def _correlate_groups(groups: Sequence[_Group], methods: tuple[Method, ...], n_perm: int, n_boot: int,
                      ci_level: float, *, parallel: bool) -> list[dict[str, Correlation]]:  # fmt: skip
    """Every group's correlations; with ``parallel``, the second half of the work runs in a forked process."""
    if parallel:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(_run_part, groups, methods, n_perm, n_boot, 1)
            parts = [_run_part(groups, methods, n_perm, n_boot, 0), future.result()]
    else:
        parts = [_run_part(groups, methods, n_perm, n_boot, i) for i in range(_PARTS)]
    return [_finish(g, [p[i] for p in parts], methods, n_boot, ci_level) for i, g in enumerate(groups)]


def _finish(group: _Group, partials: Sequence[_Partial | None], methods: tuple[Method, ...], n_boot: int,
            ci_level: float) -> dict[str, Correlation]:  # fmt: skip
    """Combine the parts of one group: permutation p-values, percentile intervals, scipy's point values."""
    n = int(group.x.size)
    reason = _too_small(group.x, group.y)
    if reason is not None:
        return {m: Correlation(m, n, None, None, None, 0, False, None, None, ci_level, n_boot, 0, reason)
                for m in methods}  # fmt: skip
    done = [p for p in partials if p is not None]
    count = sum(p.count for p in done)
    exact = any(p.exact for p in done)
    p_perm: dict[str, float] = {}
    if count:
        for m in methods:
            hits = sum(p.hits[m] for p in done)
            p_perm[m] = hits / count if exact else (hits + 1) / (count + 1)
    boot: dict[str, list[F64]] = {m: [v for p in done for v in p.boot.get(m, [])] for m in methods}
    cis, used = _percentile_intervals(boot, methods, ci_level)
    out: dict[str, Correlation] = {}
    for m in methods:
        value, p_value = _scipy_point(m, group.x, group.y)
        low, high = cis.get(m, (None, None))
        out[m] = Correlation(m, n, value, p_value, p_perm.get(m), count, exact, low, high, ci_level, n_boot, used)
    return out


def _scipy_point(method: Method, x: F64, y: F64) -> tuple[float, float]:
    """scipy's statistic and analytic p-value (two-sided)."""
    if method == "pearson":
        res: Any = scipy.stats.pearsonr(x, y)
    elif method == "spearman":
        res = scipy.stats.spearmanr(x, y)
    else:
        res = scipy.stats.kendalltau(x, y)
    return float(res.statistic), float(res.pvalue)


# --------------------------------------------------------------------------------------------------
# Kendall's numerator
# --------------------------------------------------------------------------------------------------


def _discordant_fallback(xr: IP, yr: IP) -> int:
    """Discordant pairs from the public ``scipy.stats.kendalltau``, for SciPy builds without ``_kendall_dis``.

    τ-b times its denominator is ``S = C − D``; with the tie counts that gives D. Slower, same result.
    """
    n = xr.size
    n0 = n * (n - 1) // 2
    _, cx = np.unique(xr, return_counts=True)
    _, cy = np.unique(yr, return_counts=True)
    _, cxy = np.unique(xr * (int(yr.max()) + 1) + yr, return_counts=True)
    n1, n2, n3 = _tied_pairs(cx), _tied_pairs(cy), _tied_pairs(cxy)
    if n1 == n0 or n2 == n0:
        return 0  # x or y constant: every pair is tied, none is discordant
    s = round(float(scipy.stats.kendalltau(xr, yr).statistic) * math.sqrt(float(n0 - n1) * float(n0 - n2)))
    return (n0 - n1 - n2 + n3 - s) // 2


#: ``_discordant(xr, yr)``: pairs with ``x_i < x_j`` and ``y_i > y_j`` for 1-based dense ranks ``xr``
#: (non-decreasing) and ``yr``, both (n,) intp: Knight's (1966) O(n log n) count in compiled code when SciPy
#: has it. Bound once here because it runs once per permutation: a wrapper would cost a fifth of the time.
_discordant: Callable[[IP, IP], int] = _discordant_fallback if _kendall_dis is None else _kendall_dis


def _kendall_s(xr: IP, yr: IP, n1: int, n2: int, n3: int | None) -> int:
    """Kendall's ``S = C − D`` for 1-based dense ranks ``xr`` (non-decreasing) and ``yr``, both (n,) intp.

    ``n1``, ``n2``, ``n3``: pairs tied in x, in y, in both (``n3=None``: unknown; then C is counted too).
    """
    n = xr.size
    n0 = n * (n - 1) // 2
    discordant = _discordant(xr, yr)
    if n3 is not None:
        # C + D + (tied in x only) + (tied in y only) + (tied in both) = n0
        return n0 - n1 - n2 + n3 - 2 * discordant
    # C is the number of discordant pairs against reversed y ranks.
    return _discordant(xr, (int(yr.max()) + 1) - yr) - discordant


# --------------------------------------------------------------------------------------------------
# permutation p-values
# --------------------------------------------------------------------------------------------------


def _permutation_blocks(n: int, n_perm: int, rng: np.random.Generator) -> tuple[Iterator[IP], int, bool]:
    """Blocks ``(b, n)`` of permuted indices, the number of permutations and whether they are all ``n!``."""
    rows = max(1, BLOCK_ELEMENTS // n)
    if n <= 10 and math.factorial(n) <= n_perm:
        every = itertools.permutations(range(n))

        def exhaustive() -> Iterator[IP]:
            while block := list(itertools.islice(every, rows)):
                yield np.array(block, dtype=np.intp)

        return exhaustive(), math.factorial(n), True

    def blocks() -> Iterator[IP]:
        done = 0
        block = np.empty((rows, n), dtype=np.intp)
        while done < n_perm:
            b = min(rows, n_perm - done)
            # one Generator.permutation call per row: about 3x faster than Generator.permuted on a (b, n) block
            for i in range(b):
                block[i] = rng.permutation(n)
            yield block[:b]
            done += b

    return blocks(), n_perm, False


def _permutation_hits(
    sample: _Sample, methods: tuple[Method, ...], n_perm: int, rng: np.random.Generator
) -> tuple[dict[str, int], int, bool]:
    """Per method, how many of ``n_perm`` permutations give a statistic at least as extreme (two-sided) as the
    observed one; the number of permutations; whether they were all ``n!`` of them."""
    if n_perm == 0:
        return dict.fromkeys(methods, 0), 0, False
    n = sample.n
    blocks, count, exact = _permutation_blocks(n, n_perm, rng)
    # With no ties in x or no ties in y, no pair can be tied in both, whatever the permutation.
    n3: int | None = 0 if (sample.kx == n or sample.ky == n) else None
    observed: dict[str, float] = {}
    if "pearson" in methods:
        observed["pearson"] = abs(float(sample.zx @ sample.zy)) - _TOLERANCE
    if "spearman" in methods:
        observed["spearman"] = abs(float(sample.zrx @ sample.zry)) - _TOLERANCE
    if "kendall" in methods:
        # Permuting y against x or x against y gives the same null distribution. The variable with fewer
        # distinct values is the one permuted: the Fenwick tree of the count is then smaller (about 20% faster
        # for 200 distinct similarities among 10,000 gains).
        fixed, moving = (sample.dx + 1, sample.dy + 1) if sample.ky <= sample.kx else (sample.y_by_y, sample.x_by_y)
        s_obs = _kendall_s(sample.dx + 1, sample.dy + 1, sample.n1, sample.n2, None)
        observed["kendall"] = float(abs(s_obs))
    hits = dict.fromkeys(observed, 0)
    for P in blocks:
        # Permuting y against x: statistic of the pairs (x_i, y_P[i]).
        if "pearson" in methods:
            r = sample.zy[P] @ sample.zx
            hits["pearson"] += int(np.count_nonzero(np.abs(r) >= observed["pearson"]))
        if "spearman" in methods:
            rho = sample.zry[P] @ sample.zrx
            hits["spearman"] += int(np.count_nonzero(np.abs(rho) >= observed["spearman"]))
        if "kendall" in methods:
            M = moving[P]
            if n3 == 0:  # one count per permutation: S = n0 − n1 − n2 − 2D
                D = np.array([_discordant(fixed, row) for row in M], dtype=np.int64)
                S = (n * (n - 1) // 2 - sample.n1 - sample.n2) - 2 * D
            else:  # the pairs tied in both change with the permutation: count C as well
                S = np.array([_kendall_s(fixed, row, sample.n1, sample.n2, None) for row in M], dtype=np.int64)
            hits["kendall"] += int(np.count_nonzero(np.abs(S) >= observed["kendall"]))
    return hits, count, exact


# --------------------------------------------------------------------------------------------------
# bootstrap confidence intervals
# --------------------------------------------------------------------------------------------------


def _row_counts(codes: IP, k: int) -> NDArray[np.int64]:
    """(b, k) counts of each code 0..k−1 in every row of ``codes: (b, n)``, by one flat bincount."""
    b = codes.shape[0]
    flat = (codes + (np.arange(b, dtype=np.intp) * k)[:, None]).ravel()
    counts: NDArray[np.int64] = np.bincount(flat, minlength=b * k).reshape(b, k)
    return counts


def _row_tied_pairs(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Tied pairs per row of ``counts: (b, k)``: Σ c(c−1)/2 → (b,)."""
    # Σ c(c−1)/2 = (Σ c² − Σ c) / 2, in one pass over the counts
    pairs: NDArray[np.int64] = (np.einsum("ij,ij->i", counts, counts) - counts.sum(axis=1)) // 2
    return pairs


def _row_pearson(A: F64, B: F64) -> F64:
    """Pearson's r between rows of ``A`` and ``B``: (b, n) → (b,). Rows must not be constant."""
    A = A - A.mean(axis=1, keepdims=True)
    B = B - B.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", A, B)
    den = np.sqrt(np.einsum("ij,ij->i", A, A) * np.einsum("ij,ij->i", B, B))
    r: F64 = np.clip(num / den, -1.0, 1.0)
    return r


def _avg_ranks(codes: IP, counts: NDArray[np.int64]) -> F64:
    """Average (1-based) ranks, as scipy.stats.rankdata gives, of each row of dense codes ``(b, n)``."""
    # rank of value v = #(values < v) + (count_v + 1) / 2 = cumcount_v − (count_v − 1) / 2
    table = np.cumsum(counts, axis=1) - (counts - 1) / 2.0
    ranks: F64 = np.take_along_axis(table, codes, axis=1)
    return ranks


def _resample_statistics(sample: _Sample, methods: tuple[Method, ...], idx: IP) -> dict[str, F64]:
    """The statistics of the resamples ``idx: (b, n)`` (indices into the sorted sample, rows sorted ascending
    when Kendall is wanted), as ``{method: (b',)}`` over the b' rows where neither x nor y is constant."""
    n = sample.n
    n0 = n * (n - 1) // 2
    dx, dy = sample.dx[idx], sample.dy[idx]
    cx, cy = _row_counts(dx, sample.kx), _row_counts(dy, sample.ky)
    keep = (cx.max(axis=1) < n) & (cy.max(axis=1) < n)  # x and y not constant
    if not keep.all():
        idx, dx, dy, cx, cy = idx[keep], dx[keep], dy[keep], cx[keep], cy[keep]
    out: dict[str, F64] = {}
    if "pearson" in methods:
        out["pearson"] = _row_pearson(sample.xc[idx], sample.yc[idx])
    if "spearman" in methods:
        out["spearman"] = _row_pearson(_avg_ranks(dx, cx), _avg_ranks(dy, cy))
    if "kendall" in methods:
        n1 = _row_tied_pairs(cx)
        n2 = _row_tied_pairs(cy)
        n3 = _row_tied_pairs(_row_counts(sample.dxy[idx], sample.kxy))
        xr, yr = dx + 1, dy + 1  # rows of xr are sorted because idx rows are and the sample is sorted by x
        D = np.array([_discordant(xr[i], yr[i]) for i in range(idx.shape[0])], dtype=np.int64)
        S = n0 - n1 - n2 + n3 - 2 * D
        out["kendall"] = S / np.sqrt((n0 - n1).astype(np.float64) * (n0 - n2))
    return out


def _bootstrap_values(
    sample: _Sample, methods: tuple[Method, ...], n_boot: int, rng: np.random.Generator
) -> dict[str, list[F64]]:
    """The statistics of ``n_boot`` resamples, per method, as a list of blocks (degenerate resamples left out)."""
    values: dict[str, list[F64]] = {m: [] for m in methods}
    n = sample.n
    rows = max(1, BLOCK_ELEMENTS // n)
    idx_dtype = np.int16 if n <= np.iinfo(np.int16).max else np.intp  # int16 rows sort by radix sort
    done = 0
    while done < n_boot:
        b = min(rows, n_boot - done)
        done += b
        idx = rng.integers(0, n, size=(b, n)).astype(idx_dtype)
        # A sorted row of indices into the (x, y)-sorted sample is a resample sorted by (x, y), as Kendall
        # needs. Sorted always, so that every method sums in the same order whatever else is requested.
        idx.sort(axis=1, kind="stable")
        for m, v in _resample_statistics(sample, methods, idx.astype(np.intp)).items():
            values[m].append(v)
    return values


def _percentile_intervals(
    values: dict[str, list[F64]], methods: tuple[Method, ...], ci_level: float
) -> tuple[dict[str, tuple[float, float]], int]:
    """Percentile intervals per method and the number of non-degenerate resamples used."""
    used = sum(v.size for v in values[methods[0]])
    if used == 0:
        return {}, 0
    q = [(1.0 - ci_level) / 2.0, (1.0 + ci_level) / 2.0]
    cis: dict[str, tuple[float, float]] = {}
    for m in methods:
        low, high = np.quantile(np.concatenate(values[m]), q)
        cis[m] = (float(low), float(high))
    return cis, used
