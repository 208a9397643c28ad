"""Turn the transfer study's result lines (``xl eval`` JSON, tagged with run/proj) into the tables of this
folder's README (between the ``results`` markers; the prose around them is kept).

Usage: python report.py results.jsonl README.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _cell(row: dict[str, Any] | None, metric: str) -> str:
    if row is None or row.get(metric) is None:
        return ""
    ci = row.get(f"{metric}_ci")
    return f"{row[metric]:.1f}" + (f" ({ci[0]:.1f}–{ci[1]:.1f})" if ci else "")


def _key(row: dict[str, Any]) -> str:
    return f"{row['data'].split('.')[0]} {row['lang']}"


def sts_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = [("untrained", "none", "untrained"), ("sts", "none", "STSb fine-tuned"),
               ("sts-frozen", "none", "fine-tuned, embeddings frozen"), ("untrained", "lstsq", "untrained + lstsq map"),
               ("sts", "lstsq", "fine-tuned + lstsq map")]  # fmt: skip
    found = {(r["run"], r["map"], _key(r)): r for r in rows if r["task"] == "sts" and not r.get("summary")}
    sets = list(dict.fromkeys(_key(r) for r in rows if r["task"] == "sts" and not r.get("summary")))
    out = ["| data | n | " + " | ".join(c[2] for c in columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for name in sets:
        n = next(r["n"] for (_, _, k), r in found.items() if k == name)
        out.append(f"| {name} | {n} | " + " | ".join(_cell(found.get((run, proj, name)), "spearman")
                                                    for run, proj, _ in columns) + " |")  # fmt: skip
    means = []
    for run, proj, _ in columns:
        values = [
            r["spearman"]
            for (ru, pr, k), r in found.items()
            if ru == run
            and pr == proj
            and not k.startswith("stsb-multi-mt en")
            and not k.startswith("sts2017 en-en")
            and r.get("spearman") is not None
        ]
        means.append(f"{statistics.mean(values):.1f} ({len(values)})" if values else "")
    out.append("| **mean, non-English sets** (count) | | " + " | ".join(means) + " |")
    mapped = [k for (ru, pr, k) in found if pr != "none"]
    same = []
    for run, proj, _ in columns:
        values = [found[(run, proj, k)]["spearman"] for k in dict.fromkeys(mapped) if (run, proj, k) in found]
        same.append(f"{statistics.mean(values):.1f} ({len(values)})" if values else "")
    out.append("| **mean over the sets with a map** (count) | | " + " | ".join(same) + " |")
    return out


def task_table(rows: list[dict[str, Any]], task: str, metrics: tuple[str, str]) -> list[str]:
    out = [f"| run | data | n | {metrics[0]} (95% CI) | {metrics[1]} (95% CI) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["task"] != task or r.get("summary"):
            continue
        out.append(f"| {r['run']} | {_key(r)} | {r['n']} | {_cell(r, metrics[0])} | {_cell(r, metrics[1])} |")
    return out


def ordering(rows: list[dict[str, Any]]) -> list[str]:
    """Per task: the English score, the mean over target languages, the share of the English score kept, and
    the share of the English margin over chance kept (accuracy has a floor: 50 for two classes, 33.3 for three;
    Spearman and QA F1 have none)."""
    sts_sets = ("stsb-multi-mt", "korsts")
    spec = [("STS (STSb → stsb-multi-mt 8 languages, KorSTS)", "sts", "spearman", "sts", sts_sets, 0.0),
            ("sentiment (SST-2 → NSMC)", "classify", "accuracy", "sst2", ("sst2", "nsmc"), 50.0),
            ("sentiment (UMSAB en → 7 languages)", "classify", "accuracy", "umsab", ("umsab",), 100 / 3),
            ("QA (SQuAD − XQuAD → XQuAD 11 languages)", "qa", "f1", "qa", ("xquad",), 0.0)]  # fmt: skip
    out = ["| task | metric | English | mean of targets | targets | target / English | "
           "(target − chance) / (English − chance) |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, task, metric, run, datasets, chance in spec:
        chosen = [r for r in rows if r["task"] == task and r.get("run") == run and not r.get("summary")
                  and r.get("map", "none") == "none" and r["data"].split(".")[0] in datasets]  # fmt: skip
        english = [r[metric] for r in chosen if r["lang"] == "en"]
        targets = [r[metric] for r in chosen if r["lang"] != "en" and r.get(metric) is not None]
        if not english or not targets:
            continue
        mean = statistics.mean(targets)
        out.append(f"| {label} | {metric} | {english[0]:.1f} | {mean:.1f} | {len(targets)} | {mean / english[0]:.3f} | "
                   f"{(mean - chance) / (english[0] - chance):.3f} |")  # fmt: skip
    return out


def main() -> None:
    results_path, readme_path = Path(sys.argv[1]), Path(sys.argv[2])
    rows = [orjson.loads(line) for line in results_path.read_bytes().splitlines() if line.strip()]
    for r in rows:
        # which map was applied: the recipe's "map" tag, else read off the projection path
        r["map"] = r.get("map") or ("lstsq" if r.get("proj") else "none")
    parts = [
        "### (a) STS: Spearman × 100 of cosines (95% bootstrap CI)", "", *sts_table(rows), "",
        "### (b) Sentiment: accuracy and macro-F1 × 100", "", *task_table(rows, "classify", ("accuracy", "macro_f1")),
        "", "### (c) Extractive QA: exact match and F1 × 100 (SQuAD v1.1 normalisation)", "",
        *task_table(rows, "qa", ("exact_match", "f1")), "",
        "### Transfer by task: share of the English score kept", "", *ordering(rows),
    ]  # fmt: skip
    text = readme_path.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme_path.write_text(f"{head}{START}\n" + "\n".join(parts) + f"\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
