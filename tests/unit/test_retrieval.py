"""Tests of xl.core.retrieval: chunked nn / CSLS / margin retrieval against brute-force full-matrix
implementations written here, the metrics (Tatoeba accuracy, MTEB BitextMining F1, LASER xSIM), the
bootstrap CI, and the error cases. Seeded and small."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from xl.core.retrieval import (
    _topk_rows,
    accuracy,
    bitext_mining_scores,
    bootstrap_ci,
    l2_normalize,
    mean_pair_cosine,
    pair_cosines,
    retrieval_accuracies,
    retrieval_metrics,
    retrieve,
)
from xl.errors import InputError, ShapeError, UsageError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def _noisy_pairs(n_src: int, n_tgt: int, d: int, *, seed: int, noise: float = 1.2) -> tuple[NDArray, NDArray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((max(n_src, n_tgt), d))
    X = (base[:n_src] + noise * rng.standard_normal((n_src, d))).astype(np.float32)
    Y = (base[:n_tgt] + noise * rng.standard_normal((n_tgt, d))).astype(np.float32)
    return X, Y


# -------------------------------------------------------------------------------------------------
# brute force: the whole similarity matrix, straight from the papers
# -------------------------------------------------------------------------------------------------


def _cosines(X: NDArray, Y: NDArray) -> F64:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return Xn.astype(np.float64) @ Yn.astype(np.float64).T


def _mean_topk(S: F64, k: int) -> F64:
    return np.sort(S, axis=1)[:, ::-1][:, :k].mean(axis=1)


def _brute_csls(S: F64, k: int = 10) -> tuple[I64, I64]:
    # Conneau et al. 2018: CSLS(x, y) = 2 cos(x, y) − r_T(x) − r_S(y)
    r_T = _mean_topk(S, k)
    r_S = _mean_topk(S.T, k)
    C = 2 * S - r_T[:, None] - r_S[None, :]
    return C.argmax(axis=1), C.argmax(axis=0)


def _brute_margin(S: F64, k: int = 4) -> tuple[I64, I64]:
    # Artetxe & Schwenk 2019 ratio margin; candidates: the k nearest by cosine (LASER xsim).
    def one_way(S: F64, a_q: F64, a_k: F64) -> I64:
        pred = np.empty(S.shape[0], dtype=np.int64)
        for i in range(S.shape[0]):
            cand = np.argsort(-S[i], kind="stable")[:k]
            margin = [S[i, j] / (a_q[i] / 2 + a_k[j] / 2) for j in cand]
            pred[i] = cand[int(np.argmax(margin))]
        return pred

    a_x, a_y = _mean_topk(S, k), _mean_topk(S.T, k)
    return one_way(S, a_x, a_y), one_way(S.T, a_y, a_x)


@pytest.mark.parametrize("block_rows", [None, 1, 17, 64])
def test_chunked_retrieval_matches_brute_force(block_rows: int | None) -> None:
    X, Y = _noisy_pairs(203, 157, 24, seed=1)
    S = _cosines(X, Y)
    preds = retrieve(X, Y, ("nn", "csls", "margin"), block_rows=block_rows)
    np.testing.assert_array_equal(preds.src2tgt["nn"], S.argmax(axis=1))
    np.testing.assert_array_equal(preds.tgt2src["nn"], S.argmax(axis=0))
    csls_s2t, csls_t2s = _brute_csls(S)
    np.testing.assert_array_equal(preds.src2tgt["csls"], csls_s2t)
    np.testing.assert_array_equal(preds.tgt2src["csls"], csls_t2s)
    margin_s2t, margin_t2s = _brute_margin(S)
    np.testing.assert_array_equal(preds.src2tgt["margin"], margin_s2t)
    np.testing.assert_array_equal(preds.tgt2src["margin"], margin_t2s)
    # the three scorings really differ on this data, so the comparisons above are not vacuous
    assert not np.array_equal(csls_s2t, S.argmax(axis=1))
    assert not np.array_equal(margin_s2t, S.argmax(axis=1))


def test_wide_key_set_uses_grouped_topk_and_still_matches() -> None:
    # 5,300 keys > 4·k·128 columns: the two-stage (group maxima) top-k path.
    X, Y = _noisy_pairs(40, 5300, 8, seed=2)
    S = _cosines(X, Y)
    preds = retrieve(X, Y, ("nn", "csls", "margin"), block_rows=13)
    np.testing.assert_array_equal(preds.src2tgt["nn"], S.argmax(axis=1))
    csls_s2t, csls_t2s = _brute_csls(S)
    np.testing.assert_array_equal(preds.src2tgt["csls"], csls_s2t)
    np.testing.assert_array_equal(preds.tgt2src["csls"], csls_t2s)
    np.testing.assert_array_equal(preds.src2tgt["margin"], _brute_margin(S)[0])


@pytest.mark.parametrize("n_cols", [7, 300, 5000, 5001])
def test_topk_rows_exact_and_tie_order(n_cols: int) -> None:
    rng = np.random.default_rng(3)
    # values on a coarse grid: many exact ties, which must come out lowest index first (like argmax)
    S = rng.integers(0, 40, size=(9, n_cols)).astype(np.float32)
    vals, idx = _topk_rows(S, 5)
    ref = np.argsort(-S, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(S, ref, axis=1))


def test_retrieve_with_more_neighbours_than_rows() -> None:
    X, Y = _noisy_pairs(3, 5, 4, seed=4)
    S = _cosines(X, Y)
    preds = retrieve(X, Y, ("nn", "csls", "margin"))  # k = 10 > 3 and 5 rows: every row is a neighbour
    np.testing.assert_array_equal(preds.src2tgt["nn"], S.argmax(axis=1))
    np.testing.assert_array_equal(preds.src2tgt["csls"], _brute_csls(S, k=3)[0])


def test_margin_and_csls_repair_a_hub() -> None:
    # Target 0 holds a direction every source shares: a hub that attracts the nn queries. CSLS and margin
    # discount a key by its own neighbourhood density and route those queries back to their translations.
    rng = np.random.default_rng(1)
    common = rng.standard_normal(32)
    Z = rng.standard_normal((60, 32))
    X = (0.8 * common + Z).astype(np.float32)
    Y = (Z + 0.8 * rng.standard_normal((60, 32))).astype(np.float32)
    Y[0] = 3 * common + Z[0]
    preds = retrieve(X, Y, ("nn", "csls", "margin"))
    assert int(np.sum(preds.src2tgt["nn"] == 0)) >= 10
    assert accuracy(preds.src2tgt["csls"]) > accuracy(preds.src2tgt["nn"]) + 0.1
    assert accuracy(preds.src2tgt["margin"]) > accuracy(preds.src2tgt["nn"]) + 0.1


# -------------------------------------------------------------------------------------------------
# metrics on hand-made cases
# -------------------------------------------------------------------------------------------------


def test_accuracy_and_mteb_scores_by_hand() -> None:
    pred = np.array([0, 0, 2, 1])
    assert accuracy(pred) == 0.5
    scores = bitext_mining_scores(pred)
    # per gold label (support 1 each): label 0 predicted twice (P 1/2, F1 2/3), label 2 once (F1 1),
    # labels 1 and 3 wrong (0); MTEB's weighted average over the 4 gold labels:
    assert scores["precision"] == pytest.approx((0.5 + 1.0) / 4)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx((2 / 3 + 1.0) / 4)
    assert scores["accuracy"] == 0.5
    perfect = bitext_mining_scores(np.arange(6))
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0}
    all_wrong = bitext_mining_scores(np.array([1, 0]))
    assert all_wrong["f1"] == 0.0 and all_wrong["precision"] == 0.0
    assert math.isnan(accuracy(np.array([], dtype=np.int64)))


def test_mteb_scores_equal_sklearn_weighted() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(6)
    for n in (5, 50, 333):
        pred = np.where(rng.random(n) < 0.6, np.arange(n), rng.integers(0, n, n))
        gold = np.arange(n)
        ours = bitext_mining_scores(pred)
        for name, fn in (
            ("precision", metrics.precision_score),
            ("recall", metrics.recall_score),
            ("f1", metrics.f1_score),
        ):
            assert ours[name] == pytest.approx(fn(gold, pred, zero_division=0, average="weighted"), abs=1e-12)


def test_metrics_dict_on_a_hand_made_case() -> None:
    # 3 pairs; source 2 sits nearer target 1 than its own translation, everything else is right.
    X = np.array([[1, 0, 0], [0, 1, 0], [0, 0.9, 0.44]], dtype=np.float32)
    Y = np.array([[1, 0.1, 0], [0, 1, 0.1], [0, 0, 1]], dtype=np.float32)
    m = retrieval_metrics(X, Y, "nn", n_resamples=200)
    assert m["n"] == 3 and m["d"] == 3 and m["scoring"] == "nn"
    s2t, t2s = m["src2tgt"], m["tgt2src"]
    assert s2t["accuracy"] == pytest.approx(2 / 3) and s2t["errors"] == 1
    # predictions s2t = [0, 1, 1]: label 1 predicted twice → F1 = (1 + 2/3 + 0) / 3
    assert s2t["f1"] == pytest.approx((1 + 2 / 3) / 3)
    assert t2s["accuracy"] == 1.0 and t2s["f1"] == 1.0
    # with 3 rows k = 4 covers everything; xSIM follows the margin predictions
    margin = retrieve(X, Y, ("margin",))
    assert s2t["xsim_error"] == pytest.approx(1 - accuracy(margin.src2tgt["margin"]))
    assert s2t["xsim_errors"] == round(3 * s2t["xsim_error"])
    assert m["mean_pair_cosine"] == pytest.approx(float(np.mean(pair_cosines(X, Y))), rel=1e-6)
    json.dumps(m)


def test_identical_sides_are_perfect() -> None:
    X = np.random.default_rng(7).standard_normal((50, 8)).astype(np.float32)
    for scoring in ("nn", "csls", "margin"):
        m = retrieval_metrics(X, X * 3.0, scoring, n_resamples=100)
        for side in ("src2tgt", "tgt2src"):
            assert m[side]["accuracy"] == 1.0 and m[side]["f1"] == 1.0 and m[side]["xsim_error"] == 0.0
            assert m[side]["accuracy_ci"] == [1.0, 1.0]
        assert m["mean_pair_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_xsim_is_margin_error_whatever_the_scoring() -> None:
    X, Y = _noisy_pairs(120, 120, 16, seed=8, noise=1.5)
    margin_pred = _brute_margin(_cosines(X, Y))
    for scoring in ("nn", "csls"):
        m = retrieval_metrics(X, Y, scoring, n_resamples=50, block_rows=37)
        assert m["src2tgt"]["xsim_error"] == pytest.approx(1 - accuracy(margin_pred[0]))
        assert m["tgt2src"]["xsim_error"] == pytest.approx(1 - accuracy(margin_pred[1]))


def test_retrieval_accuracies() -> None:
    X, Y = _noisy_pairs(80, 80, 16, seed=9)
    S = _cosines(X, Y)
    acc = retrieval_accuracies(X, Y)
    assert acc["src2tgt"]["nn"] == pytest.approx(accuracy(S.argmax(axis=1)))
    assert acc["tgt2src"]["csls"] == pytest.approx(accuracy(_brute_csls(S)[1]))
    assert acc["mean_pair_cosine"] == pytest.approx(float(np.diag(S).mean()), rel=1e-5)


# -------------------------------------------------------------------------------------------------
# bootstrap
# -------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_is_seeded() -> None:
    correct = np.random.default_rng(10).random(400) < 0.7
    p = correct.mean()
    low, high = bootstrap_ci(correct, n_resamples=2000, seed=3)
    assert low < p < high
    # close to the normal approximation p ± 1.96 sqrt(p(1-p)/n)
    half = 1.96 * math.sqrt(p * (1 - p) / 400)
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(correct, n_resamples=2000, seed=3) == (low, high)
    # accuracy CIs sit on a grid of k/n, so compare seeds on a continuous per-query score
    cosines = np.random.default_rng(11).random(300)
    assert bootstrap_ci(cosines, seed=3) == bootstrap_ci(cosines, seed=3) != bootstrap_ci(cosines, seed=4)
    narrow = bootstrap_ci(correct, n_resamples=2000, seed=3, confidence=0.5)
    assert low < narrow[0] < narrow[1] < high
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([], dtype=bool)))
    with pytest.raises(UsageError):
        bootstrap_ci(correct, confidence=1.5)


def test_metrics_ci_contains_accuracy() -> None:
    X, Y = _noisy_pairs(150, 150, 16, seed=11, noise=1.6)
    m = retrieval_metrics(X, Y, "csls", seed=5, n_resamples=300)
    for side in ("src2tgt", "tgt2src"):
        low, high = m[side]["accuracy_ci"]
        assert 0.0 < low <= m[side]["accuracy"] <= high < 1.0
    assert retrieval_metrics(X, Y, "csls", seed=5, n_resamples=300) == m


# -------------------------------------------------------------------------------------------------
# errors and edge cases
# -------------------------------------------------------------------------------------------------


def test_row_count_mismatch_names_both_counts() -> None:
    with pytest.raises(ShapeError, match="source has 5 rows but target has 4"):
        retrieval_metrics(np.ones((5, 3), np.float32), np.ones((4, 3), np.float32))


def test_dimension_mismatch() -> None:
    with pytest.raises(ShapeError, match="source has 3 dimensions but target has 2"):
        retrieve(np.ones((5, 3), np.float32), np.ones((5, 2), np.float32))
    with pytest.raises(ShapeError):
        retrieve(np.ones(5, np.float32), np.ones((5, 2), np.float32))


def test_nonfinite_row_is_named() -> None:
    X, Y = _noisy_pairs(20, 20, 4, seed=12)
    Y[13, 1] = np.nan
    with pytest.raises(InputError, match=r"target row 13 \(counting from 0\) contains NaN or Inf"):
        retrieval_metrics(X, Y)


def test_unknown_scoring_and_bad_k() -> None:
    X, Y = _noisy_pairs(5, 5, 4, seed=13)
    with pytest.raises(UsageError, match="unknown scoring 'cosine'"):
        retrieval_metrics(X, Y, "cosine")
    with pytest.raises(UsageError):
        retrieve(X, Y, ("csls",), csls_k=0)


def test_empty_input_gives_null_metrics() -> None:
    m = retrieval_metrics(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), "csls")
    assert m["n"] == 0 and m["src2tgt"]["accuracy"] is None and m["mean_pair_cosine"] is None
    json.dumps(m)


def test_zero_rows_and_normalisation() -> None:
    X = np.array([[3, 4], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(X), [[0.6, 0.8], [0, 0]])
    assert mean_pair_cosine(X, X) == pytest.approx(0.5)  # the zero row has cosine 0 with everything
