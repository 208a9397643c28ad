"""Clustered inference on transfer gains (xl.core.inference): calibration under the real dependence structure,
power against planted effects, parity with scipy and statsmodels, and the permutation blocks themselves.

Simulated designs are small (6 sources × 4 targets × 12 languages) and use 199 permutations, so the whole file
runs in well under a minute on two cores. Every simulation is seeded: the rates asserted are fixed numbers,
and the bands around them are wide enough that they are not tuned to one seed.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats

from xl.core import inference as inf
from xl.core import stats
from xl.core.inference import (
    clustered_correlations,
    family_correlations,
    family_mixed_model,
    family_slopes_permutation,
    min_detectable_r,
    naive_correlations,
    stratified_permutation_blocks,
)
from xl.errors import InputError, UsageError

S, T, L = 6, 4, 12


def _v(value: float | None) -> float:
    """A result value that must be present."""
    assert value is not None
    return value


def _grid(n_s: int = S, n_t: int = T, n_l: int = L) -> tuple[np.ndarray, ...]:
    """Codes (s, t, lc) of a full design, one row per triple, and their string labels."""
    s, t, lc = (a.ravel() for a in np.meshgrid(np.arange(n_s), np.arange(n_t), np.arange(n_l), indexing="ij"))
    src = np.array([f"s{i}" for i in range(n_s)])[s]
    tgt = np.array([f"t{i}" for i in range(n_t)])[t]
    lg = np.array([f"lc{i:02d}" for i in range(n_l)])[lc]
    return s, t, lc, src, tgt, lg


def _null_gains(rng: np.random.Generator, N: int, s: np.ndarray, t: np.ndarray, lc: np.ndarray) -> np.ndarray:
    """(N, n) gains with the real dependence structure and no similarity effect: a random effect per (source,
    target) pair (shared training runs), one per (target, language) (shared baseline), and row noise."""
    n_s, n_t, n_l = s.max() + 1, t.max() + 1, lc.max() + 1
    pair = rng.normal(size=(N, n_s, n_t))[:, s, t]
    tlang = rng.normal(size=(N, n_t, n_l))[:, t, lc]
    return pair + tlang + 0.5 * rng.normal(size=(N, s.size))


# --------------------------------------------------------------------------------------------------
# calibration and power
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pair_level_permutation_is_calibrated_and_the_naive_row_test_is_not() -> None:
    s, t, lc, src, tgt, lg = _grid()
    N = 200
    rng = np.random.default_rng(20240601)
    sim = rng.random((N, S, T))  # pair-level similarity, independent of the gains
    gains = _null_gains(rng, N, s, t, lc)
    pair_p = np.array([
        clustered_correlations(sim[i][s, t], gains[i], src, tgt, lg, methods=("spearman",), n_perm=199, n_boot=0,
                               seed=i)["spearman"].p_perm
        for i in range(N)
    ])  # fmt: skip
    naive_p = np.array([
        naive_correlations(sim[i][s, t], gains[i], src, tgt, lg, methods=("spearman",), n_perm=199, n_boot=0,
                           seed=i)["spearman"].p_perm
        for i in range(N)
    ])  # fmt: skip
    pair_rate = float(np.mean(pair_p <= 0.05))
    naive_rate = float(np.mean(naive_p <= 0.05))
    assert 0.02 <= pair_rate <= 0.09, pair_rate
    assert naive_rate > 0.25, naive_rate  # the defect this module exists to fix


@pytest.mark.slow
def test_row_unit_permutation_is_calibrated_for_a_language_level_similarity() -> None:
    s, t, lc, src, tgt, lg = _grid()
    N = 200
    rng = np.random.default_rng(7)
    # a similarity with a pair component and a language component: rows of a pair are alike in x as in y
    x = rng.random((N, S, T))[:, s, t] + 0.3 * rng.random((N, s.size))
    gains = _null_gains(rng, N, s, t, lc)
    res = [clustered_correlations(x[i], gains[i], src, tgt, lg, methods=("pearson",), n_perm=199, n_boot=0, seed=i)
           for i in range(N)]  # fmt: skip
    assert {r["pearson"].unit for r in res} == {"row"}
    rate = float(np.mean([_v(r["pearson"].p_perm) <= 0.05 for r in res]))
    assert 0.02 <= rate <= 0.09, rate


def test_a_planted_slope_is_found() -> None:
    s, t, lc, src, tgt, lg = _grid()
    N = 40
    rng = np.random.default_rng(3)
    sim = rng.random((N, S, T))
    gains = 2.0 * sim[:, s, t] + 0.5 * rng.normal(size=(N, S, T))[:, s, t] + 0.3 * rng.normal(size=(N, s.size))
    res = [clustered_correlations(sim[i][s, t], gains[i], src, tgt, lg, methods=("pearson", "spearman"),
                                  n_perm=199, n_boot=0, seed=i) for i in range(N)]  # fmt: skip
    for method in ("pearson", "spearman"):
        assert np.mean([_v(r[method].p_perm) <= 0.05 for r in res]) >= 0.9


# --------------------------------------------------------------------------------------------------
# family questions
# --------------------------------------------------------------------------------------------------

FAMILY_OF = np.array(["A"] * 4 + ["B"] * 4 + ["C"] * 4)  # languages l00..l11 in three families of four


def _family_data(rng: np.random.Generator, N: int, slopes: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """(N, n) pair-level similarity and gains whose slope on similarity is ``slopes[f]`` in family f."""
    s, t, lc, src, tgt, lg = _grid()
    sim = rng.random((N, S, T))[:, s, t]
    slope = np.asarray(slopes)[np.searchsorted(["A", "B", "C"], FAMILY_OF)][lc]
    gains = slope * sim + _null_gains(rng, N, s, t, lc)
    return sim, gains, src, tgt, lg, FAMILY_OF[lc]


@pytest.mark.slow
def test_family_permutation_test_is_calibrated_under_equal_slopes() -> None:
    rng = np.random.default_rng(11)
    N = 100
    sim, gains, src, tgt, lg, fam = _family_data(rng, N, (0.5, 0.5, 0.5))
    p = np.array([family_slopes_permutation(sim[i], gains[i], src, tgt, lg, fam, n_perm=199, seed=i).p_perm
                  for i in range(N)])  # fmt: skip
    rate = float(np.mean(p <= 0.05))
    assert 0.01 <= rate <= 0.11, rate


@pytest.mark.slow
def test_a_planted_family_difference_is_found_by_both_family_tests() -> None:
    rng = np.random.default_rng(5)
    N = 20
    sim, gains, src, tgt, lg, fam = _family_data(rng, N, (3.0, 0.0, 0.0))
    p = [family_slopes_permutation(sim[i], gains[i], src, tgt, lg, fam, n_perm=199, seed=i).p_perm for i in range(N)]
    assert np.mean(np.array(p) <= 0.05) >= 0.8
    test = family_slopes_permutation(sim[0], gains[0], src, tgt, lg, fam, n_perm=199)
    slopes = {f.family: f for f in test.families}
    assert _v(slopes["A"].slope) > _v(slopes["B"].slope) and _v(slopes["A"].slope) > _v(slopes["C"].slope)
    assert slopes["A"].slope_p_holm is not None and slopes["A"].slope_p_holm <= 0.05
    mm = family_mixed_model(sim[0], gains[0], src, tgt, lg, fam)
    assert mm.df == 2 and mm.p_value < 0.01
    mixed = {f.family: f for f in mm.families}
    assert _v(mixed["A"].ci_low) > _v(mixed["B"].slope)


@pytest.mark.slow
def test_no_family_difference_where_none_is_planted_in_the_mixed_model() -> None:
    rng = np.random.default_rng(17)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 8, (0.5, 0.5, 0.5))
    p = np.array([family_mixed_model(sim[i], gains[i], src, tgt, lg, fam).p_value for i in range(8)])
    assert p[0] > 0.05
    assert np.mean(p <= 0.05) <= 0.25  # at most 2 of 8 by chance


@pytest.mark.slow
def test_mixed_model_matches_a_hand_built_statsmodels_fit() -> None:
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(23)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 1, (1.0, 0.0, -0.5))
    ours = family_mixed_model(sim[0], gains[0], src, tgt, lg, fam)
    df = pd.DataFrame({"gain": gains[0], "sim": sim[0], "family": fam, "source": src, "target": tgt, "lang": lg})
    vc = {"pair": "0 + C(source)", "tlang": "0 + C(lang)"}
    full = smf.mixedlm("gain ~ sim * C(family)", df, groups="target", re_formula="1", vc_formula=vc).fit(
        reml=False, method=["lbfgs", "bfgs", "cg"]
    )
    reduced = smf.mixedlm("gain ~ sim + C(family)", df, groups="target", re_formula="1", vc_formula=vc).fit(
        reml=False, method=["lbfgs", "bfgs", "cg"]
    )
    assert ours.llf_full == pytest.approx(full.llf, rel=1e-7)
    assert ours.llf_reduced == pytest.approx(reduced.llf, rel=1e-7)
    for name, value in ours.fixed_effects.items():
        assert value == pytest.approx(float(full.fe_params[name]), abs=1e-5), name
    cov = full.cov_params()
    b = full.fe_params
    slope_b = b["sim"] + b["sim:C(family)[T.B]"]
    se_b = math.sqrt(cov.loc["sim", "sim"] + cov.loc["sim:C(family)[T.B]", "sim:C(family)[T.B]"]
                     + 2 * cov.loc["sim", "sim:C(family)[T.B]"])  # fmt: skip
    fam_b = next(f for f in ours.families if f.family == "B")
    assert fam_b.slope == pytest.approx(slope_b, abs=1e-5) and fam_b.se == pytest.approx(se_b, rel=1e-3)
    assert ours.variance_components["pair"] == pytest.approx(float(full.vcomp[0]), rel=1e-4)
    # Pair and target-language effects nested in target groups are the crossed model with a target intercept.
    df["pair_id"] = df["source"] + "|" + df["target"]
    df["tl_id"] = df["target"] + "|" + df["lang"]
    crossed_vc = {"target": "0 + C(target)", "pair": "0 + C(pair_id)", "tlang": "0 + C(tl_id)"}
    crossed = smf.mixedlm("gain ~ sim * C(family)", df, groups=np.ones(len(df)), re_formula="0",
                          vc_formula=crossed_vc).fit(reml=False, method=["lbfgs", "bfgs", "cg"])  # fmt: skip
    assert ours.llf_full == pytest.approx(crossed.llf, abs=1e-3)
    assert json.loads(json.dumps(ours.to_dict()))["df"] == 2


@pytest.mark.slow
def test_small_families_are_flagged_with_their_detectable_effect_and_never_compared() -> None:
    rng = np.random.default_rng(2)
    s, t, lc, src, tgt, lg = _grid()
    families = np.array(["A"] * 5 + ["B"] * 6 + ["Isolate"])[lc]  # one language in its own family
    sim = rng.random((S, T))[s, t]
    gains = _null_gains(rng, 1, s, t, lc)[0]
    test = family_slopes_permutation(sim, gains, src, tgt, lg, families, n_perm=99)
    by_name = {f.family: f for f in test.families}
    iso = by_name["Isolate"]
    assert not iso.eligible and iso.slope is None and iso.slope_p is None
    assert iso.n_languages == 1 and iso.n_pairs == S * T
    assert iso.mde_r == pytest.approx(math.tanh((1.959963985 + 0.841621234) / math.sqrt(S * T - 3)), rel=1e-6)
    assert test.n_eligible == 2 and by_name["A"].eligible and by_name["A"].slope is not None
    mm = family_mixed_model(sim, gains, src, tgt, lg, families)
    assert mm.df == 1 and mm.n == S * T * 11
    assert min_detectable_r(3) is None and min_detectable_r(4) == pytest.approx(math.tanh(2.8015852))
    with pytest.raises(UsageError, match=r"two families with ≥ 6 languages; found: A \(5\), B \(6\), Isolate \(1\)"):
        family_slopes_permutation(sim, gains, src, tgt, lg, families, min_languages=6)
    with pytest.raises(UsageError) as info:
        family_mixed_model(sim, gains, src, tgt, lg, families, min_languages=6)
    assert info.value.hint and "--min-languages" in info.value.hint


def test_family_permutation_p_value_is_exact_for_few_reassignments() -> None:
    rng = np.random.default_rng(9)
    s, t, lc, src, tgt, lg = _grid(4, 2, 6)
    families = np.array(["A"] * 3 + ["B"] * 3)[lc]
    sim = rng.random((4, 2))[s, t]
    gains = _null_gains(rng, 1, s, t, lc)[0] + np.where(families == "A", 1.0, 0.0) * sim
    test = family_slopes_permutation(sim, gains, src, tgt, lg, families, n_perm=1000)
    assert test.perm_exact and test.n_perm == math.comb(6, 3)
    # brute force: every split of the six languages into two families of three, slopes by numpy's least squares
    G = np.zeros((8, 6))
    G[s * 2 + t, lc] = gains
    xp = np.zeros(8)
    xp[s * 2 + t] = sim

    def spread(members: tuple[int, ...]) -> float:
        rest = tuple(i for i in range(6) if i not in members)
        b = [np.polyfit(xp, G[:, list(g)].mean(axis=1), 1)[0] for g in (members, rest)]
        return float(3 * (b[0] - np.mean(b)) ** 2 + 3 * (b[1] - np.mean(b)) ** 2)

    observed = spread((0, 1, 2))
    assert test.statistic == pytest.approx(observed, rel=1e-9)
    values = [spread(c) for c in itertools.combinations(range(6), 3)]
    assert test.p_perm == pytest.approx(np.mean([v >= observed - 1e-12 for v in values]))


def test_family_slopes_with_missing_rows_are_least_squares_slopes_of_family_pair_means() -> None:
    rng = np.random.default_rng(1)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 1, (1.0, 0.0, 0.5))
    keep = rng.random(sim[0].size) > 0.2  # unbalanced: the general (matrix product) path
    x, y, src, tgt, lg, fam = sim[0][keep], gains[0][keep], src[keep], tgt[keep], lg[keep], fam[keep]
    test = family_slopes_permutation(x, y, src, tgt, lg, fam, n_perm=99)
    for f in test.families:
        rows = fam == f.family
        pair = np.unique(np.char.add(np.char.add(src[rows], "|"), tgt[rows]), return_inverse=True)[1].reshape(-1)
        px = np.bincount(pair, weights=x[rows]) / np.bincount(pair)
        py = np.bincount(pair, weights=y[rows]) / np.bincount(pair)
        assert f.n_pairs == px.size and f.slope == pytest.approx(np.polyfit(px, py, 1)[0], rel=1e-9)


@pytest.mark.slow
def test_family_slope_p_values_are_the_per_family_pair_level_pearson_p_values() -> None:
    rng = np.random.default_rng(4)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 1, (1.0, 0.0, 0.5))
    test = family_slopes_permutation(sim[0], gains[0], src, tgt, lg, fam, n_perm=499, seed=3)
    per = family_correlations(sim[0], gains[0], src, tgt, lg, fam, methods=("pearson",), n_perm=499, n_boot=0, seed=3)
    statsmodels = pytest.importorskip("statsmodels.stats.multitest")
    raw = [f.slope_p for f in test.families]
    assert raw == [per[f.family]["pearson"].p_perm for f in test.families]
    holm = statsmodels.multipletests(raw, method="holm")[1]
    assert [f.slope_p_holm for f in test.families] == pytest.approx(list(holm))


def test_family_errors_name_the_problem() -> None:
    s, t, lc, src, tgt, lg = _grid(3, 2, 4)
    x = np.repeat(np.arange(6.0), 4)
    bad = np.array(["A", "A", "B", "B"])[lc]
    bad[0] = "B"  # language l00 in two families
    with pytest.raises(InputError, match="two families"):
        family_slopes_permutation(x, x, src, tgt, lg, bad)


# --------------------------------------------------------------------------------------------------
# permutation blocks
# --------------------------------------------------------------------------------------------------


def test_stratified_permutations_never_move_a_value_across_targets() -> None:
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 5, size=40)  # unsorted, unequal strata
    blocks, count, exact = stratified_permutation_blocks(strata, 3000, rng, rows=256)
    seen = 0
    first_moves = np.zeros((40, 40))
    for P in blocks:
        assert (np.sort(P, axis=1) == np.arange(40)).all()  # each row is a permutation
        assert (strata[P] == strata[None, :]).all()  # and never leaves a stratum
        np.add.at(first_moves, (np.broadcast_to(np.arange(40), P.shape), P), 1)
        seen += P.shape[0]
    assert (seen, count, exact) == (3000, 3000, False)
    # uniform within a stratum: position i takes each member of its stratum about equally often
    for k in np.unique(strata):
        members = np.flatnonzero(strata == k)
        cell = first_moves[np.ix_(members, members)]
        assert cell.sum() == 3000 * members.size
        assert np.allclose(cell / 3000, 1 / members.size, atol=0.05)


def test_few_stratified_permutations_are_enumerated_and_give_the_exact_p_value() -> None:
    strata = np.array([0, 0, 0, 1, 1])
    blocks, count, exact = stratified_permutation_blocks(strata, 100, np.random.default_rng(0))
    rows = np.concatenate(list(blocks))
    assert exact and count == 12 and len({tuple(r) for r in rows}) == 12
    assert (rows[0] == np.arange(5)).all()


XS = np.array([0.3, 0.1, 0.9, 0.5, 0.7, 0.2, 0.65, 0.45, 0.05])
YS = np.array([1.0, 0.2, 2.0, 0.1, 0.8, 0.5, 1.4, 0.3, 0.9])


@pytest.mark.parametrize(
    "x, y",
    [
        (XS, YS),  # no ties: Kendall by the bitset sweep
        (np.round(XS * 3), YS),  # ties in x only: tie groups in the sweep
        (XS, np.round(YS * 2)),  # ties in y only: one Knight count per permutation
        (np.round(XS * 3), np.round(YS * 2)),  # ties in both: the pairs tied in both change
    ],
)
def test_exact_stratified_p_values_match_brute_force(x: np.ndarray, y: np.ndarray) -> None:
    # nine pairs in three targets with 3 sources each, one language: 3!³ = 216 permutations
    tk = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    src = np.array([f"s{i}" for i in range(9)])
    tgt = np.array([f"t{k}" for k in tk])
    res = clustered_correlations(x, y, src, tgt, np.full(9, "de"), n_perm=1000, n_boot=0)
    members = [np.flatnonzero(tk == k) for k in range(3)]
    values: dict[str, list[float]] = {m: [] for m in ("pearson", "spearman", "kendall")}
    for perms in itertools.product(*(itertools.permutations(g) for g in members)):
        yy = y.copy()
        for g, p in zip(members, perms, strict=True):
            yy[g] = y[list(p)]
        values["pearson"].append(abs(scipy.stats.pearsonr(x, yy).statistic))
        values["spearman"].append(abs(scipy.stats.spearmanr(x, yy).statistic))
        values["kendall"].append(abs(scipy.stats.kendalltau(x, yy).statistic))
    for method, v in values.items():
        r = res[method]
        assert r.perm_exact and r.n_perm == 216
        assert r.p_perm == pytest.approx(np.mean(np.array(v) >= abs(_v(r.value)) - 1e-12)), method


def test_row_unit_moves_all_language_rows_of_a_pair_together() -> None:
    s, t, lc, src, tgt, lg = _grid(4, 3, 5)
    rng = np.random.default_rng(1)
    x = rng.random(s.size)
    design = inf._design(x, rng.random(s.size), src, tgt, lg)
    points = inf._points(design, "row")
    strata = inf._strata(design, "row")
    pair_blocks, _, _ = stratified_permutation_blocks(strata, 200, rng)
    # where does each sorted point's partner come from? (pair, language) of the partner vs of the point
    for P in inf._point_permutations(points, pair_blocks):
        partner_pair = points.pt_pair[P]
        partner_lang = points.pt_lang[P]
        assert (partner_lang == points.pt_lang[None, :]).all()  # the same language: its baseline stays
        assert (design.pair_t[partner_pair] == design.pair_t[points.pt_pair][None, :]).all()  # the same target
        for p in range(design.n_pairs):  # all rows of pair p take their partners from one single pair
            rows = points.pt_pair == p
            assert (partner_pair[:, rows] == partner_pair[:, rows][:, :1]).all()


def test_row_unit_only_swaps_sources_measured_on_the_same_languages() -> None:
    s, t, lc, src, tgt, lg = _grid(4, 2, 3)
    keep = ~((s == 3) & (t == 0) & (lc == 2))  # source s3 of target t0 lacks one language
    rng = np.random.default_rng(2)
    design = inf._design(rng.random(keep.sum()), rng.random(keep.sum()), src[keep], tgt[keep], lg[keep])
    strata = inf._strata(design, "row")
    odd = next(p for p in range(design.n_pairs) if design.pair_s[p] == 3 and design.pair_t[p] == 0)
    assert np.count_nonzero(strata == strata[odd]) == 1  # it stays in place
    res = clustered_correlations(design.x, design.y, src[keep], tgt[keep], lg[keep], unit="row", n_perm=200,
                                 n_boot=0)  # fmt: skip
    assert res["pearson"].perm_exact and res["pearson"].n_perm == 6 * 24  # 3! in t0 (s3 stays), 4! in t1
    # too few distinct permutations for a small p-value: said, not hidden
    s2, t2, l2, src2, tgt2, lg2 = _grid(2, 1, 3)
    tiny = clustered_correlations(rng.random(6), rng.random(6), src2, tgt2, lg2, unit="row", n_boot=0)["pearson"]
    assert tiny.perm_exact and tiny.n_perm == 2 and tiny.p_perm is not None and tiny.p_perm >= 0.5
    assert tiny.reason == "only 2 distinct permutations: no p-value below 0.5 is possible"


def test_bitset_discordant_count_matches_knights_count() -> None:
    rng = np.random.default_rng(5)
    for m, ties in ((70, False), (130, True)):
        x = np.sort(rng.integers(0, 30, m) if ties else rng.random(m))
        dx = np.unique(x, return_inverse=True)[1].reshape(-1)
        ends = (np.flatnonzero(np.diff(dx)) + 1).tolist() + [m]
        V = np.argsort(rng.random((50, m)), axis=1)
        ours = inf._discordant_rows(V, ends)
        ref = [stats._discordant(dx + 1, row + 1) for row in V]
        assert ours.tolist() == ref


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_resample_statistics_equal_scipy_on_the_expanded_resample(ties: bool) -> None:
    rng = np.random.default_rng(8)
    m = 30
    x = np.sort(np.round(rng.random(m) * 6) if ties else rng.random(m))
    y = np.round(rng.random(m) * 5) if ties else rng.random(m)
    prep = inf._Prepared.build(x, y)
    W = stats._row_counts(rng.integers(0, m, size=(6, m)), m).astype(np.float64)
    K = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    Y = rng.random((6, m))
    for given_K in (K, None):
        got = inf._weighted_statistics(prep, ("pearson", "spearman", "kendall"), W, None, given_K)
        varying = inf._weighted_statistics(prep, ("pearson", "spearman", "kendall"), W, Y, None)
        for i in range(6):
            idx = np.repeat(np.arange(m), W[i].astype(int))
            for method, fn in (("pearson", scipy.stats.pearsonr), ("spearman", scipy.stats.spearmanr),
                               ("kendall", scipy.stats.kendalltau)):  # fmt: skip
                assert got[method][i] == pytest.approx(fn(x[idx], y[idx]).statistic, abs=1e-10)
                assert varying[method][i] == pytest.approx(fn(x[idx], Y[i, idx]).statistic, abs=1e-10)


def test_a_resample_whose_y_is_constant_but_for_the_last_bit_is_dropped_without_a_warning() -> None:
    """Two gains one ulp apart are distinct values, so a resample of only those passes the constant-y check; its
    Pearson r would be rounding noise (and a division by zero): it is dropped from every method instead."""
    x = np.array([-0.4, -0.1, 0.2, 0.3])
    y = np.array([1.0, np.nextafter(1.8, 2.0), 1.8, -3.0])
    prep = inf._Prepared.build(x, y)
    W = np.array([[0.0, 1.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = inf._weighted_statistics(prep, ("pearson", "spearman", "kendall"), W, None, None)
    assert {method: v.size for method, v in got.items()} == {"pearson": 1, "spearman": 1, "kendall": 1}
    assert got["pearson"][0] == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("unit", ["pair", "row"])
def test_two_way_and_cluster_bootstraps_give_intervals(unit: str) -> None:
    s, t, lc, src, tgt, lg = _grid()
    rng = np.random.default_rng(12)
    sim = rng.random((S, T))[s, t] + (0.2 * rng.random(s.size) if unit == "row" else 0.0)
    gains = 1.5 * sim + _null_gains(rng, 1, s, t, lc)[0]
    for bootstrap in ("cluster", "two-way"):
        res = clustered_correlations(sim, gains, src, tgt, lg, n_perm=0, n_boot=300, bootstrap=bootstrap)
        for r in res.values():
            assert r.unit == unit and r.bootstrap == bootstrap and r.n_boot_used > 250
            assert _v(r.ci_low) < _v(r.value) < _v(r.ci_high)
            assert r.p_perm is None and r.n_perm == 0
    # the naive row-level interval is narrower than the clustered one: it counts each training run 12 times
    naive = naive_correlations(sim, gains, src, tgt, lg, methods=("pearson",), n_perm=0, n_boot=300)["pearson"]
    clustered = clustered_correlations(sim, gains, src, tgt, lg, methods=("pearson",), n_perm=0, n_boot=300,
                                       unit="row")["pearson"]  # fmt: skip
    assert naive.unit == "naive" and clustered.value == pytest.approx(naive.value)
    assert _v(naive.ci_high) - _v(naive.ci_low) < _v(clustered.ci_high) - _v(clustered.ci_low)


# --------------------------------------------------------------------------------------------------
# results, units and errors
# --------------------------------------------------------------------------------------------------


def test_a_group_below_min_n_has_no_value_and_says_why() -> None:
    s, t, lc, src, tgt, lg = _grid(3, 1, 4)  # three pairs
    x = np.array([0.1, 0.5, 0.9])[s]
    y = np.array([0.0, 1.0, 2.0])[s] + 0.01 * lc
    res = clustered_correlations(x, y, src, tgt, lg)
    for r in res.values():
        assert r.n == 3 and r.value is None and r.p_perm is None and r.ci_low is None
        assert r.reason == "too small: n=3 < 5"
    assert clustered_correlations(x, y, src, tgt, lg, min_n=3)["spearman"].value == pytest.approx(1.0)
    naive = naive_correlations(x[:4], y[:4], src[:4], tgt[:4], lg[:4])["pearson"]
    assert naive.value is None and naive.reason == "too small: n=4 < 5"


def test_nothing_to_permute_is_said() -> None:
    s, t, lc, src, tgt, lg = _grid(1, 6, 3)  # one source per target
    x = np.arange(6.0)[t]
    y = np.arange(6.0)[t] ** 2 + 0.1 * lc
    r = clustered_correlations(x, y, src, tgt, lg, n_boot=0)["spearman"]
    assert r.value == pytest.approx(1.0) and r.p_perm is None
    assert r.reason == "nothing to permute: no target has two sources"


def test_unit_is_detected_and_a_pair_unit_refuses_a_language_level_similarity() -> None:
    s, t, lc, src, tgt, lg = _grid()
    rng = np.random.default_rng(0)
    pair_x = rng.random((S, T))[s, t]
    row_x = pair_x + 0.01 * rng.random(s.size)
    y = rng.random(s.size)
    kw: dict[str, Any] = dict(methods=("pearson",), n_perm=19, n_boot=0)
    r = clustered_correlations(pair_x, y, src, tgt, lg, **kw)["pearson"]
    assert (r.unit, r.n, r.n_clusters, r.n_sources, r.n_targets, r.n_languages) == ("pair", 24, 24, S, T, L)
    assert r.permutation == "within-target sources"
    assert clustered_correlations(row_x, y, src, tgt, lg, **kw)["pearson"].unit == "row"
    assert clustered_correlations(pair_x, y, src, tgt, lg, unit="row", **kw)["pearson"].n == S * T * L
    with pytest.raises(UsageError, match="constant within each"):
        clustered_correlations(row_x, y, src, tgt, lg, unit="pair", **kw)
    with pytest.raises(UsageError):
        clustered_correlations(pair_x, y, src, tgt, lg, unit="cell", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        clustered_correlations(pair_x, y, src, tgt, lg, bootstrap="wild", **kw)  # type: ignore[arg-type]


def test_pair_points_are_pair_means() -> None:
    s, t, lc, src, tgt, lg = _grid()
    rng = np.random.default_rng(6)
    x = rng.random((S, T))[s, t]
    y = rng.random(s.size)
    r = clustered_correlations(x, y, src, tgt, lg, methods=("spearman",), n_perm=0, n_boot=0)["spearman"]
    xp = np.zeros((S, T))
    yp = np.zeros((S, T))
    np.add.at(yp, (s, t), y / L)
    xp[s, t] = x
    ref = scipy.stats.spearmanr(xp.ravel(), yp.ravel())
    assert r.value == pytest.approx(ref.statistic) and r.p_analytic == pytest.approx(ref.pvalue)


def test_repeated_triples_are_refused_with_a_hint() -> None:
    s, t, lc, src, tgt, lg = _grid(2, 2, 2)
    src[1] = src[0]
    lg[1] = lg[0]
    with pytest.raises(InputError) as info:
        clustered_correlations(np.arange(8.0), np.arange(8.0), src, tgt, lg)
    assert "repeated (source, target, language)" in info.value.message and info.value.hint


def test_naive_correlations_are_stats_correlations_labelled_naive() -> None:
    s, t, lc, src, tgt, lg = _grid()
    rng = np.random.default_rng(1)
    x, y = rng.random(s.size), rng.random(s.size)
    naive = naive_correlations(x, y, src, tgt, lg, n_perm=99, n_boot=50, seed=4)
    ref = stats.correlations(x, y, ("pearson", "spearman"), n_perm=99, n_boot=50, seed=4)
    for method in ("pearson", "spearman"):
        assert naive[method].unit == "naive" and naive[method].p_perm == ref[method].p_perm
        assert naive[method].ci_low == ref[method].ci_low
    kendall = naive["kendall"]
    assert kendall.p_perm is None and kendall.n_perm == 0 and kendall.p_analytic is not None


# Which processes computed which families: the forked worker inherits the spy and this log's path.
_CALLS: dict[str, Any] = {"log": None, "original": inf._analyse_groups}


def _spy_analyse_groups(groups: Any, options: dict[str, Any]) -> list[dict[str, Any]]:
    with open(_CALLS["log"], "a") as log:
        log.write(f"{os.getpid()} {len(groups)}\n")
    return _CALLS["original"](groups, options)


def _calls(log: Path) -> list[tuple[int, int]]:
    calls = [tuple(int(v) for v in line.split()) for line in log.read_text().splitlines()]
    log.write_text("")
    return calls  # type: ignore[return-value]


def test_family_correlations_use_family_pair_means_and_are_the_same_in_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(13)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 1, (1.0, 0.0, 0.5))
    kw: dict[str, Any] = dict(methods=("pearson", "spearman", "kendall"), n_perm=99, n_boot=99, seed=2)
    log = tmp_path / "calls"
    log.write_text("")
    monkeypatch.setitem(_CALLS, "log", log)
    monkeypatch.setattr(inf, "_analyse_groups", _spy_analyse_groups)
    serial = family_correlations(sim[0], gains[0], src, tgt, lg, fam, parallel=False, **kw)
    assert _calls(log) == [(os.getpid(), 3)]  # all three families here
    forked = family_correlations(sim[0], gains[0], src, tgt, lg, fam, parallel=True, **kw)
    calls = _calls(log)
    # a share of the families really was computed in another process (whatever the number of CPUs)
    pids = {pid for pid, _ in calls}
    assert sorted(n for _, n in calls) == [1, 2] and len(pids) == 2 and os.getpid() in pids, calls
    assert serial == forked and list(serial) == ["A", "B", "C"]
    # the equality is not that of numbers the draws do not touch: another seed moves every family's p and CI
    other = family_correlations(sim[0], gains[0], src, tgt, lg, fam, parallel=False, **{**kw, "seed": 3})
    for family in ("A", "B", "C"):
        a, b = serial[family]["pearson"], other[family]["pearson"]
        assert a.value == b.value and (a.p_perm, a.ci_low, a.ci_high) != (b.p_perm, b.ci_low, b.ci_high), family
    # left to decide (parallel=None), it forks on more than one CPU and not on one, with the same results
    monkeypatch.setattr(stats, "PARALLEL_MIN_WORK", 0)
    for cpus, processes in ((2, 2), (1, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        _calls(log)
        assert family_correlations(sim[0], gains[0], src, tgt, lg, fam, **kw) == serial
        assert len({pid for pid, _ in _calls(log)}) == processes, cpus
    monkeypatch.undo()
    only_a = fam == "A"
    alone = clustered_correlations(sim[0][only_a], gains[0][only_a], src[only_a], tgt[only_a], lg[only_a], **kw)
    assert serial["A"] == alone  # a family's result depends on its rows and the seed only
    assert serial["A"]["pearson"].n == S * T
    with_all = family_correlations(sim[0], gains[0], src, tgt, lg, fam, overall=True, **kw)
    assert list(with_all) == [None, "A", "B", "C"] and with_all["B"] == serial["B"]
    assert with_all[None] == clustered_correlations(sim[0], gains[0], src, tgt, lg, **kw)


def test_results_are_json_able() -> None:
    rng = np.random.default_rng(3)
    sim, gains, src, tgt, lg, fam = _family_data(rng, 1, (1.0, 0.0, 0.5))
    res = clustered_correlations(sim[0], gains[0], src, tgt, lg, n_perm=19, n_boot=19)
    test = family_slopes_permutation(sim[0], gains[0], src, tgt, lg, fam, n_perm=19)
    for d in [r.to_dict() for r in res.values()] + [test.to_dict()]:
        assert json.loads(json.dumps(d)) == d
    assert set(res["kendall"].to_dict()) >= {"method", "unit", "n", "n_clusters", "value", "p_perm", "permutation",
                                             "ci_low", "ci_high", "bootstrap", "n_boot_used", "reason"}  # fmt: skip
    assert isinstance(test.to_dict()["families"][0]["languages"], list)


@pytest.mark.slow
def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for p in ([0.01, 0.04, 0.03, 0.5], [0.2, 0.2, 0.01], list(rng.random(7) ** 3), [0.6, 0.9]):
        assert inf._holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]), abs=1e-15)


def test_cluster_resamples_stay_within_their_target() -> None:
    """Every cluster resample draws each target's pairs from that target only, as many as it has."""
    strata = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2], dtype=np.intp)
    draws = inf._Draws(np.random.SeedSequence(0))
    blocks = list(draws.resamples((strata.size,), 500, 100, strata))
    counts = np.vstack([block[0] for block in blocks])
    assert counts.shape == (500, strata.size)
    for t in range(3):
        assert np.all(counts[:, strata == t].sum(axis=1) == np.sum(strata == t))
    assert counts[:, strata == 1].std() > 0  # they do resample
