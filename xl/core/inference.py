"""Inference on transfer gains that respects what the gains share: clustered permutation tests and bootstraps,
and two tests of whether the similarity–gain slope differs between language families.

Gains come as rows ``(source task, target task, language, gain)``, one per triple. The rows are not
independent: all languages of one (source, target) *pair* come from the same two training runs, and all sources
of one (target, language) share one baseline score. A correlation over rows that treats them as independent
samples each training run many times and rejects far too often: with shared pair effects and no similarity
effect (6 sources × 4 targets × 12 languages) the row-level permutation test of Spearman's ρ rejects at 5% in
about four data sets out of ten, the pair-level test below in about one in twenty (``make calibrate-tasksim``
prints the rates; ``tests/unit/test_inference.py`` asserts bands around them).
Following the design rule "make the unit of analysis the level at which the predictor varies" (DESIGN.md,
Statistics):

- **unit "pair"** (the default whenever the similarity ``x`` is constant within every pair, as TextEmb and
  TaskEmb of Vu et al. 2020 are): one point per pair, ``x`` the pair's similarity and ``y`` the mean gain over
  its languages. The permutation test shuffles the similarities among the sources of the same target, never
  across targets (a *stratified* permutation: what a target shares — its baseline, its difficulty — stays with
  it; Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses", §3.6 on restricted
  permutations; Winkler et al. 2014, "Permutation inference for the general linear model", on exchangeability
  blocks). The null hypothesis: within a target, which source got which similarity is unrelated to its gain.
- **unit "row"** (language-level similarity): one point per row; a permutation draws, within each target, a
  permutation π of its sources, and row ``(s, t, l)`` is paired with the gain of row ``(π(s), t, l)``: all
  language rows of a pair move together, so each language keeps its baseline and each pair its training runs.
  That needs the exchanged sources to have been measured on the same languages; where the sources of a target
  were not, only sources with the same set of languages are exchanged (a finer stratification, still valid),
  and a source whose set no other source of its target shares stays in place.
- **bootstrap "cluster"**: resample whole pairs (with all their rows) within each target, each target keeping
  its number of pairs (a stratified cluster bootstrap); **"two-way"**: resample sources and
  languages independently with replacement and keep what lies in both (the pigeonhole bootstrap of Owen 2007,
  "The pigeonhole bootstrap", Ann. Appl. Stat. 1(2); McCullagh 2000, "Resampling and exchangeable arrays",
  Bernoulli 6(2)); at the pair unit the pair means are rebuilt from the resampled languages. Targets are kept
  as they are (the interval is conditional on the targets studied: there are usually too few to resample).

Permutation p-values are two-sided with the Phipson & Smyth (2010) correction ``(count + 1) / (n_perm + 1)``;
where the strata admit no more than ``n_perm`` distinct permutations all of them are enumerated and the
p-value is exact (``count / total``, the identity among them). The analytic p-value (scipy's, treating the
points as independent) is reported for reference only. Intervals are bootstrap percentile intervals (Efron &
Tibshirani 1993, §13.3). Point values are scipy's; validation and tie bookkeeping come from ``xl.core.stats``;
this module adds the restricted permutations (a Fisher–Yates shuffle vectorised across permutations and strata),
their vectorised counts (Pearson and Spearman by one gather and matrix product per block; Kendall's numerator by
Knight's count, or for up to 320 points by a bitset sweep across a whole block), and the clustered resamples,
as multiplicities of the points (a resample's Kendall S is then a quadratic form). Groups of one design within
a call (every family covering every pair) share one set of permutations and resamples, drawn once.

A group with fewer than ``min_n`` points (default 5) gets ``value=None`` and a ``reason``: three pairs give a
Spearman ρ of ±1 with an interval of [±1, ±1] far too easily to print.

**Family questions** ("is the slope of gain on similarity different in another language family?"):
``family_slopes_permutation`` compares per-family pair-level slopes by shuffling whole languages between
families; ``family_mixed_model`` fits ``gain ~ sim * C(family)`` with random intercepts for target, pair and
target-language (statsmodels ``MixedLM``; as de Vries et al. 2022, "Make the Best of Cross-lingual Transfer:
Evidence from POS Tagging with over 100 Languages") and tests the interaction by a likelihood-ratio test. The
permutation test is exact under its null; the ML likelihood-ratio test of fixed effects can be liberal with few
targets (Pinheiro & Bates 2000, §2.4.2; ``make calibrate-tasksim`` measures both), so read it as
corroboration. Families with fewer than ``min_languages`` languages
are never compared; they are reported with the smallest correlation their number of pairs could detect.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from xl.core import stats as _stats
from xl.core.stats import METHODS, Method
from xl.errors import InputError, ShapeError, UsageError

Unit = Literal["pair", "row"]
UNITS: tuple[Unit, ...] = get_args(Unit)
Bootstrap = Literal["cluster", "two-way"]
BOOTSTRAPS: tuple[Bootstrap, ...] = get_args(Bootstrap)

F64 = NDArray[np.float64]
IP = NDArray[np.intp]

#: The permutation scheme, as results name it.
WITHIN_TARGET = "within-target sources"
#: Elements of the (pairs × permutations·families) matrices of one block of the family test (8 MiB each).
_FAMILY_BLOCK_ELEMENTS = 1 << 20
#: x counts as constant within a pair when its range there is at most this times max(1, |x|): a similarity
#: read from one matrix cell is the same float in every language row.
_PAIR_LEVEL_TOLERANCE = 1e-12


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and numpy scalars as Python numbers, for JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class ClusteredCorrelation:
    """One correlation between similarity and gain, with inference at a stated unit.

    ``unit``: "pair" (one point per (source, target) pair, y = mean gain over its languages), "row" (one point
    per row, clustered inference) or "naive" (rows treated as independent: the old, anti-conservative numbers).
    ``n``: points; ``n_clusters``: (source, target) pairs; ``value``: scipy's statistic on the points;
    ``p_analytic``: scipy's p-value treating the points as independent (for reference only); ``p_perm``: the
    permutation p-value (``permutation`` names the scheme; ``perm_exact``: all distinct permutations were
    enumerated); ``ci_low``/``ci_high``: bootstrap percentile interval at ``ci_level`` from ``n_boot_used`` of
    ``n_boot`` resamples (``bootstrap``: "cluster", "two-way" or "rows"). ``reason`` says why a value, a
    p-value or an interval is missing.
    """

    method: str
    unit: str
    n: int
    n_clusters: int
    n_sources: int
    n_targets: int
    n_languages: int
    value: float | None
    p_analytic: float | None
    p_perm: float | None
    perm_exact: bool
    permutation: str
    n_perm: int
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    bootstrap: str
    n_boot: int
    n_boot_used: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (plain floats, ints, strings, booleans and None)."""
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True)
class FamilySlope:
    """One family in a family test.

    ``slope``: OLS slope of the pair-level gain (mean over the family's languages) on similarity, or, in the
    mixed model, the fixed-effect slope ``sim + sim:family``; ``slope_p``: for the permutation test, the
    within-target permutation p-value of that slope (two-sided), ``slope_p_holm`` its Holm-adjusted value across
    the eligible families; for the mixed model, the Wald p-value (``se``, ``ci_low``/``ci_high``: Wald 95%).
    ``eligible``: the family has at least ``min_languages`` languages and takes part; others are never compared.
    ``mde_r``: the smallest pair-level correlation that ``n_pairs`` pairs detect with 80% power at α = 0.05
    two-sided (Fisher z: ``tanh((z_.975 + z_.8) / sqrt(n_pairs − 3))``; None for ``n_pairs <= 3``).
    """

    family: str
    languages: tuple[str, ...]
    n_languages: int
    n_pairs: int
    eligible: bool
    mde_r: float | None
    slope: float | None = None
    slope_p: float | None = None
    slope_p_holm: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True)
class FamilyTest:
    """Whether the similarity–gain slope differs between language families, by permutation.

    ``statistic``: ``Σ_f w_f (b_f − b̄)²`` over eligible families, ``w_f`` the family's number of languages,
    ``b̄ = Σ w_f b_f / Σ w_f`` (``mean_slope``); ``p_perm``: the share of ``n_perm`` reassignments of whole
    languages to the eligible families (family sizes kept) with a statistic at least as large, with the
    Phipson–Smyth correction (``perm_exact``: every distinct reassignment was enumerated, p = count / total).
    ``families``: every family seen, eligible or not, sorted by name.
    """

    statistic: float
    p_perm: float
    n_perm: int
    perm_exact: bool
    mean_slope: float
    n_eligible: int
    min_languages: int
    families: tuple[FamilySlope, ...]
    permutation: str = "whole languages between eligible families (family sizes kept)"
    slope_test: str = f"pair level, {WITHIN_TARGET} permutation, Holm across eligible families"
    x_level: str = "pair"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``families`` as a list of dicts."""
        out: dict[str, Any] = _plain(asdict(self))
        return out


@dataclass(frozen=True)
class MixedModelTest:
    """``gain ~ sim * C(family)`` with random intercepts for target, (source, target) pair and (target, language),
    fitted by maximum likelihood (statsmodels ``MixedLM``), and the likelihood-ratio test of the interaction.

    ``lr_stat = 2 (llf_full − llf_reduced)`` against ``gain ~ sim + C(family)``, χ² with ``df`` = eligible
    families − 1 (``p_value``). ``fixed_effects``: name → estimate of the full model (treatment coding against
    ``reference_family``); ``families``: per-family slopes with Wald 95% intervals from the fixed-effect
    covariance; ``variance_components``: target, pair, tlang (target-language) and residual variances of the full
    model. ``warnings``: what statsmodels warned about during the fits (convergence, boundary estimates).
    """

    n: int
    n_pairs: int
    n_targets: int
    n_languages: int
    reference_family: str
    lr_stat: float
    df: int
    p_value: float
    llf_full: float
    llf_reduced: float
    converged_full: bool
    converged_reduced: bool
    fixed_effects: dict[str, float]
    variance_components: dict[str, float]
    families: tuple[FamilySlope, ...]
    min_languages: int
    fit_seconds: float
    warnings: tuple[str, ...] = ()
    formula: str = "gain ~ sim * C(family) + (1 | target) + (1 | target:source) + (1 | target:lang)"
    method: str = "ML"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        out: dict[str, Any] = _plain(asdict(self))
        return out


# --------------------------------------------------------------------------------------------------
# the design: rows, pairs and their codes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Design:
    """Rows with integer codes. ``s, t, lang``: (n,) codes into ``sources``, ``targets``, ``langs``; ``pair``: (n,)
    pair code, pairs numbered in (target, source) order; ``pair_s, pair_t``: (P,) the pair's codes;
    ``rowidx``: (P, L) the row of (pair, language) or −1."""

    x: F64
    y: F64
    s: IP
    t: IP
    lang: IP
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    langs: tuple[str, ...]
    pair: IP
    pair_s: IP
    pair_t: IP
    rowidx: IP

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_s.size)

    @staticmethod
    def from_codes(x: F64, y: F64, s: IP, t: IP, lang: IP, names: tuple[tuple[str, ...], ...]) -> _Design:
        n_s, n_l = len(names[0]), len(names[2])
        keys, pair = np.unique(t * n_s + s, return_inverse=True)
        pair = pair.astype(np.intp).reshape(-1)
        rowidx = np.full((keys.size, n_l), -1, dtype=np.intp)
        rowidx[pair, lang] = np.arange(x.size, dtype=np.intp)
        return _Design(x, y, s, t, lang, names[0], names[1], names[2], pair,
                       (keys % n_s).astype(np.intp), (keys // n_s).astype(np.intp), rowidx)  # fmt: skip

    def subset(self, mask: NDArray[np.bool_]) -> _Design:
        names = (self.sources, self.targets, self.langs)
        return _Design.from_codes(self.x[mask], self.y[mask], self.s[mask], self.t[mask], self.lang[mask], names)

    def is_pair_level(self) -> bool:
        """Whether x is constant within every pair (TextEmb, TaskEmb) rather than varying by language."""
        low = np.full(self.n_pairs, np.inf)
        high = np.full(self.n_pairs, -np.inf)
        np.minimum.at(low, self.pair, self.x)
        np.maximum.at(high, self.pair, self.x)
        scale = max(1.0, float(np.abs(self.x).max(initial=0.0)))
        return bool(np.all(high - low <= _PAIR_LEVEL_TOLERANCE * scale))

    def pair_means(self, values: F64) -> F64:
        """(P,) mean of ``values: (n,)`` over each pair's rows."""
        counts = np.bincount(self.pair, minlength=self.n_pairs)
        means: F64 = np.bincount(self.pair, weights=values, minlength=self.n_pairs) / counts
        return means

    def counts(self) -> tuple[int, int, int]:
        """Distinct sources, targets and languages present."""
        return int(np.unique(self.s).size), int(np.unique(self.t).size), int(np.unique(self.lang).size)


def _strings(values: Sequence[str] | ArrayLike, label: str, n: int) -> list[str]:
    out = [str(v) for v in np.asarray(values, dtype=object).reshape(-1).tolist()]
    if len(out) != n:
        raise ShapeError(f"{n} gains but {len(out)} {label} labels", expected=f"one {label} per row")
    return out


def _design(x: ArrayLike, y: ArrayLike, source: Sequence[str] | ArrayLike, target: Sequence[str] | ArrayLike,
            lang: Sequence[str] | ArrayLike) -> _Design:  # fmt: skip
    """Validated rows: finite x and y of equal length, one label of each kind per row, no repeated triple."""
    X, Y = _stats._check_pair(x, y)
    if X.size == 0:
        raise InputError("no gain rows", hint="give one row per (source, target, language)")
    codes: list[IP] = []
    names: list[tuple[str, ...]] = []
    for label, values in (("source", source), ("target", target), ("language", lang)):
        uniq, inv = np.unique(np.asarray(_strings(values, label, X.size), dtype=str), return_inverse=True)
        codes.append(inv.astype(np.intp).reshape(-1))
        names.append(tuple(str(u) for u in uniq.tolist()))
    s, t, lg = codes
    key = (t * len(names[0]) + s) * len(names[2]) + lg
    uniq_key, first, count = np.unique(key, return_index=True, return_counts=True)
    if (count > 1).any():
        i = int(first[np.flatnonzero(count > 1)[0]])
        raise InputError(
            f"{int((count > 1).sum())} repeated (source, target, language) triple(s), the first "
            f"({names[0][s[i]]!r}, {names[1][t[i]]!r}, {names[2][lg[i]]!r}) at row {i}",
            expected="one gain per (source, target, language)",
            hint="average repeated runs (seeds) into one gain per triple before correlating",
        )
    return _Design.from_codes(X, Y, s, t, lg, (names[0], names[1], names[2]))


def _check_common(methods: Sequence[Method], n_perm: int, n_boot: int, ci_level: float, min_n: int,
                  bootstrap: str) -> tuple[Method, ...]:  # fmt: skip
    wanted = _stats._check_options(methods, n_perm, n_boot, ci_level)
    if min_n < 3:
        raise UsageError("min_n must be at least 3 (no correlation has an interval on fewer points)",
                         found=str(min_n))  # fmt: skip
    if bootstrap not in BOOTSTRAPS:
        raise UsageError(f"unknown bootstrap {bootstrap!r}", expected=", ".join(BOOTSTRAPS))
    return wanted


def _resolve_unit(design: _Design, unit: str | None) -> Unit:
    pair_level = design.is_pair_level()
    if unit is None:
        return "pair" if pair_level else "row"
    if unit not in UNITS:
        raise UsageError(f"unknown unit {unit!r}", expected="pair, row, or None (detect)")
    if unit == "pair" and not pair_level:
        raise UsageError(
            "unit 'pair' needs a similarity that is constant within each (source, target) pair, "
            "but x varies between the languages of a pair",
            hint="use unit 'row' (or leave the unit to be detected) for a language-level similarity",
        )
    return "row" if unit == "row" else "pair"


# --------------------------------------------------------------------------------------------------
# stratified permutations
# --------------------------------------------------------------------------------------------------


def _strata(design: _Design, unit: Unit) -> IP:
    """(P,) stratum code of each pair: its target (pair unit); its target and set of languages (row unit)."""
    if unit == "pair":
        return design.pair_t
    _, langset = np.unique(design.rowidx >= 0, axis=0, return_inverse=True)
    _, stratum = np.unique(design.pair_t * (int(langset.max()) + 1) + langset.reshape(-1), return_inverse=True)
    out: IP = stratum.astype(np.intp).reshape(-1)
    return out


def stratified_permutation_blocks(strata: ArrayLike, n_perm: int, rng: np.random.Generator, *,
                                  rows: int | None = None) -> tuple[Iterator[IP], int, bool]:  # fmt: skip
    """Blocks ``(b, m)`` of permutations π of ``0..m−1`` that map every index into its own stratum.

    ``strata: (m,)`` integer labels (e.g. each pair's target). Returns the blocks, the number of permutations
    and whether they are all distinct ones (``Π_k m_k! <= n_perm``, ``m_k`` the stratum sizes: then every
    permutation is enumerated once, the identity first). Otherwise ``n_perm`` uniform draws, by a Fisher–Yates
    shuffle vectorised across the rows of a block and across strata (all strata take step k at once, so a block
    costs max m_k vectorised swaps, not m).
    """
    labels = np.asarray(strata).reshape(-1)
    m = int(labels.size)
    order = np.argsort(labels, kind="stable").astype(np.intp)
    _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    starts, sizes = starts.astype(np.intp), sizes.astype(np.intp)
    rows = max(1, _BLOCK_ELEMENTS // max(m, 1)) if rows is None else rows
    total = 1
    for size in sizes.tolist():
        total *= math.factorial(int(size))
        if total > n_perm:
            break
    if total <= n_perm:
        groups = [order[a : a + k] for a, k in zip(starts.tolist(), sizes.tolist(), strict=True) if k > 1]

        def exhaustive() -> Iterator[IP]:
            every = itertools.product(*(itertools.permutations(g.tolist()) for g in groups))
            while chunk := list(itertools.islice(every, rows)):
                block = np.tile(np.arange(m, dtype=np.intp), (len(chunk), 1))
                for i, combo in enumerate(chunk):
                    for g, perm in zip(groups, combo, strict=True):
                        block[i, g] = perm
                yield block

        return exhaustive(), total, True

    def sampled() -> Iterator[IP]:
        done = 0
        while done < n_perm:
            b = min(rows, n_perm - done)
            done += b
            G = np.tile(np.arange(m, dtype=np.intp), (b, 1))  # grouped coordinates: strata contiguous
            r = np.arange(b, dtype=np.intp)[:, None]
            for k in range(int(sizes.max()) - 1, 0, -1):  # Fisher–Yates: position k swaps with one in 0..k
                seg = starts[sizes > k]
                cols = seg + k
                other = seg[None, :] + rng.integers(0, k + 1, size=(b, seg.size))
                held = G[:, cols]
                G[:, cols] = G[r, other]
                G[r, other] = held
            block = np.empty_like(G)
            block[:, order] = order[G]
            yield block

    return sampled(), n_perm, False


# --------------------------------------------------------------------------------------------------
# the clustered analysis of one group of rows
# --------------------------------------------------------------------------------------------------

#: Permutations or resamples per block: about this many index elements (b × points) at a time.
_BLOCK_ELEMENTS = 1 << 18
#: Draws of up to this many elements are kept for the later groups of the same call (32 MiB of intp).
_CACHE_ELEMENTS = 1 << 22
#: Up to this many points a resample's Kendall S is the quadratic form ``w'Kw / 2`` with the (m, m) matrix
#: ``K_ij = sign(x_i − x_j) sign(y_i − y_j)`` (18 MiB at the limit); above it, one Knight count per resample.
_QUADRATIC_MAX = 1500
#: Up to this many points Kendall's permutation count uses the bitset sweep (``_discordant_rows``); it costs
#: O(m²/64) word operations per permutation against Knight's O(m log m), and was measured faster up to m ≈ 400
#: (9 µs against 19 µs per permutation at m = 200; 73 µs against 40 µs at m = 800).
_BITSET_MAX = 320
#: popcount of every byte, for numpy builds without ``np.bitwise_count`` (numpy < 2.0).
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


@dataclass(frozen=True)
class _Points:
    """The analysis points, sorted by x (stably, so that groups with the same x and pairs sort alike).

    ``pt_pair``, ``pt_lang``: (m,) each point's pair and language code (the language −1 at the pair unit);
    ``R``: (P, L), or (P, 1) at the pair unit: the sorted position of the point of (pair, language), −1 if none.
    """

    x: F64
    y: F64
    pt_pair: IP
    pt_lang: IP
    R: IP


def _points(design: _Design, unit: Unit) -> _Points:
    if unit == "pair":
        xp, yp = design.pair_means(design.x), design.pair_means(design.y)
        pt_pair = np.arange(design.n_pairs, dtype=np.intp)
        pt_lang = np.full(design.n_pairs, -1, dtype=np.intp)
    else:
        xp, yp, pt_pair, pt_lang = design.x, design.y, design.pair, design.lang
    o = np.argsort(xp, kind="stable").astype(np.intp)
    inv = np.empty_like(o)
    inv[o] = np.arange(o.size, dtype=np.intp)
    if unit == "pair":
        R = inv[:, None]
    else:
        R = np.where(design.rowidx >= 0, inv[np.maximum(design.rowidx, 0)], -1).astype(np.intp)
    return _Points(xp[o], yp[o], pt_pair[o], pt_lang[o], R)


def _dense(v: F64) -> tuple[IP, int]:
    """0-based dense ranks of ``v`` and the number of distinct values."""
    uniq, codes = np.unique(v, return_inverse=True)
    return codes.astype(np.intp).reshape(-1), int(uniq.size)


def _unit_vector(v: F64) -> F64:
    c = v - v.mean()
    out: F64 = c / math.sqrt(float(c @ c))
    return out


@dataclass(frozen=True)
class _Prepared:
    """What the statistics of one group need: x and y (sorted by x), centred (``xc, yc``) and as centred unit
    vectors of values and of average ranks (``zx, zy, zrx, zry``: Pearson's r is ``zx @ zy``), dense codes
    (``dx`` non-decreasing, ``dy``, ``dxy`` of the (x, y) pair) with their numbers of values, and the pairs tied in
    x (``n1``) and in y (``n2``)."""

    x: F64
    y: F64
    xc: F64
    yc: F64
    zx: F64
    zy: F64
    zrx: F64
    zry: F64
    dx: IP
    kx: int
    dy: IP
    ky: int
    dxy: IP
    kxy: int
    n1: int
    n2: int

    @staticmethod
    def build(x: F64, y: F64) -> _Prepared:
        dx, kx = _dense(x)
        dy, ky = _dense(y)
        dxy, kxy = _dense((dx * ky + dy).astype(np.float64))
        return _Prepared(
            x, y, x - x.mean(), y - y.mean(), _unit_vector(x), _unit_vector(y),
            _unit_vector(scipy.stats.rankdata(x)), _unit_vector(scipy.stats.rankdata(y)),
            dx, kx, dy, ky, dxy, kxy, _stats._tied_pairs(np.bincount(dx)), _stats._tied_pairs(np.bincount(dy)),
        )  # fmt: skip


class _Draws:
    """The random draws of one call. A group's permutations depend only on the seed and its strata, its
    resamples only on the seed and the numbers of items resampled; so groups of the same design (every family
    covering every pair) share them, drawn once (the generation costs about as much as the statistics)."""

    def __init__(self, ss: np.random.SeedSequence) -> None:
        self.ss = ss
        self._perms: dict[tuple[bytes, int, int], tuple[list[IP], int, bool]] = {}
        self._boots: dict[tuple[Any, ...], list[tuple[F64, ...]]] = {}

    def permutations(self, strata: IP, n_perm: int, rows: int) -> tuple[Iterable[IP], int, bool]:
        key = (np.ascontiguousarray(strata, dtype=np.intp).tobytes(), n_perm, rows)
        if key in self._perms:
            return self._perms[key]
        rng = np.random.default_rng(_stats._child(self.ss, 0))
        blocks, count, exact = stratified_permutation_blocks(strata, n_perm, rng, rows=rows)
        if strata.size * count > _CACHE_ELEMENTS:
            return blocks, count, exact
        self._perms[key] = (list(blocks), count, exact)
        return self._perms[key]

    def resamples(self, sizes: tuple[int, ...], n_boot: int, rows: int,
                  strata: IP | None = None) -> Iterable[tuple[F64, ...]]:  # fmt: skip
        """Blocks of counts: per size k, (b, k) counts of k draws with replacement from k items. With ``strata``
        (one size only; (k,) non-decreasing stratum codes), the draws stay within each stratum: a stratum of
        k_s items gets k_s draws from its own items (pairs resampled within their target)."""
        bounds: list[int] | None = None
        if strata is not None:
            bounds = np.flatnonzero(np.diff(strata, prepend=-1, append=-1)).tolist()
        key = (sizes, n_boot, rows, None if bounds is None else tuple(bounds))
        if key in self._boots:
            return self._boots[key]
        rng = np.random.default_rng(_stats._child(self.ss, 1))

        def draw(b: int, k: int) -> IP:
            if bounds is None:
                return rng.integers(0, k, size=(b, k)).astype(np.intp)
            return np.hstack([lo + rng.integers(0, hi - lo, size=(b, hi - lo))
                              for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]).astype(np.intp)  # fmt: skip

        def blocks() -> Iterator[tuple[F64, ...]]:
            done = 0
            while done < n_boot:
                b = min(rows, n_boot - done)
                done += b
                yield tuple(_stats._row_counts(draw(b, k), k).astype(np.float64) for k in sizes)

        if sum(sizes) * n_boot > _CACHE_ELEMENTS:
            return blocks()
        self._boots[key] = list(blocks())
        return self._boots[key]


def _point_permutations(points: _Points, pair_blocks: Iterable[IP]) -> Iterator[IP]:
    """Blocks of pair permutations → blocks of point permutations in sorted coordinates: the point of
    (pair p, language l) is paired with the y of (π(p), l)."""
    lang = np.maximum(points.pt_lang, 0)
    for pi in pair_blocks:
        yield points.R[pi[:, points.pt_pair], lang]


def _discordant_rows(V: IP, group_ends: Sequence[int]) -> NDArray[np.int64]:
    """Discordant pairs per row of ``V: (b, m)``, each row a permutation of 0..m−1 (distinct y codes) placed
    against the sorted x whose tie groups end at ``group_ends``: pairs with x_i < x_j and v_i > v_j.

    Knight's count one row at a time costs a Python call per permutation; here every row of the block advances
    together through the columns, keeping the set of values seen so far as a bitset of ceil(m/64) words: each
    column adds popcount(seen & (values above v)). Used up to ``_BITSET_MAX`` points, where it is faster.
    """
    b, m = V.shape
    words = (m + 63) // 64
    # above[v]: bit u set for every value u > v (little-endian words: bit u % 64 of word u // 64)
    above_bool = np.zeros((m, words * 64), dtype=bool)
    above_bool[:, :m] = np.triu(np.ones((m, m), dtype=bool), k=1)
    above = np.packbits(above_bool, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    VT = np.ascontiguousarray(V.T)  # columns as contiguous rows
    flat_word = VT >> 6
    flat_word += (np.arange(b, dtype=np.intp) * words)[None, :]
    bit = np.left_shift(np.uint64(1), (VT & 63).astype(np.uint64))
    seen = np.zeros(b * words, dtype=np.uint64)
    seen_rows = seen.reshape(b, words)
    acc = np.zeros((b, words), dtype=np.int64)
    start = 0
    for end in group_ends:
        for j in range(start, end):  # members of one x-tie group see only earlier groups
            np.add(acc, _popcount(seen_rows & above[VT[j]]), out=acc, casting="unsafe")
        for j in range(start, end):
            seen[flat_word[j]] |= bit[j]
        start = end
    D: NDArray[np.int64] = acc.sum(axis=1)
    return D


def _popcount(a: NDArray[np.uint64]) -> NDArray[Any]:
    """Set bits of each element (numpy >= 2.0 has ``np.bitwise_count``; a byte table otherwise)."""
    count = getattr(np, "bitwise_count", None)
    if count is not None:
        out: NDArray[Any] = count(a)
        return out
    bytes_ = np.ascontiguousarray(a).view(np.uint8).reshape(*a.shape, 8)  # pragma: no cover - numpy < 2
    total: NDArray[Any] = _POPCOUNT8[bytes_].sum(axis=-1)  # pragma: no cover
    return total  # pragma: no cover


def _permutation_hits(prep: _Prepared, methods: tuple[Method, ...], blocks: Iterable[IP]) -> dict[str, int]:
    """Per method, the permutations in ``blocks`` (``(b, m)`` sorted positions: the statistic of the pairs
    ``(x_i, y_P[i])``) whose statistic is at least as large in absolute value as the observed one."""
    m = int(prep.x.size)
    observed: dict[str, float] = {}
    tol = _stats._TOLERANCE
    if "pearson" in methods:
        observed["pearson"] = abs(float(prep.zx @ prep.zy)) - tol
    if "spearman" in methods:
        observed["spearman"] = abs(float(prep.zrx @ prep.zry)) - tol
    n0 = m * (m - 1) // 2
    bitset = prep.ky == m and m <= _BITSET_MAX
    n3: int | None = 0 if (prep.kx == m or prep.ky == m) else None
    fixed = prep.dx + 1
    if "kendall" in methods:  # integers: no tolerance needed
        observed["kendall"] = float(abs(_stats._kendall_s(fixed, prep.dy + 1, prep.n1, prep.n2, None)))
        group_ends = (np.flatnonzero(np.diff(prep.dx)) + 1).tolist() + [m]
    hits = dict.fromkeys(observed, 0)
    for P in blocks:
        if "pearson" in methods:
            hits["pearson"] += int(np.count_nonzero(np.abs(prep.zy[P] @ prep.zx) >= observed["pearson"]))
        if "spearman" in methods:
            hits["spearman"] += int(np.count_nonzero(np.abs(prep.zry[P] @ prep.zrx) >= observed["spearman"]))
        if "kendall" in methods:
            V = prep.dy[P]
            if bitset:  # y distinct: n2 = n3 = 0, S = n0 − n1 − 2D
                S = (n0 - prep.n1) - 2 * _discordant_rows(V, group_ends)
            elif n3 == 0:  # x distinct: S = n0 − n2 − 2D, one Knight count per permutation
                D = np.array([_stats._discordant(fixed, row + 1) for row in V], dtype=np.int64)
                S = (n0 - prep.n1 - prep.n2) - 2 * D
            else:  # ties in both: the pairs tied in both change with the permutation; count C as well
                S = np.array([_stats._kendall_s(fixed, row + 1, prep.n1, prep.n2, None) for row in V], dtype=np.int64)
            hits["kendall"] += int(np.count_nonzero(np.abs(S) >= observed["kendall"]))
    return hits


def _weighted_counts(codes: IP, k: int, W: F64) -> F64:
    """(b, k) total weight of each code 0..k−1 per row; ``codes: (n,)`` shared by the rows or ``(b, n)``."""
    if codes.ndim == 1 and k == codes.size:  # distinct values: the counts are the weights in code order
        distinct = np.empty_like(W)
        distinct[:, codes] = W
        return distinct
    b = W.shape[0]
    C = np.broadcast_to(codes, W.shape)
    flat = (C + (np.arange(b, dtype=np.intp) * k)[:, None]).ravel()
    counts: F64 = np.bincount(flat, weights=W.ravel(), minlength=b * k).astype(np.float64, copy=False).reshape(b, k)
    return counts


def _weighted_pearson(A: F64, B: F64, W: F64) -> F64:
    """Pearson's r per row with multiplicities ``W: (b, n)`` (the r of the expanded resample); A, B (n,) or (b, n).

    For fixed A and B (centred) the weighted moments of all rows come from one matrix product."""
    if A.ndim == 1 and B.ndim == 1:
        Sw, Sa, Sb, Saa, Sbb, Sab = (W @ np.column_stack([np.ones_like(A), A, B, A * A, B * B, A * B])).T
        return _r_of_moments(Sw, Sa, Sb, Saa, Sbb, Sab)
    # One pass per moment; the values here are ranks or gains of moderate size, so the one-pass moments lose
    # nothing that matters to a percentile interval.
    Sw = W.sum(axis=1)
    WA, WB = W * A, W * B
    Sa, Sb = WA.sum(axis=1), WB.sum(axis=1)
    Saa = np.einsum("ij,ij->i", WA, np.broadcast_to(A, W.shape))
    Sbb = np.einsum("ij,ij->i", WB, np.broadcast_to(B, W.shape))
    Sab = np.einsum("ij,ij->i", WA, np.broadcast_to(B, W.shape))
    return _r_of_moments(Sw, Sa, Sb, Saa, Sbb, Sab)


def _r_of_moments(Sw: F64, Sa: F64, Sb: F64, Saa: F64, Sbb: F64, Sab: F64) -> F64:
    """Pearson's r from weighted moments; NaN where a variance is zero to rounding. Two values can be distinct
    yet one ulp apart (gains that are equal means computed in another order): a resample of only those has
    x or y constant in all but the last bit, and its r is noise, not a correlation."""
    va, vb = Saa - Sa * Sa / Sw, Sbb - Sb * Sb / Sw
    ok = (va > 1e-12 * np.abs(Saa)) & (vb > 1e-12 * np.abs(Sbb))
    with np.errstate(divide="ignore", invalid="ignore"):
        r: F64 = np.where(ok, np.clip((Sab - Sa * Sb / Sw) / np.sqrt(va * vb), -1.0, 1.0), np.nan)
    return r


def _weighted_ranks(codes: IP, counts: F64) -> F64:
    """Average 1-based ranks in the expanded resample: a value's rank is (weight below it) + (its weight + 1) / 2.

    ``codes``: (n,) shared by the rows, or (b, n); ``counts: (b, k)`` the weight of each code."""
    table = np.cumsum(counts, axis=1)
    table -= (counts - 1.0) / 2.0
    if codes.ndim == 2:
        ranks: F64 = np.take_along_axis(table, codes, axis=1)
        return ranks
    if codes.size == table.shape[1] and codes[0] == 0 and bool((np.diff(codes) == 1).all()):
        return table  # the sorted x of distinct values: codes 0..n−1 in order
    shared: F64 = table[:, codes]
    return shared


def _row_dense_codes(Y: F64) -> IP:
    """(b, n) 0-based dense ranks of each row of ``Y``."""
    o = np.argsort(Y, axis=1, kind="stable")
    Ys = np.take_along_axis(Y, o, axis=1)
    new = np.zeros(Y.shape, dtype=np.intp)
    new[:, 1:] = Ys[:, 1:] != Ys[:, :-1]
    codes = np.empty_like(new)
    np.put_along_axis(codes, o, np.cumsum(new, axis=1), axis=1)
    return codes


def _tied(counts: F64) -> F64:
    """Σ c(c−1)/2 per row of ``counts: (b, k)``."""
    pairs: F64 = (np.einsum("ij,ij->i", counts, counts) - counts.sum(axis=1)) / 2.0
    return pairs


def _weighted_statistics(prep: _Prepared, methods: tuple[Method, ...], W: F64, Y: F64 | None,
                         K: F64 | None) -> dict[str, F64]:  # fmt: skip
    """The statistics of resamples given as multiplicities ``W: (b, m)`` of the group's points (rows in which x or
    y is constant, or constant to rounding, are dropped). ``Y: (b, m)``: the resamples' own y values (pair means
    rebuilt from resampled languages), or None for the group's. ``K``: the Kendall sign-product matrix, or None
    (one count per row)."""
    m = int(prep.x.size)
    cx = _weighted_counts(prep.dx, prep.kx, W)
    if Y is None:
        dy, ky = prep.dy, prep.ky
    else:
        dy, ky = _row_dense_codes(Y), m
    cy = _weighted_counts(dy, ky, W)
    keep = ((cx > 0).sum(axis=1) >= 2) & ((cy > 0).sum(axis=1) >= 2)
    if not keep.all():
        W, cx, cy = W[keep], cx[keep], cy[keep]
        if Y is not None:
            Y, dy = Y[keep], dy[keep]
    if W.shape[0] == 0:
        return {method: np.empty(0) for method in methods}
    out: dict[str, F64] = {}
    if "pearson" in methods:
        out["pearson"] = _weighted_pearson(prep.xc, prep.yc if Y is None else Y, W)
    if "spearman" in methods:
        out["spearman"] = _weighted_pearson(_weighted_ranks(prep.dx, cx), _weighted_ranks(dy, cy), W)
    if "kendall" in methods:
        N = W.sum(axis=1)
        n0 = N * (N - 1.0) / 2.0
        n1, n2 = _tied(cx), _tied(cy)
        if Y is None and K is not None:
            # Expanded, a resample's S sums sign products over pairs of copies: w'Kw / 2 (K_ii = 0: the copies of
            # one point are tied in both, and the tie counts n1, n2 include them).
            S = 0.5 * np.einsum("ij,ij->i", W @ K, W)
            out["kendall"] = S / np.sqrt((n0 - n1) * (n0 - n2))
        else:
            counts = W.astype(np.intp)
            index = np.arange(m, dtype=np.intp)
            tau = np.empty(W.shape[0])
            if Y is None:
                n3 = _tied(_weighted_counts(prep.dxy, prep.kxy, W))
                for i in range(W.shape[0]):
                    idx = np.repeat(index, counts[i])  # sorted by x, as Knight's count needs
                    D = _stats._discordant(prep.dx[idx] + 1, prep.dy[idx] + 1)
                    tau[i] = (n0[i] - n1[i] - n2[i] + n3[i] - 2.0 * D) / math.sqrt((n0[i] - n1[i]) * (n0[i] - n2[i]))
            else:
                assert Y is not None
                for i in range(W.shape[0]):
                    idx = np.repeat(index, counts[i])
                    tau[i] = float(scipy.stats.kendalltau(prep.x[idx], Y[i, idx]).statistic)
            out["kendall"] = tau
    finite = np.logical_and.reduce([np.isfinite(v) for v in out.values()])
    return out if finite.all() else {method: v[finite] for method, v in out.items()}


def _bootstrap(design: _Design, unit: Unit, bootstrap: Bootstrap, points: _Points, prep: _Prepared,
               methods: tuple[Method, ...], n_boot: int, draws: _Draws) -> dict[str, list[F64]]:  # fmt: skip
    """Clustered resamples as multiplicities of the points: pairs (cluster), or sources × languages (two-way)."""
    values: dict[str, list[F64]] = {method: [] for method in methods}
    m, P = int(prep.x.size), design.n_pairs
    src_codes, pair_src = np.unique(design.pair_s, return_inverse=True)
    lang_codes, row_lang = np.unique(design.lang, return_inverse=True)
    pt_src = pair_src.reshape(-1)[points.pt_pair]
    pt_lang = np.searchsorted(lang_codes, np.maximum(points.pt_lang, 0))
    rebuild = unit == "pair" and bootstrap == "two-way"
    if rebuild:  # (m, k_l) gains and presence of each pair, to rebuild its mean from the resampled languages
        G = np.zeros((P, lang_codes.size))
        present = np.zeros((P, lang_codes.size))
        G[design.pair, row_lang.reshape(-1)] = design.y
        present[design.pair, row_lang.reshape(-1)] = 1.0
        G, present = G[points.pt_pair], present[points.pt_pair]
    K: F64 | None = None
    if "kendall" in methods and not rebuild and m <= _QUADRATIC_MAX:
        K = np.sign(prep.x[:, None] - prep.x[None, :]) * np.sign(prep.y[:, None] - prep.y[None, :])
    sizes = (P,) if bootstrap == "cluster" else (int(src_codes.size), int(lang_codes.size))
    # whole pairs are resampled within their target (the targets studied are kept, as the permutations keep them)
    strata = design.pair_t if bootstrap == "cluster" else None
    for counts in draws.resamples(sizes, n_boot, max(1, _BLOCK_ELEMENTS // m), strata):
        Y: F64 | None = None
        if bootstrap == "cluster":  # whole pairs, all their rows
            W = counts[0][:, points.pt_pair]
        elif unit == "row":
            W = counts[0][:, pt_src] * counts[1][:, pt_lang]
        else:
            total = counts[1] @ G.T  # (b, m): Σ_l m_l g_pl over the pair's resampled languages
            weight = counts[1] @ present.T
            W = np.where(weight > 0, counts[0][:, pt_src], 0.0)
            Y = np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
        for method, v in _weighted_statistics(prep, methods, W, Y, K).items():
            values[method].append(v)
    return values


def _analyse(design: _Design, unit: Unit, methods: tuple[Method, ...], *, n_perm: int, n_boot: int,
             bootstrap: Bootstrap, ci_level: float, min_n: int,
             draws: _Draws) -> dict[str, ClusteredCorrelation]:  # fmt: skip
    """The clustered correlations of one group of rows (see ``clustered_correlations``)."""
    points = _points(design, unit)
    m = int(points.x.size)
    n_s, n_t, n_l = design.counts()
    template = ClusteredCorrelation(
        method="", unit=unit, n=m, n_clusters=design.n_pairs, n_sources=n_s, n_targets=n_t, n_languages=n_l,
        value=None, p_analytic=None, p_perm=None, perm_exact=False, permutation=WITHIN_TARGET, n_perm=0,
        ci_low=None, ci_high=None, ci_level=ci_level, bootstrap=bootstrap, n_boot=n_boot, n_boot_used=0,
    )  # fmt: skip
    reason = f"too small: n={m} < {min_n}" if m < min_n else _stats._too_small(points.x, points.y)
    if reason is not None:
        return {method: replace(template, method=method, reason=reason) for method in methods}
    prep = _Prepared.build(points.x, points.y)
    notes: list[str] = []
    strata = _strata(design, unit)
    p_perm: dict[str, float | None] = dict.fromkeys(methods)
    count, exact = 0, False
    if n_perm > 0 and np.bincount(strata).max() < 2:
        what = "no target has two sources" if unit == "pair" else "no two sources of a target share their languages"
        notes.append(f"nothing to permute: {what}")
    elif n_perm > 0:
        rows = max(1, _BLOCK_ELEMENTS // m)
        if unit == "pair":  # points are pairs: permute them directly in sorted coordinates
            blocks, count, exact = draws.permutations(strata[points.pt_pair], n_perm, rows)
        else:
            pair_blocks, count, exact = draws.permutations(strata, n_perm, rows)
            blocks = _point_permutations(points, pair_blocks)
        hits = _permutation_hits(prep, methods, blocks)
        for method in methods:
            p_perm[method] = hits[method] / count if exact else (hits[method] + 1) / (count + 1)
        if exact and count < 20:  # say so: such a p-value can never reach 0.05
            notes.append(f"only {count} distinct permutations: no p-value below {1 / count:.3g} is possible")
    cis: dict[str, tuple[float, float]] = {}
    used = 0
    if n_boot > 0:
        boot = _bootstrap(design, unit, bootstrap, points, prep, methods, n_boot, draws)
        cis, used = _stats._percentile_intervals(boot, methods, ci_level)
        if used == 0:
            notes.append("no bootstrap interval: every resample had a constant x or y")
    out: dict[str, ClusteredCorrelation] = {}
    for method in methods:
        value, p_value = _stats._scipy_point(method, points.x, points.y)
        low, high = cis.get(method, (None, None))
        out[method] = replace(template, method=method, value=value, p_analytic=p_value, p_perm=p_perm[method],
                              perm_exact=exact, n_perm=count, ci_low=low, ci_high=high, n_boot_used=used,
                              reason="; ".join(notes) or None)  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# public API: correlations
# --------------------------------------------------------------------------------------------------


def clustered_correlations(
    x: ArrayLike,
    y: ArrayLike,
    source: Sequence[str] | ArrayLike,
    target: Sequence[str] | ArrayLike,
    lang: Sequence[str] | ArrayLike,
    *,
    unit: Unit | None = None,
    methods: Sequence[Method] = METHODS,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    bootstrap: Bootstrap = "cluster",
    ci_level: float = 0.95,
    seed: int = 0,
    min_n: int = 5,
) -> dict[str, ClusteredCorrelation]:
    """Pearson, Spearman and/or Kendall τ-b between similarity and gain with clustered inference.

    ``x: (n,)`` float similarity and ``y: (n,)`` float gain per row; ``source``, ``target``, ``lang``: (n,)
    strings, one (source, target, language) triple per row. ``unit``: "pair" (one point per pair: x the pair's
    value, y the mean gain over its languages), "row", or None: "pair" when x is constant within every pair,
    else "row" (see the module docstring for the permutation and the bootstraps of each). ``n_perm``
    within-target permutations (0: none), ``n_boot`` resamples (0: no interval), from two streams derived from
    ``seed``. Fewer than ``min_n`` points: ``value`` None and a ``reason``. Returns ``{method: result}`` in
    the order of ``methods``. Kendall's permutation loop is by far the slowest part (about 10 µs per
    permutation for 200 pairs, 0.3–0.6 ms for 10,000 rows).
    """
    wanted = _check_common(methods, n_perm, n_boot, ci_level, min_n, bootstrap)
    design = _design(x, y, source, target, lang)
    resolved = _resolve_unit(design, unit)
    return _analyse(design, resolved, wanted, n_perm=n_perm, n_boot=n_boot, bootstrap=bootstrap,
                    ci_level=ci_level, min_n=min_n, draws=_Draws(np.random.SeedSequence(seed)))  # fmt: skip


def _family_of_rows(design: _Design, family: Sequence[str] | ArrayLike) -> tuple[IP, tuple[str, ...]]:
    """(n,) family code per row and the sorted family names; InputError if a language has two families."""
    labels = np.asarray(_strings(family, "family", design.n), dtype=str)
    names, codes = np.unique(labels, return_inverse=True)
    fam = codes.astype(np.intp).reshape(-1)
    per_lang = np.full(len(design.langs), -1, dtype=np.intp)
    per_lang[design.lang] = fam
    clash = np.flatnonzero(per_lang[design.lang] != fam)
    if clash.size:
        i = int(clash[0])
        code = int(design.lang[i])
        raise InputError(
            f"language {design.langs[code]!r} is filed under two families "
            f"({names[fam[i]]!r} and {names[per_lang[code]]!r})",
            expected="one family per language",
            hint="give every row of a language the same family (the language table decides it)",
        )
    return fam, tuple(str(v) for v in names.tolist())


def family_correlations(
    x: ArrayLike,
    y: ArrayLike,
    source: Sequence[str] | ArrayLike,
    target: Sequence[str] | ArrayLike,
    lang: Sequence[str] | ArrayLike,
    family: Sequence[str] | ArrayLike,
    *,
    unit: Unit | None = None,
    methods: Sequence[Method] = METHODS,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    bootstrap: Bootstrap = "cluster",
    ci_level: float = 0.95,
    seed: int = 0,
    min_n: int = 5,
    overall: bool = False,
    parallel: bool | None = None,
) -> dict[str | None, dict[str, ClusteredCorrelation]]:
    """``clustered_correlations`` within each language family: ``family: (n,)`` names the family of each row.

    A family's points are its pairs with y = the mean gain over the family's languages (unit "pair"), or its rows
    (unit "row"); the unit is detected once on all rows, so every family uses the same one. Returns
    ``{family: {method: result}}`` with families sorted by name, preceded by ``{None: …}``, the statistics of all
    rows together (exactly ``clustered_correlations``'), when ``overall``. A group's permutations and resamples
    depend only on ``seed`` and its design (its strata, its numbers of pairs, sources, languages), so adding or
    dropping a family leaves the others' results unchanged, and groups of the same design share one set of draws
    (drawn once: the generation costs about as much as the statistics). These are
    descriptions per family: whether families differ is the question of ``family_slopes_permutation`` and
    ``family_mixed_model``, not of reading this table.

    ``parallel``: compute about half of the families in a forked process (None: when there is enough work and
    more than one CPU). The draws do not depend on the process, so the results are the same either way.
    """
    wanted = _check_common(methods, n_perm, n_boot, ci_level, min_n, bootstrap)
    design = _design(x, y, source, target, lang)
    resolved = _resolve_unit(design, unit)
    fam, names = _family_of_rows(design, family)
    keys: list[str | None] = ([None] if overall else []) + list(names)
    groups = ([design] if overall else []) + [design.subset(fam == code) for code in range(len(names))]
    size = [g.n_pairs if resolved == "pair" else g.n for g in groups]
    options = dict(unit=resolved, methods=wanted, n_perm=n_perm, n_boot=n_boot, bootstrap=bootstrap,
                   ci_level=ci_level, min_n=min_n, seed=seed)  # fmt: skip
    if parallel is None:
        work = sum(size) * max(n_perm, n_boot, 1) * (3 if "kendall" in wanted else 1)
        parallel = len(groups) > 1 and work > _stats.PARALLEL_MIN_WORK and (os.cpu_count() or 1) > 1
    results = _analyse_in_two_shares(groups, size, options, parallel)
    return {key: results[i] for i, key in enumerate(keys)}


def _two_shares(size: Sequence[int]) -> list[list[int]]:
    """The indices of ``size`` split in two shares of about equal total size (largest first, each to the
    lighter share)."""
    shares: list[list[int]] = [[], []]
    load = [0, 0]
    for i in sorted(range(len(size)), key=lambda i: -size[i]):
        lighter = 0 if load[0] <= load[1] else 1
        shares[lighter].append(i)
        load[lighter] += size[i]
    return shares


def _analyse_in_two_shares(groups: Sequence[_Design], size: Sequence[int], options: dict[str, Any],
                           parallel: bool) -> dict[int, dict[str, ClusteredCorrelation]]:  # fmt: skip
    """``_analyse_groups`` of every group, by index: with ``parallel`` (and fork available) the second of two
    shares of about equal work (``size``: each group's points) in a forked process, else all here."""
    shares = _two_shares(size)
    results: dict[int, dict[str, ClusteredCorrelation]] = {}
    if parallel:
        try:
            context = multiprocessing.get_context("fork")
        except ValueError:  # pragma: no cover - platforms without fork
            parallel = False
    if parallel:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(_analyse_groups, [groups[i] for i in shares[1]], options)
            results.update(zip(shares[0], _analyse_groups([groups[i] for i in shares[0]], options), strict=True))
            results.update(zip(shares[1], future.result(), strict=True))
    else:
        results.update(enumerate(_analyse_groups(groups, options)))
    return results


def _analyse_groups(groups: Sequence[_Design], options: dict[str, Any]) -> list[dict[str, ClusteredCorrelation]]:
    """``_analyse`` of each group with one set of draws (run in this process or in a forked one)."""
    draws = _Draws(np.random.SeedSequence(options["seed"]))
    rest = {k: v for k, v in options.items() if k not in ("unit", "methods", "seed")}
    return [_analyse(g, options["unit"], options["methods"], draws=draws, **rest) for g in groups]


def naive_correlations(
    x: ArrayLike,
    y: ArrayLike,
    source: Sequence[str] | ArrayLike,
    target: Sequence[str] | ArrayLike,
    lang: Sequence[str] | ArrayLike,
    *,
    methods: Sequence[Method] = METHODS,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    ci_level: float = 0.95,
    seed: int = 0,
    min_n: int = 5,
) -> dict[str, ClusteredCorrelation]:
    """The old row-level statistics (``xl.core.stats.correlations`` over rows as if independent), labelled
    ``unit="naive"``: kept for comparison with earlier results, not for inference. Their p-values and intervals
    ignore that rows share training runs and baselines, and are far too small (see the module docstring).
    Kendall gets only scipy's analytic p-value: its row-level permutation loop would cost seconds for a number
    that is wrong anyway."""
    wanted = _check_common(methods, n_perm, n_boot, ci_level, min_n, "cluster")
    design = _design(x, y, source, target, lang)
    n_s, n_t, n_l = design.counts()
    quick = tuple(method for method in wanted if method != "kendall")
    res: dict[str, _stats.Correlation] = {}
    if quick:
        res.update(_stats.correlations(design.x, design.y, quick, n_perm=n_perm, n_boot=n_boot, ci_level=ci_level,
                                       seed=seed))  # fmt: skip
    if "kendall" in wanted:
        res.update(_stats.correlations(design.x, design.y, ("kendall",), n_perm=0, n_boot=n_boot,
                                       ci_level=ci_level, seed=seed))  # fmt: skip
    out: dict[str, ClusteredCorrelation] = {}
    for method in wanted:
        c = res[method]
        small = design.n < min_n
        out[method] = ClusteredCorrelation(
            method=method, unit="naive", n=design.n, n_clusters=design.n_pairs, n_sources=n_s, n_targets=n_t,
            n_languages=n_l, value=None if small else c.value, p_analytic=None if small else c.p_value,
            p_perm=None if small else c.p_perm, perm_exact=c.perm_exact, permutation="rows (ignores clusters)",
            n_perm=c.n_perm, ci_low=None if small else c.ci_low, ci_high=None if small else c.ci_high,
            ci_level=ci_level, bootstrap="rows", n_boot=n_boot, n_boot_used=0 if small else c.n_boot_used,
            reason=f"too small: n={design.n} < {min_n}" if small else c.reason,
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# family questions
# --------------------------------------------------------------------------------------------------


def min_detectable_r(n: int, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest correlation that ``n`` independent points detect with ``power`` at two-sided ``alpha``, by
    Fisher's z: ``tanh((z_{1−α/2} + z_power) / sqrt(n − 3))`` (Cohen 1988, §3.2); None for ``n <= 3``."""
    if n <= 3:
        return None
    z = scipy.stats.norm.ppf(1.0 - alpha / 2.0) + scipy.stats.norm.ppf(power)
    return float(np.tanh(z / math.sqrt(n - 3)))


@dataclass(frozen=True)
class _Families:
    """The families of a design: row codes, names, languages per family, which are eligible."""

    fam: IP
    names: tuple[str, ...]
    lang_family: IP  # (L,) family code of each language code, −1 if absent
    eligible: tuple[int, ...]  # family codes, sorted by name
    table: tuple[FamilySlope, ...]


def _families(design: _Design, family: Sequence[str] | ArrayLike, min_languages: int) -> _Families:
    if min_languages < 1:
        raise UsageError("min_languages must be at least 1", found=str(min_languages))
    fam, names = _family_of_rows(design, family)
    lang_family = np.full(len(design.langs), -1, dtype=np.intp)
    lang_family[design.lang] = fam
    table: list[FamilySlope] = []
    eligible: list[int] = []
    for code, name in enumerate(names):
        langs = tuple(design.langs[i] for i in np.flatnonzero(lang_family == code).tolist())
        n_pairs = int(np.unique(design.pair[fam == code]).size)
        ok = len(langs) >= min_languages
        if ok:
            eligible.append(code)
        table.append(FamilySlope(name, langs, len(langs), n_pairs, ok, min_detectable_r(n_pairs)))
    if len(eligible) < 2:
        found = ", ".join(f"{f.family} ({f.n_languages})" for f in table)
        raise UsageError(
            f"a family test needs two families with ≥ {min_languages} languages; found: {found}",
            hint="lower --min-languages (each family's slope then rests on fewer languages) or add languages",
        )
    return _Families(fam, names, lang_family, tuple(eligible), tuple(table))


def _multinomial(sizes: Sequence[int], limit: int) -> int:
    """The number of ways to split ``Σ sizes`` labelled items into groups of ``sizes`` (stops above ``limit``)."""
    total, left = 1, sum(sizes)
    for k in sizes:
        total *= math.comb(left, k)
        left -= k
        if total > limit:
            return total
    return total


def _labelings(labels: IP, F: int) -> Iterator[IP]:
    """Every distinct assignment of the multiset ``labels`` to positions (the observed one among them)."""
    sizes = np.bincount(labels, minlength=F).tolist()
    n = int(labels.size)

    def rec(free: tuple[int, ...], f: int) -> Iterator[dict[int, int]]:
        if f == F:
            yield {}
            return
        for chosen in itertools.combinations(free, sizes[f]):
            rest = tuple(i for i in free if i not in chosen)
            for tail in rec(rest, f + 1):
                tail.update(dict.fromkeys(chosen, f))
                yield tail

    for assignment in rec(tuple(range(n)), 0):
        out = np.empty(n, dtype=np.intp)
        for i, f in assignment.items():
            out[i] = f
        yield out


def family_slopes_permutation(
    x: ArrayLike,
    y: ArrayLike,
    source: Sequence[str] | ArrayLike,
    target: Sequence[str] | ArrayLike,
    lang: Sequence[str] | ArrayLike,
    family: Sequence[str] | ArrayLike,
    *,
    n_perm: int = 10_000,
    min_languages: int = 3,
    seed: int = 0,
) -> FamilyTest:
    """Do the slopes of pair-level gain on similarity differ between language families? A permutation test.

    Rows as in ``clustered_correlations``; ``family: (n,)`` the family of each row's language. For each eligible
    family (≥ ``min_languages`` languages) the slope ``b_f`` is the OLS slope, over the pairs, of the pair's mean
    gain over the family's languages on its similarity (a language-level x is averaged over the same
    languages). The statistic ``Σ w_f (b_f − b̄)²`` (``w_f`` languages in f, ``b̄`` their weighted mean) is
    referred to its distribution when whole languages are reassigned at random among the eligible families,
    family sizes kept: under the null that a language's family says nothing about how its gains follow
    similarity, the languages are exchangeable between families, and moving a language moves all of its rows
    (its baseline, its pair effects) together. Each block of reassignments is one matrix product of the
    (pairs × languages) gains with the stacked membership matrices; when every pair has every language and x is
    pair-level, a family's slope is the mean of per-language slopes and a reassignment only regroups them.

    Per family, the slope's p-value is the within-target permutation p-value at the pair level (under
    permutation of x within targets the spread of x is fixed, so |slope| orders as |Pearson r|), Holm-adjusted
    across eligible families (Holm 1979; as statsmodels' ``multipletests(method="holm")``). Families below
    ``min_languages`` are listed with ``eligible: false`` and ``mde_r``, never compared. Fewer than two eligible
    families: UsageError.
    """
    if n_perm < 1:
        raise UsageError("n_perm must be at least 1 for a permutation test", found=str(n_perm))
    design = _design(x, y, source, target, lang)
    fams = _families(design, family, min_languages)
    cells = _family_cells(design, fams)
    observed = _family_slopes(cells, cells.labels[None, :])
    _check_family_slopes(observed[0], fams)
    t_obs = float(_slope_spread(observed, cells.w)[0])
    p, total, exact = _slope_spread_permutations(cells, t_obs, n_perm, seed)
    slope_p, holm = _family_slope_p(design, fams, n_perm, seed)
    table = _with_family_slopes(fams, observed[0], slope_p, holm)
    w = cells.w
    mean = float(observed[0] @ w / w.sum())
    return FamilyTest(statistic=t_obs, p_perm=p, n_perm=total, perm_exact=exact, mean_slope=mean,
                      n_eligible=cells.F, min_languages=min_languages, families=table,
                      x_level="pair" if cells.pair_level else "language (averaged per family)")  # fmt: skip


@dataclass(frozen=True)
class _FamilyCells:
    """The (pairs × eligible languages) layout of the family slope test, P pairs, Le eligible languages.

    ``labels: (Le,) intp``: each eligible language's family as 0..F−1 (eligible families in name order);
    ``G``, ``present``, ``Xm``: (P, Le) float64 gain, 1.0 where measured (else 0.0) and similarity of each
    (pair, language); ``xp: (P,) float64`` the pair-mean similarity; ``w: (F,) float64`` languages per family;
    ``pair_level``: x is constant within every pair; ``per_language: (Le,) float64``: the per-language slopes
    when every pair is measured in every language and x is pair-level (``balanced``), else None.
    """

    labels: IP
    F: int
    G: F64
    present: F64
    Xm: F64
    xp: F64
    w: F64
    pair_level: bool
    per_language: F64 | None

    @property
    def balanced(self) -> bool:
        return self.per_language is not None


def _family_cells(design: _Design, fams: _Families) -> _FamilyCells:
    """The gains and similarities of ``design`` laid out by (pair, eligible language) (see ``_FamilyCells``)."""
    pair_level = design.is_pair_level()
    F = len(fams.eligible)
    # eligible languages, with their family as 0..F−1 in name order
    elig_code = np.full(len(fams.names), -1, dtype=np.intp)
    elig_code[list(fams.eligible)] = np.arange(F, dtype=np.intp)
    langs = np.flatnonzero((fams.lang_family >= 0) & (elig_code[np.maximum(fams.lang_family, 0)] >= 0))
    labels0 = elig_code[fams.lang_family[langs]]
    Le, P = int(langs.size), design.n_pairs
    col = np.full(len(design.langs), -1, dtype=np.intp)
    col[langs] = np.arange(Le, dtype=np.intp)
    rows = col[design.lang] >= 0
    cell = (design.pair[rows], col[design.lang[rows]])
    G = np.zeros((P, Le))
    present = np.zeros((P, Le))
    Xm = np.zeros((P, Le))
    G[cell] = design.y[rows]
    present[cell] = 1.0
    Xm[cell] = design.x[rows]
    xp = design.pair_means(design.x)
    w = np.bincount(labels0, minlength=F).astype(np.float64)
    c: F64 | None = None
    if bool(present.all()) and pair_level:
        # Every pair measured in every language, x pair-level: a family's slope is the mean over its languages
        # of the per-language slopes c_l = Σ_p xc_p g_pl / Σ_p xc_p² (the pair means are means over languages,
        # and Σ_p xc_p = 0), so a reassignment only regroups the c_l: no matrix products needed.
        xc = xp - xp.mean()
        c = (xc @ G) / float(xc @ xc)
    return _FamilyCells(labels0, F, G, present, Xm, xp, w, pair_level, c)


def _family_slopes(cells: _FamilyCells, lab: IP) -> F64:
    """(b, F) float64 slopes of the pair-level gain on similarity per family, for the label assignments
    ``lab: (b, Le) intp`` of the eligible languages to families; NaN where a family has no slope."""
    b = lab.shape[0]
    F, Le, P = cells.F, int(cells.labels.size), cells.G.shape[0]
    if cells.per_language is not None:
        flat = (lab + (np.arange(b, dtype=np.intp) * F)[:, None]).ravel()
        weights = np.broadcast_to(cells.per_language, lab.shape).ravel()
        sums = np.bincount(flat, weights=weights, minlength=b * F).astype(np.float64)
        balanced: F64 = sums.reshape(b, F) / cells.w
        return balanced
    M = np.zeros((Le, b * F))
    M[np.arange(Le)[None, :], np.arange(b)[:, None] * F + lab] = 1.0
    count = cells.present @ M  # (P, b·F): languages of family f observed for pair p
    have = count > 0
    Yf = np.divide(cells.G @ M, count, out=np.zeros((P, b * F)), where=have)
    nA = have.sum(axis=0)
    xp = cells.xp
    if cells.pair_level:
        Sx, Sxx, Sxy = xp @ have, (xp * xp) @ have, xp @ Yf
    else:
        Xf = np.divide(cells.Xm @ M, count, out=np.zeros((P, b * F)), where=have)
        Sx, Sxx, Sxy = Xf.sum(axis=0), (Xf * Xf).sum(axis=0), (Xf * Yf).sum(axis=0)
    Sy = Yf.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = Sxx - Sx * Sx / nA
        out: F64 = (Sxy - Sx * Sy / nA) / np.where(den > 1e-14 * np.maximum(Sxx, 1e-300), den, np.nan)
    return out.reshape(b, F)


def _slope_spread(b_f: F64, w: F64) -> F64:
    """(b,) the statistic ``Σ_f w_f (b_f − b̄)²`` of each row of slopes ``b_f: (b, F)``, weights ``w: (F,)``."""
    mean = (b_f @ w) / w.sum()
    out: F64 = ((b_f - mean[:, None]) ** 2) @ w
    return out


def _check_family_slopes(observed: F64, fams: _Families) -> None:
    """Raise InputError naming the eligible families whose slope ``observed: (F,)`` is not finite."""
    if not np.isfinite(observed).all():
        bad = [fams.names[fams.eligible[i]] for i in np.flatnonzero(~np.isfinite(observed))]
        raise InputError(f"no slope in family {', '.join(bad)}: the similarity is constant across its pairs",
                         hint="a slope needs at least two pairs with different similarities")  # fmt: skip


def _slope_spread_permutations(cells: _FamilyCells, t_obs: float, n_perm: int,
                               seed: int) -> tuple[float, int, bool]:  # fmt: skip
    """(p, reassignments, exact) of the observed spread ``t_obs`` against reassignments of whole languages
    among the eligible families (family sizes kept): every distinct one when there are at most ``n_perm``
    (p = count / total), else ``n_perm`` random ones (Phipson–Smyth p)."""
    threshold = t_obs - 1e-12 * max(1.0, abs(t_obs))  # the same value summed in another order counts as equal
    rng = np.random.default_rng(_stats._child(np.random.SeedSequence(seed), 2))
    labels0, F, w = cells.labels, cells.F, cells.w
    Le, P = int(labels0.size), cells.G.shape[0]
    block = max(1, _FAMILY_BLOCK_ELEMENTS // max((Le if cells.balanced else P) * F, 1))
    exact = _multinomial(w.astype(int).tolist(), n_perm) <= n_perm
    hits = total = 0
    if exact:
        every = _labelings(labels0, F)
        while chunk := list(itertools.islice(every, block)):
            t = _slope_spread(_family_slopes(cells, np.stack(chunk)), w)
            hits += int(np.count_nonzero(~(t < threshold)))  # NaN (no slope) counts as extreme: conservative
            total += len(chunk)
    else:
        while total < n_perm:
            b = min(block, n_perm - total)
            lab = labels0[np.argsort(rng.random((b, Le)), axis=1)]
            t = _slope_spread(_family_slopes(cells, lab), w)
            hits += int(np.count_nonzero(~(t < threshold)))
            total += b
    p = hits / total if exact else (hits + 1) / (total + 1)
    return p, total, exact


def _family_slope_p(design: _Design, fams: _Families, n_perm: int,
                    seed: int) -> tuple[list[float | None], list[float | None]]:  # fmt: skip
    """Per eligible family (in ``fams.eligible`` order): the within-target permutation p-value of its
    pair-level slope (None where nothing can be permuted) and its Holm-adjusted value across families."""
    # (the same draws as ``family_correlations`` with this seed, so its Pearson p_perm is this unadjusted p)
    slope_p: list[float | None] = []
    draws = _Draws(np.random.SeedSequence(seed))
    for code in fams.eligible:
        sub = design.subset(fams.fam == code)
        r = _analyse(sub, "pair", ("pearson",), n_perm=n_perm, n_boot=0, bootstrap="cluster", ci_level=0.95,
                     min_n=3, draws=draws)["pearson"]  # fmt: skip
        slope_p.append(r.p_perm)  # None where nothing can be permuted
    tested = [i for i, v in enumerate(slope_p) if v is not None]
    adjusted = _holm([v for v in slope_p if v is not None]) if tested else []
    holm: list[float | None] = [None] * len(fams.eligible)
    for i, v in zip(tested, adjusted, strict=True):
        holm[i] = v
    return slope_p, holm


def _with_family_slopes(fams: _Families, observed: F64, slope_p: Sequence[float | None],
                        holm: Sequence[float | None]) -> tuple[FamilySlope, ...]:  # fmt: skip
    """``fams.table`` with each eligible family's slope (``observed: (F,)``), p-value and Holm p-value."""
    table: list[FamilySlope] = []
    for f in fams.table:
        code = fams.names.index(f.family)
        if code in fams.eligible:
            i = fams.eligible.index(code)
            f = FamilySlope(f.family, f.languages, f.n_languages, f.n_pairs, True, f.mde_r,
                            slope=float(observed[i]), slope_p=slope_p[i], slope_p_holm=holm[i])  # fmt: skip
        table.append(f)
    return tuple(table)


def _holm(p: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values: sorted ascending, ``max_{j<=i} min(1, (k − j + 1) p_(j))``.

    The same numbers as statsmodels' ``multipletests(p, method="holm")[1]`` (the tests check it), written out
    because that function runs ``gc.collect()`` on every call (35 ms each here) and importing statsmodels costs
    more than the whole permutation test."""
    values = np.asarray(p, dtype=np.float64)
    k = values.size
    order = np.argsort(values, kind="stable")
    scaled = np.minimum(1.0, (k - np.arange(k)) * values[order])
    adjusted = np.empty(k)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in adjusted]


@dataclass
class _Fit:
    llf: float
    converged: bool
    params: F64
    cov: F64
    vcomp: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _fit_mixed(y: F64, X: F64, t: IP, s: IP, lang: IP) -> _Fit:
    """ML fit of ``y ~ X`` with a random intercept per target (the group) and variance components for the pairs
    (source within target) and the target-languages (language within target); rows sorted by target."""
    try:
        from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec
    except ImportError:  # pragma: no cover - statsmodels is needed by the mixed model only
        raise UsageError("the mixed-model family test needs statsmodels", hint="pip install statsmodels") from None
    groups = np.unique(t)
    bounds = np.searchsorted(t, groups).tolist() + [t.size]
    colnames: list[list[list[str]]] = [[], []]
    mats: list[list[F64]] = [[], []]
    for g in range(groups.size):
        a, b = bounds[g], bounds[g + 1]
        for j, codes in enumerate((s[a:b], lang[a:b])):
            levels, inv = np.unique(codes, return_inverse=True)
            mats[j].append(np.eye(levels.size)[inv.reshape(-1)])
            colnames[j].append([str(v) for v in levels.tolist()])
    spec = VCSpec(["pair", "tlang"], colnames, mats)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = MixedLM(y, X, groups=t, exog_re=np.ones((y.size, 1)), exog_vc=spec)
        with _OneBlasThread():
            res = model.fit(reml=False, method=["lbfgs", "bfgs", "cg"])
        # the results' attributes are computed lazily and warn too (a singular fit): read them in here
        k = X.shape[1]
        names = list(model.exog_vc.names)
        vcomp = {name: float(v) for name, v in zip(names, np.asarray(res.vcomp).tolist(), strict=True)}
        vcomp["target"] = float(np.asarray(res.cov_re)[0, 0])
        vcomp["residual"] = float(res.scale)
        cov = np.asarray(res.cov_params())[:k, :k]
        llf, converged, params = float(res.llf), bool(res.converged), np.asarray(res.fe_params, dtype=np.float64)
    for item in record:
        message = f"{item.category.__name__}: {item.message}"
        if message not in caught:
            caught.append(message)
    return _Fit(llf, converged, params, cov, vcomp, caught)


class _OneBlasThread:
    """Limit BLAS to one thread while MixedLM runs: its per-group products are small (a target's rows × its
    random effects), and on 2 busy cores threaded BLAS made one 10,000-row fit take 18.7 s instead of 1.5 s."""

    def __enter__(self) -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional: only slower without it
            self._limit: Any = None
            return
        self._limit = threadpool_limits(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self._limit is not None:
            self._limit.restore_original_limits()


def family_mixed_model(
    x: ArrayLike,
    y: ArrayLike,
    source: Sequence[str] | ArrayLike,
    target: Sequence[str] | ArrayLike,
    lang: Sequence[str] | ArrayLike,
    family: Sequence[str] | ArrayLike,
    *,
    min_languages: int = 3,
) -> MixedModelTest:
    """Does the similarity slope differ between families? A linear mixed model and a likelihood-ratio test.

    ``gain ~ sim * C(family)`` with random intercepts for the target, the (source, target) pair and the
    (target, language), fitted by ML (statsmodels ``MixedLM``, ``reml=False``, so that the two fits' likelihoods
    compare) on the rows of eligible families (≥ ``min_languages`` languages); the interaction is tested against
    ``gain ~ sim + C(family)`` by χ² with (eligible families − 1) degrees of freedom. Pair and target-language
    effects are both nested in the target, so they are variance components within target groups
    (``groups=target``, ``vc_formula={"pair": "0 + C(source)", "tlang": "0 + C(lang)"}``, ``re_formula="1"``),
    which is the same model as crossed pair and target-language intercepts (the tests check it) and much
    cheaper to fit (BLAS limited to one thread meanwhile: threads fighting over two busy cores slow a fit down
    many times). Rows are never repeated (one per triple), so there are no cells to aggregate. The χ² reference of an
    ML likelihood-ratio test of fixed effects can be liberal with few targets (Pinheiro & Bates 2000, §2.4.2;
    ``make calibrate-tasksim`` measures it). Per-family
    slopes ``sim + sim:family`` come with Wald 95% intervals from the fixed-effect covariance. statsmodels'
    warnings are collected into ``warnings``, not printed.
    """
    design = _design(x, y, source, target, lang)
    fams = _families(design, family, min_languages)
    md = _mixed_design(design, fams)
    start = time.perf_counter()
    try:
        full = _fit_mixed(md.gain, md.X_full, md.t, md.s, md.lang)
        reduced = _fit_mixed(md.gain, md.X_reduced, md.t, md.s, md.lang)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InputError(f"the mixed model could not be fitted: {exc}",
                         hint="check for families or targets with a single source or language") from None  # fmt: skip
    seconds = time.perf_counter() - start
    lr = 2.0 * (full.llf - reduced.llf)
    df = len(md.names) - 1
    slopes = _mixed_family_slopes(full, md.names, fams)
    table = tuple(slopes.get(f.family, f) for f in fams.table)
    caught = full.warnings + [w for w in reduced.warnings if w not in full.warnings]
    return MixedModelTest(
        n=int(md.order.size), n_pairs=int(np.unique(design.pair[md.order]).size), n_targets=int(np.unique(md.t).size),
        n_languages=int(np.unique(md.lang).size), reference_family=md.names[0], lr_stat=lr, df=df,
        p_value=float(scipy.stats.chi2.sf(max(lr, 0.0), df)), llf_full=full.llf, llf_reduced=reduced.llf,
        converged_full=full.converged, converged_reduced=reduced.converged,
        fixed_effects={n: float(v) for n, v in zip(md.fe_names, full.params.tolist(), strict=True)},
        variance_components=full.vcomp, families=table, min_languages=min_languages, fit_seconds=seconds,
        warnings=tuple(caught),
    )  # fmt: skip


@dataclass(frozen=True)
class _MixedDesign:
    """The rows of the eligible families, sorted by target (``order: (m,) intp``, their rows in the design), with
    ``gain: (m,) float64``, codes ``t``, ``s``, ``lang: (m,) intp``; the fixed-effect matrices ``X_reduced``
    ``(m, 1 + 1 + F − 1)`` (intercept, sim, family dummies) and ``X_full`` (plus sim × dummies) float64, the
    eligible family ``names`` (the first is the reference) and ``fe_names``, the columns of ``X_full``."""

    order: IP
    gain: F64
    t: IP
    s: IP
    lang: IP
    X_reduced: F64
    X_full: F64
    names: list[str]
    fe_names: list[str]


def _mixed_design(design: _Design, fams: _Families) -> _MixedDesign:
    """The mixed model's rows and fixed effects (treatment coding against the first eligible family by name);
    InputError when the fixed effects are not identifiable."""
    F = len(fams.eligible)
    keep = np.isin(fams.fam, np.asarray(fams.eligible))
    order = np.flatnonzero(keep)[np.argsort(design.t[keep], kind="stable")]
    sim, gain = design.x[order], design.y[order]
    t, s, lg = design.t[order], design.s[order], design.lang[order]
    elig_code = np.full(len(fams.names), -1, dtype=np.intp)
    elig_code[list(fams.eligible)] = np.arange(F, dtype=np.intp)
    f = elig_code[fams.fam[order]]
    D = np.eye(F)[f][:, 1:]  # treatment coding against the first eligible family (by name)
    X_reduced = np.column_stack([np.ones_like(sim), sim, D])
    X_full = np.column_stack([X_reduced, D * sim[:, None]])
    names = [fams.names[c] for c in fams.eligible]
    fe_names = (["Intercept", "sim"] + [f"C(family)[T.{n}]" for n in names[1:]]
                + [f"sim:C(family)[T.{n}]" for n in names[1:]])  # fmt: skip
    if np.linalg.matrix_rank(X_full) < X_full.shape[1]:
        raise InputError(
            "the fixed effects of the mixed model are not identifiable (is the similarity constant within a family?)",
            hint="a family's slope needs pairs with different similarities in that family",
        )
    return _MixedDesign(order, gain, t, s, lg, X_reduced, X_full, names, fe_names)


def _mixed_family_slopes(full: _Fit, names: Sequence[str], fams: _Families) -> dict[str, FamilySlope]:
    """Each eligible family's slope ``sim + sim:family`` in the full fit, with its Wald p-value and 95% interval
    from the fixed-effect covariance (None where its variance is not positive and finite)."""
    F = len(names)
    z = float(scipy.stats.norm.ppf(0.975))
    slopes: dict[str, FamilySlope] = {}
    for i, name in enumerate(names):
        c = np.zeros(full.params.size)
        c[1] = 1.0
        if i > 0:
            c[2 + (F - 1) + (i - 1)] = 1.0
        est = float(c @ full.params)
        var = float(c @ full.cov @ c)
        se = math.sqrt(var) if var > 0 and math.isfinite(var) else None
        base = fams.table[fams.names.index(name)]
        slopes[name] = FamilySlope(
            name, base.languages, base.n_languages, base.n_pairs, True, base.mde_r, slope=est,
            slope_p=None if se is None else float(2.0 * scipy.stats.norm.sf(abs(est) / se)), se=se,
            ci_low=None if se is None else est - z * se, ci_high=None if se is None else est + z * se,
        )  # fmt: skip
    return slopes
