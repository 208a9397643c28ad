"""The families study's committed run files (examples/tasksim-families/results/e5-small/runs): their gain rows are
what the recipe's `xl tasksim gains` line makes of them, computed here by hand from the eval lines."""

from __future__ import annotations

import shutil
import statistics
import subprocess
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


RECIPE = RESULTS.parents[1]
STUDY_RUNS = [f"{target}/{inter}/seed{k}.jsonl" for target, sources in
              [("tatoeba", ["none", "sst2", "umsab", "amcd", "sts", "qa", "align"])] +
              [(t, ["none"] + [s for s in ("sst2", "umsab", "amcd", "sts", "qa", "align") if s != t])
               for t in ("sts", "umsab", "amcd")] for inter in sources for k in range(3)]  # fmt: skip


def _dry_run(results: Path, build: Path) -> list[str]:
    """The commands `make -n runs` would run for a results folder (nothing is executed)."""
    done = subprocess.run(["make", "-n", "-C", str(RECIPE), f"R={results}", f"B={build}", "XL=xl", "runs"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("make")]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_the_recipe_redoes_only_missing_runs_and_trains_each_model_once(tmp_path: Path) -> None:
    """Committed run files have no prerequisite (a fresh clone without models rebuilds nothing); a missing one
    builds exactly the models its scores come from, and a model two runs share is trained once."""
    results, build = tmp_path / "results", tmp_path / "build"
    everything = _dry_run(results, build)
    trains = [line for line in everything if " finetune " in line]
    # 6 sources x 3 seeds, then 5 sources before each of the 3 trained targets x 3 seeds
    assert len(trains) == 18 + 45 and len(set(trains)) == len(trains)
    assert sum(" eval " in line for line in everything) == 3 * 6 * 3 + 6 * 3 + 1  # tatoeba/none is scored once
    for run in STUDY_RUNS:
        (results / "runs" / run).parent.mkdir(parents=True, exist_ok=True)
        (results / "runs" / run).write_text("{}\n")
    assert _dry_run(results, build) == []
    (results / "runs" / "umsab" / "qa" / "seed1.jsonl").unlink()
    again = _dry_run(results, build)
    assert [line.split(" -o ")[1].split()[0] for line in again if " finetune " in line] == [
        f"{build}/models/qa/seed1", f"{build}/models/qa-umsab/seed1"]  # fmt: skip
    assert [line for line in again if " eval " in line][0].count("--tag inter=qa --tag target=umsab --tag seed=1")
