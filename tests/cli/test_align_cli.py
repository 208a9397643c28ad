"""``xl fit-proj``, ``xl apply-proj`` and ``xl eval retrieval`` through real subprocesses and pipes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from scipy.stats import ortho_group

from tests.conftest import run_xl
from xl.core.projection import Projection
from xl.io.npy import read_matrix


def _error(result: subprocess.CompletedProcess[bytes], code: int, command: str, *needles: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert result.stdout == b"" and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith(f"xl {command}: error:")]) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 16)).astype(np.float32)
    R = ortho_group.rvs(16, random_state=1).astype(np.float32)
    Y = X @ R + 0.01 * rng.standard_normal((400, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    return tmp_path / "x.npy", tmp_path / "y.npy", X, R


def test_procrustes_map_and_manifest(pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y, X, R = pairs
    result = run_xl("fit-proj", "--src", str(x), "--tgt", str(y), "--method", "procrustes", "-o",
                    str(tmp_path / "W.npy"), "--src-lang", "en", "--tgt-lang", "ko")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    W = np.load(tmp_path / "W.npy")
    np.testing.assert_allclose(W, R, atol=2e-3)
    manifest = json.loads((tmp_path / "W.npy.json").read_text())
    assert manifest["projection"]["method"] == "procrustes" and manifest["src_lang"] == "en"
    assert manifest["pairs"] == 400 and manifest["pairs_dev"] + manifest["pairs_train"] == 400
    assert 20 <= manifest["pairs_dev"] <= 65  # about 10%, seeded
    assert manifest["projection"]["diagnostics"]["orthogonality_error"] < 1e-5
    assert manifest["dev"]["after"]["src2tgt"]["nn"] == 1.0
    assert "dev" in result.stderr.decode() and "accuracy" in result.stderr.decode()


def test_preprocessing_round_trips_through_the_manifest(
    pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y, X, _ = pairs
    result = run_xl("fit-proj", "--src", str(x), "--tgt", str(y), "--affine", "--preprocess", "unit,center,unit",
                    "-o", str(tmp_path / "W.npy"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    W = np.load(tmp_path / "W.npy")
    assert W.shape == (17, 16)  # affine: bias as last row
    projection = Projection.from_dict(json.loads((tmp_path / "W.npy.json").read_text())["projection"], W)
    applied = run_xl("apply-proj", str(tmp_path / "W.npy"), str(x), "-o", str(tmp_path / "out.npy"), "-q")
    assert applied.returncode == 0, applied.stderr.decode()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), projection.apply_source(X), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_embed_pipe_into_apply_proj_equals_numpy(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "en.txt").write_text("".join(f"sentence {i} here\n" for i in range(50)))
    model = ("--model", str(tiny_model_path), "--dtype", "float32", "-q")
    assert run_xl("embed", str(tmp_path / "en.txt"), "-o", str(tmp_path / "en.npy"), *model).returncode == 0
    X = np.load(tmp_path / "en.npy")
    Y = X @ ortho_group.rvs(32, random_state=3).astype(np.float32)
    np.save(tmp_path / "ko.npy", Y)
    fit = run_xl("fit-proj", "--src", str(tmp_path / "en.npy"), "--tgt", str(tmp_path / "ko.npy"), "--method",
                 "lstsq", "--ridge", "1e-3", "--affine", "-o", str(tmp_path / "W.npy"), "-q")  # fmt: skip
    assert fit.returncode == 0, fit.stderr.decode()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    pipe = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"xl embed en.txt {' '.join(model)} | xl apply-proj W.npy -q > out.npy"],
                          cwd=tmp_path, capture_output=True, env=env, check=False)  # fmt: skip
    assert pipe.returncode == 0, pipe.stderr.decode()
    W = np.load(tmp_path / "W.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), X @ W[:-1] + W[-1], rtol=1e-4, atol=1e-5)
    # The map records the model it was fitted on: embeddings of another model are refused.
    other = json.loads((tmp_path / "en.npy.json").read_text())
    other["model_fingerprint"] = "sha256:another-model"
    (tmp_path / "other.npy").write_bytes((tmp_path / "en.npy").read_bytes())
    (tmp_path / "other.npy.json").write_text(json.dumps(other))
    refused = run_xl("apply-proj", str(tmp_path / "W.npy"), str(tmp_path / "other.npy"), "-o",
                     str(tmp_path / "o2.npy"))  # fmt: skip
    _error(refused, 1, "apply-proj", "model_fingerprint", "--force")
    assert not (tmp_path / "o2.npy").exists()
    forced = run_xl("apply-proj", str(tmp_path / "W.npy"), str(tmp_path / "other.npy"), "--force", "-q",
                    "-o", str(tmp_path / "o2.npy"))  # fmt: skip
    assert forced.returncode == 0


@pytest.mark.slow
def test_sgd_learns_a_map(pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y, X, R = pairs
    result = run_xl("fit-proj", "--src", str(x), "--tgt", str(y), "--method", "sgd", "--epochs", "60",
                    "--lr", "0.01", "-o", str(tmp_path / "W.npy"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    manifest = json.loads((tmp_path / "W.npy.json").read_text())
    assert manifest["projection"]["method"] == "sgd" and manifest["hyperparameters"]["epochs"] == 60
    assert manifest["dev"]["after"]["mean_pair_cosine"] > 0.99 > manifest["dev"]["before"]["mean_pair_cosine"]


def test_fit_errors(pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y, X, _ = pairs
    out = tmp_path / "W.npy"
    np.save(tmp_path / "short.npy", X[:398])
    _error(run_xl("fit-proj", "--src", str(x), "--tgt", str(tmp_path / "short.npy"), "-o", str(out)), 1,
           "fit-proj", "400 rows", "398")  # fmt: skip
    np.save(tmp_path / "wide.npy", np.zeros((400, 20), dtype=np.float32))
    _error(run_xl("fit-proj", "--src", str(x), "--tgt", str(tmp_path / "wide.npy"), "--method", "procrustes",
                  "-o", str(out)), 1, "fit-proj", "16", "20")  # fmt: skip
    bad = X.copy()
    bad[123, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    _error(run_xl("fit-proj", "--src", str(tmp_path / "nan.npy"), "--tgt", str(y), "-o", str(out)), 1,
           "fit-proj", "row 123")  # fmt: skip
    np.save(tmp_path / "few.npy", X[:10])
    np.save(tmp_path / "fewy.npy", X[:10])
    _error(run_xl("fit-proj", "--src", str(tmp_path / "few.npy"), "--tgt", str(tmp_path / "fewy.npy"),
                  "--dev-frac", "0", "-o", str(out)), 1, "fit-proj", "--ridge")  # fmt: skip
    singular = X.copy()
    singular[:, 5] = singular[:, 4]
    np.save(tmp_path / "singular.npy", singular)
    _error(run_xl("fit-proj", "--src", str(tmp_path / "singular.npy"), "--tgt", str(y), "-o", str(out)), 1,
           "fit-proj", "singular")  # fmt: skip
    np.save(tmp_path / "empty.npy", np.zeros((0, 16), dtype=np.float32))
    _error(run_xl("fit-proj", "--src", str(tmp_path / "empty.npy"), "--tgt", str(tmp_path / "empty.npy"),
                  "-o", str(out)), 1, "fit-proj", "empty")  # fmt: skip
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_apply_errors(pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y, X, _ = pairs
    assert run_xl("fit-proj", "--src", str(x), "--tgt", str(y), "-o", str(tmp_path / "W.npy"), "-q").returncode == 0
    np.save(tmp_path / "narrow.npy", X[:, :8])
    _error(run_xl("apply-proj", str(tmp_path / "W.npy"), str(tmp_path / "narrow.npy"), "-o",
                  str(tmp_path / "o.npy")), 1, "apply-proj", "8")  # fmt: skip
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2), dtype=np.float32))
    _error(run_xl("apply-proj", str(tmp_path / "cube.npy"), str(x), "-o", str(tmp_path / "o.npy")), 1,
           "apply-proj", "2-D")  # fmt: skip
    assert not (tmp_path / "o.npy").exists()
    _error(run_xl("apply-proj", str(tmp_path / "W.npy"), str(x), "--side", "sideways", "-o", str(tmp_path / "o.npy")),
           2, "apply-proj", "sideways")  # fmt: skip
    empty = run_xl("apply-proj", str(tmp_path / "W.npy"), "-", stdin=_npy(np.zeros((0, 16), np.float32)))
    assert empty.returncode == 0 and read_matrix(io.BytesIO(empty.stdout)).shape == (0, 16)


def _npy(X: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, X)
    return buffer.getvalue()


def test_eval_retrieval_json_line(pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y, _, _ = pairs
    raw = run_xl("eval", "retrieval", "--src", str(x), "--tgt", str(y), "--bootstrap", "200")
    assert raw.returncode == 0, raw.stderr.decode()
    assert orjson.loads(raw.stdout)["src2tgt"]["accuracy"] < 0.2  # y is a rotation of x: unaligned spaces
    assert run_xl("fit-proj", "--src", str(x), "--tgt", str(y), "-o", str(tmp_path / "W.npy"), "-q").returncode == 0
    result = run_xl("eval", "retrieval", "--src", str(x), "--tgt", str(y), "--proj", str(tmp_path / "W.npy"))
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    row = orjson.loads(lines[0])
    assert row["task"] == "retrieval" and row["n"] == 400 and row["proj"] == str(tmp_path / "W.npy")
    assert row["src2tgt"]["accuracy"] == 1.0 and len(row["src2tgt"]["accuracy_ci"]) == 2
    piped = run_xl("eval", "retrieval", "--src", "-", "--tgt", str(y), "--format", "md", stdin=x.read_bytes())
    assert piped.returncode == 0 and b"| src2tgt |" in piped.stdout
    _error(run_xl("eval", "retrieval", "--src", str(x), "--tgt", str(y), "--scoring", "magic"), 2,
           "eval retrieval", "magic")  # fmt: skip
    _error(run_xl("eval", "retrieval", "--src", str(x), "--tgt", str(y), "--tag", "no-equals-sign"), 2,
           "eval retrieval", "KEY=VALUE")  # fmt: skip


@pytest.mark.data
def test_eval_retrieval_with_a_model_scores_every_tatoeba_language_in_one_load(
    data_root: Path, tiny_model_path: Path
) -> None:
    """84 languages in one spec (longer than a file name may be); a line per language keyed by the table's code
    (the pair's second side), then the summary."""
    from xl.core.languages import builtin_table
    from xl.tasks import DATASETS

    langs = sorted(lang.partition("-")[2] for lang in DATASETS["tatoeba"].langs)
    spec = "tatoeba:test:" + ",".join(langs)
    assert len(langs) == 84 and len(spec) > 255
    result = run_xl("eval", "retrieval", "--model", str(tiny_model_path), spec, "--limit", "4", "--bootstrap", "0",
                    "--tag", "inter=none")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["lang"] for line in lines[:-1]] == langs and set(langs) <= set(builtin_table())
    assert all(line["task"] == "retrieval" and line["n"] == 4 and line["inter"] == "none" for line in lines[:-1])
    for line in lines[:-1]:
        assert line["accuracy"] == pytest.approx((line["en2xx_accuracy"] + line["xx2en_accuracy"]) / 2)
        assert line["source"] == f"tatoeba:test:en-{line['lang']}"
    assert lines[-1]["summary"] is True and lines[-1]["sets"] == 84


def test_eval_retrieval_takes_matrices_or_a_model_and_data_never_both(
    pairs: tuple[Path, Path, np.ndarray, np.ndarray], tiny_model_path: Path, tmp_path: Path
) -> None:
    x, y, _, _ = pairs
    pair_file = tmp_path / "pairs.jsonl"
    pair_file.write_text('{"text1": "a cat", "text2": "eine Katze"}\n{"text1": "a dog", "text2": ""}\n')
    _error(run_xl("eval", "retrieval"), 2, "eval retrieval", "--src and --tgt")
    _error(run_xl("eval", "retrieval", "--src", str(x)), 2, "eval retrieval", "--src and --tgt")
    _error(run_xl("eval", "retrieval", "--src", str(x), "--tgt", str(y), "--model", str(tiny_model_path)), 2,
           "eval retrieval", "--model", "with --src/--tgt")  # fmt: skip
    _error(run_xl("eval", "retrieval", str(pair_file), "--src", str(x)), 2, "eval retrieval", "--src", "with DATA")
    _error(run_xl("eval", "retrieval", str(pair_file), "--scoring", "csls"), 2, "eval retrieval", "--scoring")
    # a pair with an empty side is bad data: one line naming it, exit 1, no result line
    _error(run_xl("eval", "retrieval", str(pair_file), "--model", str(tiny_model_path)), 1, "eval retrieval",
           "pairs.jsonl:2", "text2")  # fmt: skip


@pytest.mark.parametrize("method", ["lstsq", "procrustes", "sgd", "identity"])
def test_nan_in_a_train_or_dev_row_is_named_by_every_method(
    pairs: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path, method: str
) -> None:
    from xl.core.projection import dev_row_mask

    x, y, X, _ = pairs
    dev_rows = np.flatnonzero(dev_row_mask(np.arange(len(X)), 0.1, 0))
    train_rows = np.setdiff1d(np.arange(len(X)), dev_rows)
    for row in (int(dev_rows[3]), int(train_rows[-5])):
        bad = X.copy()
        bad[row, 2] = np.inf
        np.save(tmp_path / "inf.npy", bad)
        out = tmp_path / "W.npy"
        epochs = ["--epochs", "1"] if method == "sgd" else []  # another method refuses the sgd options
        _error(run_xl("fit-proj", "--method", method, "--src", str(y), "--tgt", str(tmp_path / "inf.npy"),
                      *epochs, "-o", str(out)), 1, "fit-proj", f"row {row}")  # fmt: skip
        assert not out.exists()


def test_fit_proj_records_one_spelling_of_each_language(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", X @ ortho_group.rvs(8, random_state=1).astype(np.float32))
    result = run_xl("fit-proj", "--src", str(tmp_path / "x.npy"), "--tgt", str(tmp_path / "y.npy"), "-o",
                    str(tmp_path / "W.npy"), "--src-lang", "kor_Hang", "--tgt-lang", "ENG", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    manifest = json.loads((tmp_path / "W.npy.json").read_text())
    assert (manifest["src_lang"], manifest["tgt_lang"]) == ("ko", "en")
