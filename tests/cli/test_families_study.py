"""The families study's committed run files (examples/tasksim-families/results/e5-small/runs): their gain rows are
what the recipe's `xl tasksim gains` line makes of them, computed here by hand from the eval lines."""

from __future__ import annotations

import statistics
from pathlib import Path

import orjson
import pytest

from tests.conftest import run_xl

RESULTS = Path(__file__).resolve().parents[2] / "examples" / "tasksim-families" / "results" / "e5-small"
RUNS = RESULTS / "runs"


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_the_untrained_baseline_is_one_model_retagged_for_each_seed() -> None:
    base = [_lines(RUNS / "tatoeba" / "none" / f"seed{k}.jsonl") for k in range(3)]
    assert len(base[0]) == 85 and base[0][-1]["summary"] is True  # 84 languages, then the summary
    for k, lines in enumerate(base):
        assert [line["seed"] for line in lines] == [str(k)] * 85
        assert [{**line, "seed": "0"} for line in lines] == base[0]


def test_gain_rows_of_a_source_are_reproduced_from_its_run_files(tmp_path: Path) -> None:
    """umsab → tatoeba: the mean accuracy over its three seeds minus the untrained model's, per language; the seed
    SE is the seeds' SD over √3 (the baseline has none); the recipe's committed rows, where present, agree."""
    files = [RUNS / "tatoeba" / inter / f"seed{k}.jsonl" for inter in ("none", "umsab") for k in range(3)]
    joined = tmp_path / "results.jsonl"
    joined.write_bytes(b"".join(path.read_bytes() for path in files))
    result = run_xl("tasksim", "gains", str(joined), "--metric", "tatoeba=accuracy", "-o", str(tmp_path / "g.jsonl"))
    assert result.returncode == 0, result.stderr.decode()
    rows = {row["lang"]: row for row in _lines(tmp_path / "g.jsonl")}
    runs = [{line["lang"]: line["accuracy"] for line in _lines(path) if not line["summary"]} for path in files]
    base, seeds = runs[0], runs[3:]
    assert sorted(rows) == sorted(base) and len(rows) == 84
    for lang, row in rows.items():
        values = [seed[lang] for seed in seeds]
        assert row["source"] == "umsab" and row["target"] == "tatoeba" and row["n_seeds"] == 3
        assert row["gain"] == pytest.approx(statistics.mean(values) - base[lang], abs=1e-9)
        assert row["gain_se"] == pytest.approx(statistics.stdev(values) / 3**0.5, abs=1e-9)
        assert row["baseline_seed_sd"] == 0.0
    committed = RESULTS / "gains-all.jsonl"
    if committed.exists():
        mine = {row["lang"]: row for row in _lines(committed) if (row["source"], row["target"]) == ("umsab", "tatoeba")}
        assert mine == rows
