"""Correlations with analytic and permutation p-values and bootstrap intervals (xl.core.stats)."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from xl.core import stats
from xl.core.stats import METHODS, correlation, correlations, correlations_by_group
from xl.errors import InputError, ShapeError, UsageError

SCIPY = {
    "pearson": scipy.stats.pearsonr,
    "spearman": scipy.stats.spearmanr,
    "kendall": scipy.stats.kendalltau,
}


def _pair(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = 0.4 * x + rng.standard_normal(n)
    if ties:  # coarse values: many ties in x and in y
        x, y = np.round(x), np.round(2 * y) / 2
    return x, y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_analytic_p_values_are_scipys(seed: int, ties: bool) -> None:
    x, y = _pair(40, seed, ties)
    res = correlations(x, y, n_perm=0, n_boot=0)
    assert list(res) == list(METHODS)
    for method, r in res.items():
        ref = SCIPY[method](x, y)
        assert r.n == 40 and r.reason is None
        assert r.value == pytest.approx(float(ref.statistic), abs=1e-12)
        assert r.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
        assert r.p_perm is None and r.n_perm == 0 and r.ci_low is None and r.n_boot_used == 0


@pytest.mark.parametrize(
    "xy",
    [
        _pair(5, 11, ties=True),
        _pair(6, 11, ties=True),
        # ties in y only (Kendall needs no joint-tie count), then heavy ties in x and y, where some
        # permutations pair x-ties with y-ties (Kendall's joint ties change with the permutation)
        (np.array([3.0, 0, 5, 1, 4, 2]), np.array([0.0, 0, 1, 1, 2, 3])),
        (np.array([0.0, 0, 0, 1, 1, 2]), np.array([0.0, 1, 1, 1, 2, 2])),
        (np.array([0.0, 0, 1, 1, 2, 2]), np.array([0.0, 0, 1, 1, 2, 2])),
    ],
)
@pytest.mark.slow
def test_exhaustive_permutation_p_value_matches_brute_force(xy: tuple[np.ndarray, np.ndarray]) -> None:
    # n! <= n_perm: every permutation is used and p = count / n!, here checked against scipy on each one.
    x, y = xy
    n = x.size
    res = correlations(x, y, n_perm=math.factorial(n), n_boot=0)
    for method, r in res.items():
        observed = abs(float(SCIPY[method](x, y).statistic))
        count = sum(
            abs(float(SCIPY[method](x, y[list(p)]).statistic)) >= observed - 1e-12
            for p in itertools.permutations(range(n))
        )
        assert r.perm_exact and r.n_perm == math.factorial(n)
        assert r.p_perm == pytest.approx(count / math.factorial(n)), method


@pytest.mark.parametrize("ties", [False, True])
def test_monte_carlo_permutation_p_value_agrees_with_the_exact_one(ties: bool) -> None:
    # 7! = 5040 permutations: 4000 random ones (Monte Carlo path, incl. Kendall with ties in x and y)
    # must land within 5 standard errors of the exhaustive p-value.
    x, y = _pair(7, 5, ties)
    exact = correlations(x, y, n_perm=5040, n_boot=0)
    mc = correlations(x, y, n_perm=4000, n_boot=0, seed=3)
    for method in METHODS:
        p = exact[method].p_perm
        assert p is not None and exact[method].perm_exact
        assert not mc[method].perm_exact and mc[method].n_perm == 4000
        se = math.sqrt(p * (1 - p) / 4000) + 1 / 4001
        assert mc[method].p_perm == pytest.approx(p, abs=5 * se)


def test_perfect_monotone_relation_has_a_tiny_permutation_p_value() -> None:
    x = np.arange(30.0)
    y = np.exp(x / 5)  # monotone, not linear
    res = correlations(x, y, n_perm=999, n_boot=0)
    for r in res.values():
        # only the identity could tie the observed statistic; no random permutation reaches it
        assert r.p_perm is not None and r.p_perm < 0.01
        assert r.p_perm == pytest.approx(1 / 1000)


@pytest.mark.slow
def test_permutation_p_values_are_roughly_uniform_under_the_null() -> None:
    # 200 independent null samples (x and y unrelated): about 5% of p-values below 0.05, mean about 1/2,
    # and the permutation p-value tracks the analytic one.
    perm: dict[str, list[float]] = {m: [] for m in METHODS}
    analytic: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        x, y = rng.standard_normal(20), rng.standard_normal(20)
        for m, r in correlations(x, y, n_perm=199, n_boot=0, seed=seed).items():
            assert r.p_perm is not None and r.p_value is not None
            perm[m].append(r.p_perm)
            analytic[m].append(r.p_value)
    for m in METHODS:
        p = np.array(perm[m])
        # Binomial(200, 0.05): mean 10, sd 3.1 -> [1, 22] is beyond 3 sd on the low side and ~4 sd above
        assert 1 <= np.count_nonzero(p <= 0.05) <= 22, m
        assert 0.42 <= p.mean() <= 0.58, m
        assert np.corrcoef(p, analytic[m])[0, 1] > 0.95, m


@pytest.mark.slow
def test_kendall_fallback_without_scipys_helper_gives_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = _pair(25, 4, ties=True)
    fast = correlation(x, y, "kendall", n_perm=300, n_boot=200, seed=9)
    monkeypatch.setattr(stats, "_discordant", stats._discordant_fallback)
    slow = correlation(x, y, "kendall", n_perm=300, n_boot=200, seed=9)
    assert fast == slow


def test_resample_statistics_match_scipy_on_each_resample() -> None:
    x, y = _pair(30, 8, ties=True)
    sample = stats._Sample.build(x, y)
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    idx = np.sort(np.random.default_rng(0).integers(0, 30, size=(50, 30)), axis=1).astype(np.intp)
    got = stats._resample_statistics(sample, METHODS, idx)
    keep = [i for i in range(50) if np.ptp(xs[idx[i]]) > 0 and np.ptp(ys[idx[i]]) > 0]
    for m in METHODS:
        want = [float(SCIPY[m](xs[idx[i]], ys[idx[i]]).statistic) for i in keep]
        np.testing.assert_allclose(got[m], want, atol=1e-12)


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible() -> None:
    x, y = _pair(60, 3)
    a = correlations(x, y, n_perm=0, n_boot=500, seed=7)
    b = correlations(x, y, n_perm=0, n_boot=500, seed=7)
    c = correlations(x, y, n_perm=0, n_boot=500, seed=8)
    assert a == b
    for m, r in a.items():
        assert r.ci_low is not None and r.ci_high is not None and r.value is not None
        assert r.ci_low < r.value < r.ci_high, m
        assert r.n_boot == r.n_boot_used == 500
        assert (r.ci_low, r.ci_high) != (c[m].ci_low, c[m].ci_high)
    wider = correlations(x, y, n_perm=0, n_boot=500, seed=7, ci_level=0.99)
    for m, r in wider.items():
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low <= a[m].ci_low and r.ci_high >= a[m].ci_high  # type: ignore[operator]


def test_degenerate_resamples_are_dropped_and_counted() -> None:
    x = np.array([0.0, 0.0, 0.0, 1.0])  # a resample without the last point has constant x
    y = np.array([0.0, 1.0, 2.0, 3.0])
    res = correlations(x, y, n_perm=0, n_boot=400, seed=1)
    used = {r.n_boot_used for r in res.values()}
    assert len(used) == 1
    (n_used,) = used
    # P(resample contains index 3 and is not all index 3) = 1 - (3/4)^4 - (1/4)^4 = 0.68
    assert 0.55 * 400 < n_used < 0.8 * 400
    for r in res.values():
        assert r.ci_low is not None and r.ci_high is not None
        assert -1.0 <= r.ci_low <= r.ci_high <= 1.0


@pytest.mark.parametrize(
    ("x", "y", "fragment"),
    [
        ([1.0, 2.0], [3.0, 1.0], "n = 2 < 3"),
        ([], [], "n = 0 < 3"),
        ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], "x constant"),
        ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], "y constant"),
    ],
)
def test_too_small_or_constant_samples_give_a_reason_not_a_number(
    x: list[float], y: list[float], fragment: str
) -> None:
    res = correlations(x, y, n_perm=100, n_boot=100)
    for m, r in res.items():
        assert r.value is None and r.p_value is None and r.p_perm is None and r.ci_low is None, m
        assert r.reason is not None and fragment in r.reason
        assert r.n == len(x) and r.n_boot_used == 0
        json.dumps(r.to_dict(), allow_nan=False)


def test_results_are_json_able() -> None:
    x, y = _pair(20, 1)
    for r in correlations(x, y, n_perm=50, n_boot=50).values():
        d = r.to_dict()
        assert json.loads(json.dumps(d, allow_nan=False)) == d
        assert {
            "method",
            "n",
            "value",
            "p_value",
            "p_perm",
            "ci_low",
            "ci_high",
            "n_boot_used",
            "reason",
        } <= set(d)


def test_one_method_alone_gives_the_same_result_as_all_together() -> None:
    x, y = _pair(35, 2, ties=True)
    together = correlations(x, y, n_perm=200, n_boot=200, seed=5)
    for m in METHODS:
        assert correlation(x, y, m, n_perm=200, n_boot=200, seed=5) == together[m]


def test_groups_are_independent_of_each_other() -> None:
    x, y = _pair(90, 6)
    groups = ["a"] * 40 + ["b"] * 45 + ["c"] * 5
    by_group = correlations_by_group(x, y, groups, n_perm=100, n_boot=100, seed=1)
    assert list(by_group) == ["a", "b", "c"]
    assert {g: r["pearson"].n for g, r in by_group.items()} == {"a": 40, "b": 45, "c": 5}
    only_a = correlations_by_group(x[:40], y[:40], groups[:40], n_perm=100, n_boot=100, seed=1)
    assert only_a["a"] == by_group["a"]
    assert by_group["a"]["spearman"].value == pytest.approx(float(scipy.stats.spearmanr(x[:40], y[:40])[0]))


# The processes that computed each part: the forked worker inherits the spy and this log's path.
_PARTS_RUN: dict[str, object] = {"log": None, "original": stats._run_part}


def _spy_run_part(groups, methods, n_perm, n_boot, part):  # type: ignore[no-untyped-def]
    with open(str(_PARTS_RUN["log"]), "a") as log:
        log.write(f"{os.getpid()} {part}\n")
    return _PARTS_RUN["original"](groups, methods, n_perm, n_boot, part)  # type: ignore[operator]


def test_groups_are_the_same_computed_in_a_forked_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _pair(90, 6)
    groups = ["a"] * 40 + ["b"] * 45 + ["c"] * 5
    log = tmp_path / "parts"
    log.write_text("")
    monkeypatch.setitem(_PARTS_RUN, "log", log)
    monkeypatch.setattr(stats, "_run_part", _spy_run_part)

    def parts() -> dict[int, int]:
        """{part: pid} of the calls since the last look."""
        calls = dict(reversed([int(v) for v in line.split()]) for line in log.read_text().splitlines())
        log.write_text("")
        return calls

    kw = dict(n_perm=300, n_boot=200, seed=4, overall=True)
    serial = correlations_by_group(x, y, groups, parallel=False, **kw)  # type: ignore[arg-type]
    assert parts() == {0: os.getpid(), 1: os.getpid()}
    forked = correlations_by_group(x, y, groups, parallel=True, **kw)  # type: ignore[arg-type]
    pids = parts()
    assert pids[0] == os.getpid() and pids[1] != os.getpid()  # the second part really ran in another process
    assert forked == serial and list(serial) == [None, "a", "b", "c"]
    # the draws matter (so the equality above is not that of numbers no draw touches): another seed moves them
    other = correlations_by_group(x, y, groups, parallel=False, **{**kw, "seed": 5})  # type: ignore[arg-type]
    for group in (None, "a", "b"):
        for method in METHODS:
            a, b = serial[group][method], other[group][method]
            assert a.value == b.value and (a.p_perm, a.ci_low, a.ci_high) != (b.p_perm, b.ci_low, b.ci_high)
    # left to decide (parallel=None): forked on two CPUs, not on one, the same results either way
    monkeypatch.setattr(stats, "PARALLEL_MIN_WORK", 0)
    for cpus, forks in ((2, True), (1, False)):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert correlations_by_group(x, y, groups, **kw) == serial  # type: ignore[arg-type]
        assert (parts()[1] != os.getpid()) is forks, cpus


def test_bad_inputs_raise_xl_errors() -> None:
    with pytest.raises(ShapeError):
        correlations([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ShapeError):
        correlations([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(InputError, match="non-finite"):
        correlations([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError):
        correlations(["a", "b", "c"], [1.0, 2.0, 3.0])
    with pytest.raises(UsageError):
        correlations([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ("cosine",))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        correlations([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ci_level=1.0)
    with pytest.raises(UsageError):
        correlations([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], n_perm=-1)
    with pytest.raises(ShapeError):
        correlations_by_group([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ["a", "b"])
