"""End to end on the default model: fine-tuning really learns (English SST-2), and the zero-shot evaluation of
the result runs on real Korean data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl
from xl.tasks import convert

pytestmark = pytest.mark.e2e


def _subset(dataset: str, split: str, lang: str | None, n: int, path: Path) -> Path:
    records = list(convert(dataset, split, lang))
    keep = np.sort(np.random.default_rng(0).choice(len(records), size=n, replace=False))
    path.write_text("".join(json.dumps(records[i], ensure_ascii=False) + "\n" for i in keep), encoding="utf-8")
    return path


def test_classification_training_beats_the_untrained_head(default_model_path: Path, data_root: Path,
                                                         tmp_path: Path) -> None:  # fmt: skip
    train = _subset("sst2", "train", None, 480, tmp_path / "train.jsonl")
    dev = _subset("sst2", "dev", None, 300, tmp_path / "dev.jsonl")
    common = ["finetune", "--task", "classify", "--train", str(train), "--dev", str(dev), "--freeze-embeddings",
              "--batch-size", "16", "-q"]  # fmt: skip
    trained = run_xl(*common, "-o", str(tmp_path / "trained"), "--max-steps", "30", "--lr", "1e-4", "--eval-steps",
                     "15", "--log-every", "5", timeout=900)  # fmt: skip
    assert trained.returncode == 0, trained.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "trained" / "log.jsonl").read_text().splitlines()]
    # the untrained head: the run's own step 0 (the starting model, scored before the first update)
    before = next(row["dev"]["selection_metric"] for row in rows if row.get("step") == 0 and "dev" in row)
    after = json.loads((tmp_path / "trained" / "xl-finetune.json").read_text())
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses[-1] < losses[0]
    assert after["chosen"]["metric"] > max(before, 50.0) + 15, (before, after["chosen"])
    # the English-trained classifier runs zero-shot on Korean reviews (NSMC) and beats chance there too
    scored = run_xl("eval", "classify", "--model", str(tmp_path / "trained"), "nsmc:test:ko", "--limit", "400",
                    timeout=900)  # fmt: skip
    assert scored.returncode == 0, scored.stderr.decode()[-2000:]
    line = json.loads(scored.stdout.decode())
    assert line["lang"] == "ko" and line["n"] == 400 and line["accuracy"] > 55
