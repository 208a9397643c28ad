"""``make bench-tasksim``: ``xl tasksim correlate`` at study scale, timed as a whole command.

50 XTREME-R languages × 20 source tasks × 10 target tasks = 10,000 gain rows (synthetic, seeded; gains
loosely follow similarity), a 30 × 30 similarity matrix, 10,000 permutations and 2,000 bootstrap resamples,
overall and per language family, plus the ranking metrics. Timed for all three statistics and for Pearson
and Spearman alone (Kendall's permutations cost one O(n log n) count each). Target: within 5 seconds.
Writes the table between the ``bench-tasksim`` markers of README.md (unless ``--no-readme``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._measure import run_measured, write_readme_section  # noqa: E402
from xl.core.languages import builtin_table  # noqa: E402

TARGET_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sources, targets = [f"source{i}" for i in range(20)], [f"target{i}" for i in range(10)]
    labels = sources + targets
    E = rng.standard_normal((30, 64)) + 1.0
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    S = U @ U.T
    langs = sorted(builtin_table())
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="xl-bench-tasksim-") as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "S.npy", S.astype(np.float32))
        (tmp / "S.npy.json").write_text(json.dumps({"labels": labels}))
        with (tmp / "gains.jsonl").open("w") as handle:
            for i, s in enumerate(sources):
                for j, t in enumerate(targets):
                    for lang in langs:
                        gain = 3 * S[i, 20 + j] + rng.normal(0, 1)
                        handle.write(json.dumps({"source": s, "target": t, "lang": lang, "gain": gain}) + "\n")
        for methods in ("pearson,spearman,kendall", "pearson,spearman"):
            measured = run_measured([sys.executable, "-m", "xl", "tasksim", "correlate", "--sim", str(tmp / "S.npy"),
                                     "--gains", str(tmp / "gains.jsonl"), "--methods", methods, "--permutations",
                                     "10000", "--bootstrap", "2000"], tmp)  # fmt: skip
            lines = measured["stdout"].splitlines()
            rows.append({"methods": methods, "seconds": measured["seconds"], "cpu_seconds": measured["cpu_seconds"],
                         "peak_rss_mb": measured["peak_rss_mb"], "lines": len(lines)})  # fmt: skip
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    table = [
        f"Measured by `make bench-tasksim` ({os.cpu_count()} cores; load average {load_before} before, "
        f"{load_after} after; 10,000 gain rows = 50 languages × 20 sources × 10 targets; 10,000 permutations, "
        "2,000 bootstrap resamples; overall and per family; whole command, start-up included).",
        "",
        "| statistics | seconds | CPU seconds | peak RSS (MB) | target ≤ 5 s |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        met = "met" if row["seconds"] <= TARGET_SECONDS else "**missed**"
        table.append(f"| {row['methods']} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | "
                     f"{row['peak_rss_mb']:.0f} | {met} |")  # fmt: skip
        print(json.dumps({**row, "load_before": load_before, "load_after": load_after}))
    text = "\n".join(table)
    print(text, file=sys.stderr)
    if not args.no_readme:
        write_readme_section("bench-tasksim", text)


if __name__ == "__main__":
    main()
