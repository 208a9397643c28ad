"""Turn the task-similarity study's outputs into the tables of this folder's README (between the ``results``
markers; the prose around them is kept).

Inputs: the ``xl eval`` lines of every run (tagged ``inter`` = intermediate task or ``none`` for the target
alone, ``target`` and ``seed``), the gain rows of ``xl tasksim gains``, the variance decomposition of
``xl tasksim decompose``, and per predictor its similarity matrix, its ``xl tasksim correlate`` lines and its
``xl tasksim predict`` lines.

Usage: python report.py --results results.jsonl --gains gains.jsonl --decomposition decomposition.jsonl \
           --correlations DIR --predictions DIR --sim textemb=S.npy ... --readme README.md
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from xl.core.gains import render_decomposition_markdown
from xl.core.ranking import aggregate_rankings, rank_metrics
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
METHODS = ("spearman", "kendall", "pearson")
GROUPING_LABEL = {
    "pair": "one (source, target) pair",
    "language": "one language",
    "family": "one family",
    "source": "one source task",
}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _set(row: dict[str, Any]) -> str:
    return f"{row['data'].split('.')[0]} {row['lang']}"


def _lang(raw: str) -> str:
    """An eval line's language as the gain rows write it (``ar-ar`` → ``ar``; a cross-lingual pair stays)."""
    parts = raw.split("-")
    return parts[0] if len(parts) == 2 and parts[0] == parts[1] else raw


def _scores(results: list[dict[str, Any]]) -> dict[tuple[str, str, str, str, str], dict[str, Any]]:
    """Eval lines by (inter, seed, target, data, lang)."""
    return {(r["inter"], str(r["seed"]), r["target"], r["data"], r["lang"]): r
            for r in results if not r.get("summary")}  # fmt: skip


def score_tables(results: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """Per target: every test set's score for the target-only runs (both seeds and their mean, the baseline of
    the gains) and after each intermediate task."""
    counted = {(g["target"], g["data"], g["lang"]) for g in gains}
    scores = _scores(results)
    out: list[str] = []
    for target, metric in METRIC.items():
        rows = [r for r in results if r.get("target") == target and not r.get("summary")]
        sources = [s for s in SOURCES if s != target]
        sets = list(dict.fromkeys((r["data"], r["lang"]) for r in rows))
        heads = ["target only, seed 0", "seed 1", "mean (baseline)"] + [f"{s} →" for s in sources]
        out += [f"#### {TARGET_LABEL[target]}", "",
                "| test set | n | " + " | ".join(heads) + " | 95% CI (seed 0) |",
                "|---|---:|" + "---:|" * (len(heads) + 1)]  # fmt: skip
        for data, lang in sets:
            base = [scores.get(("none", seed, target, data, lang)) for seed in ("0", "1")]
            values = [b[metric] for b in base if b is not None]
            cells = [f"{b[metric]:.1f}" if b is not None else "" for b in base]
            cells.append(f"{statistics.mean(values):.1f}" if values else "")
            for source in sources:
                run = scores.get((source, "0", target, data, lang))
                cells.append(f"{run[metric]:.1f}" if run is not None else "")
            first = base[0]
            ci = first.get(f"{metric}_ci") if first else None
            mark = "" if (target, data, _lang(lang)) in counted else " ¹"
            name = _set({"data": data, "lang": lang})
            out.append(f"| {name}{mark} | {first['n'] if first else ''} | " + " | ".join(cells)
                       + f" | {f'{ci[0]:.1f}–{ci[1]:.1f}' if ci else ''} |")  # fmt: skip
        out.append("")
    out.append("¹ not a zero-shot gain row (English, a second set for a language, or a cross-lingual pair); shown, "
               "not correlated.")  # fmt: skip
    return out


def gain_table(results: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """Per (source, target): mean, range and sign count of the zero-shot gains (against the mean of the two
    target-only seeds), beside the seed-to-seed change of the target-only run over the same test sets (the
    noise a gain has to beat)."""
    scores = _scores(results)
    counted = {(g["target"], g["data"], g["lang"]) for g in gains}
    seed: dict[str, list[float]] = {}
    for (inter, run_seed, target, data, lang), row in scores.items():
        other = scores.get(("none", "0", target, data, lang))
        if inter == "none" and run_seed == "1" and other is not None and (target, data, _lang(lang)) in counted:
            seed.setdefault(target, []).append(row[METRIC[target]] - other[METRIC[target]])
    out = ["| source → target | languages | mean gain | min | max | gains > 0 | English gain | "
           "seed 1 − seed 0, mean (mean \\|·\\|) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for target in METRIC:
        metric = METRIC[target]
        for source in SOURCES:
            rows = [g["gain"] for g in gains if g["source"] == source and g["target"] == target]
            if not rows:
                continue
            # English: the first English set of the target, against the mean of the target-only seeds on it
            english = [(k, r) for k, r in scores.items() if k[0] == source and k[2] == target and k[4] == "en"]
            en = ""
            if english:
                (_, _, _, data, lang), row = english[0]
                base = [scores[k][metric] for k in (("none", s, target, data, lang) for s in ("0", "1"))
                        if k in scores]  # fmt: skip
                if base:
                    en = f"{row[metric] - statistics.mean(base):+.1f}"
            noise = seed.get(target, [])
            noise_cell = ""
            if noise:
                noise_cell = f"{statistics.mean(noise):+.1f} ({statistics.mean(abs(v) for v in noise):.1f})"
            positive = sum(v > 0 for v in rows)
            out.append(f"| {source} → {target} | {len(rows)} | {statistics.mean(rows):+.1f} | {min(rows):+.1f} | "
                       f"{max(rows):+.1f} | {positive}/{len(rows)} | {en} | {noise_cell} |")  # fmt: skip
    out += ["", "Gain = score after the intermediate task (one seed) − mean of the two target-only seeds "
            "(`xl tasksim gains`); the last column is the seed-to-seed change of the target-only run over the "
            "same test sets."]  # fmt: skip
    return out


def decomposition_section(decomposition: dict[str, Any]) -> list[str]:
    within = decomposition["pair_within_target_ceiling"]["share_within"]
    return [
        render_decomposition_markdown(decomposition), "",
        "A task similarity of the English tasks takes one value per (source, target) pair, so it can explain at "
        "most the pair ceiling: the share of the variance that the pair means carry; language within target "
        "and the residual are out of its reach however good it is. The correlations below are taken within "
        f"targets, where that ceiling is {_fmt(within)} of the variance (source + pair). A similarity that "
        "varies by target language too (textemb-lang) is not bound by it.",
    ]  # fmt: skip


def _pairs(
    gains: list[dict[str, Any]], targets: Sequence[str], sources: Sequence[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Gain rows by (source, target), in target-then-source order."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for target in targets:
        for source in sources:
            rows = [g for g in gains if g["source"] == source and g["target"] == target]
            if rows:
                pairs[(source, target)] = rows
    return pairs


def _pair_similarity(sim: Similarity, source: str, target: str, rows: list[dict[str, Any]]) -> float:
    """The mean similarity the pair's rows used (``target@lang`` where the matrix has it)."""
    values = [sim.lookup(source, target, g["lang"]) for g in rows]
    return statistics.mean(v for v in values if v is not None)


def similarity_table(
    sims: dict[str, Any],
    gains: list[dict[str, Any]],
    targets: Sequence[str] = tuple(METRIC),
    sources: Sequence[str] = tuple(SOURCES),
) -> list[str]:
    """The similarity of every (source, target) pair under each predictor, beside the mean gain; pairs in the
    order of ``targets``, then ``sources``."""
    names = list(sims)
    out = ["| source → target | " + " | ".join(names) + " | mean gain |", "|---|" + "---:|" * (len(names) + 1)]
    for (source, target), rows in _pairs(gains, targets, sources).items():
        cells = [f"{_pair_similarity(sims[name], source, target, rows):.3f}" for name in names]
        out.append(f"| {source} → {target} | " + " | ".join(cells)
                   + f" | {statistics.mean(g['gain'] for g in rows):+.2f} |")  # fmt: skip
    out.append("")
    out.append("(textemb-lang: the mean over the target's languages of cos(source in English, target in that "
               "language).)")  # fmt: skip
    return out


def _grouped(lines: list[dict[str, Any]], naive: bool) -> dict[tuple[str, str | None], dict[str, dict[str, Any]]]:
    """Correlation lines by (scope, family) → method, the naive (row-level) ones or the others."""
    groups: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = {}
    for line in lines:
        if line["kind"] == "correlation" and (line["unit"] == "naive") == naive:
            groups.setdefault((line["scope"], line["family"]), {})[line["method"]] = line
    return groups


def _scope_label(scope: str, family: str | None, languages: list[str]) -> str:
    if scope == "overall":
        return "all"
    return f"{family} ({', '.join(languages)})" if len(languages) <= 3 else str(family)


def _design(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(line for line in lines if line["kind"] == "design")


def correlation_table(correlations: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One row per predictor × scope at the unit of analysis (pairs for a pair-level similarity): n, languages,
    Spearman with its CI, Kendall, Pearson, each with its permutation p, and why a cell is empty or a family
    is not compared."""
    out = ["| predictor | scope | unit | n | languages | Spearman ρ (95% CI) | p (perm.) | Kendall τ | p (perm.) | "
           "Pearson r | p (perm.) | note |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, lines in correlations.items():
        for (scope, family), by_method in _grouped(lines, naive=False).items():
            first = next(iter(by_method.values()))
            cells: list[str] = []
            reasons: list[str] = []
            for method in METHODS:
                c = by_method.get(method)
                if c is None or c["value"] is None:
                    cells += ["–", "–"]
                    if c is not None and c.get("reason") and c["reason"] not in reasons:
                        reasons.append(c["reason"])
                    continue
                ci = ""
                if method == "spearman" and c["ci_low"] is not None:
                    ci = f" ({c['ci_low']:+.2f} – {c['ci_high']:+.2f})"
                cells += [f"{c['value']:+.3f}{ci}", _fmt(c["p_perm"], ".3g")]
            if scope == "family" and first.get("eligible") is False:
                reasons.append(f"not compared: {first['n_languages']} language(s), MDE r = "
                               f"{_fmt(first.get('mde_r'), '.2f')}")  # fmt: skip
            unit = "pairs" if first["unit"] == "pair" else "rows"
            out.append(f"| {name} | {_scope_label(scope, family, first['languages'])} | {unit} | {first['n']} | "
                       f"{first['n_languages']} | " + " | ".join(cells) + f" | {'; '.join(reasons)} |")  # fmt: skip
    return out


def naive_table(correlations: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The row-level numbers that treat every (source, target, language) row as independent, analytic p-values
    only: overall and for the families that have enough languages to be compared."""
    out = ["| predictor | scope | rows | Spearman ρ | p (analytic) | Kendall τ | p (analytic) | Pearson r | "
           "p (analytic) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, lines in correlations.items():
        eligible = {line["family"] for line in lines if line["kind"] == "correlation" and line.get("eligible")}
        for (scope, family), by_method in _grouped(lines, naive=True).items():
            if scope == "family" and family not in eligible:
                continue
            first = next(iter(by_method.values()))
            cells: list[str] = []
            for method in METHODS:
                c = by_method.get(method)
                if c is None or c["value"] is None:
                    cells += ["–", "–"]
                    continue
                cells += [f"{c['value']:+.3f}", _fmt(c["p_analytic"], ".3g")]
            out.append(f"| {name} | {_scope_label(scope, family, first['languages'])} | {first['n']} | "
                       + " | ".join(cells) + " |")  # fmt: skip
    return out


def family_tests(correlations: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per predictor: the result of each family test, or why it could not be run."""
    out: list[str] = []
    for name, lines in correlations.items():
        tests = [line for line in lines if line["kind"] == "family_test"]
        if not tests:
            out.append(f"- **{name}**: no family test in the output.")
            continue
        reasons = {line.get("reason") for line in tests}
        if len(reasons) == 1 and None not in reasons:
            out.append(f"- **{name}**: not run ({', '.join(t['test'] for t in tests)}): {next(iter(reasons))}.")
            continue
        parts: list[str] = []
        for t in tests:
            if t.get("reason"):
                parts.append(f"{t['test']}: not run, {t['reason']}")
                continue
            compared = ", ".join(f"{f['family']} (slope {_fmt(f.get('slope'), '.2f')})"
                                 for f in t.get("families", []) if f.get("eligible"))  # fmt: skip
            if t["test"] == "permutation":
                parts.append(
                    f"slope spread with whole languages permuted {_fmt(t.get('statistic'), '.3g')}, "
                    f"p = {_fmt(t.get('p_perm'), '.3g')} ({t.get('n_perm')} permutations; {compared})"
                )
            else:
                parts.append(f"mixed model, similarity × family LRT {_fmt(t.get('lr_stat'), '.3g')} on "
                             f"{t.get('df')} df, p = {_fmt(t.get('p_value'), '.3g')} ({compared})")  # fmt: skip
        out.append(f"- **{name}**: " + "; ".join(parts) + ".")
    return out


RANKING_COLUMNS = [("ndcg", "NDCG", ".3f"), ("regret@1", "Regret@1 (% of the best score)", ".2f"),
                   ("regret@3", "Regret@3 (%)", ".2f"), ("regret_abs@1", "Regret@1 (points)", ".2f"),
                   ("top1_negative", "top-1 pick hurts (share)", ".2f"),
                   ("best_rank", "rank of the best source", ".2f")]  # fmt: skip


def _ranking_cell(metric: dict[str, Any] | None, spec: str) -> str:
    if metric is None or metric.get("mean") is None:
        return "–"
    undefined = f" (n = {metric['n']}, {metric['n_undefined']} undefined)" if metric.get("n_undefined") else ""
    return f"{format(metric['mean'], spec)}{undefined}"


def ranking_table(correlations: dict[str, list[dict[str, Any]]], gains: list[dict[str, Any]]) -> list[str]:
    """Ranking quality of each predictor (overall), and of a random order of the sources (all tied)."""
    out = ["| predictor | (target, language) cases | " + " | ".join(label for _, label, _ in RANKING_COLUMNS) + " |",
           "|---|---:|" + "---:|" * len(RANKING_COLUMNS)]  # fmt: skip
    for name, lines in correlations.items():
        for line in lines:
            if line["kind"] == "ranking" and line["scope"] == "overall":
                cells = [_ranking_cell(line.get(key), spec) for key, _, spec in RANKING_COLUMNS]
                out.append(f"| {name} | {line['targets']} | " + " | ".join(cells) + " |")
    cases: dict[tuple[str, str], list[float]] = {}
    baselines: dict[tuple[str, str], float] = {}
    for g in gains:
        cases.setdefault((g["target"], g["lang"]), []).append(g["gain"])
        baselines[(g["target"], g["lang"])] = g["score_without"]
    ranked = {key: values for key, values in cases.items() if len(values) >= 2}
    random = aggregate_rankings(rank_metrics(np.zeros(len(v)), v, ks=(1, 3), baseline=baselines[key])
                                for key, v in ranked.items())  # fmt: skip
    as_dict = {k: {"mean": m.mean, "n": m.n, "n_undefined": m.n_undefined} for k, m in random.items()}
    cells = [_ranking_cell(as_dict.get(key), spec) for key, _, spec in RANKING_COLUMNS]
    out.append(f"| random order (expected) | {len(ranked)} | " + " | ".join(cells) + " |")
    ceilings = [line for lines in correlations.values() for line in lines if line["kind"] == "ranking_ceiling"]
    measured = next((line for line in ceilings if not line.get("reason")), None)
    if measured is not None:  # one ceiling for every predictor: it is the gains' own, not a predictor's
        cells = [_ranking_cell(measured.get(key), spec) for key, _, spec in RANKING_COLUMNS]
        first, second = measured.get("seeds", ["?", "?"])
        out.append(f"| seed-stability ceiling (seed {first}'s gains rank seed {second}'s, both ways) | "
                   f"{measured['best_rank']['n']} | " + " | ".join(cells) + " |")  # fmt: skip
    out.append("")
    for reason in dict.fromkeys(line.get("reason") for line in ceilings):
        if reason:
            out.append(f"Ranking ceiling (how well one seed's gains rank the sources of a rerun): not computed; "
                       f"{reason}.")  # fmt: skip
    return out


def prediction_table(predictions: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per predictor × held-out grouping: RMSE of the mean, of covariates only and of similarity + covariates,
    and the differences "similarity + covariates − covariates" and "similarity − mean" with their 95% CIs."""
    out = ["| predictor | held out | groups | RMSE, mean gain | RMSE, covariates | RMSE, similarity + covariates | "
           "Δ similarity + covariates − covariates (95% CI) | Δ similarity − mean (95% CI) | note |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip

    def delta(line: dict[str, Any] | None) -> str:
        if line is None:
            return "–"
        entry = line["rmse"]
        ci = "" if entry["ci_low"] is None else f" ({entry['ci_low']:+.3f} – {entry['ci_high']:+.3f})"
        return f"{entry['difference']:+.3f}{ci}"

    for name, lines in predictions.items():
        groupings = list(dict.fromkeys(line["grouping"] for line in lines if line["kind"] == "prediction"))
        for grouping in groupings:
            rmse = {line["features"]: line for line in lines
                    if line["kind"] == "prediction" and line["grouping"] == grouping}  # fmt: skip
            comparisons = {(line["features"], line["baseline"]): line for line in lines
                           if line["kind"] == "comparison" and line["grouping"] == grouping}  # fmt: skip
            with_cov = comparisons.get(("similarity+covariates", "covariates"))
            alone = comparisons.get(("similarity", "mean"))
            notes = list(dict.fromkeys(c["reason"] for c in (with_cov, alone) if c is not None and c.get("reason")))
            groups = next(iter(rmse.values()))["n_groups"]
            features = ("mean", "covariates", "similarity+covariates")
            cells = [_fmt(rmse[f]["rmse"]) if f in rmse else "–" for f in features]
            out.append(f"| {name} | {GROUPING_LABEL.get(grouping, grouping)} | {groups} | " + " | ".join(cells)
                       + f" | {delta(with_cov)} | {delta(alone)} | {'; '.join(notes)} |")  # fmt: skip
    return out


def _settings(correlations: dict[str, list[dict[str, Any]]]) -> tuple[int, int]:
    """(permutations, bootstrap resamples) of the overall correlations (the largest over predictors)."""
    overall = [line for lines in correlations.values() for line in lines
               if line["kind"] == "correlation" and line["scope"] == "overall" and line["unit"] != "naive"]  # fmt: skip
    return max(line["n_perm"] for line in overall), max(line["n_boot"] for line in overall)


def _predict_settings(predictions: dict[str, list[dict[str, Any]]]) -> tuple[int, str]:
    """(bootstrap resamples, regression model) of the prediction lines."""
    lines = [line for lines in predictions.values() for line in lines]
    n_boot = max(line["n_boot"] for line in lines if line["kind"] == "comparison")
    return n_boot, next(line["model"] for line in lines if line["kind"] == "prediction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--gains", type=Path, required=True)
    parser.add_argument("--decomposition", type=Path, required=True)
    parser.add_argument("--correlations", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--sim", action="append", default=[], help="NAME=PATH of a similarity matrix")
    parser.add_argument("--readme", type=Path, required=True)
    args = parser.parse_args()
    results, gains = _jsonl(args.results), _jsonl(args.gains)
    decomposition = next(line for line in _jsonl(args.decomposition) if line.get("kind", "decomposition")
                         == "decomposition")  # fmt: skip
    sims = {spec.split("=", 1)[0]: read_similarity(spec.split("=", 1)[1]) for spec in args.sim}
    correlations = {name: _jsonl(args.correlations / f"{name}.jsonl") for name in sims}
    predictions = {name: _jsonl(args.predictions / f"{name}.jsonl") for name in sims}
    predictors = "\n".join(f"- **{name}**: {PREDICTOR_LABEL.get(name, name)}" for name in sims)
    units = "; ".join(f"{name}: {_design(lines)['unit']}" for name, lines in correlations.items())
    n_perm, n_boot = _settings(correlations)
    predict_boot, predict_model = _predict_settings(predictions)
    parts = [
        "### Scores of every run", "", *score_tables(results, gains),
        "### Gains of intermediate-task training (zero-shot languages)", "", *gain_table(results, gains), "",
        "### Where the variance of the gains lies", "",
        "`xl tasksim decompose`: sequential sums of squares of the gain rows over target, source, pair, "
        "language within target and residual, before any correlation.", "",
        *decomposition_section(decomposition), "",
        "### Task similarity of each pair", "", predictors, "", *similarity_table(sims, gains), "",
        "### Does similarity predict the gain? Overall and per language family", "",
        "`xl tasksim correlate`, at the unit where the similarity varies (" + units + "): similarity and gain "
        f"centred within target (the gain within target and language), p-values from {n_perm:,} permutations of "
        f"the similarities among the sources of each target, 95% CIs from {n_boot:,} bootstrap resamples of whole "
        "pairs. A "
        "family is compared only with at least 3 languages; the others are shown with the smallest correlation "
        "their pairs could detect (MDE r).", "",
        *correlation_table(correlations), "",
        "Naive row-level numbers (rows treated as independent; p-values too small; kept for comparison), "
        "overall and for the families that are compared, uncentred:", "",
        *naive_table(correlations), "",
        "### Does the slope differ between language families?", "", *family_tests(correlations), "",
        "### Ranking the intermediate tasks for each (target, language)", "",
        *ranking_table(correlations, gains), "",
        "### Does similarity add predictive value beyond the language?", "",
        f"`xl tasksim predict`: {predict_model} regression of the gain, evaluated out of sample with one (source, "
        "target) pair, one language, one family or one source task held out at a time; covariates "
        "(`covariates.jsonl`, `xl tasksim covariates`) = the target language's URIEL distances to English, script, "
        "family, and the default model's tokenizer fertility and subword overlap with English on its test inputs. "
        "With a language or a family held out, the pairs stay in training through their other languages, so a "
        "pair-level similarity can stand in for the pair there; the pair fold is the test of an unseen pair. "
        "Δ < 0: adding the similarity lowers the error; 95% CIs from "
        f"{predict_boot:,} resamples of the held-out groups.", "",
        *prediction_table(predictions), "",
        "Scatter plots (similarity against gain, one colour and fit per family):", "",
        *[f"![{name}](scatter-{name}.png)" for name in sims], "",
        "Similarity heatmaps: ![TextEmb](similarity-textemb.png) ![TaskEmb](similarity-taskemb.png)",
    ]  # fmt: skip
    splice_readme(args.readme, parts)


def splice_readme(readme: Path, parts: list[str]) -> None:
    """Replace what lies between the README's ``results`` markers with ``parts`` (one line each); the prose around
    them is kept."""
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n" + "\n".join(parts) + f"\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
