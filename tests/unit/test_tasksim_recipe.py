"""The study recipe's gain rows (examples/tasksim/gains.py): pairing of runs, and which sets count."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _gains_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tasksim_gains", REPO / "examples" / "tasksim" / "gains.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(inter: str, target: str, data: str, lang: str, value: float) -> dict[str, Any]:
    metric = {"sts": "spearman", "qa": "f1"}.get(target, "macro_f1")
    return {"inter": inter, "target": target, "data": data, "lang": lang, metric: value}


def test_gain_is_score_after_the_source_minus_the_target_only_run() -> None:
    results = [
        _row("none", "sts", "stsb-multi-mt.test", "de", 70.0),
        _row("none-seed1", "sts", "stsb-multi-mt.test", "de", 71.0),
        _row("qa", "sts", "stsb-multi-mt.test", "de", 72.5),
        _row("none", "sts", "stsb-multi-mt.test", "en", 80.0),  # English: not a zero-shot row
        _row("qa", "sts", "stsb-multi-mt.test", "en", 79.0),
        _row("none", "sts", "sts2017.test", "ar-ar", 60.0),  # counts, as ar
        _row("qa", "sts", "sts2017.test", "ar-ar", 58.0),
        _row("none", "sts", "sts2017.test", "es-es", 85.0),  # es already comes from stsb-multi-mt
        _row("qa", "sts", "sts2017.test", "es-es", 86.0),
        _row("none", "qa", "xquad.test", "de", 30.0),
        _row("sts", "qa", "xquad.test", "de", 33.0),
        _row("none", "qa", "mlqa-de.dev", "de", 40.0),  # a second German set: left out
        _row("sts", "qa", "mlqa-de.dev", "de", 20.0),
        {"summary": True, "target": "qa", "inter": "sts"},
    ]
    rows = _gains_module().gain_rows(results)
    got = {(r["source"], r["target"], r["lang"]): r["gain"] for r in rows}
    assert got == {("qa", "sts", "de"): 2.5, ("qa", "sts", "ar"): -2.0, ("sts", "qa", "de"): 3.0}
    assert all(r["score_without"] + r["gain"] == r["score_with"] for r in rows)
