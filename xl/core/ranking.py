"""How well a similarity ranks source tasks for one target (NDCG@k, Regret@k, rank of the best source…), and
how well one training seed ranks them for another (``seed_stability``, the noise ceiling).

Setting (Vu et al. 2020, "Exploring and Predicting Transferability across NLP Tasks"; Poth et al. 2021,
"What to Pre-Train on? Efficient Intermediate Task Selection"): for one target (task, language) there are m
candidate source tasks; ``scores: (m,)`` is the predicted score of each source (e.g. task similarity, higher =
recommended first) and ``gains: (m,)`` the measured transfer gain of intermediate training on it (target score
with the source minus without; higher is better). Sources are ranked by descending score.

Definitions used here (1-based positions i):

- **NDCG@k** (Järvelin & Kekäläinen 2002, as used by Vu et al. 2020):
  ``DCG@k = Σ_{i≤k} g(rel_i) / log2(i + 1)`` over the predicted order, divided by the same sum over the ideal
  order (sources sorted by relevance). The relevance of a source is its gain **clipped at zero**,
  ``rel = max(gain, 0)``: a source that hurts the target is as useless to pick as one that does nothing,
  and negative relevances would push NDCG outside [0, 1].
  ``g`` is the identity (``dcg_gain="linear"``, default: NDCG is then unchanged when gains are rescaled, e.g.
  accuracy points vs fractions) or ``2**rel − 1`` (``"exp2"``, the form of Vu et al.'s formula, which depends
  on the unit of the gains). If no source has a positive gain, NDCG is undefined (None).
  Vu et al. take the target performance after transfer as relevance; performance = baseline + gain orders
  sources the same way, but on gains a source that does not help earns no credit, which is what a study of
  transfer gains needs.
- **Regret@k** (Poth et al. 2021): the loss from using the best of the top-k predicted sources instead of the
  true best, relative to the true best, in percent: ``100 · (G* − G_k) / G*`` with ``G*`` the best gain and
  ``G_k`` the best gain among the top k. It is 0 when the best source is in the top k and may exceed 100 when
  every top-k source hurts. With gains the ratio needs ``G* > 0``; otherwise (no source helps) it is None.
  Given ``baseline`` (the target score without intermediate training), regret is computed on target
  performance ``baseline + gain`` instead, exactly as Poth et al. define it (needs a positive best
  performance); the numerator is the same, only the reference differs.
- **Absolute regret** ``regret_abs@k``: the numerator of Regret@k alone, ``G* − G_k``, in the units of the
  gains (e.g. accuracy points). Unlike the ratio it is defined when no source helps (``G* ≤ 0``: the loss
  from a bad pick among harmful sources is still a loss), it does not explode when ``G*`` is small, and it
  is the same with or without ``baseline`` (the baseline cancels in ``(b + G*) − (b + G_k)``). 0 is perfect.
- **Rank of the best source**: the 1-based position of the truly best source (largest gain) in the predicted
  order (Vu et al.'s "average rank" when averaged over targets). 1 is perfect.
- **Negative top-1 pick** ``top1_negative``: the probability that the top-ranked source has a negative gain
  (``gain < 0``: intermediate training on it hurts the target; a gain of exactly 0 does not count). With
  tied top scores it is the share of negative gains among the tied sources, so per target it lies in
  [0, 1]; averaged over targets it is the share of top-1 picks that hurt (the "negative transfer" rate of
  following the predictor).

Ties in the predicted scores leave the order undefined; every metric is its **expectation over a uniformly
random order of tied sources** (McSherry & Najork 2008, "Computing information retrieval performance measures
efficiently in the presence of tied scores"), so results never depend on input order. When several sources
share the best gain, the rank is that of the first of them in the predicted order.

**Seed stability** (``seed_stability``): the same metrics with the measured gains of one training seed (a) as
the "predicted scores" and those of a rerun with another seed (b) as the gains, plus the Spearman ρ and
Kendall τ-b between the two seeds' gains, per (target, language) and averaged. It answers "how well does
one run of the experiment predict the source ranking of a rerun?" and is the reference level for any
similarity-based predictor scored against one run's gains: a predictor that reaches it ranks sources as
well as rerunning the experiment would; a predictor far below it is not limited by the noise of the gains.
It is a ceiling for predictors that know the gains no better than one run does, not for every predictor:
one of the *expected* gain (free of seed noise) can score somewhat above it, because seed a carries its own
noise besides b's. For correlations the bound is known: with a and b equally noisy, a predictor that does not
see b's noise correlates with b at most ``sqrt(ρ_ab)`` (Spearman 1904, "The proof and measurement of
association between two things", correction for attenuation; only approximately for rank correlations and
for a mean over targets), reached by the expected gain itself. In the terms of Nili et al. 2014 ("A toolbox
for representational similarity analysis") the seed-to-seed value is the lower bound of the noise ceiling
and ``sqrt`` of it the upper one. Compare like with like: score the predictor against the same seed's gains
(b), or, with ``symmetric=True`` (a→b and b→a averaged), against both seeds and average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.errors import InputError, ShapeError, UsageError

DcgGain = Literal["linear", "exp2"]
F64 = NDArray[np.float64]
#: Measured gains of one training seed: (target task, target language) → source task → gain.
SeedGains = Mapping[tuple[str, str], Mapping[str, float]]


@dataclass(frozen=True)
class RankingScores:
    """The ranking metrics of one target (definitions in the module docstring).

    ``ndcg`` at cut-off ``ndcg_k`` (None: all sources); ``regret``: k → Regret@k in percent; ``best_rank``:
    1-based (expected) position of the best source; ``regret_abs``: k → ``G* − G_k`` in the units of the gains;
    ``top1_negative``: probability in [0, 1] that the top-1 pick has a negative gain. An undefined metric is
    None and ``reasons`` says why. ``regret_abs`` and ``top1_negative`` default to "not computed" (empty,
    None) so that objects built before they existed still construct; ``rank_metrics`` always fills them.
    """

    n_sources: int
    ndcg: float | None
    ndcg_k: int | None
    regret: Mapping[int, float | None]
    best_rank: float
    reasons: tuple[str, ...] = ()
    regret_abs: Mapping[int, float] = field(default_factory=dict)
    top1_negative: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """The metrics under their aggregate keys: ``ndcg`` or ``ndcg@k``, ``regret@k``, ``best_rank``,
        ``regret_abs@k``, ``top1_negative`` (the last two only where computed)."""
        # New keys come after the old ones so that tables built from this order keep their old columns first.
        out: dict[str, float | None] = {_ndcg_key(self.ndcg_k): self.ndcg}
        out.update({f"regret@{k}": v for k, v in self.regret.items()})
        out["best_rank"] = self.best_rank
        out.update({f"regret_abs@{k}": v for k, v in self.regret_abs.items()})
        if self.top1_negative is not None:
            out["top1_negative"] = self.top1_negative
        return out

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-able dict: n_sources, the keys of ``metrics()``, reasons."""
        return {"n_sources": self.n_sources, **self.metrics(), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class MeanOverTargets:
    """Mean of one metric over the targets where it is defined (``n`` of them; ``n_undefined`` skipped)."""

    mean: float | None
    n: int
    n_undefined: int


# --------------------------------------------------------------------------------------------------
# validation and tie-aware ordering
# --------------------------------------------------------------------------------------------------


def _check(scores: ArrayLike, gains: ArrayLike) -> tuple[F64, F64]:
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    if s.ndim != 1 or g.ndim != 1 or s.size != g.size:
        raise ShapeError(
            "scores and gains must be two 1-D arrays of the same length (one entry per source task)",
            found=f"shapes {s.shape} and {g.shape}",
        )
    if s.size == 0:
        raise InputError("no source tasks to rank", expected="at least one source")
    for label, a in (("scores", s), ("gains", g)):
        if not np.isfinite(a).all():
            raise InputError(
                f"{label} contain non-finite values",
                expected="finite numbers",
                hint="drop sources without a measured gain or similarity",
            )
    return s, g


def _tie_blocks(s: F64) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Predicted order (descending score, stable) and, per source, first position and size of its tie block.

    Positions are 0-based indices into the order; ``start[i]``/``size[i]`` belong to source i.
    """
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    sizes = np.diff(np.r_[boundaries, s.size])
    block_of_pos = np.repeat(np.arange(boundaries.size), sizes)
    start = np.empty(s.size, dtype=np.intp)
    size = np.empty(s.size, dtype=np.intp)
    start[order] = boundaries[block_of_pos]
    size[order] = sizes[block_of_pos]
    return order, start, size


def _check_k(k: int, label: str = "k") -> None:
    if k < 1:
        raise UsageError(f"{label} must be >= 1", found=str(k))


# --------------------------------------------------------------------------------------------------
# metrics of one target
# --------------------------------------------------------------------------------------------------


def ndcg_at_k(
    scores: ArrayLike, gains: ArrayLike, k: int | None = None, *, dcg_gain: DcgGain = "linear"
) -> float | None:
    """NDCG@k of ranking sources by ``scores: (m,)`` against ``gains: (m,)`` (relevance ``max(gain, 0)``).

    ``k=None`` (or k ≥ m) uses all m sources. Expected value over random orders of tied scores.
    None when no source has a positive gain (the ideal DCG is 0).
    """
    s, g = _check(scores, gains)
    m = s.size
    kk = m if k is None else min(k, m)
    if k is not None:
        _check_k(k)
    if dcg_gain not in ("linear", "exp2"):
        raise UsageError(f"unknown dcg_gain {dcg_gain!r}", expected="linear or exp2")
    rel = np.maximum(g, 0.0)
    value = rel if dcg_gain == "linear" else np.expm1(rel * math.log(2.0))
    discount = np.zeros(m, dtype=np.float64)
    discount[:kk] = 1.0 / np.log2(np.arange(2, kk + 2, dtype=np.float64))
    ideal = float(np.sort(value)[::-1] @ discount)
    if ideal <= 0.0:
        return None
    _, start, size = _tie_blocks(s)
    # A source in a tie block occupying positions [a, a+t) sits at each of them with probability 1/t.
    cum = np.r_[0.0, np.cumsum(discount)]
    expected_discount = (cum[start + size] - cum[start]) / size
    return float(value @ expected_discount / ideal)


def regret_at_k(scores: ArrayLike, gains: ArrayLike, k: int = 1, *, baseline: float | None = None) -> float | None:
    """Regret@k in percent (Poth et al. 2021) of choosing among the top-k sources by ``scores: (m,)``.

    ``100 · (G* − E[G_k]) / R`` where G* is the best gain, G_k the best gain among the top k (expected over
    random orders of tied scores) and R = G* (default) or ``baseline + G*`` (given the target score without
    intermediate training). None when R ≤ 0. k ≥ m gives 0.
    """
    s, g = _check(scores, gains)
    _check_k(k)
    best = float(g.max())
    reference = best if baseline is None else float(baseline) + best
    if not reference > 0.0:
        return None
    return 100.0 * (best - _expected_best_in_top_k(s, g, k)) / reference


def _expected_best_in_top_k(s: F64, g: F64, k: int) -> float:
    """E[max gain among the top k] when tied scores are ordered uniformly at random."""
    m = s.size
    if k >= m:
        return float(g.max())
    order, start, size = _tie_blocks(s)
    above = order[: start[order[k - 1]]]  # sources strictly ranked above the block that holds position k
    sure = float(g[above].max()) if above.size else -math.inf
    block = order[start[order[k - 1]] : start[order[k - 1]] + size[order[k - 1]]]
    picks = k - above.size  # this many of the t tied sources enter the top k, a uniformly random subset
    t = block.size
    if picks == t:
        return max(sure, float(g[block].max()))
    # The best of a random p-subset of gains b_1 ≥ … ≥ b_t is b_i with probability C(t−i, p−1) / C(t, p).
    b = np.sort(g[block])[::-1]
    total = math.comb(t, picks)
    return sum(math.comb(t - i, picks - 1) / total * max(sure, float(b[i - 1])) for i in range(1, t - picks + 2))


def best_source_rank(scores: ArrayLike, gains: ArrayLike) -> float:
    """1-based (expected) position of the best source (largest gain) in the order of descending ``scores``.

    With q best sources among the t sources tied at the highest score any of them has, and ``a`` sources
    scored above that, the first of them lands on average at ``a + (t + 1) / (q + 1)``.
    """
    s, g = _check(scores, gains)
    is_best = g == g.max()
    top_score = s[is_best].max()
    above = int(np.count_nonzero(s > top_score))
    tied = s == top_score
    t = int(np.count_nonzero(tied))
    q = int(np.count_nonzero(tied & is_best))
    return above + (t + 1) / (q + 1)


def regret_abs_at_k(scores: ArrayLike, gains: ArrayLike, k: int = 1) -> float:
    """Absolute Regret@k, ``G* − E[G_k]`` in the units of ``gains: (m,)``, of the top-k sources by ``scores: (m,)``.

    The numerator of Poth et al.'s (2021) Regret@k without their division by the best gain or score, so it is
    defined for every target, including one where no source helps. Expected over random orders of tied
    scores; k ≥ m gives 0.
    """
    s, g = _check(scores, gains)
    _check_k(k)
    return float(g.max()) - _expected_best_in_top_k(s, g, k)


def top1_negative_probability(scores: ArrayLike, gains: ArrayLike) -> float:
    """Probability that the source ranked first by ``scores: (m,)`` has a negative gain (``gains: (m,)`` < 0).

    When t sources tie at the top score, each is first with probability 1/t, so the result is the share of
    negative gains among them (McSherry & Najork 2008's expectation over tie orders, as for the other metrics).
    """
    s, g = _check(scores, gains)
    top = g[s == s.max()]
    return np.count_nonzero(top < 0.0) / int(top.size)


def rank_metrics(
    scores: ArrayLike,
    gains: ArrayLike,
    *,
    ks: Sequence[int] = (1, 3, 5),
    ndcg_k: int | None = None,
    baseline: float | None = None,
    dcg_gain: DcgGain = "linear",
) -> RankingScores:
    """NDCG@``ndcg_k``, Regret@k and absolute Regret@k for each k in ``ks``, the best source's rank and the
    probability of a negative top-1 pick for one target (definitions in the module docstring)."""
    s, g = _check(scores, gains)
    for k in ks:
        _check_k(k)
    reasons: list[str] = []
    ndcg = ndcg_at_k(s, g, ndcg_k, dcg_gain=dcg_gain)
    if ndcg is None:
        reasons.append("NDCG undefined: no source task has a positive gain")
    regret = {int(k): regret_at_k(s, g, k, baseline=baseline) for k in ks}
    if ks and all(v is None for v in regret.values()):
        reasons.append(
            "Regret undefined: no source task has a positive gain"
            if baseline is None
            else "Regret undefined: the best target performance (baseline + best gain) is not positive"
        )
    return RankingScores(
        n_sources=int(s.size),
        ndcg=ndcg,
        ndcg_k=ndcg_k,
        regret=regret,
        best_rank=best_source_rank(s, g),
        reasons=tuple(reasons),
        regret_abs={int(k): regret_abs_at_k(s, g, k) for k in ks},
        top1_negative=top1_negative_probability(s, g),
    )


# --------------------------------------------------------------------------------------------------
# aggregation over targets
# --------------------------------------------------------------------------------------------------


def _ndcg_key(k: int | None) -> str:
    return "ndcg" if k is None else f"ndcg@{k}"


def aggregate_rankings(results: Iterable[RankingScores]) -> dict[str, MeanOverTargets]:
    """Mean of every metric over targets, keyed as in ``RankingScores.metrics`` (``ndcg@10``, ``regret@1``,
    ``best_rank``, ``regret_abs@1``, ``top1_negative``…).

    Targets where a metric is undefined are left out of its mean and counted in ``n_undefined``. The mean of
    ``top1_negative`` is the share of top-1 picks with a negative gain; that of ``regret_abs@k`` is in the
    units of the gains. A key appears once some target reports it (e.g. only the k in that target's ``ks``).
    """
    return _mean_over_targets(r.metrics() for r in results)


def _mean_over_targets(rows: Iterable[Mapping[str, float | None]]) -> dict[str, MeanOverTargets]:
    """Per key, the mean of the defined values of the rows that report it (None counts as undefined)."""
    collected: dict[str, list[float | None]] = {}
    for row in rows:
        for key, value in row.items():
            collected.setdefault(key, []).append(value)
    out: dict[str, MeanOverTargets] = {}
    for key, values in collected.items():
        defined = [v for v in values if v is not None]
        mean = float(np.mean(defined)) if defined else None
        out[key] = MeanOverTargets(mean=mean, n=len(defined), n_undefined=len(values) - len(defined))
    return out


# --------------------------------------------------------------------------------------------------
# seed stability: how well one run predicts the source ranking of a rerun
# --------------------------------------------------------------------------------------------------


def seed_stability(
    gains_a: SeedGains,
    gains_b: SeedGains,
    *,
    ks: Sequence[int] = (1, 3, 5),
    ndcg_k: int | None = None,
    baselines_a: Mapping[tuple[str, str], float] | None = None,
    baselines_b: Mapping[tuple[str, str], float] | None = None,
    dcg_gain: DcgGain = "linear",
    symmetric: bool = False,
) -> dict[str, MeanOverTargets]:
    """The ranking metrics of seed a's gains used as scores for seed b's gains, averaged over targets.

    ``gains_a``, ``gains_b``: ``{(target, lang): {source: gain}}`` of two training seeds. Compared are the
    (target, lang) present in both with at least two sources measured under both seeds (the sources in only
    one seed are left out; a single source has nothing to rank, and ``tasksim.correlate`` skips such targets
    too). For each, ``rank_metrics(a, b)`` (NDCG, Regret@k, absolute Regret@k, best rank, negative top-1
    pick; ties in a's gains are averaged over like tied similarities) and the Spearman ρ and Kendall τ-b
    between a and b (``xl.core.stats.correlations``: None with fewer than three sources or a constant seed).

    ``baselines_b``: ``{(target, lang): score without intermediate training}`` for seed b, so that Regret@k is
    relative to the best target score as in ``rank_metrics``; it must cover every compared target.
    ``symmetric=True`` also scores b → a (against ``baselines_a``; give both baselines or neither) and, per
    target, averages the two directions where both are defined, else takes the one that is (a metric is
    undefined for a target only when it is in both directions), so the result does not depend on which
    seed is called a. What this ceiling means, and what it does not bound, is in the module docstring.

    Returns the keys of ``aggregate_rankings`` plus ``spearman`` and ``kendall``, each a ``MeanOverTargets``
    (n targets where defined, ``n_undefined`` where not; every key's n + n_undefined is the number of
    compared targets). ``{}`` when no target is comparable.
    """
    _check_seed_options(ks, ndcg_k, dcg_gain, symmetric=symmetric, baselines_a=baselines_a, baselines_b=baselines_b)
    rows: list[dict[str, float | None]] = []
    for key, by_source_a in gains_a.items():
        by_source_b = gains_b.get(key)
        if by_source_b is None:
            continue
        shared = [source for source in by_source_a if source in by_source_b]
        if len(shared) < 2:
            continue
        a = _seed_vector(by_source_a, shared, key, "a")
        b = _seed_vector(by_source_b, shared, key, "b")
        rows.append(_compare_seeds(a, b, key, ks=ks, ndcg_k=ndcg_k, baselines_a=baselines_a,
                                   baselines_b=baselines_b, dcg_gain=dcg_gain, symmetric=symmetric))  # fmt: skip
    return _mean_over_targets(rows)


def _check_seed_options(ks: Sequence[int], ndcg_k: int | None, dcg_gain: str, *, symmetric: bool,
                        baselines_a: Mapping[tuple[str, str], float] | None,
                        baselines_b: Mapping[tuple[str, str], float] | None) -> None:  # fmt: skip
    """Raise UsageError for options of ``seed_stability`` that do not go together (or a bad k)."""
    for k in ks:
        _check_k(k)
    if ndcg_k is not None:
        _check_k(ndcg_k, "ndcg_k")
    if dcg_gain not in ("linear", "exp2"):
        raise UsageError(f"unknown dcg_gain {dcg_gain!r}", expected="linear or exp2")
    if symmetric and (baselines_a is None) != (baselines_b is None):
        # One direction relative to the best score and the other to the best gain would average two units.
        raise UsageError("symmetric seed stability needs baselines for both seeds or neither")
    if not symmetric and baselines_a is not None:
        raise UsageError("baselines_a is used only by the b → a direction", hint="pass symmetric=True")


def _compare_seeds(a: F64, b: F64, key: tuple[str, str], *, ks: Sequence[int], ndcg_k: int | None,
                   baselines_a: Mapping[tuple[str, str], float] | None,
                   baselines_b: Mapping[tuple[str, str], float] | None, dcg_gain: DcgGain,
                   symmetric: bool) -> dict[str, float | None]:  # fmt: skip
    """The metrics of one (target, lang) ``key``: seed a's gains ``a: (m,)`` as scores for seed b's ``b: (m,)``
    (the same sources in the same order), averaged with b → a when ``symmetric``, plus Spearman and Kendall."""
    # Imported here so that the per-target metrics above keep this module numpy-only (scipy.stats takes a
    # second or more to import) for callers that never compare seeds.
    from xl.core.stats import correlations

    directions = [rank_metrics(a, b, ks=ks, ndcg_k=ndcg_k, baseline=_baseline(baselines_b, key, "b"),
                               dcg_gain=dcg_gain)]  # fmt: skip
    if symmetric:
        directions.append(rank_metrics(b, a, ks=ks, ndcg_k=ndcg_k, baseline=_baseline(baselines_a, key, "a"),
                                       dcg_gain=dcg_gain))  # fmt: skip
    row = _mean_of_directions([r.metrics() for r in directions])
    # ρ and τ are symmetric in a and b: one value serves both directions.
    agreement = correlations(a, b, ("spearman", "kendall"), n_perm=0, n_boot=0)
    row["spearman"] = agreement["spearman"].value
    row["kendall"] = agreement["kendall"].value
    return row


def _seed_vector(by_source: Mapping[str, float], sources: Sequence[str], key: tuple[str, str], seed: str) -> F64:
    """The gains of ``sources`` in that order, refusing non-finite ones with the target and source named."""
    v = np.array([by_source[source] for source in sources], dtype=np.float64)
    bad = [source for source, x in zip(sources, v, strict=True) if not math.isfinite(x)]
    if bad:
        raise InputError(
            f"seed {seed} has non-finite gains for target {key[0]} in {key[1]}: sources {', '.join(bad)}",
            expected="finite numbers",
            hint="drop sources without a measured gain",
        )
    return v


def _baseline(baselines: Mapping[tuple[str, str], float] | None, key: tuple[str, str], seed: str) -> float | None:
    if baselines is None:
        return None
    if key not in baselines:
        # A partial mapping would make some targets' regret relative to the score and others' to the gain.
        raise InputError(
            f"no baseline for target {key[0]} in {key[1]} in seed {seed}",
            expected="a baseline (score without intermediate training) for every compared target",
        )
    return float(baselines[key])


def _mean_of_directions(directions: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Per key, the mean of the directions where the metric is defined (None where it is in none)."""
    out: dict[str, float | None] = {}
    for key in directions[0]:
        defined = [v for d in directions if (v := d.get(key)) is not None]
        out[key] = sum(defined) / len(defined) if defined else None
    return out
