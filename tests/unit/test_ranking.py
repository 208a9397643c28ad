"""Ranking quality of a predicted score for source-task selection (xl.core.ranking): hand-computed cases."""

from __future__ import annotations

import json
from math import log2

import numpy as np
import pytest

from xl.core.ranking import (
    MeanOverTargets,
    RankingScores,
    aggregate_rankings,
    best_source_rank,
    ndcg_at_k,
    rank_metrics,
    regret_abs_at_k,
    regret_at_k,
    seed_stability,
    top1_negative_probability,
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
    assert set(d) == {"n_sources", "ndcg@2", "regret@1", "regret@2", "best_rank", "regret_abs@1", "regret_abs@2",
                      "top1_negative", "reasons"}  # fmt: skip
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


# --------------------------------------------------------------------------------------------------
# negative top-1 picks and absolute regret
# --------------------------------------------------------------------------------------------------


def test_top1_negative_is_the_share_of_negative_gains_among_the_tied_top_sources() -> None:
    assert top1_negative_probability(SCORES, GAINS) == 0.0  # s0 first, gain 1
    assert top1_negative_probability([0.1, 0.9], [1.0, -3.0]) == 1.0
    # s0, s1, s2 tied first with gains -1, 2, -3: each first with probability 1/3, two of them hurt
    assert top1_negative_probability([0.5, 0.5, 0.5, 0.1], [-1.0, 2.0, -3.0, 5.0]) == pytest.approx(2 / 3)
    # a gain of exactly 0 does not hurt
    assert top1_negative_probability([0.5, 0.5], [0.0, -1.0]) == 0.5


def test_regret_abs_is_in_gain_units_and_defined_when_every_gain_is_negative() -> None:
    assert regret_abs_at_k(SCORES, GAINS, 1) == pytest.approx(3 - 1)
    assert regret_abs_at_k(SCORES, GAINS, 2) == 0.0
    # no source helps: relative regret is undefined, absolute regret is not
    scores, gains = [0.1, 0.9], [-1.0, -3.0]
    assert regret_at_k(scores, gains, 1) is None
    assert regret_abs_at_k(scores, gains, 1) == pytest.approx(-1 - (-3))  # picked -3, best -1
    assert regret_abs_at_k(scores, gains, 2) == 0.0
    # all negative with a tie at the top: E[G_1] = (-1 + -4) / 2 = -2.5, G* = -1
    assert regret_abs_at_k([0.5, 0.5, 0.1], [-1.0, -4.0, -2.0], 1) == pytest.approx(1.5)
    assert regret_abs_at_k([0.5, 0.5, 0.1], [-1.0, -4.0, -2.0], 2) == 0.0
    # the tie block straddling the cut-off of the hand-computed relative case: 6 - 11/3
    assert regret_abs_at_k([0.9, 0.5, 0.5, 0.5], [1.0, 2.0, 6.0, 3.0], 2) == pytest.approx(6 - 11 / 3)
    # the baseline cancels: absolute regret equals relative regret times the reference
    assert regret_at_k(SCORES, GAINS, 1, baseline=50.0) == pytest.approx(100 * regret_abs_at_k(SCORES, GAINS, 1) / 53)


def test_rank_metrics_fill_the_new_fields_and_aggregate_them() -> None:
    first = rank_metrics([0.5, 0.5, 0.5, 0.1], [-1.0, 2.0, -3.0, 5.0], ks=(1, 3))
    second = rank_metrics([0.1, 0.9], [-1.0, -3.0], ks=(1, 3))
    third = rank_metrics(GAINS, GAINS, ks=(1, 3))
    assert first.top1_negative == pytest.approx(2 / 3) and second.top1_negative == 1.0 and third.top1_negative == 0
    # first: E[G_1] = (−1 + 2 − 3) / 3 = −2/3; top 3 is the whole tie block, best 2; G* = 5
    assert first.regret_abs == pytest.approx({1: 5 + 2 / 3, 3: 3.0})
    assert second.regret_abs == {1: 2.0, 3: 0.0} and second.regret == {1: None, 3: None}
    agg = aggregate_rankings([first, second, third])
    # the share of top-1 picks with a negative gain, over all three targets (always defined)
    assert agg["top1_negative"].mean == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert (agg["top1_negative"].n, agg["top1_negative"].n_undefined) == (3, 0)
    assert agg["regret_abs@1"].mean == pytest.approx((5 + 2 / 3 + 2 + 0) / 3) and agg["regret_abs@1"].n == 3
    assert agg["regret_abs@3"].mean == pytest.approx((3 + 0 + 0) / 3)
    # relative regret still skips the target where no source helps
    assert (agg["regret@1"].n, agg["regret@1"].n_undefined) == (2, 1)
    # the old keys keep their order; the new ones follow
    assert list(agg) == ["ndcg", "regret@1", "regret@3", "best_rank", "regret_abs@1", "regret_abs@3", "top1_negative"]


def test_scores_built_without_the_new_fields_still_aggregate() -> None:
    old = RankingScores(n_sources=2, ndcg=0.5, ndcg_k=None, regret={1: 10.0}, best_rank=2.0)
    assert old.to_dict() == {"n_sources": 2, "ndcg": 0.5, "regret@1": 10.0, "best_rank": 2.0, "reasons": []}
    agg = aggregate_rankings([old, rank_metrics(SCORES, GAINS, ks=(1,))])
    assert agg["regret@1"].n == 2
    assert (agg["top1_negative"].n, agg["top1_negative"].n_undefined) == (1, 0)  # only the target that has it
    assert agg["regret_abs@1"].mean == pytest.approx(2.0)


def test_new_metrics_do_not_depend_on_the_order_of_the_sources() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(10), 1)
    gains = np.round(rng.standard_normal(10), 1)
    ref = rank_metrics(scores, gains, ks=(1, 2, 4))
    for _ in range(5):
        p = rng.permutation(10)
        got = rank_metrics(scores[p], gains[p], ks=(1, 2, 4))
        assert got.top1_negative == pytest.approx(ref.top1_negative)
        assert got.regret_abs == pytest.approx(ref.regret_abs)


# --------------------------------------------------------------------------------------------------
# seed stability
# --------------------------------------------------------------------------------------------------


def _random_seed_gains(rng: np.random.Generator, targets: int, sources: int) -> dict[tuple[str, str], dict[str, float]]:
    return {(f"t{t}", "de"): {f"s{s}": float(rng.standard_normal()) for s in range(sources)} for t in range(targets)}


def test_identical_seeds_are_perfect() -> None:
    gains = _random_seed_gains(np.random.default_rng(0), 20, 5)
    gains[("t0", "de")] = {"s0": -1.0, "s1": -2.0, "s2": -0.5}  # no source helps: NDCG and relative regret undefined
    for symmetric in (False, True):
        got = seed_stability(gains, gains, ks=(1, 3), symmetric=symmetric)
        assert got["ndcg"].mean == pytest.approx(1.0) and (got["ndcg"].n, got["ndcg"].n_undefined) == (19, 1)
        assert got["regret@1"].mean == 0.0 and got["regret@1"].n == 19
        assert got["regret_abs@1"].mean == 0.0 and got["regret_abs@1"].n == 20
        assert got["regret_abs@3"].mean == 0.0
        assert got["best_rank"].mean == 1.0 and got["best_rank"].n == 20
        assert got["spearman"].mean == pytest.approx(1.0) and got["kendall"].mean == pytest.approx(1.0)
        assert got["spearman"].n == 20
        # every top-1 pick is the best source; only t0's best (-0.5) hurts
        assert got["top1_negative"].mean == pytest.approx(1 / 20)


@pytest.mark.slow
def test_independent_seeds_rank_worse() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_seed_gains(rng, 200, 5), _random_seed_gains(rng, 200, 5)
    got = _means(seed_stability(a, b, ks=(1, 3)))
    assert got["ndcg"] < 0.9
    assert got["regret_abs@1"] > 0.3 and got["regret@1"] > 10
    assert got["best_rank"] == pytest.approx(3.0, abs=0.3)  # uniform over 5 positions
    assert abs(got["spearman"]) < 0.1 and abs(got["kendall"]) < 0.1
    assert got["top1_negative"] == pytest.approx(0.5, abs=0.1)
    # b's gains as noisy copies of a's lie in between
    noisy = {key: {s: g + 0.5 * float(rng.standard_normal()) for s, g in row.items()} for key, row in a.items()}
    between = _means(seed_stability(a, noisy, ks=(1, 3)))
    assert got["ndcg"] < between["ndcg"] < 1.0
    assert 1.0 < between["best_rank"] < got["best_rank"]
    assert got["spearman"] < between["spearman"] < 1.0


def _means(aggregate: dict[str, MeanOverTargets]) -> dict[str, float]:
    assert all(m.mean is not None for m in aggregate.values())
    return {key: m.mean for key, m in aggregate.items() if m.mean is not None}


def test_seed_stability_hand_computed_and_symmetric() -> None:
    a = {("t", "de"): {"x": 3.0, "y": 1.0, "z": -1.0}}
    b = {("t", "de"): {"x": 1.0, "y": 2.0, "z": -2.0}}
    ab = seed_stability(a, b, ks=(1,))
    # a ranks x, y, z; b's best is y (2) in second place; the top pick x gains 1 in b
    assert ab["regret@1"].mean == pytest.approx(100 * (2 - 1) / 2) and ab["regret_abs@1"].mean == 1.0
    assert ab["best_rank"].mean == 2.0 and ab["top1_negative"].mean == 0.0
    assert ab["ndcg"].mean == pytest.approx((1 + 2 / log2(3)) / (2 + 1 / log2(3)))
    # ranks a: 3, 2, 1; b: 2, 3, 1 -> rho = 1 - 6 * 2 / (3 * 8); tau: one discordant pair of three
    assert ab["spearman"].mean == pytest.approx(0.5) and ab["kendall"].mean == pytest.approx(1 / 3)
    # b -> a: b ranks y, x, z; a's best x (3) second; the pick y gains 1 in a
    both = seed_stability(a, b, ks=(1,), symmetric=True)
    assert both["regret@1"].mean == pytest.approx((50 + 100 * 2 / 3) / 2)
    assert both["regret_abs@1"].mean == pytest.approx((1 + 2) / 2)
    assert both["spearman"].mean == pytest.approx(0.5) and both["best_rank"].n == 1
    assert seed_stability(b, a, ks=(1,), symmetric=True) == both  # which seed is "a" does not matter
    # Poth et al.'s reference with seed b's baseline 60: (62 - 61) / 62
    with_base = seed_stability(a, b, ks=(1,), baselines_b={("t", "de"): 60.0})
    assert with_base["regret@1"].mean == pytest.approx(100 / 62) and with_base["regret_abs@1"].mean == 1.0


def test_symmetric_takes_the_direction_where_a_metric_is_defined() -> None:
    a = {("t", "de"): {"x": 1.0, "y": -1.0, "z": 0.0}}
    b = {("t", "de"): {"x": -1.0, "y": -2.0, "z": -3.0}}  # no source helps in b: a -> b has no NDCG
    one_way = seed_stability(a, b)
    assert one_way["ndcg"].mean is None and (one_way["ndcg"].n, one_way["ndcg"].n_undefined) == (0, 1)
    both = seed_stability(a, b, symmetric=True)
    # b -> a: b ranks x, y, z and x is a's only helpful source
    assert both["ndcg"].mean == pytest.approx(1.0) and (both["ndcg"].n, both["ndcg"].n_undefined) == (1, 0)


def test_seed_stability_compares_shared_targets_and_sources() -> None:
    a = {("t", "de"): {"x": 1.0, "y": 2.0, "only_a": 9.0}, ("u", "fr"): {"x": 1.0, "y": 2.0}, ("v", "ko"): {"x": 1.0}}
    b = {("t", "de"): {"x": 1.0, "y": 2.0}, ("v", "ko"): {"x": 1.0, "y": 2.0}, ("w", "th"): {"x": 1.0, "y": 2.0}}
    got = seed_stability(a, b, ks=(1,))
    # only t/de qualifies (u only in a, w only in b, v has one shared source); only_a is left out
    assert got["best_rank"].n == 1 and got["best_rank"].mean == 1.0 and got["regret@1"].mean == 0.0
    # two sources: too few for a correlation (as in xl.core.stats)
    assert (got["spearman"].n, got["spearman"].n_undefined) == (0, 1)
    assert seed_stability({}, b) == {}


def test_seed_stability_bad_inputs() -> None:
    a = {("t", "de"): {"x": 1.0, "y": 2.0}}
    with pytest.raises(UsageError):
        seed_stability(a, a, symmetric=True, baselines_b={("t", "de"): 50.0})
    with pytest.raises(UsageError):
        seed_stability(a, a, baselines_a={("t", "de"): 50.0})
    with pytest.raises(UsageError):
        seed_stability(a, a, ks=(0,))
    with pytest.raises(InputError, match="no baseline for target t in de"):
        seed_stability(a, a, baselines_b={("u", "de"): 50.0})
    with pytest.raises(InputError, match="seed b has non-finite gains for target t in de: sources y"):
        seed_stability(a, {("t", "de"): {"x": 1.0, "y": float("nan")}})
