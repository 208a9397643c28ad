"""How well a similarity ranks source tasks for one target: NDCG@k, Regret@k and the rank of the best source.

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
- **Rank of the best source**: the 1-based position of the truly best source (largest gain) in the predicted
  order (Vu et al.'s "average rank" when averaged over targets). 1 is perfect.

Ties in the predicted scores leave the order undefined; every metric is its **expectation over a uniformly
random order of tied sources** (McSherry & Najork 2008, "Computing information retrieval performance measures
efficiently in the presence of tied scores"), so results never depend on input order. When several sources
share the best gain, the rank is that of the first of them in the predicted order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.errors import InputError, ShapeError, UsageError

DcgGain = Literal["linear", "exp2"]
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class RankingScores:
    """The ranking metrics of one target.

    ``ndcg`` at cut-off ``ndcg_k`` (None: all sources); ``regret``: k → Regret@k in percent; ``best_rank``:
    1-based (expected) position of the best source. An undefined metric is None and ``reasons`` says why.
    """

    n_sources: int
    ndcg: float | None
    ndcg_k: int | None
    regret: Mapping[int, float | None]
    best_rank: float
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-able dict: n_sources, ndcg (or ndcg@k), regret@k for each k, best_rank, reasons."""
        out: dict[str, Any] = {"n_sources": self.n_sources, _ndcg_key(self.ndcg_k): self.ndcg}
        out.update({f"regret@{k}": v for k, v in self.regret.items()})
        out["best_rank"] = self.best_rank
        out["reasons"] = list(self.reasons)
        return out


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


def rank_metrics(
    scores: ArrayLike,
    gains: ArrayLike,
    *,
    ks: Sequence[int] = (1, 3, 5),
    ndcg_k: int | None = None,
    baseline: float | None = None,
    dcg_gain: DcgGain = "linear",
) -> RankingScores:
    """NDCG@``ndcg_k``, Regret@k for each k in ``ks`` and the best source's rank for one target."""
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
    )


# --------------------------------------------------------------------------------------------------
# aggregation over targets
# --------------------------------------------------------------------------------------------------


def _ndcg_key(k: int | None) -> str:
    return "ndcg" if k is None else f"ndcg@{k}"


def aggregate_rankings(results: Iterable[RankingScores]) -> dict[str, MeanOverTargets]:
    """Mean of every metric over targets, keyed as in ``RankingScores.to_dict`` (``ndcg@10``, ``regret@1``…).

    Targets where a metric is undefined are left out of its mean and counted in ``n_undefined``.
    """
    collected: dict[str, list[float | None]] = {}
    for r in results:
        collected.setdefault(_ndcg_key(r.ndcg_k), []).append(r.ndcg)
        for k, v in r.regret.items():
            collected.setdefault(f"regret@{k}", []).append(v)
        collected.setdefault("best_rank", []).append(r.best_rank)
    out: dict[str, MeanOverTargets] = {}
    for key, values in collected.items():
        defined = [v for v in values if v is not None]
        mean = float(np.mean(defined)) if defined else None
        out[key] = MeanOverTargets(mean=mean, n=len(defined), n_undefined=len(values) - len(defined))
    return out
