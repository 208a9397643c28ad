"""Turn the study's result lines (``xl eval retrieval`` JSON, tagged with dataset/lang/method) into the
tables of this folder's README (between the ``results`` markers; the prose around them is kept).

Usage: python report.py results.jsonl README.md
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

METHODS = ("identity", "center", "lstsq", "procrustes", "sgd")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def cell(row: dict[str, Any] | None, direction: str) -> str:
    if row is None:
        return ""
    d = row[direction]
    lo, hi = d["accuracy_ci"] if d.get("accuracy_ci") else (None, None)
    ci = f" ({lo * 100:.1f}–{hi * 100:.1f})" if lo is not None else ""
    return f"{d['accuracy'] * 100:.1f}{ci}"


def summary(rows: dict[tuple[str, str], dict[str, Any]], langs: list[str], direction: str) -> list[str]:
    """Mean accuracy per method over the languages that have it, and wins/losses against identity."""
    out = ["| method | languages | mean accuracy | better than identity (CI excludes it) | worse (CI excludes it) |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for method in METHODS:
        have = [lang for lang in langs if (lang, method) in rows]
        if not have:
            continue
        accs = [rows[(lang, method)][direction]["accuracy"] for lang in have]
        better = worse = 0
        for lang in have:
            base = rows.get((lang, "identity"))
            if method == "identity" or base is None:
                continue
            lo, hi = rows[(lang, method)][direction]["accuracy_ci"]
            better += lo > base[direction]["accuracy"]
            worse += hi < base[direction]["accuracy"]
        mean_base = statistics.mean(rows[(lang, "identity")][direction]["accuracy"] for lang in have
                                    if (lang, "identity") in rows)  # fmt: skip
        delta = "" if method == "identity" else f" ({(statistics.mean(accs) - mean_base) * 100:+.1f})"
        wins = "–" if method == "identity" else str(better)
        losses = "–" if method == "identity" else str(worse)
        out.append(f"| {method} | {len(have)} | {statistics.mean(accs) * 100:.1f}{delta} | {wins} | {losses} |")
    return out


def table(rows: dict[tuple[str, str], dict[str, Any]], langs: list[str], direction: str) -> list[str]:
    out = ["| language | n | " + " | ".join(METHODS) + " |", "|---|---:|" + "---:|" * len(METHODS)]
    for lang in langs:
        n = next(r["n"] for (lg, _), r in rows.items() if lg == lang)
        out.append(f"| {lang} | {n} | " + " | ".join(cell(rows.get((lang, m)), direction) for m in METHODS) + " |")
    return out


def main() -> None:
    results_path, readme_path = Path(sys.argv[1]), Path(sys.argv[2])
    by_dataset: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for line in results_path.read_bytes().splitlines():
        row = orjson.loads(line)
        by_dataset[row["dataset"]][(row["lang"], row["method"])] = row
    parts: list[str] = []
    flores = by_dataset.get("flores200-devtest", {})
    if flores:
        langs = sorted({lang for lang, _ in flores})
        parts += ["### FLORES-200 devtest (maps fitted on FLORES-200 dev, English → xx)", "",
                  "Top-1 accuracy ×100 with bootstrap 95% CI (1,000 resamples), nearest-neighbour scoring.", "",
                  "**xx → English** (query in xx, as XTREME reports Tatoeba), mean over languages:", ""]  # fmt: skip
        parts += summary(flores, langs, "tgt2src") + ["", "**English → xx**, mean over languages:", ""]
        parts += summary(flores, langs, "src2tgt") + ["", "Per language, xx → English:", ""]
        parts += table(flores, langs, "tgt2src") + ["", "Per language, English → xx:", ""]
        parts += table(flores, langs, "src2tgt") + [""]
        if ("kor_Hang", "identity") in flores:
            parts += ["The seed's direction, English → Korean (FLORES devtest): " + ", ".join(
                f"{m} {cell(flores.get(('kor_Hang', m)), 'src2tgt')}" for m in METHODS if ("kor_Hang", m) in flores
            ) + ".", ""]  # fmt: skip
    tatoeba = by_dataset.get("tatoeba", {})
    if tatoeba:
        langs = sorted({lang for lang, _ in tatoeba})
        mapped = sorted({lang for lang, m in tatoeba if m != "identity"})
        parts += ["### Tatoeba (maps from FLORES-200 dev where the language is in FLORES)", "",
                  f"{len(langs)} languages without a map; {len(mapped)} of them also with the FLORES maps. "
                  "Top-1 accuracy ×100 (95% CI).", "",
                  "**xx → English**, mean over the languages that have each method:", ""]  # fmt: skip
        parts += summary(tatoeba, langs, "tgt2src") + ["", "Over the mapped languages only:", ""]
        parts += summary(tatoeba, mapped, "tgt2src") + ["", "Per language, xx → English:", ""]
        parts += table(tatoeba, langs, "tgt2src") + [""]
    generated = "\n".join(parts)
    text = readme_path.read_text(encoding="utf-8") if readme_path.exists() else f"{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme_path.write_text(f"{head}{START}\n{generated}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
