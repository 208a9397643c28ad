"""``xl tasksim gains | decompose | correlate | covariates | predict``: the study commands, through subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli.test_tasksim_cli import _error
from tests.conftest import REPO, run_xl

STUDY = REPO / "examples" / "tasksim"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _lines(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def test_gains_of_the_committed_study(tmp_path: Path) -> None:
    out = tmp_path / "gains.jsonl"
    result = run_xl("tasksim", "gains", str(STUDY / "results.jsonl"), "--exclude-set", "mlqa-de.dev",
                    "--exclude-set", "sts2017.test:es-es", "-o", str(out))  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "mlqa-de.dev de left out" in stderr and "en-ar left out: not one language" in stderr
    assert "124 gain rows" in stderr and "no gain_se" in stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 124 and {r["lang"] for r in rows} >= {"ko", "ar", "ja", "th"}
    assert all(r["n_seeds"] == 1 and r["n_seeds_without"] == 2 and r["gain_se"] is None for r in rows)
    manifest = json.loads((tmp_path / "gains.jsonl.json").read_text())
    assert manifest["options"]["exclude_sets"] == ["mlqa-de.dev", "sts2017.test:es-es"]
    # the same through stdin, and the decomposition of it sums to the total
    piped = run_xl("tasksim", "gains", "-", "--exclude-set", "mlqa-de.dev", "--exclude-set", "sts2017.test:es-es",
                   "-q", stdin=(STUDY / "results.jsonl").read_bytes())  # fmt: skip
    assert _lines(piped.stdout) == rows and piped.stderr == b""
    decomposed = run_xl("tasksim", "decompose", "--gains", str(out))
    assert decomposed.returncode == 0, decomposed.stderr.decode()
    (line,) = _lines(decomposed.stdout)
    assert line["kind"] == "decomposition" and line["n_rows"] == 124
    assert sum(c["share"] for c in line["components"].values()) == pytest.approx(1.0)
    md = run_xl("tasksim", "decompose", "--gains", str(out), "--format", "md")
    assert "| component |" in md.stdout.decode() and "pair-level predictor" in md.stdout.decode()


def test_gains_bad_input(tmp_path: Path) -> None:
    def line(inter: str, target: str = "sts", lang: str = "de", **extra: Any) -> dict[str, Any]:
        return {"inter": inter, "target": target, "task": "sts", "data": "set.test", "lang": lang,
                "spearman": 70.0, **extra}  # fmt: skip

    def run(*rows: dict[str, Any]) -> Any:
        return run_xl("tasksim", "gains", _jsonl(tmp_path / "r.jsonl", list(rows)))

    _error(run(line("none"), {"target": "sts", "task": "sts", "data": "set.test", "lang": "de", "spearman": 1.0}),
           1, "r.jsonl:2", "lacks the tag 'inter'")  # fmt: skip
    _error(run(line("sst2")), 1, "target 'sts' has no target-only run")
    _error(run(line("none", seed="0"), line("sst2")), 1, "tag 'seed' is on some eval lines but not on others",
           "sst2→sts")  # fmt: skip
    _error(run(line("none"), line("sst2"), line("sst2")), 1, "duplicate eval line")
    _error(run(line("none"), line("sst2", spearman=None)), 1, "undefined")
    _error(run_xl("tasksim", "gains"), 2, "no result files")
    _error(run_xl("tasksim", "gains", str(tmp_path / "missing.jsonl")), 1, "not found")
    _error(run_xl("tasksim", "gains", _jsonl(tmp_path / "r.jsonl", [line("none"), line("sst2")]), "--metric", "sts"),
           2, "--metric 'sts' is not KEY=VALUE")  # fmt: skip
    # nothing is written by a failed run, and an existing output is kept
    out = tmp_path / "g.jsonl"
    out.write_text("kept\n")
    failed = run_xl("tasksim", "gains", _jsonl(tmp_path / "r.jsonl", [line("sst2")]), "-o", str(out))
    assert failed.returncode == 1 and out.read_text() == "kept\n"


def test_decompose_bad_input(tmp_path: Path) -> None:
    _error(run_xl("tasksim", "decompose", "--gains", _jsonl(tmp_path / "g.jsonl", [{"source": "a", "target": "b"}])),
           1, "g.jsonl:1")  # fmt: skip
    _error(run_xl("tasksim", "decompose", "--gains", _jsonl(tmp_path / "g.jsonl", [])), 1, "no gain rows")
    _error(run_xl("tasksim", "decompose", "--gains", "-", "--format", "csv", stdin=b""), 2, "'csv' is not one of")


def _study_sim(tmp_path: Path) -> str:
    """A similarity matrix over the study's five tasks (their labels as the recipe writes them)."""
    labels = ["sst2", "umsab", "amcd", "sts", "qa"]
    S = np.random.default_rng(0).uniform(0.2, 0.9, (5, 5))
    np.save(tmp_path / "S.npy", ((S + S.T) / 2).astype(np.float32))
    (tmp_path / "S.npy.json").write_text(json.dumps({"labels": labels}))
    return str(tmp_path / "S.npy")


@pytest.mark.slow
def test_correlate_and_predict_on_the_committed_study_gains(tmp_path: Path) -> None:
    sim, gains = _study_sim(tmp_path), str(STUDY / "gains.jsonl")
    result = run_xl("tasksim", "correlate", "--sim", sim, "--gains", gains, "--permutations", "199", "--bootstrap",
                    "99", "--methods", "spearman")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    lines = _lines(result.stdout)
    assert [line["kind"] for line in lines[:2]] == ["design", "decomposition"]
    assert lines[0]["unit"] == "pair" and lines[0]["n_pairs"] == 16
    overall = [line for line in lines if line["kind"] == "correlation" and line["scope"] == "overall"]
    assert [(line["unit"], line["n"]) for line in overall] == [("pair", 16), ("naive", 124)]
    # one Indo-European family of 10 languages, every other family one language: no family test, said so
    assert [line["reason"] is not None for line in lines if line["kind"] == "family_test"] == [True, True]
    md = run_xl("tasksim", "correlate", "--sim", sim, "--gains", gains, "--permutations", "99", "--bootstrap", "0",
                "--methods", "spearman", "--format", "md", "--family-test", "none", "--no-naive")  # fmt: skip
    text = md.stdout.decode()
    assert "| component |" in text and "| scope | unit |" in text and "naive" not in text
    assert re.search(r"\| all \| 31 \| [0-9.]+ n=\d+ \(\d+ undef\.\) \|", text)  # NDCG undefined where no source helps
    # asking for a family test the data cannot support is an error
    _error(run_xl("tasksim", "correlate", "--sim", sim, "--gains", gains, "--family-test", "both",
                  "--permutations", "0", "--bootstrap", "0"), 2, "needs two families with ≥ 3 languages")  # fmt: skip
    predicted = run_xl("tasksim", "predict", "--sim", sim, "--gains", gains, "--bootstrap", "200", "--folds",
                       "language,source")  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr.decode()
    lines = _lines(predicted.stdout)
    assert {line["kind"] for line in lines} == {"prediction", "comparison"}
    held_out = {
        (line["grouping"], line["features"]): line["n_groups"] for line in lines if line["kind"] == "prediction"
    }
    assert held_out[("language", "covariates")] == 17 and held_out[("source", "similarity")] == 5


@pytest.mark.slow
def test_covariates_and_predict_bad_input(tmp_path: Path) -> None:
    sim, gains = _study_sim(tmp_path), str(STUDY / "gains.jsonl")
    result = run_xl("tasksim", "covariates", "de", "pol", "ko")
    assert result.returncode == 0, result.stderr.decode()
    rows = _lines(result.stdout)
    assert [r["code"] for r in rows] == ["de", "pl", "ko"] and rows[2]["genetic"] == 1.0  # Korean: an isolate
    assert 0 < rows[0]["geographic"] < rows[2]["geographic"] < 1
    _error(run_xl("tasksim", "covariates", "de", "xx"), 1, "'xx'")
    _error(run_xl("tasksim", "covariates", "de=x.txt"), 2, "--english")
    _error(run_xl("tasksim", "covariates"), 2, "no languages")
    covariates = _jsonl(tmp_path / "cov.jsonl", [r for r in rows if r["code"] != "ko"])
    _error(run_xl("tasksim", "predict", "--sim", sim, "--gains", gains, "--covariates", covariates), 1,
           "languages missing from the covariates: ", "ko")  # fmt: skip
    one_language = _jsonl(tmp_path / "g.jsonl", [r for r in _lines((STUDY / "gains.jsonl").read_bytes())
                                                 if r["lang"] == "de"])  # fmt: skip
    _error(run_xl("tasksim", "predict", "--sim", sim, "--gains", one_language, "--folds", "language"), 1,
           "needs ≥ 2 languages for leave-one-language-out")  # fmt: skip
    _error(run_xl("tasksim", "predict", "--sim", sim, "--gains", gains, "--folds", "target"), 2, "target")
    _error(run_xl("tasksim", "predict", "--sim", sim, "--gains", gains, "--regressor", "svm"), 2, "svm")


@pytest.mark.slow
def test_plot_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    sim, gains = _study_sim(tmp_path), str(STUDY / "gains.jsonl")
    _error(run_xl("tasksim", "correlate", "--sim", sim, "--gains", gains, "--plot", str(tmp_path / "x.txt")), 2,
           "cannot write a plot as '.txt'")  # fmt: skip
    _error(run_xl("tasksim", "correlate", "--sim", sim, "--gains", gains, "--plot", str(tmp_path / "no" / "x.png")),
           2, "no folder")  # fmt: skip
    np.save(tmp_path / "E.npy", np.eye(3, dtype=np.float32))
    out = tmp_path / "sim.npy"
    _error(run_xl("tasksim", "similarity", str(tmp_path / "E.npy"), "-o", str(out), "--plot",
                  str(tmp_path / "heat.txt")), 2, ".txt")  # fmt: skip
    assert not out.exists() and not (tmp_path / "sim.npy.json").exists()  # nothing left behind
    ok = run_xl("tasksim", "similarity", str(tmp_path / "E.npy"), "-o", str(out), "--plot", str(tmp_path / "h.svg"))
    assert ok.returncode == 0 and out.exists() and (tmp_path / "h.svg").read_bytes().lstrip().startswith(b"<?xml")


@pytest.mark.slow
def test_subword_covariates_use_the_model_tokenizer_on_the_data(tmp_path: Path, tiny_model_path: Path) -> None:
    english = tmp_path / "en.txt"
    english.write_text("The Hotel in Berlin has a Computer and Internet\nthe dog ran home\n")
    german = tmp_path / "de.txt"
    german.write_text("Das Hotel in Berlin hat einen Computer und Internet\nder Hund lief nach Hause\n")
    thai = tmp_path / "th.txt"
    thai.write_text("แมวนั่งบนเสื่อ\nสุนัขวิ่งกลับบ้าน\n")
    result = run_xl("tasksim", "covariates", f"de={german}", f"th={thai}", "--english", str(english), "--model",
                    str(tiny_model_path))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    de, th = _lines(result.stdout)
    assert de["code"] == "de" and th["code"] == "th" and th["same_script_as_english"] is False
    assert de["fertility"] >= 1.0 and th["tokens_per_char"] > 0
    assert 0 <= th["overlap_types"] < de["overlap_types"] <= 1  # Latin-script German shares more pieces with English
    _error(run_xl("tasksim", "covariates", f"de={german}", "th", "--english", str(english), "--model",
                  str(tiny_model_path)), 2, "no data: th")  # fmt: skip
