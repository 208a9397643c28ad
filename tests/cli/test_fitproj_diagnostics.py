"""``xl fit-proj`` diagnostics in process (typer's CliRunner): warnings on stderr about ill-conditioned fits and
saturated dev accuracy, the graded dev diagnostics and the sgd record in the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from xl.cli.app import app


def _fit(tmp_path: Path, X: np.ndarray, Y: np.ndarray, *args: str) -> tuple[Result, dict[str, Any]]:
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", Y.astype(np.float32))
    out = tmp_path / "W.npy"
    result = CliRunner().invoke(
        app, ["fit-proj", "--src", str(tmp_path / "x.npy"), "--tgt", str(tmp_path / "y.npy"), "-o", str(out), *args]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # everything but the data goes to stderr
    return result, json.loads((tmp_path / "W.npy.json").read_text())


def _warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("xl fit-proj: warning:")]


def _near_collinear(n: int = 600, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[:, -1] = X[:, -2] + 1e-4 * rng.standard_normal(n)  # two near-identical dimensions
    Y = X @ rng.standard_normal((d, d)) + 0.1 * rng.standard_normal((n, d))
    return X, Y


def test_ill_conditioned_lstsq_warns_with_a_ridge_hint(tmp_path: Path) -> None:
    X, Y = _near_collinear()
    result, manifest = _fit(tmp_path, X, Y, "--method", "lstsq")
    diag = manifest["projection"]["diagnostics"]
    assert diag["condition_number"] > 1e6 and diag["ill_conditioned"] is True
    assert diag["spectral_norm"] == pytest.approx(float(np.linalg.norm(np.load(tmp_path / "W.npy"), 2)), rel=1e-5)
    assert diag["spectral_gain"] > 10
    ridge = diag["suggested_ridge"]
    (warning,) = [w for w in _warnings(result) if "ill-conditioned" in w]
    assert f"--ridge {ridge:g}" in warning and "condition number of XᵀX" in warning
    assert "‖W‖₂" in result.stderr.splitlines()[0]
    # the suggested ridge silences it
    fixed, fixed_manifest = _fit(tmp_path, X, Y, "--method", "lstsq", "--ridge", f"{ridge:g}")
    assert not any("ill-conditioned" in w for w in _warnings(fixed))
    assert fixed_manifest["projection"]["diagnostics"]["condition_number"] <= 1e6
    assert fixed_manifest["projection"]["diagnostics"]["ill_conditioned"] is False
    # -q silences it like every other message
    quiet = CliRunner().invoke(app, ["fit-proj", "--src", str(tmp_path / "x.npy"), "--tgt", str(tmp_path / "y.npy"),
                                     "-o", str(tmp_path / "W.npy"), "-q"])  # fmt: skip
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_saturated_dev_accuracy_is_said_and_the_margins_are_recorded(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 16))
    Y = X + 0.05 * rng.standard_normal((1000, 16))  # aligned already: dev retrieval is perfect with or without a map
    result, manifest = _fit(tmp_path, X, Y, "--method", "procrustes")
    dev = manifest["dev"]
    assert dev["before"]["src2tgt"]["nn"] == 1.0 and dev["after"]["src2tgt"]["nn"] == 1.0
    assert {"src2tgt nn", "src2tgt csls", "tgt2src nn", "tgt2src csls", "src2tgt mean_rank"} <= set(dev["saturated"])
    for stage in ("before", "after"):
        assert dev[stage]["mean_rank"] == {"src2tgt": 1.0, "tgt2src": 1.0}
        assert set(dev[stage]["margin"]) == set(dev[stage]["margin_sd"]) == {"src2tgt", "tgt2src"}
        assert dev[stage]["margin_sd"]["src2tgt"] > 1
    (warning,) = _warnings(result)
    assert "at their ceiling" in warning and "cannot tell maps apart" in warning and "margin_sd" in warning
    dev_lines = [line for line in result.stderr.splitlines() if "dev (" in line]
    assert len(dev_lines) == 2 and all("margin" in line and "mean rank" in line for line in dev_lines)


def test_unsaturated_dev_accuracy_is_not_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 16))
    Y = X @ np.linalg.qr(rng.standard_normal((16, 16)))[0] + 0.05 * rng.standard_normal((1000, 16))
    result, manifest = _fit(tmp_path, X, Y, "--method", "procrustes")
    assert manifest["dev"]["before"]["src2tgt"]["nn"] < 0.5 and manifest["dev"]["saturated"] == []
    assert manifest["dev"]["after"]["margin_sd"]["src2tgt"] > manifest["dev"]["before"]["margin_sd"]["src2tgt"]
    assert _warnings(result) == []
    assert manifest["projection"]["diagnostics"]["ill_conditioned"] is False
    assert manifest["projection"]["diagnostics"]["spectral_norm"] == pytest.approx(1.0, abs=1e-5)


def _rotation_pairs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((400, 8))
    return X, X @ np.linalg.qr(rng.standard_normal((8, 8)))[0] + 0.01 * rng.standard_normal((400, 8))


@pytest.mark.slow
def test_sgd_records_the_epoch_kept_and_why_it_stopped(tmp_path: Path) -> None:
    X, Y = _rotation_pairs(3)
    # still improving when the epochs run out
    result, manifest = _fit(tmp_path, X, Y, "--method", "sgd", "--epochs", "3", "--lr", "0.01")
    record = manifest["projection"]["diagnostics"]["sgd"]
    assert record["stop_reason"] == "epochs" and record["stopped_epoch"] == 3 and record["best_epoch"] == 3
    assert record["best_dev_mse"] > 0 and record["epochs"] == 3 and record["patience"] == 5
    assert "sgd kept epoch 3" in result.stderr and "the epoch limit" in result.stderr
    # a learning rate far too large: the dev loss stops improving and patience ends the run
    result, manifest = _fit(tmp_path, X, Y, "--method", "sgd", "--epochs", "50", "--lr", "5", "--patience", "2")
    record = manifest["projection"]["diagnostics"]["sgd"]
    assert record["stop_reason"] == "patience"
    assert record["stopped_epoch"] == record["best_epoch"] + 2 < 50
    assert f"sgd kept epoch {record['best_epoch']}" in result.stderr and "(--patience)" in result.stderr
    # identity trains nothing: no record
    _, manifest = _fit(tmp_path, X, Y, "--method", "identity")
    assert "sgd" not in manifest["projection"]["diagnostics"]


def test_fit_linear_map_returns_its_record() -> None:
    from xl.models.linear_map import LinearMapFit, fit_linear_map

    X, Y = (A.astype(np.float32) for A in _rotation_pairs(4))

    def chunks() -> list[tuple[np.ndarray, np.ndarray]]:
        return [(X[:300], Y[:300])]

    # dev pairs that disagree with the training pairs (the identity): every epoch makes them worse, so the
    # first epoch is kept and patience stops the run right after
    fit = fit_linear_map(chunks, (X[300:], X[300:]), center=False, lr=0.01, epochs=20, patience=3)
    assert isinstance(fit, LinearMapFit) and fit.W.shape == (8, 8) and fit.W.dtype == np.float32
    assert (fit.best_epoch, fit.stopped_epoch, fit.stop_reason) == (1, 4, "patience")
    assert fit.best_dev_mse is not None and fit.record()["stop_reason"] == "patience"
    json.dumps(fit.record())
    # no dev pairs: every epoch runs and the last is kept
    fit = fit_linear_map(chunks, None, center=True, lr=0.01, epochs=4)
    assert (fit.best_epoch, fit.stopped_epoch, fit.stop_reason, fit.best_dev_mse) == (4, 4, "epochs", None)
    assert fit.W.shape == (9, 8)
