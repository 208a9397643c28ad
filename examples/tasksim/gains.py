"""Gains of intermediate-task training from the study's ``xl eval`` lines: one JSON line per (source, target,
target language) with ``score_with`` (source → target), ``score_without`` (target only, seed 0) and ``gain``.

The English test sets are left out (the question is zero-shot transfer), and so are the sets that would give a
language twice for one target (MLQA-de beside XQuAD de; STS2017 es-es beside stsb-multi-mt es) or that are not
one language (the cross-lingual STS2017 tracks); ``report.py`` still shows them all.

Usage: python gains.py results.jsonl > gains.jsonl
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

# the one metric of each target that the gain is measured in
METRIC = {"sts": "spearman", "umsab": "macro_f1", "amcd": "macro_f1", "qa": "f1"}
# (data set, language as xl eval reports it) -> language code of the gain row; anything else is left out
SETS = {
    "stsb-multi-mt.test": {lang: lang for lang in ("de", "es", "fr", "it", "nl", "pt", "ru", "zh")},
    "korsts.test": {"ko": "ko"},
    "sts2017.test": {"ar-ar": "ar"},
    "umsab.test": {lang: lang for lang in ("ar", "de", "es", "fr", "hi", "it", "pt")},
    "amcd.test": {"de": "de", "ja": "ja"},
    "xquad.test": {lang: lang for lang in ("ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")},
    "korquad.dev": {"ko": "ko"},
}


def gain_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scores: dict[tuple[str, str, str], float] = {}
    for row in results:
        if row.get("summary") or row["target"] not in METRIC:
            continue
        lang = SETS.get(row["data"], {}).get(row["lang"])
        if lang is not None:
            scores[(row["inter"], row["target"], lang)] = row[METRIC[row["target"]]]
    out = []
    for (inter, target, lang), score in scores.items():
        if inter.startswith("none"):
            continue
        without = scores[("none", target, lang)]
        out.append({"source": inter, "target": target, "lang": lang, "score_with": round(score, 4),
                    "score_without": round(without, 4), "gain": round(score - without, 4),
                    "metric": METRIC[target]})  # fmt: skip
    return out


def main(path: str) -> None:
    with open(path, "rb") as handle:
        results = [orjson.loads(line) for line in handle if line.strip()]
    for row in gain_rows(results):
        sys.stdout.write(orjson.dumps(row).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
