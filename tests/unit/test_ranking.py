"""Ranking quality of a predicted score for source-task selection (xl.core.ranking): hand-computed cases."""

from __future__ import annotations

import json
from math import log2

import numpy as np
import pytest

from xl.core.ranking import (
    aggregate_rankings,
    best_source_rank,
    ndcg_at_k,
    rank_metrics,
    regret_at_k,
)
from xl.errors import InputError, ShapeError, UsageError

# Four sources; predicted order by score: s0, s1, s2, s3 with gains 1, 3, -2, 2.
SCORES = [0.9, 0.8, 0.7, 0.1]
GAINS = [1.0, 3.0, -2.0, 2.0]


def test_ndcg_clips_negative_gains_to_zero_relevance() -> None:
    # relevance in predicted order: 1, 3, max(-2, 0) = 0, 2; ideal order: 3, 2, 1, 0
    dcg = 1 / log2(2) + 3 / log2(3) + 0 / log2(4) + 2 / log2(5)
    idcg = 3 / log2(2) + 2 / log2(3) + 1 / log2(4) + 0 / log2(5)
    assert ndcg_at_k(SCORES, GAINS) == pytest.approx(dcg / idcg)  # = 0.78838
    assert ndcg_at_k(SCORES, GAINS, 4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(SCORES, GAINS, 10) == pytest.approx(dcg / idcg)  # k beyond m: all sources
    # @2: only the first two positions count
    assert ndcg_at_k(SCORES, GAINS, 2) == pytest.approx((1 + 3 / log2(3)) / (3 + 2 / log2(3)))  # 0.67876
    # a perfect ranking scores 1, the reversed one less
    assert ndcg_at_k(GAINS, GAINS) == pytest.approx(1.0)
    assert ndcg_at_k([-g for g in GAINS], GAINS) < ndcg_at_k(SCORES, GAINS)  # type: ignore[operator]


def test_ndcg_exp2_gain_follows_vu_et_al_formula() -> None:
    # 2**rel - 1 with rel = 1, 3, 0, 2 -> 1, 7, 0, 3; ideal 7, 3, 1, 0
    dcg = 1 / log2(2) + 7 / log2(3) + 0 / log2(4) + 3 / log2(5)
    idcg = 7 / log2(2) + 3 / log2(3) + 1 / log2(4) + 0 / log2(5)
    assert ndcg_at_k(SCORES, GAINS, dcg_gain="exp2") == pytest.approx(dcg / idcg)  # = 0.71423


def test_linear_ndcg_does_not_depend_on_the_unit_of_the_gains() -> None:
    assert ndcg_at_k(SCORES, [g / 100 for g in GAINS]) == pytest.approx(ndcg_at_k(SCORES, GAINS))


def test_regret_at_k_relative_to_the_best_gain() -> None:
    # best gain 3 (s1); top-1 is s0 with gain 1: (3 - 1) / 3 = 66.67 %
    assert regret_at_k(SCORES, GAINS, 1) == pytest.approx(100 * (3 - 1) / 3)
    assert regret_at_k(SCORES, GAINS, 2) == 0.0  # s1 is in the top 2
    assert regret_at_k(SCORES, GAINS, 9) == 0.0
    # Poth et al. on target performance: baseline 50 -> best performance 53: (53 - 51) / 53 = 3.77 %
    assert regret_at_k(SCORES, GAINS, 1, baseline=50.0) == pytest.approx(100 * 2 / 53)
    # every top-k source hurts: regret above 100 %
    assert regret_at_k([0.9, 0.1], [-1.0, 2.0], 1) == pytest.approx(100 * (2 - (-1)) / 2)


def test_best_source_rank() -> None:
    assert best_source_rank(SCORES, GAINS) == 2.0  # s1 is second
    assert best_source_rank(GAINS, GAINS) == 1.0
    # two sources share the best gain 5; the first of them in the predicted order (s1) is second
    assert best_source_rank([0.1, 0.3, 0.9], [5.0, 5.0, 1.0]) == 2.0


def test_tied_scores_give_the_expectation_over_random_tie_breaking() -> None:
    scores, gains = [0.5, 0.5, 0.2], [0.0, 4.0, 1.0]
    # s0 and s1 tied at positions 1-2: the best (s1) is first or second with probability 1/2 each
    assert best_source_rank(scores, gains) == 1.5
    # top-1 holds s0 (gain 0) or s1 (gain 4): E[best] = 2 -> regret (4 - 2) / 4 = 50 %
    assert regret_at_k(scores, gains, 1) == pytest.approx(50.0)
    assert regret_at_k(scores, gains, 2) == 0.0
    # NDCG@1: s1 gets discount 1 or 0 with probability 1/2 -> DCG 4 * 0.5, IDCG 4
    assert ndcg_at_k(scores, gains, 1) == pytest.approx(0.5)
    # full NDCG: s0, s1 share the mean discount of positions 1 and 2
    mean_discount = (1 / log2(2) + 1 / log2(3)) / 2
    dcg = 4 * mean_discount + 1 / log2(4)
    idcg = 4 / log2(2) + 1 / log2(3)
    assert ndcg_at_k(scores, gains) == pytest.approx(dcg / idcg)


def test_regret_with_a_tie_block_straddling_the_cut_off() -> None:
    scores = [0.9, 0.5, 0.5, 0.5]
    gains = [1.0, 2.0, 6.0, 3.0]
    # k=2: s0 is sure, one of s1..s3 (gains 2, 6, 3) joins at random: E[best] = (2 + 6 + 3) / 3 = 11/3
    assert regret_at_k(scores, gains, 2) == pytest.approx(100 * (6 - 11 / 3) / 6)  # 38.89 %
    # k=3: two of the three join: subsets {2,6}, {2,3}, {6,3} -> best 6, 3, 6 -> E = 5
    assert regret_at_k(scores, gains, 3) == pytest.approx(100 * (6 - 5) / 6)  # 16.67 %
    assert best_source_rank(scores, gains) == pytest.approx(1 + (3 + 1) / 2)


def test_results_do_not_depend_on_the_order_of_the_sources() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(12), 1)  # many ties
    gains = np.round(rng.standard_normal(12), 1)
    gains[3] = abs(gains[3]) + 5  # one clear best, positive
    ref = rank_metrics(scores, gains, ks=(1, 2, 3, 5), ndcg_k=4)
    for _ in range(5):
        p = rng.permutation(12)
        got = rank_metrics(scores[p], gains[p], ks=(1, 2, 3, 5), ndcg_k=4)
        assert got.ndcg == pytest.approx(ref.ndcg)
        assert got.best_rank == pytest.approx(ref.best_rank)
        for k in (1, 2, 3, 5):
            assert got.regret[k] == pytest.approx(ref.regret[k])


def test_no_helpful_source_makes_ndcg_and_regret_undefined() -> None:
    scores, gains = [0.1, 0.9], [-1.0, -3.0]
    assert ndcg_at_k(scores, gains) is None
    assert regret_at_k(scores, gains, 1) is None
    # with a baseline, regret is defined on performance: best 70 - 1 = 69, chosen 70 - 3 = 67
    assert regret_at_k(scores, gains, 1, baseline=70.0) == pytest.approx(100 * 2 / 69)
    r = rank_metrics(scores, gains)
    assert r.ndcg is None and all(v is None for v in r.regret.values())
    assert r.best_rank == 2.0
    assert len(r.reasons) == 2 and all("positive gain" in reason for reason in r.reasons)


def test_rank_metrics_and_aggregation_over_targets() -> None:
    first = rank_metrics(SCORES, GAINS, ks=(1, 2), ndcg_k=2)
    second = rank_metrics([0.1, 0.9], [-1.0, -3.0], ks=(1, 2), ndcg_k=2)
    third = rank_metrics(GAINS, GAINS, ks=(1, 2), ndcg_k=2)
    d = first.to_dict()
    assert set(d) == {"n_sources", "ndcg@2", "regret@1", "regret@2", "best_rank", "reasons"}
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    agg = aggregate_rankings([first, second, third])
    ndcg_first = (1 + 3 / log2(3)) / (3 + 2 / log2(3))
    assert agg["ndcg@2"].mean == pytest.approx((ndcg_first + 1.0) / 2)
    assert (agg["ndcg@2"].n, agg["ndcg@2"].n_undefined) == (2, 1)
    assert agg["regret@1"].mean == pytest.approx((200 / 3 + 0.0) / 2)
    assert agg["best_rank"].mean == pytest.approx((2 + 2 + 1) / 3) and agg["best_rank"].n == 3
    assert aggregate_rankings([]) == {}


def test_bad_inputs() -> None:
    with pytest.raises(ShapeError):
        ndcg_at_k([1.0, 2.0], [1.0])
    with pytest.raises(InputError):
        regret_at_k([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(InputError):
        best_source_rank([], [])
    with pytest.raises(UsageError):
        regret_at_k([1.0, 2.0], [1.0, 2.0], 0)
    with pytest.raises(UsageError):
        ndcg_at_k([1.0, 2.0], [1.0, 2.0], dcg_gain="log")  # type: ignore[arg-type]
