"""``make bench-tasksim``: the statistics of ``xl tasksim correlate`` at study scale, part by part.

50 XTREME-R languages × 20 source tasks × 10 target tasks = 10,000 gain rows (synthetic, seeded: a pair-level
similarity with a small effect, random pair and (target, language) effects and noise), 200 pairs, 16 families.
Timed in one process, each part on its own: the variance decomposition; the pair-level correlations (Pearson,
Spearman, Kendall) overall and per family with 10,000 within-target permutations and 2,000 cluster resamples;
the permutation test of the family slopes (10,000 reassignments of whole languages). Target: the sum within
5 seconds. The mixed model (full and reduced ML fits) is timed apart, goal ≤ 20 seconds. Then the whole
command (``xl tasksim correlate``, start-up and JSON included) for reference. Writes the table between the
``bench-tasksim`` markers of README.md (unless ``--no-readme``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402
from xl.core.languages import XTREME_R_CODES, builtin_table  # noqa: E402

TARGET_SECONDS = 5.0
MIXED_GOAL_SECONDS = 20.0
N_PERM, N_BOOT = 10_000, 2_000


def _design() -> dict[str, Any]:
    table = builtin_table()
    langs = sorted(XTREME_R_CODES)  # the 50 languages and 16 families the README's measurement used
    n_s, n_t = 20, 10
    rng = np.random.default_rng(0)
    s, t, lang = (a.ravel() for a in np.meshgrid(np.arange(n_s), np.arange(n_t), np.arange(50), indexing="ij"))
    sim = rng.random((n_s, n_t))
    pair, tlang = rng.normal(size=(n_s, n_t)), rng.normal(size=(n_t, 50))
    gain = 0.3 * sim[s, t] + pair[s, t] + tlang[t, lang] + 0.5 * rng.normal(size=s.size)
    return {"x": sim[s, t], "y": gain, "source": np.array([f"source{i}" for i in range(n_s)])[s],
            "target": np.array([f"target{i}" for i in range(n_t)])[t], "lang": np.array(langs)[lang],
            "family": np.array([table[c].family for c in langs])[lang], "sim": sim}  # fmt: skip


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, t0 = os.times(), time.perf_counter()
    out = fn()
    c1, t1 = os.times(), time.perf_counter()
    cpu = sum(getattr(c1, k) - getattr(c0, k) for k in ("user", "system", "children_user", "children_system"))
    return out, t1 - t0, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    from xl.core import inference
    from xl.core.gains import decompose

    d = _design()
    x, y, src, tgt, lang, fam = d["x"], d["y"], d["source"], d["target"], d["lang"], d["family"]
    records = [{"source": a, "target": b, "lang": c, "gain": float(g)}
               for a, b, c, g in zip(src, tgt, lang, y, strict=True)]  # fmt: skip
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    inference.clustered_correlations(x[:500], y[:500], src[:500], tgt[:500], lang[:500], n_perm=10, n_boot=10)
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("variance decomposition", lambda: decompose(records)),
        ("pair-level correlations, overall", lambda: inference.clustered_correlations(
            x, y, src, tgt, lang, n_perm=N_PERM, n_boot=N_BOOT)),
        ("pair-level correlations, per family (16)", lambda: inference.family_correlations(
            x, y, src, tgt, lang, fam, n_perm=N_PERM, n_boot=N_BOOT)),
        ("family slopes, permutation test", lambda: inference.family_slopes_permutation(
            x, y, src, tgt, lang, fam, n_perm=N_PERM)),
    ]  # fmt: skip
    timings = []
    for label, fn in parts:
        _, wall, cpu = _timed(fn)
        timings.append((label, wall, cpu))
    fit, mixed_wall, mixed_cpu = _timed(lambda: inference.family_mixed_model(x, y, src, tgt, lang, fam))
    with tempfile.TemporaryDirectory(prefix="xl-bench-tasksim-") as tmp_name:
        tmp = Path(tmp_name)
        labels = [f"source{i}" for i in range(20)] + [f"target{i}" for i in range(10)]
        S = np.eye(30)
        S[:20, 20:] = d["sim"]
        S[20:, :20] = d["sim"].T
        np.save(tmp / "S.npy", S.astype(np.float32))
        (tmp / "S.npy.json").write_text(json.dumps({"labels": labels}))
        with (tmp / "gains.jsonl").open("w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        command = run_measured([sys.executable, "-m", "xl", "tasksim", "correlate", "--sim", str(tmp / "S.npy"),
                                "--gains", str(tmp / "gains.jsonl"), "--family-test", "permutation",
                                "--no-naive", "--bootstrap", str(N_BOOT)], tmp)  # fmt: skip
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    total = sum(w for _, w, _ in timings)
    table = [
        f"Measured by `make bench-tasksim` ({os.cpu_count()} cores; load average {load_before} before, "
        f"{load_after} after): 10,000 gain rows = 50 languages × 20 sources × 10 targets, 200 pairs, 16 families; "
        f"{N_PERM:,} permutations, {N_BOOT:,} cluster resamples; Pearson, Spearman and Kendall.",
        "",
        "| part | seconds | share | CPU seconds |",
        "|---|---:|---:|---:|",
    ]
    for label, wall, cpu in timings:
        table.append(f"| {label} | {wall:.2f} | {wall / total:.0%} | {cpu:.2f} |")
    met = "met" if total <= TARGET_SECONDS else "**missed**"
    table.append(f"| **total** (target ≤ {TARGET_SECONDS:.0f} s: {met}) | **{total:.2f}** | 100% | "
                 f"{sum(c for _, _, c in timings):.2f} |")  # fmt: skip
    mixed_met = "met" if mixed_wall <= MIXED_GOAL_SECONDS else "**missed**"
    table += [
        f"| mixed model, full + reduced ML fits, {fit.n:,} rows (goal ≤ {MIXED_GOAL_SECONDS:.0f} s: {mixed_met}) | "
        f"{mixed_wall:.2f} | – | {mixed_cpu:.2f} |",
        f"| the whole command (`xl tasksim correlate --family-test permutation --no-naive`, start-up, reading and "
        f"JSON included) | {command['seconds']:.2f} | – | {command['cpu_seconds']:.2f} |",
    ]  # fmt: skip
    summary = {
        "parts": {label: wall for label, wall, _ in timings},
        "total": total,
        "mixed": mixed_wall,
        "command": command["seconds"],
        "load_before": load_before,
        "load_after": load_after,
    }
    print(json.dumps(summary))
    text = "\n".join(table)
    print(text, file=sys.stderr)
    if not args.no_readme:
        write_readme_section("bench-tasksim", text)


if __name__ == "__main__":
    main()
