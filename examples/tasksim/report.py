"""Turn the task-similarity study's outputs into the tables of this folder's README (between the ``results``
markers; the prose around them is kept).

Inputs: the ``xl eval`` lines of every run (tagged ``inter`` = intermediate task or ``none``/``none-seed1``, and
``target``), the gain rows of ``gains.py``, the ``xl tasksim correlate`` lines of each predictor and its
similarity matrix.

Usage: python report.py --results results.jsonl --gains gains.jsonl --correlations DIR \
           --sim textemb=S.npy ... --readme README.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from xl.core.ranking import aggregate_rankings, rank_metrics
from xl.core.stats import correlations
from xl.core.tasksim import Similarity
from xl.tasksim import read_similarity

START, END = "<!-- results:start -->", "<!-- results:end -->"
METRIC = {"sts": "spearman", "umsab": "macro_f1", "amcd": "macro_f1", "qa": "f1"}
TARGET_LABEL = {"sts": "STS (Spearman × 100)", "umsab": "UMSAB tweet sentiment (macro-F1 × 100)",
                "amcd": "AMCD counterfactuals (macro-F1 × 100)", "qa": "extractive QA (F1 × 100)"}  # fmt: skip
SOURCES = ["sst2", "umsab", "amcd", "sts", "qa"]
PREDICTOR_LABEL = {"textemb": "TextEmb, English inputs (cosine)",
                   "textemb-lang": "TextEmb, target-language inputs (cosine)",
                   "taskemb": "TaskEmb (cosine)",
                   "taskemb-task2vec": "TaskEmb (Task2Vec normalised cosine)"}  # fmt: skip


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _set(row: dict[str, Any]) -> str:
    return f"{row['data'].split('.')[0]} {row['lang']}"


def score_tables(results: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """Per target: every test set's score for the target-only runs (two seeds) and each intermediate task."""
    counted = {(g["target"], g["lang"]) for g in gains}
    out: list[str] = []
    for target, metric in METRIC.items():
        rows = [r for r in results if r.get("target") == target and not r.get("summary")]
        runs = ["none", "none-seed1"] + [s for s in SOURCES if s != target]
        found = {(r["inter"], _set(r)): r for r in rows}
        sets = list(dict.fromkeys(_set(r) for r in rows))
        heads = ["target only", "seed 1"] + [f"{s} →" for s in runs[2:]]
        out += [f"#### {TARGET_LABEL[target]}", "",
                "| test set | n | " + " | ".join(heads) + " | 95% CI (target only) |",
                "|---|---:|" + "---:|" * (len(heads) + 1)]  # fmt: skip
        for name in sets:
            base = found.get(("none", name))
            cells = [f"{found[(run, name)][metric]:.1f}" if (run, name) in found else "" for run in runs]
            ci = base.get(f"{metric}_ci") if base else None
            lang = {"ar-ar": "ar"}.get(name.split()[1], name.split()[1])
            mark = "" if (target, lang) in counted and not name.startswith(("mlqa-de", "sts2017 es-es")) else " ¹"
            out.append(f"| {name}{mark} | {base['n'] if base else ''} | " + " | ".join(cells)
                       + f" | {f'{ci[0]:.1f}–{ci[1]:.1f}' if ci else ''} |")  # fmt: skip
        out.append("")
    out.append("¹ not a zero-shot gain row (English, a second set for a language, or a cross-lingual pair); shown, "
               "not correlated.")  # fmt: skip
    return out


def gain_table(results: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """Per (source, target): mean, range and sign count of the zero-shot gains, beside the seed-to-seed change
    of the target-only run over the same languages (the noise a gain has to beat)."""
    seed: dict[str, list[float]] = {}
    scores = {(r["inter"], r["target"], r["data"], r["lang"]): r for r in results if not r.get("summary")}
    for (inter, target, data, lang), row in scores.items():
        if inter == "none-seed1" and ("none", target, data, lang) in scores and lang != "en":
            base = scores[("none", target, data, lang)]
            seed.setdefault(target, []).append(row[METRIC[target]] - base[METRIC[target]])
    out = ["| source → target | languages | mean gain | min | max | gains > 0 | English gain | "
           "seed 1 − seed 0, mean (mean \\|·\\|) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for target in METRIC:
        for source in SOURCES:
            rows = [g["gain"] for g in gains if g["source"] == source and g["target"] == target]
            if not rows:
                continue
            english = [r for r in results if r.get("target") == target and r.get("inter") == source
                       and r.get("lang") == "en" and not r.get("summary")]  # fmt: skip
            base_en = [r for r in results if r.get("target") == target and r.get("inter") == "none"
                       and r.get("lang") == "en" and not r.get("summary")]  # fmt: skip
            en = f"{english[0][METRIC[target]] - base_en[0][METRIC[target]]:+.1f}" if english and base_en else ""
            noise = seed.get(target, [])
            noise_cell = ""
            if noise:
                noise_cell = f"{statistics.mean(noise):+.1f} ({statistics.mean(abs(v) for v in noise):.1f})"
            positive = sum(v > 0 for v in rows)
            out.append(f"| {source} → {target} | {len(rows)} | {statistics.mean(rows):+.1f} | {min(rows):+.1f} | "
                       f"{max(rows):+.1f} | {positive}/{len(rows)} | {en} | {noise_cell} |")  # fmt: skip
    return out


def _pairs(gains: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Gain rows by (source, target), in target-then-source order."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for target in METRIC:
        for source in SOURCES:
            rows = [g for g in gains if g["source"] == source and g["target"] == target]
            if rows:
                pairs[(source, target)] = rows
    return pairs


def _pair_similarity(sim: Similarity, source: str, target: str, rows: list[dict[str, Any]]) -> float:
    """The mean similarity the pair's rows used (``target@lang`` where the matrix has it)."""
    values = [sim.lookup(source, target, g["lang"]) for g in rows]
    return statistics.mean(v for v in values if v is not None)


def similarity_table(sims: dict[str, Any], gains: list[dict[str, Any]]) -> list[str]:
    """The similarity of every (source, target) pair under each predictor, beside the mean gain."""
    names = list(sims)
    out = ["| source → target | " + " | ".join(names) + " | mean gain |", "|---|" + "---:|" * (len(names) + 1)]
    for (source, target), rows in _pairs(gains).items():
        cells = [f"{_pair_similarity(sims[name], source, target, rows):.3f}" for name in names]
        out.append(f"| {source} → {target} | " + " | ".join(cells)
                   + f" | {statistics.mean(g['gain'] for g in rows):+.2f} |")  # fmt: skip
    out.append("")
    out.append("(textemb-lang: the mean over the target's languages of cos(source in English, target in that "
               "language).)")  # fmt: skip
    return out


def correlation_table(correlations: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = ["| predictor | scope | languages | n | Spearman ρ (95% CI) | p (perm.) | Kendall τ | p (perm.) | "
           "Pearson r | p (perm.) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, lines in correlations.items():
        groups: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = {}
        for line in lines:
            if line["kind"] == "correlation":
                groups.setdefault((line["scope"], line["family"]), {})[line["method"]] = line
        for (scope, family), by_method in groups.items():
            first = next(iter(by_method.values()))
            cells = []
            for method in ("spearman", "kendall", "pearson"):
                c = by_method.get(method)
                if c is None or c["value"] is None:
                    cells += [c["reason"] if c else "", ""]
                    continue
                ci = ""
                if method == "spearman" and c["ci_low"] is not None:
                    ci = f" ({c['ci_low']:+.2f} – {c['ci_high']:+.2f})"
                cells += [f"{c['value']:+.3f}{ci}", f"{c['p_perm']:.3g}" if c["p_perm"] is not None else "–"]
            langs = ", ".join(first["languages"])
            scope_label = "all" if scope == "overall" else family
            out.append(f"| {name} | {scope_label} | {langs} | {first['n']} | " + " | ".join(cells) + " |")
    return out


def pair_table(sims: dict[str, Any], gains: list[dict[str, Any]]) -> list[str]:
    """The same question with one point per (source, target) pair: the languages of a pair share its two
    training runs, so the rows of the per-language tables are not independent draws; here the gain is the
    mean over the pair's languages and the similarity the mean of what the rows used."""
    pairs = _pairs(gains)
    out = ["| predictor | pairs | Spearman ρ (95% CI) | p (perm.) | Pearson r (95% CI) | p (perm.) |",
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    y = np.array([statistics.mean(g["gain"] for g in rows) for rows in pairs.values()])
    for name, sim in sims.items():
        x = np.array([_pair_similarity(sim, s, t, rows) for (s, t), rows in pairs.items()])
        result = correlations(x, y, ("spearman", "pearson"), n_perm=10_000, n_boot=2_000, seed=0)
        cells = []
        for method in ("spearman", "pearson"):
            c = result[method]
            cells += [f"{c.value:+.3f} ({c.ci_low:+.2f} – {c.ci_high:+.2f})", f"{c.p_perm:.3g}"]
        out.append(f"| {name} | {len(pairs)} | " + " | ".join(cells) + " |")
    return out


def ranking_table(correlations: dict[str, list[dict[str, Any]]], gains: list[dict[str, Any]]) -> list[str]:
    """Ranking quality of each predictor (overall), and of a random order of the sources (all tied)."""
    out = ["| predictor | (target, language) cases | NDCG | Regret@1 (% of the best score) | Regret@3 (%) | "
           "rank of the best source |",
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip

    def fmt(metric: dict[str, Any] | None) -> str:
        if metric is None or metric["mean"] is None:
            return "–"
        undefined = f" ({metric['n_undefined']} undefined)" if metric["n_undefined"] else ""
        return f"{metric['mean']:.3f}{undefined}"

    for name, lines in correlations.items():
        for line in lines:
            if line["kind"] == "ranking" and line["scope"] == "overall":
                out.append(f"| {name} | {line['targets']} | {fmt(line.get('ndcg'))} | {fmt(line.get('regret@1'))} | "
                           f"{fmt(line.get('regret@3'))} | {fmt(line.get('best_rank'))} |")  # fmt: skip
    cases: dict[tuple[str, str], list[float]] = {}
    baselines: dict[tuple[str, str], float] = {}
    for g in gains:
        cases.setdefault((g["target"], g["lang"]), []).append(g["gain"])
        baselines[(g["target"], g["lang"])] = g["score_without"]
    random = aggregate_rankings(rank_metrics(np.zeros(len(v)), v, ks=(1, 3), baseline=baselines[key])
                                for key, v in cases.items())  # fmt: skip
    as_dict = {k: {"mean": m.mean, "n_undefined": m.n_undefined} for k, m in random.items()}
    cells = " | ".join(fmt(as_dict.get(k)) for k in ("ndcg", "regret@1", "regret@3", "best_rank"))
    out.append(f"| random order (expected) | {len(cases)} | {cells} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--gains", type=Path, required=True)
    parser.add_argument("--correlations", type=Path, required=True)
    parser.add_argument("--sim", action="append", default=[], help="NAME=PATH of a similarity matrix")
    parser.add_argument("--readme", type=Path, required=True)
    args = parser.parse_args()
    results, gains = _jsonl(args.results), _jsonl(args.gains)
    sims = {spec.split("=", 1)[0]: read_similarity(spec.split("=", 1)[1]) for spec in args.sim}
    correlations = {name: _jsonl(args.correlations / f"{name}.jsonl") for name in sims}
    predictors = "\n".join(f"- **{name}**: {PREDICTOR_LABEL.get(name, name)}" for name in sims)
    parts = [
        "### Scores of every run", "", *score_tables(results, gains),
        "### Gains of intermediate-task training (zero-shot languages)", "", *gain_table(results, gains), "",
        "### Task similarity of each pair", "", predictors, "", *similarity_table(sims, gains), "",
        "### Does similarity predict the gain? Overall and per language family", "",
        "Permutation p-values from 10,000 permutations, 95% CIs from 2,000 bootstrap resamples (`xl tasksim "
        "correlate`); a family with one language is pooled over its (source, target) pairs.", "",
        *correlation_table(correlations), "",
        "The languages of one (source, target) pair share its training runs, so the rows above are not "
        "independent and their p-values are too small by an unknown amount. One point per pair (mean gain over "
        "its languages; `xl.core.stats.correlations`, same permutation and bootstrap settings):", "",
        *pair_table(sims, gains), "",
        "### Ranking the intermediate tasks for each (target, language)", "", *ranking_table(correlations, gains), "",
        "Scatter plots (similarity against gain, one colour and fit per family):", "",
        *[f"![{name}](scatter-{name}.png)" for name in sims], "",
        "Similarity heatmaps: ![TextEmb](similarity-textemb.png) ![TaskEmb](similarity-taskemb.png)",
    ]  # fmt: skip
    text = args.readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n" + "\n".join(parts) + f"\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
