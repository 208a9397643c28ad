"""Tests of xl.core.projection: linear maps from streamed sufficient statistics, preprocessing chains,
error cases, diagnostics and the dev split. Everything is seeded and small (d ≤ 24, n ≤ 2000)."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import ortho_group

from xl.core.projection import (
    Preprocessing,
    Projection,
    SufficientStats,
    apply_projection,
    dev_split,
    evaluate_projection,
    fit_lstsq,
    fit_preprocessing,
    fit_procrustes,
    fit_projection,
    fit_warnings,
    iter_pair_chunks,
    pair_rank_margins,
    parse_normalize,
    projection_diagnostics,
    saturated_diagnostics,
    solve_projection,
    zip_row_chunks,
)
from xl.errors import InputError, ManifestError, ShapeError, UsageError

F32 = NDArray[np.float32]


def _pairs(n: int, d: int, d_y: int | None = None, *, seed: int = 0, noise: float = 0.1) -> tuple[F32, F32]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    W = rng.standard_normal((d, d_y or d))
    Y = (X @ W + noise * rng.standard_normal((n, d_y or d))).astype(np.float32)
    return X, Y


def _uneven(X: F32, Y: F32, sizes: list[int]) -> Iterator[tuple[F32, F32]]:
    """Chunks of the given sizes (cycled), the last one whatever is left."""
    start, i = 0, 0
    while start < X.shape[0]:
        stop = start + sizes[i % len(sizes)]
        yield X[start:stop], Y[start:stop]
        start, i = stop, i + 1


# -------------------------------------------------------------------------------------------------
# fits
# -------------------------------------------------------------------------------------------------


def test_procrustes_recovers_random_rotation() -> None:
    d = 16
    Q = ortho_group.rvs(d, random_state=1)
    X = np.random.default_rng(2).standard_normal((500, d)).astype(np.float32)
    Y = (X.astype(np.float64) @ Q).astype(np.float32)
    W = fit_procrustes(X, Y)
    assert W.shape == (d, d) and W.dtype == np.float32
    np.testing.assert_allclose(W, Q, atol=1e-5)


def test_lstsq_matches_numpy_lstsq() -> None:
    X, Y = _pairs(400, 12, 7, seed=3)
    W = fit_lstsq(X, Y)
    W_ref = np.linalg.lstsq(X.astype(np.float64), Y.astype(np.float64), rcond=None)[0]
    assert W.shape == (12, 7)
    np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-5)


def test_ridge_matches_closed_form() -> None:
    X, Y = _pairs(300, 10, seed=4)
    lam = 25.0
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    W_ref = np.linalg.solve(X64.T @ X64 + lam * np.eye(10), X64.T @ Y64)
    W = fit_lstsq(X, Y, ridge=lam)
    np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)
    # and it really is regularised: different from the plain fit
    assert np.abs(W - fit_lstsq(X, Y)).max() > 1e-3


@pytest.mark.parametrize("method", ["lstsq", "procrustes"])
@pytest.mark.parametrize("center", [False, True])
def test_streaming_over_uneven_chunks_equals_in_memory(method: str, center: bool) -> None:
    X, Y = _pairs(1001, 9, seed=5)
    X += 3.0  # a non-zero mean makes centring matter
    in_memory = solve_projection(_one_update(X, Y), method, center=center)
    stats = SufficientStats()
    for Xc, Yc in _uneven(X, Y, [1, 0, 250, 37, 500]):
        stats.update(Xc, Yc)
    assert stats.n == 1001
    streamed = solve_projection(stats, method, center=center)
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-6, atol=1e-6)
    # merging two shards gives the same statistics as one pass
    a, b = SufficientStats(), SufficientStats()
    a.update(X[:400], Y[:400])
    b.update(X[400:], Y[400:])
    a.merge(b)
    np.testing.assert_allclose(solve_projection(a, method, center=center), in_memory, rtol=1e-6, atol=1e-6)


def _one_update(X: F32, Y: F32) -> SufficientStats:
    stats = SufficientStats()
    stats.update(X, Y)
    return stats


def test_stats_split_large_chunks_into_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import xl.core.projection as projection

    X, Y = _pairs(300, 6, seed=6)
    whole = _one_update(X, Y)
    monkeypatch.setattr(projection, "STATS_BLOCK_ROWS", 7)
    blocked = _one_update(X, Y)
    np.testing.assert_allclose(blocked.XtX, whole.XtX, rtol=1e-12)
    np.testing.assert_allclose(blocked.XtY, whole.XtY, rtol=1e-12)
    assert blocked.yy == pytest.approx(whole.yy, rel=1e-12)


@pytest.mark.parametrize("method", ["lstsq", "procrustes"])
def test_center_recovers_known_affine_map(method: str) -> None:
    rng = np.random.default_rng(7)
    d = 8
    W_lin = ortho_group.rvs(d, random_state=8) if method == "procrustes" else rng.standard_normal((d, d))
    bias = rng.standard_normal(d) * 5.0
    X = (rng.standard_normal((600, d)) + 4.0).astype(np.float32)
    Y = (X.astype(np.float64) @ W_lin + bias).astype(np.float32)
    W = solve_projection(_one_update(X, Y), method, center=True)
    assert W.shape == (d + 1, d)
    np.testing.assert_allclose(W[:-1], W_lin, atol=2e-4)
    np.testing.assert_allclose(W[-1], bias, atol=2e-3)
    np.testing.assert_allclose(apply_projection(X, W), Y, atol=5e-3)
    # without centring a linear map cannot absorb the bias
    W0 = solve_projection(_one_update(X, Y), method, center=False)
    assert np.abs(apply_projection(X, W0) - Y).max() > 0.1


# -------------------------------------------------------------------------------------------------
# procrustes statistics: no XᵀX, float32 products
# -------------------------------------------------------------------------------------------------


def _anisotropic_pairs(n: int, d: int, seed: int, mean_share: float = 0.99) -> tuple[F32, F32]:
    """Rows like raw sentence embeddings: a common component carrying ``mean_share`` of ‖x‖², a 1/k spectrum
    for the rest; Y a rotation of X plus noise. A plain float32 XᵀY loses about 1e-4 of the map here."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, d + 1)
    spread = rng.standard_normal((n, d)) * np.sqrt((1 - mean_share) / k / np.sum(1 / k))
    mean = rng.standard_normal(d)
    mean *= np.sqrt(mean_share) / np.linalg.norm(mean)
    X = (spread @ ortho_group.rvs(d, random_state=seed) + mean).astype(np.float32)
    Q = ortho_group.rvs(d, random_state=seed + 1)
    Y = (X.astype(np.float64) @ Q + 0.02 * rng.standard_normal((n, d))).astype(np.float32)
    return X, Y


def _streamed(X: F32, Y: F32, sizes: list[int], **options: bool) -> SufficientStats:
    stats = SufficientStats(**options)
    for Xc, Yc in _uneven(X, Y, sizes):
        stats.update(Xc, Yc)
    return stats


@pytest.mark.parametrize("center", [False, True])
def test_procrustes_without_xtx_equals_full_statistics(center: bool) -> None:
    X, Y = _pairs(1001, 9, seed=30, noise=0.5)
    X += 3.0
    full = _streamed(X, Y, [250, 37])
    lean = _streamed(X, Y, [250, 37], need_xtx=False)
    assert lean.XtX is None and full.XtX is not None
    np.testing.assert_array_equal(lean.XtY, full.XtY)
    assert lean.xx == pytest.approx(float(np.trace(full.XtX)), rel=1e-12)
    W = solve_projection(lean, "procrustes", center=center)
    np.testing.assert_array_equal(W, solve_projection(full, "procrustes", center=center))
    diag, diag_full = projection_diagnostics(lean, W), projection_diagnostics(full, W)
    assert diag["condition_number"] is None and diag_full["condition_number"] is not None
    # the residual without XᵀX: tr(WᵀXᵀXW) = tr(XᵀX) for an orthogonal W
    residual = np.linalg.norm(apply_projection(X, W).astype(np.float64) - Y) / np.linalg.norm(Y)
    assert diag["fit_residual"] == pytest.approx(residual, rel=1e-5)
    assert diag["fit_residual"] == pytest.approx(diag_full["fit_residual"], rel=1e-5)
    assert diag["orthogonality_error"] == diag_full["orthogonality_error"]


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("block_rows", [16_384, 97])
def test_procrustes_float32_products_match_float64(
    center: bool, block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xl.core.projection as projection

    monkeypatch.setattr(projection, "FLOAT32_BLOCK_ROWS", block_rows)
    X, Y = _anisotropic_pairs(2000, 24, seed=31)
    full = _streamed(X, Y, [2000])
    fast = _streamed(X, Y, [300, 1, 0, 517])
    W64 = solve_projection(full, "procrustes", center=center)
    W = solve_projection(fast, "procrustes", center=center)
    np.testing.assert_allclose(W, W64, atol=1e-6)
    # the data are hard enough that one float32 product of all rows (scipy's) is visibly off
    U, _, Vt = np.linalg.svd((X.T @ Y).astype(np.float64))
    if not center:
        assert np.abs(U @ Vt - W64).max() > 1e-5
    np.testing.assert_allclose(fast.XtY, full.XtY, rtol=0, atol=1e-8 * np.abs(full.XtY).max())
    assert fast.xx == pytest.approx(full.xx, rel=1e-9)
    assert fast.yy == pytest.approx(full.yy, rel=1e-9)
    np.testing.assert_allclose(fast.sum_x, full.sum_x, rtol=1e-12)
    residual = np.linalg.norm(apply_projection(X, W).astype(np.float64) - Y) / np.linalg.norm(Y)
    assert projection_diagnostics(fast, W)["fit_residual"] == pytest.approx(residual, rel=1e-5)


def test_procrustes_float32_products_merge_and_float64_fallback() -> None:
    X, Y = _anisotropic_pairs(1500, 12, seed=32)
    one = _streamed(X, Y, [1500], need_xtx=False, float32_products=True)
    a = _streamed(X[:700], Y[:700], [100], need_xtx=False, float32_products=True)
    b = _streamed(X[700:], Y[700:], [800], need_xtx=False, float32_products=True)
    b = pickle.loads(pickle.dumps(b))  # shards come from other processes; the scratch buffer stays behind
    assert b._scratch is None
    a.merge(b)
    assert a.n == 1500
    np.testing.assert_allclose(solve_projection(a, "procrustes"), solve_projection(one, "procrustes"), atol=1e-6)
    assert a.xx == pytest.approx(one.xx, rel=1e-9)
    # a shard with XᵀX merges into one without: only its trace is kept
    c = _streamed(X[:700], Y[:700], [700], need_xtx=False)
    c.merge(_streamed(X[700:], Y[700:], [800]))
    assert c.XtX is None and c.xx == pytest.approx(one.xx, rel=1e-9)
    # float64 rows are never rounded to float32: the float64 products are used
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    np.testing.assert_array_equal(
        _streamed(X64, Y64, [1500], need_xtx=False, float32_products=True).XtY,
        _streamed(X64, Y64, [1500], need_xtx=False).XtY,
    )


def test_statistics_without_xtx_refuse_what_needs_it() -> None:
    X, Y = _pairs(200, 5, seed=33)
    lean = _streamed(X, Y, [200], need_xtx=False, float32_products=True)
    with pytest.raises(UsageError, match="lstsq needs XᵀX") as exc:
        solve_projection(lean, "lstsq")
    assert exc.value.hint is not None and "need_xtx=True" in exc.value.hint
    with pytest.raises(UsageError, match="non-orthogonal map"):
        lean.residual(fit_lstsq(X, Y))
    assert lean.condition_number() is None
    full = _streamed(X, Y, [200])
    with pytest.raises(UsageError, match="cannot merge"):
        full.merge(lean)
    with pytest.raises(UsageError, match="need_xtx=False"):
        SufficientStats(float32_products=True)


def test_fit_projection_procrustes_streams_without_xtx(monkeypatch: pytest.MonkeyPatch) -> None:
    import xl.core.projection as projection

    X, Y = _anisotropic_pairs(1200, 16, seed=34, mean_share=0.5)
    made: list[SufficientStats] = []
    real = projection.SufficientStats

    def spy(**options: Any) -> SufficientStats:
        made.append(real(**options))
        return made[-1]

    monkeypatch.setattr(projection, "SufficientStats", spy)
    proj = fit_projection(lambda: _uneven(X, Y, [500]), "procrustes", center=True)
    assert made[-1].XtX is None and made[-1].float32_products
    assert proj.diagnostics["condition_number"] is None
    np.testing.assert_allclose(proj.W, fit_procrustes(X, Y, center=True), atol=1e-6)
    lst = fit_projection(lambda: _uneven(X, Y, [500]), "lstsq")
    assert made[-1].XtX is not None and not made[-1].float32_products
    assert lst.diagnostics["condition_number"] > 1.0


def test_condition_number_is_computed_once_per_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import xl.core.projection as projection

    calls: list[int] = []
    real = projection._condition

    def counted(A: NDArray[np.float64]) -> float:
        calls.append(A.shape[0])
        return real(A)

    monkeypatch.setattr(projection, "_condition", counted)
    X, Y = _pairs(300, 6, seed=35)
    proj = fit_projection(lambda: _uneven(X, Y, [100]), "lstsq", ridge=0.5)
    assert len(calls) == 1 and proj.diagnostics["condition_number"] is not None
    stats = _one_update(X, Y)
    first = stats.condition_number(center=True)
    assert stats.condition_number(center=True) == first and len(calls) == 2
    stats.update(X[:50] * 3.0, Y[:50])  # new rows: computed again
    assert stats.condition_number(center=True) != first and len(calls) == 3


def test_zip_row_chunks_copies_only_across_array_boundaries() -> None:
    X, Y = _pairs(64, 3, seed=36)
    aligned = list(zip_row_chunks([X[:32], X[32:]], [Y[:32], Y[32:]], chunk_rows=32))
    assert all(np.shares_memory(a, X) and np.shares_memory(b, Y) for a, b in aligned)
    # across boundaries: a new array, with the dtype np.concatenate would give
    mixed = list(zip_row_chunks([X[:10].astype(np.float16), X[10:20]], [Y[:20]], chunk_rows=20))
    assert mixed[0][0].dtype == np.float32 and not np.shares_memory(mixed[0][0], X)
    np.testing.assert_array_equal(mixed[0][0][10:], X[10:20])


def test_apply_projection_linear_and_shapes() -> None:
    X, _ = _pairs(5, 4, seed=9)
    W = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(apply_projection(X, W), X @ W, rtol=1e-6)
    with pytest.raises(ShapeError, match="shape"):
        apply_projection(X, np.zeros((6, 3), np.float32))


# -------------------------------------------------------------------------------------------------
# diagnostics
# -------------------------------------------------------------------------------------------------


def test_diagnostics_from_statistics_match_direct_computation() -> None:
    X, Y = _pairs(500, 10, seed=10, noise=0.5)
    X += 1.0
    for center in (False, True):
        stats = _one_update(X, Y)
        W = solve_projection(stats, "lstsq", ridge=2.0, center=center)
        diag = projection_diagnostics(stats, W, ridge=2.0)
        residual = np.linalg.norm(apply_projection(X, W).astype(np.float64) - Y) / np.linalg.norm(Y)
        assert diag["fit_residual"] == pytest.approx(residual, rel=1e-4)
        W_lin = W[:-1] if center else W
        ortho = np.linalg.norm(W_lin.T.astype(np.float64) @ W_lin - np.eye(10)) / np.sqrt(10)
        assert diag["orthogonality_error"] == pytest.approx(ortho, rel=1e-5)
        X64 = X.astype(np.float64) - (X.mean(axis=0) if center else 0.0)
        assert diag["condition_number"] == pytest.approx(np.linalg.cond(X64.T @ X64 + 2.0 * np.eye(10)), rel=1e-6)
        assert (diag["n"], diag["d_x"], diag["d_y"]) == (500, 10, 10)
        json.dumps(diag)


def test_procrustes_diagnostics_orthogonal_and_perfect_fit() -> None:
    Q = ortho_group.rvs(6, random_state=11)
    X = np.random.default_rng(12).standard_normal((200, 6)).astype(np.float32)
    Y = (X.astype(np.float64) @ Q).astype(np.float32)
    stats = _one_update(X, Y)
    diag = projection_diagnostics(stats, solve_projection(stats, "procrustes"))
    assert diag["orthogonality_error"] < 1e-6
    assert diag["fit_residual"] < 1e-3
    # without XᵀX: as exact in float64; with float32 products, within their rounding
    lean = _streamed(X, Y, [200], need_xtx=False)
    assert projection_diagnostics(lean, solve_projection(lean, "procrustes"))["fit_residual"] < 1e-6
    fast = _streamed(X, Y, [200], need_xtx=False, float32_products=True)
    assert projection_diagnostics(fast, solve_projection(fast, "procrustes"))["fit_residual"] < 1e-3


# -------------------------------------------------------------------------------------------------
# error cases
# -------------------------------------------------------------------------------------------------


def test_row_count_mismatch_names_both_counts() -> None:
    stats = SufficientStats(x_label="src.npy", y_label="tgt.npy")
    with pytest.raises(ShapeError, match=r"src\.npy has 5 rows but tgt\.npy has 4") as exc:
        stats.update(np.zeros((5, 3), np.float32), np.zeros((4, 3), np.float32))
    assert exc.value.hint


def test_zip_row_chunks_realigns_and_reports_totals() -> None:
    X, Y = _pairs(50, 3, seed=13)
    pairs = list(zip_row_chunks(np.array_split(X, [7, 30]), np.array_split(Y, [20, 21, 22]), chunk_rows=16))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pairs]), X)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pairs]), Y)
    assert all(a.shape[0] == b.shape[0] <= 16 for a, b in pairs)
    with pytest.raises(ShapeError, match=r"src has 5000 rows but tgt has 4998"):
        list(
            zip_row_chunks(
                [np.zeros((2500, 2))] * 2,
                [np.zeros((4998, 2))],
                chunk_rows=1000,
                x_label="src",
                y_label="tgt",
            )
        )
    with pytest.raises(ShapeError, match=r"3 columns from row 4 on but 2 before"):
        list(zip_row_chunks([np.zeros((4, 2)), np.zeros((4, 3))], [np.zeros((8, 2))], x_label="src"))


def test_width_mismatch_between_chunks() -> None:
    stats = SufficientStats()
    stats.update(np.zeros((10, 4), np.float32), np.zeros((10, 4), np.float32))
    with pytest.raises(ShapeError, match=r"X has 5 columns from row 10 on but 4 before"):
        stats.update(np.zeros((3, 5), np.float32), np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("side", ["X", "Y"])
def test_nonfinite_value_names_global_row(bad: float, side: str) -> None:
    X, Y = _pairs(100, 4, seed=14)
    (X if side == "X" else Y)[73, 2] = bad
    stats = SufficientStats()
    with pytest.raises(InputError, match=rf"{side} row 73 \(counting from 0\) contains NaN or Inf"):
        for Xc, Yc in _uneven(X, Y, [30, 11]):
            stats.update(Xc, Yc)


def test_nonfinite_row_through_preprocessing_is_named() -> None:
    X, Y = _pairs(60, 4, seed=15)
    X[41, 0] = np.inf
    with pytest.raises(InputError, match=r"X row 41 "):
        fit_projection(lambda: _uneven(X, Y, [25]), normalize_x="unit,center")
    with pytest.raises(InputError, match=r"X row 41 "):
        fit_projection(lambda: _uneven(X, Y, [25]), normalize_x="unit")


def test_fewer_pairs_than_dimensions_suggests_ridge() -> None:
    X, Y = _pairs(5, 8, seed=16)
    with pytest.raises(InputError, match=r"only 5 pairs for 8 dimensions") as exc:
        fit_lstsq(X, Y)
    assert exc.value.hint is not None and "--ridge" in exc.value.hint and "procrustes" in exc.value.hint
    assert fit_lstsq(X, Y, ridge=1e-2).shape == (8, 8)  # ridge makes it well-posed
    assert fit_procrustes(X, Y).shape == (8, 8)


def test_singular_system_is_reported_with_condition_number() -> None:
    X, Y = _pairs(100, 5, seed=17)
    X[:, 4] = X[:, 3]  # a duplicated dimension: XᵀX is singular
    with pytest.raises(InputError, match=r"singular or ill-conditioned \(condition number") as exc:
        fit_lstsq(X, Y)
    assert exc.value.hint is not None and "--ridge" in exc.value.hint
    assert np.isfinite(fit_lstsq(X, Y, ridge=1e-3)).all()


def test_empty_input() -> None:
    with pytest.raises(InputError, match="empty"):
        fit_lstsq(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match="empty"):
        solve_projection(SufficientStats(), "procrustes")
    with pytest.raises(InputError, match="empty"):
        fit_projection(lambda: iter([]), normalize_x="center")


def test_procrustes_needs_equal_dimensions() -> None:
    X, Y = _pairs(50, 6, 4, seed=18)
    with pytest.raises(ShapeError, match=r"X has 6 and Y has 4"):
        fit_procrustes(X, Y)


def test_usage_errors() -> None:
    stats = _one_update(*_pairs(30, 3, seed=19))
    with pytest.raises(UsageError):
        solve_projection(stats, "svd")
    with pytest.raises(UsageError):
        solve_projection(stats, "lstsq", ridge=-1.0)
    with pytest.raises(UsageError):
        solve_projection(stats, "procrustes", ridge=1.0)
    with pytest.raises(UsageError, match="unknown normalisation step 'whiten'"):
        parse_normalize("unit,whiten")


def test_input_changed_between_passes() -> None:
    X, Y = _pairs(40, 3, seed=20)
    calls = iter([list(_uneven(X, Y, [10])), list(_uneven(X[:30], Y[:30], [10]))])
    with pytest.raises(InputError, match=r"changed between passes \(40 rows, then 30\)"):
        fit_projection(lambda: next(calls), normalize_x="center")


# -------------------------------------------------------------------------------------------------
# preprocessing
# -------------------------------------------------------------------------------------------------


def test_parse_normalize() -> None:
    assert parse_normalize("unit,center,unit") == ("unit", "center", "unit")
    assert parse_normalize(" unit , center ") == ("unit", "center")
    assert parse_normalize(None) == parse_normalize("") == parse_normalize("none") == ()


def test_preprocessing_chain_learns_means_after_earlier_steps() -> None:
    rng = np.random.default_rng(21)
    X = (rng.standard_normal((300, 5)) * 3 + 2).astype(np.float32)
    pre = fit_preprocessing("unit,center,unit,center", lambda: np.array_split(X, 4))
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    m1 = U.astype(np.float64).mean(axis=0)
    V = U - m1.astype(np.float32)
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    m2 = V.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(pre.means[0], m1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pre.means[1], m2, rtol=1e-5, atol=1e-6)
    out = pre.apply(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-6)  # the last step centres the fitting data


def test_preprocessing_round_trips_and_reproduces_exactly() -> None:
    rng = np.random.default_rng(22)
    X = (rng.standard_normal((257, 6)) + 1.5).astype(np.float32)
    pre = fit_preprocessing("unit,center,unit", lambda: np.array_split(X, 3))
    again = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.steps == pre.steps
    assert all(np.array_equal(a, b) for a, b in zip(again.means, pre.means, strict=True))
    expected = pre.apply(X)
    np.testing.assert_array_equal(again.apply(X), expected)
    # chunk-wise application is bit-identical to applying to the whole matrix
    np.testing.assert_array_equal(np.concatenate([again.apply(c) for c in np.array_split(X, 5)]), expected)


def test_preprocessing_errors() -> None:
    with pytest.raises(ManifestError):
        Preprocessing.from_dict({"steps": ["center"], "means": []})
    with pytest.raises(ManifestError):
        Preprocessing.from_dict({"steps": ["sphere"]})
    with pytest.raises(ManifestError):
        Preprocessing.from_dict({"means": []})
    pre = Preprocessing(("center",), (np.zeros(4),))
    with pytest.raises(ShapeError, match="3 dimensions but the preprocessing was fitted on 4"):
        pre.apply(np.zeros((2, 3), np.float32))
    unit = Preprocessing(("unit",))
    np.testing.assert_array_equal(unit.apply(np.zeros((2, 3), np.float32)), 0.0)  # zero rows stay zero


def test_fit_projection_stream_with_preprocessing_matches_in_memory() -> None:
    X, Y = _pairs(700, 8, seed=23)
    X += 2.0
    proj = fit_projection(
        lambda: _uneven(X, Y, [123, 45]),
        "procrustes",
        center=True,
        normalize_x="unit,center,unit",
        normalize_y="center",
    )
    pre_x = fit_preprocessing("unit,center,unit", lambda: [X])
    pre_y = fit_preprocessing("center", lambda: [Y])
    W_ref = fit_procrustes(pre_x.apply(X), pre_y.apply(Y), center=True)
    np.testing.assert_allclose(proj.W, W_ref, atol=1e-6)
    np.testing.assert_allclose(proj.pre_x.means[0], pre_x.means[0], rtol=1e-9, atol=1e-12)
    # save / load: metadata through JSON, W as float32
    meta = json.loads(json.dumps(proj.to_dict()))
    loaded = Projection.from_dict(meta, proj.W.copy())
    np.testing.assert_array_equal(loaded.apply_source(X), proj.apply_source(X))
    np.testing.assert_array_equal(loaded.apply_target(Y), pre_y.apply(Y))
    assert meta["diagnostics"]["n"] == 700 and meta["d_x"] == 8
    with pytest.raises(ManifestError, match="disagree"):
        Projection.from_dict(meta, proj.W[:-1])


# -------------------------------------------------------------------------------------------------
# helpers: chunks, dev split, dev evaluation
# -------------------------------------------------------------------------------------------------


def test_iter_pair_chunks_with_rows() -> None:
    X, Y = _pairs(20, 2, seed=24)
    rows = np.array([1, 4, 5, 9, 19])
    got = list(iter_pair_chunks(X, Y, rows, chunk_rows=2))
    assert [a.shape[0] for a, _ in got] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([a for a, _ in got]), X[rows])
    with pytest.raises(ShapeError, match="X has 20 rows but Y has 19"):
        next(iter_pair_chunks(X, Y[:19]))


def test_dev_split_is_seeded_disjoint_and_complete() -> None:
    train, dev = dev_split(103, 0.2, seed=7)
    assert dev.size == 21 and train.size == 82
    assert np.array_equal(np.sort(np.concatenate([train, dev])), np.arange(103))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(dev) > 0)
    again_train, again_dev = dev_split(103, 0.2, seed=7)
    assert np.array_equal(again_dev, dev) and np.array_equal(again_train, train)
    assert not np.array_equal(dev_split(103, 0.2, seed=8)[1], dev)
    assert dev_split(10, 0.0, seed=0)[1].size == 0
    with pytest.raises(UsageError):
        dev_split(10, 1.0, seed=0)


def test_evaluate_projection_before_and_after() -> None:
    rng = np.random.default_rng(25)
    d = 16
    Q = ortho_group.rvs(d, random_state=26)
    X = rng.standard_normal((400, d)).astype(np.float32)
    Y = (X.astype(np.float64) @ Q + 0.05 * rng.standard_normal((400, d))).astype(np.float32)
    train, dev = dev_split(400, 0.25, seed=0)
    proj = fit_projection(lambda: iter_pair_chunks(X, Y, train, chunk_rows=64), "procrustes")
    report = evaluate_projection(X[dev], Y[dev], proj)
    assert report["n_dev"] == 100
    assert report["after"]["src2tgt"]["nn"] == 1.0 and report["after"]["tgt2src"]["csls"] == 1.0
    assert report["before"]["src2tgt"]["nn"] < 0.5
    assert report["after"]["mean_pair_cosine"] > 0.99 > report["before"]["mean_pair_cosine"]
    # the graded diagnostics, before and after
    for side in ("before", "after"):
        assert set(report[side]["margin_sd"]) == {"src2tgt", "tgt2src"}
    assert report["before"]["mean_rank"]["src2tgt"] > 1.5 and report["after"]["mean_rank"]["src2tgt"] == 1.0
    assert report["after"]["margin"]["tgt2src"] > 0 > report["before"]["margin"]["tgt2src"]
    assert report["after"]["margin_sd"]["src2tgt"] > report["before"]["margin_sd"]["src2tgt"]
    assert report["saturated"] == []  # before the map, retrieval is far from its ceiling
    json.dumps(report)
    # different dimensions: no "before"
    X2, Y2 = _pairs(60, 6, 4, seed=27)
    proj2 = fit_projection(lambda: [(X2, Y2)], "lstsq")
    assert evaluate_projection(X2, Y2, proj2)["before"] is None


# -------------------------------------------------------------------------------------------------
# graded dev diagnostics, saturation, conditioning
# -------------------------------------------------------------------------------------------------


def test_pair_rank_margins_on_a_hand_made_matrix() -> None:
    # X = I, so the cosine matrix S[i, j] = cos(x_i, y_j) is Yᵀ: S = [[.8, .6, 0], [.6, 0, .6], [0, .8, .8]].
    X = np.eye(3, dtype=np.float32)
    Y = np.array([[0.8, 0.6, 0.0], [0.6, 0.0, 0.8], [0.0, 0.6, 0.8]], dtype=np.float32)
    out = pair_rank_margins(X, Y)
    # rows: true .8 first (rank 1); true 0 below two .6 (rank 3); true .8 tied with one .8 (mid-rank 1.5)
    assert out["mean_rank"]["src2tgt"] == pytest.approx((1 + 3 + 1.5) / 3)
    assert out["margin"]["src2tgt"] == pytest.approx((0.2 - 0.6 + 0.0) / 3, abs=1e-6)
    # per-row sd of the two wrong cosines: .3, 0 (row left out), .4
    assert out["margin_sd"]["src2tgt"] == pytest.approx((0.2 / 0.3 + 0.0 / 0.4) / 2, rel=1e-5)
    # columns: [.8, .6, 0] rank 1; [.6, 0, .8] rank 3; [0, .6, .8] rank 1
    assert out["mean_rank"]["tgt2src"] == pytest.approx(5 / 3)
    assert out["margin"]["tgt2src"] == pytest.approx((0.2 - 0.8 + 0.2) / 3, abs=1e-6)
    assert out["margin_sd"]["tgt2src"] == pytest.approx((0.2 / 0.3 - 0.8 / 0.1 + 0.2 / 0.3) / 3, rel=1e-5)
    # perfect and one-row inputs
    assert pair_rank_margins(X, X)["mean_rank"] == {"src2tgt": 1.0, "tgt2src": 1.0}
    assert pair_rank_margins(X, X)["margin"]["src2tgt"] == pytest.approx(1.0)
    one = pair_rank_margins(X[:1], Y[:1])
    assert one["mean_rank"]["src2tgt"] == 1.0 and one["margin"]["src2tgt"] is None
    assert one["margin_sd"]["tgt2src"] is None
    empty = pair_rank_margins(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
    assert empty["mean_rank"]["src2tgt"] is None and empty["margin"]["tgt2src"] is None


def test_pair_rank_margins_match_a_brute_force_in_any_blocking() -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(40)
    X = rng.standard_normal((57, 6)).astype(np.float32)
    Y = (X + 1.5 * rng.standard_normal((57, 6))).astype(np.float32)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    S = (Xn @ Yn.T).astype(np.float64)
    for direction, M in (("src2tgt", S), ("tgt2src", S.T)):
        true = np.diag(M)
        ranks = [rankdata(-row, method="average")[i] for i, row in enumerate(M)]
        wrong = M[~np.eye(57, dtype=bool)].reshape(57, 56)
        margins = true - wrong.max(axis=1)
        for block_rows in (None, 5, 57):
            out = pair_rank_margins(X, Y, block_rows=block_rows)
            assert out["mean_rank"][direction] == pytest.approx(np.mean(ranks), rel=1e-12)
            assert out["mean_rank"][direction] > 2  # noisy pairs: far from the ceiling
            assert out["margin"][direction] == pytest.approx(margins.mean(), abs=1e-6)
            assert out["margin_sd"][direction] == pytest.approx((margins / wrong.std(axis=1)).mean(), rel=1e-4)


def test_margins_fall_when_the_mean_pair_cosine_rises_but_retrieval_gets_harder() -> None:
    # A component shared by every row raises every cosine, true and wrong alike: the mean pair cosine goes
    # up while the true pairs stand out less (what lstsq does to FLORES pairs). The margins see it.
    rng = np.random.default_rng(41)
    X = rng.standard_normal((200, 32)).astype(np.float32)
    Y = (X + 0.8 * rng.standard_normal((200, 32))).astype(np.float32)
    shared = np.zeros(32, np.float32)
    shared[0] = 6.0
    plain, pulled = pair_rank_margins(X, Y), pair_rank_margins(X + shared, Y + shared)
    cos = [float(np.mean(np.sum(A * B, 1) / np.linalg.norm(A, axis=1) / np.linalg.norm(B, axis=1)))
           for A, B in ((X, Y), (X + shared, Y + shared))]  # fmt: skip
    assert cos[1] > cos[0] + 0.05
    assert pulled["mean_rank"]["src2tgt"] > plain["mean_rank"]["src2tgt"]
    for key in ("margin", "margin_sd"):
        for direction in ("src2tgt", "tgt2src"):
            assert pulled[key][direction] < 0.9 * plain[key][direction]


def _side(acc: float, rank: float) -> dict[str, Any]:
    return {
        "src2tgt": {"nn": acc, "csls": acc},
        "tgt2src": {"nn": acc, "csls": 0.5},
        "mean_rank": {"src2tgt": rank, "tgt2src": rank},
    }


def test_saturated_diagnostics() -> None:
    at_ceiling = _side(1.0, 1.0)
    assert saturated_diagnostics(at_ceiling, at_ceiling) == [
        "src2tgt nn", "src2tgt csls", "src2tgt mean_rank", "tgt2src nn", "tgt2src mean_rank",
    ]  # fmt: skip
    # 0.99 still counts (one miss in a hundred), 0.98 does not
    assert "src2tgt nn" in saturated_diagnostics(_side(0.99, 1.01), _side(1.0, 1.0))
    assert "src2tgt mean_rank" in saturated_diagnostics(_side(0.99, 1.01), _side(1.0, 1.0))
    assert saturated_diagnostics(_side(0.98, 1.02), _side(1.0, 1.0)) == []
    assert saturated_diagnostics(_side(1.0, 1.0), _side(0.98, 1.02)) == []
    # identical before and after, but below the ceiling: the map changed nothing, and that is visible
    assert saturated_diagnostics(_side(0.9, 1.2), _side(0.9, 1.2)) == []
    # no "before" (different dimensions): the ceiling after the map is enough
    assert "src2tgt nn" in saturated_diagnostics(None, at_ceiling)
    assert saturated_diagnostics(None, {**_side(1.0, 1.0), "src2tgt": {"nn": None}})[0] == "src2tgt mean_rank"


def test_evaluate_projection_flags_saturation() -> None:
    rng = np.random.default_rng(42)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    Y = (X + 0.05 * rng.standard_normal((300, 16))).astype(np.float32)  # already aligned: 1.0 before
    proj = fit_projection(lambda: [(X[:200], Y[:200])], "procrustes")
    report = evaluate_projection(X[200:], Y[200:], proj)
    assert report["before"]["src2tgt"]["nn"] == 1.0 and report["after"]["src2tgt"]["nn"] == 1.0
    assert {"src2tgt nn", "tgt2src csls", "src2tgt mean_rank"} <= set(report["saturated"])
    # the margin still moves where the accuracy cannot
    assert report["after"]["margin_sd"]["src2tgt"] != report["before"]["margin_sd"]["src2tgt"]
    (warning,) = fit_warnings(proj.diagnostics, report, method="procrustes")
    assert "at their ceiling" in warning and "cannot tell maps apart" in warning and "margin_sd" in warning


def _near_collinear(n: int = 500, d: int = 8, seed: int = 43) -> tuple[F32, F32]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, -1] = X[:, -2] + 1e-4 * rng.standard_normal(n).astype(np.float32)  # two near-identical dimensions
    Y = (X @ rng.standard_normal((d, d)) + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
    return X, Y


def test_ill_conditioned_lstsq_is_flagged_with_a_ridge_that_fixes_it() -> None:
    X, Y = _near_collinear()
    proj = fit_projection(lambda: [(X, Y)], "lstsq")
    diag = proj.diagnostics
    assert diag["condition_number"] > 1e6 and diag["ill_conditioned"]
    assert diag["spectral_norm"] == pytest.approx(float(np.linalg.norm(proj.W.astype(np.float64), 2)), rel=1e-6)
    assert diag["spectral_gain"] > 10  # the noise of the difference dimension is amplified
    ridge = diag["suggested_ridge"]
    assert ridge is not None and math.log10(ridge) == pytest.approx(round(math.log10(ridge)))
    X64 = X.astype(np.float64)
    assert np.linalg.cond(X64.T @ X64 + ridge * np.eye(8)) <= 1e6 < np.linalg.cond(X64.T @ X64 + ridge / 10 * np.eye(8))
    (warning,) = fit_warnings(diag, None, method="lstsq")
    assert "ill-conditioned" in warning and f"--ridge {ridge:g}" in warning and "condition number" in warning
    json.dumps(diag)
    # with that ridge: no warning
    fixed = fit_projection(lambda: [(X, Y)], "lstsq", ridge=ridge).diagnostics
    assert fixed["condition_number"] <= 1e6 and not fixed["ill_conditioned"] and fixed["suggested_ridge"] is None
    assert fixed["spectral_norm"] < diag["spectral_norm"] / 10
    assert fit_warnings(fixed, None, method="lstsq") == []
    # the same data through procrustes: an orthogonal map stretches nothing, and XᵀX is not solved
    rot = fit_projection(lambda: [(X, Y)], "procrustes").diagnostics
    assert rot["spectral_norm"] == pytest.approx(1.0, abs=1e-5) and not rot["ill_conditioned"]


def test_spectral_gain_is_one_for_a_rotation_whatever_the_scale() -> None:
    rng = np.random.default_rng(44)
    X = (5.0 * rng.standard_normal((300, 10))).astype(np.float32)
    R = ortho_group.rvs(10, random_state=45)
    for center in (False, True):
        proj = fit_projection(lambda: [(X, (X @ R).astype(np.float32))], "procrustes", center=center)
        assert proj.diagnostics["spectral_gain"] == pytest.approx(1.0, abs=1e-4)
        # Y at a tenth of X's scale: lstsq finds W = R / 10, the same gain
        small = fit_projection(lambda: [(X, (X @ R / 10).astype(np.float32))], "lstsq", center=center)
        assert small.diagnostics["spectral_norm"] == pytest.approx(0.1, rel=1e-4)
        assert small.diagnostics["spectral_gain"] == pytest.approx(1.0, rel=1e-4)
        assert not small.diagnostics["ill_conditioned"]


def test_a_stretching_map_is_flagged_for_any_method() -> None:
    rng = np.random.default_rng(46)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    stats = SufficientStats()
    stats.update(X, X)
    W = np.eye(6, dtype=np.float32)
    W[0, 0] = 50.0
    diag = projection_diagnostics(stats, W, method="sgd")
    assert diag["spectral_gain"] == pytest.approx(50.0, rel=0.05) and diag["ill_conditioned"]
    assert diag["suggested_ridge"] is None  # --ridge is for lstsq only
    (warning,) = fit_warnings(diag, None, method="sgd")
    assert "gain" in warning and "--ridge" not in warning and "condition number" not in warning
    assert not projection_diagnostics(stats, np.eye(6, dtype=np.float32), method="identity")["ill_conditioned"]
