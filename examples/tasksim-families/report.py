"""Turn the families study's committed results into the tables of this folder's README (between the ``results``
markers; the prose around them is kept) and the per-family panel plot.

Inputs (``results/NAME/``): the runs' eval lines (``results.jsonl``), the gain rows of ``xl tasksim gains`` (align's
rows in the languages it trained on apart, in ``gains-seen.jsonl``), the decomposition, each predictor's similarity
matrix, ``xl tasksim correlate`` and ``xl tasksim predict`` lines, the covariates and the stage times
(``times.tsv``). The correlation, family-test, ranking and prediction tables are rendered as the previous study
renders them (``examples/tasksim/report.py``).

Usage: python report.py --results results/e5-small --readme README.md [--plot families.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from scipy.stats import norm

from xl.core.languages import builtin_table, normalize_lang_code
from xl.tasksim import read_similarity

PREDICTORS = ("textemb", "textemb-lang", "taskemb", "taskemb-task2vec")
TARGET_LABEL = {"sts": "STS (Spearman × 100)", "umsab": "UMSAB tweet sentiment (macro-F1 × 100)",
                "amcd": "AMCD counterfactuals (macro-F1 × 100)",
                "tatoeba": "Tatoeba retrieval (accuracy × 100, mean of en→xx and xx→en)",
                "flores": "FLORES-200 devtest retrieval (accuracy × 100)"}  # fmt: skip


def _previous() -> Any:
    """The previous study's report module, whose renderers of correlate/predict lines this one shares."""
    path = Path(__file__).resolve().parents[1] / "tasksim" / "report.py"
    spec = importlib.util.spec_from_file_location("tasksim_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tasksim_report"] = module
    spec.loader.exec_module(module)
    return module


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def _family(lang: str) -> str:
    return builtin_table()[normalize_lang_code(lang)].family


def mde_r(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest correlation a two-sided test at ``alpha`` detects with ``power`` from ``n`` independent points
    (Fisher's z: atanh r ≈ normal with variance 1 / (n − 3); Cohen 1988, ch. 3)."""
    return math.tanh((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / math.sqrt(n - 3)) if n > 3 else float("nan")


def n_for_r(r: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Independent points needed to detect a correlation ``r`` (the inverse of :func:`mde_r`)."""
    return math.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / math.atanh(r)) ** 2 + 3)


def design_section(gains: list[dict[str, Any]], seen: list[dict[str, Any]], times: list[list[str]]) -> list[str]:
    """What the gains cover (pairs, languages, families), the power of the pair-level test, and the stage times."""
    pairs = sorted({(g["source"], g["target"]) for g in gains})
    langs = sorted({g["lang"] for g in gains})
    by_family: dict[str, set[str]] = defaultdict(set)
    for lang in langs:
        by_family[_family(lang)].add(lang)
    big = {f: v for f, v in sorted(by_family.items(), key=lambda kv: -len(kv[1])) if len(v) >= 3}
    seeds = sorted({g["n_seeds"] for g in gains})
    out = [f"- **{len(gains)} gain rows**: {len(pairs)} (source, target) pairs, {len(langs)} languages in "
           f"{len(by_family)} families, {'/'.join(map(str, seeds))} seed(s) per run; {len(seen)} rows of align in "
           "languages it trained on are kept apart (below).",
           "- **Families with three or more languages**: " + "; ".join(f"{f} {len(v)}" for f, v in big.items()) + ".",
           f"- **Power at the pair level** (two-sided α = 0.05, 80% power, pairs as independent points, Fisher's z): "
           f"{len(pairs)} pairs detect |ρ| ≥ {mde_r(len(pairs)):.2f}; ρ = 0.5 needs {n_for_r(0.5)} pairs and ρ = 0.3 "
           f"needs {n_for_r(0.3)}. A predictor that varies by language (textemb-lang) is tested on rows clustered "
           "by pair, whose effective n lies between the pairs and the rows."]  # fmt: skip
    if times:
        out.append(f"- **Time per stage** on this 2-core CPU (two jobs of one thread; wall seconds of each job from "
                   f"`times.tsv`): {time_cells(times)}.")  # fmt: skip
    return out


def time_cells(times: list[list[str]]) -> str:
    """Job-minutes per stage from ``times.tsv`` lines (path, seconds training, seconds scoring).

    A model line (``models/NAME/seedK``) counts as training: an intermediate model under its source, a
    ``SOURCE-TARGET`` model under "→ TARGET"; a run line (``runs/TARGET/INTER/seedK.jsonl``) counts as scoring
    its target. Only a model line's seconds count as training: run lines written when each run built its own
    model under one lock held that model's wait for the lock too."""
    stage: dict[str, list[float]] = defaultdict(list)
    for path, build, score in times:
        if "runs/" in path:
            stage[f"score {path.split('runs/')[1].split('/')[0]}"].append(float(score))
        else:
            name = path.split("models/")[1].split("/")[0]
            stage[f"train {name}" if "-" not in name else f"train → {name.split('-')[1]}"].append(float(build))
    total = sum(sum(v) for v in stage.values())
    cells = ", ".join(f"{k} {sum(v) / 60:.0f} min ({len(v)} jobs)" for k, v in stage.items())
    return f"{cells}; {total / 60:.0f} job-minutes in all"


def _ci(line: dict[str, Any]) -> str:
    low, high = line.get("ci_low"), line.get("ci_high")
    return f"[{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else "[–]"


def answer_section(correlations: dict[str, list[dict[str, Any]]], predictions: dict[str, list[dict[str, Any]]],
                   decomposition: dict[str, Any]) -> list[str]:  # fmt: skip
    """The numbers the written answer rests on, one bullet each: the pooled Spearman of every predictor (CI from
    resampling whole pairs or clusters, permutation p within targets) against a Bonferroni threshold over the
    predictors; textemb-lang (the one predictor that varies by language) per family; the family-difference tests;
    and the held-out change in error when similarity joins the language covariates."""
    alpha = 0.05 / max(len(correlations), 1)
    out: list[str] = []
    passed: list[str] = []
    for name, lines in correlations.items():
        line = next((x for x in lines if x["kind"] == "correlation" and x["scope"] == "overall"
                     and x["method"] == "spearman" and x["unit"] != "naive"), None)  # fmt: skip
        if line is None or line.get("value") is None:
            continue
        p = line.get("p_perm")
        if p is not None and p < alpha:
            passed.append(name)
        out.append(
            f"- **{name}**, all targets: Spearman ρ = {line['value']:+.2f}, 95% CI {_ci(line)}, permutation "
            f"p = {_fmt(p)} ({line['n']} rows in {line.get('n_clusters')} clusters, unit: {line['unit']})."
        )
    out.append(
        f"- **Predictors whose permutation p is below {alpha:.4f}** (0.05 over {len(correlations)} "
        f"predictors, Bonferroni): {', '.join(passed) if passed else 'none'}."
    )
    families = [x for x in correlations.get("textemb-lang", []) if x["kind"] == "correlation"
                and x["scope"] == "family" and x["method"] == "spearman" and x.get("eligible")]  # fmt: skip
    if families:
        cells = "; ".join(f"{x['family']} ({x['n_languages']} languages) ρ = {_fmt(x.get('value'), '+.2f')} "
                          f"{_ci(x)}" for x in families)  # fmt: skip
        out.append(f"- **textemb-lang per family** (Spearman, cluster CI): {cells}.")
    for name in ("textemb-lang",):
        for test in (x for x in correlations.get(name, []) if x["kind"] == "family_test"):
            p = test.get("p_perm") if test["test"] == "permutation" else test.get("p_value")
            out.append(
                f"- **Do families differ in slope?** ({name}, {test['test'].replace('_', ' ')}): "
                + (f"p = {_fmt(p)}." if not test.get("reason") else f"not run: {test['reason']}.")
            )
    for name, lines in predictions.items():
        for line in lines:
            if line["kind"] == "comparison" and line["baseline"] == "covariates" and not line.get("reason"):
                d = line["rmse"]
                held = {"family": "families"}.get(line["grouping"], f"{line['grouping']}s")
                out.append(
                    f"- **{name} beyond the language covariates** (held-out {held}, "
                    f"{line['n_groups']} groups): RMSE changes by {d['difference']:+.3f}, 95% CI "
                    f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] (negative: similarity helps)."
                )
    shares = decomposition.get("components", {})
    if shares:
        out.append(
            "- **Where the gains vary**: "
            + ", ".join(f"{k.replace('_', ' ')} {v['share']:.0%}" for k, v in shares.items())
            + " of the variance."
        )
    return out


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def gain_table(gains: list[dict[str, Any]]) -> list[str]:
    """Per (source, target): languages, mean gain, mean seed SE of a gain, and how many gains exceed twice their
    seed SE either way."""
    out = ["| source → target | languages | mean gain | mean seed SE | gains > +2 SE | gains < −2 SE |",
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for g in gains:
        rows[(g["source"], g["target"])].append(g)
    for (source, target), group in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ses = [g["gain_se"] for g in group if g.get("gain_se") is not None]
        up = sum(1 for g in group if g.get("gain_se") and g["gain"] > 2 * g["gain_se"])
        down = sum(1 for g in group if g.get("gain_se") and g["gain"] < -2 * g["gain_se"])
        out.append(f"| {source} → {target} | {len(group)} | {statistics.mean(g['gain'] for g in group):+.2f} | "
                   f"{f'{statistics.mean(ses):.2f}' if ses else '–'} | {up} | {down} |")  # fmt: skip
    return out


def family_gain_table(gains: list[dict[str, Any]]) -> list[str]:
    """Mean gain per source and family on the retrieval targets (families with three or more languages)."""
    retrieval = [g for g in gains if g["target"] in ("tatoeba", "flores")]
    families: dict[str, set[str]] = defaultdict(set)
    for g in retrieval:
        families[_family(g["lang"])].add(g["lang"])
    kept = [f for f, langs in sorted(families.items(), key=lambda kv: -len(kv[1])) if len(langs) >= 3]
    sources = sorted({g["source"] for g in retrieval})
    out = [
        "| source | " + " | ".join(f"{f} ({len(families[f])})" for f in kept) + " | all |",
        "|---|" + "---:|" * (len(kept) + 1),
    ]
    for source in sources:
        cells = []
        for family in kept:
            values = [g["gain"] for g in retrieval if g["source"] == source and _family(g["lang"]) == family]
            cells.append(f"{statistics.mean(values):+.2f}" if values else "–")
        every = [g["gain"] for g in retrieval if g["source"] == source]
        out.append(f"| {source} | " + " | ".join(cells) + f" | {statistics.mean(every):+.2f} |")
    return out


METRIC = {"sts": "spearman", "umsab": "macro_f1", "amcd": "macro_f1", "tatoeba": "accuracy", "flores": "accuracy"}


def baseline_table(results: list[dict[str, Any]]) -> list[str]:
    """Per target: the baseline (target only / untrained) mean score over its zero-shot sets, seed by seed; AMCD
    also per language, against the macro-F1 of predicting the majority class (the previous study's collapse)."""
    out = ["| target | baseline | zero-shot sets | seed 0 | seed 1 | seed 2 |", "|---|---|---:|---:|---:|---:|"]
    lines = [r for r in results if r.get("inter") == "none" and not r.get("summary") and r.get("lang") != "en"]
    for target in TARGET_LABEL:
        mine = [r for r in lines if r.get("target") == target]
        if not mine:
            continue
        cells = []
        for seed in ("0", "1", "2"):
            values = [
                r[METRIC[target]] for r in mine if str(r.get("seed")) == seed and r.get(METRIC[target]) is not None
            ]
            cells.append(f"{statistics.mean(values):.1f}" if values else "–")
        name = "untrained model" if target in ("tatoeba", "flores") else "target only"
        sets = len({(r["data"], r["lang"]) for r in mine})
        out.append(f"| {TARGET_LABEL[target]} | {name} | {sets} | " + " | ".join(cells) + " |")
    amcd = [r for r in lines if r.get("target") == "amcd"]
    if amcd:
        out += ["", "AMCD target-only runs (balanced class weights) per language: macro-F1 × 100 by seed; predicting "
                "the majority class scores at most 50 (the previous study's Japanese runs: 47.3 in every run).", "",
                "| language | seed 0 | seed 1 | seed 2 |", "|---|---:|---:|---:|"]  # fmt: skip
        for lang in sorted({r["lang"] for r in amcd}):
            by_seed = {str(r.get("seed")): r["macro_f1"] for r in amcd if r["lang"] == lang}
            out.append(f"| {lang} | " + " | ".join(f"{by_seed[k]:.1f}" if k in by_seed else "–" for k in "012") + " |")
    return out


def qa_line(lines: list[dict[str, Any]]) -> list[str]:
    """Why QA is no target: the English F1 of the QA source runs (the runs a QA target would start from)."""
    if not lines:
        return []
    cells = ", ".join(f"seed {line['seed']} {line['f1']:.1f}" for line in lines)
    return [
        "",
        f"QA source runs (200 SQuAD questions, one epoch at 256 tokens), English F1 × 100 on {lines[0]['n']} "
        f"held-out XQuAD questions: {cells}; far below the 35 a usable target needs, so QA is a source only.",
    ]


def panel_plot(gains: list[dict[str, Any]], sim_path: Path, output: Path) -> None:
    """One panel per family with three or more languages: the predictor (textemb-lang: the source's English inputs
    against the target's inputs in that language) against the gain, one colour per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = read_similarity(str(sim_path))
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in gains:
        families[_family(g["lang"])].append(g)
    kept = [(f, rows) for f, rows in sorted(families.items(), key=lambda kv: -len({g["lang"] for g in kv[1]}))
            if len({g["lang"] for g in rows}) >= 3]  # fmt: skip
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(kept) / cols), cols, figsize=(12, 3.6 * math.ceil(len(kept) / cols)),
                             squeeze=False, sharey=True)  # fmt: skip
    colours = dict(zip(TARGET_LABEL, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=True))
    for ax, (family, rows) in zip(axes.flat, kept, strict=False):
        for target in TARGET_LABEL:
            mine = [g for g in rows if g["target"] == target]
            looked = [(sim.lookup(g["source"], g["target"], g["lang"]), g["gain"]) for g in mine]
            points = [(x, y) for x, y in looked if x is not None]
            if points:
                ax.scatter(*zip(*points, strict=True), s=10, alpha=0.6, color=colours[target], label=target)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{family} ({len({g['lang'] for g in rows})} languages)", fontsize=10)
        ax.set_xlabel("textemb-lang similarity", fontsize=8)
    for ax in list(axes.flat)[len(kept) :]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("gain")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="results/NAME")
    parser.add_argument("--readme", type=Path, required=True)
    parser.add_argument("--plot", type=Path, help="write the per-family panel plot here")
    args = parser.parse_args()
    previous = _previous()
    folder: Path = args.results
    results, gains, seen = (_jsonl(folder / name) for name in ("results.jsonl", "gains.jsonl", "gains-seen.jsonl"))
    decomposition = next(line for line in _jsonl(folder / "decomposition.jsonl")
                         if line.get("kind", "decomposition") == "decomposition")  # fmt: skip
    sims = {name: read_similarity(str(folder / "sim" / f"{name}.npy")) for name in PREDICTORS
            if (folder / "sim" / f"{name}.npy").exists()}  # fmt: skip
    correlations = {name: _jsonl(folder / "correlations" / f"{name}.jsonl") for name in sims}
    predictions = {name: _jsonl(folder / "predictions" / f"{name}.jsonl") for name in sims}
    times = [line.split("\t") for line in (folder / "times.tsv").read_text().splitlines()] \
        if (folder / "times.tsv").exists() else []  # fmt: skip
    if args.plot and "textemb-lang" in sims:
        panel_plot(gains, folder / "sim" / "textemb-lang.npy", args.plot)
    sources = sorted({g["source"] for g in gains})
    parts = [
        "### The answer in numbers", "", *answer_section(correlations, predictions, decomposition), "",
        "### Design and power", "", *design_section(gains, seen, times), "",
        "### Baselines", "", *baseline_table(results), *qa_line(_jsonl(folder / "qa-english.jsonl")), "",
        "### Gains of intermediate-task training (zero-shot languages)", "",
        "Gain = mean over 3 seeds of source→target − mean over 3 seeds of the target alone (trained targets) or the "
        "untrained model (retrieval; its three seeds are one model, so its seed SD is 0); seed SE from `xl tasksim "
        "gains`.", "", *gain_table(gains), "",
        "Mean gain on Tatoeba by family (families with three or more languages):", "", *family_gain_table(gains), "",
        "align in the languages it trained on (FLORES-200 dev pairs), kept out of everything above and below:", "",
        *gain_table(seen), "",
        "### Where the variance of the gains lies", "", *previous.decomposition_section(decomposition), "",
        "### Task similarity of each pair", "",
        *previous.similarity_table(sims, gains, tuple(TARGET_LABEL), sources), "",
        "### Does similarity predict the gain? Overall and per language family", "",
        "`xl tasksim correlate`: similarity and gain centred within target, permutation p-values within targets, "
        "95% CIs from 2,000 resamples of whole pairs (pair-level predictors) or clusters; a family is compared "
        "with at least 3 languages.", "",
        *previous.correlation_table(correlations), "",
        "Naive row-level numbers (rows as independent; p-values too small; for comparison):", "",
        *previous.naive_table(correlations), "",
        "### Does the slope differ between language families?", "", *previous.family_tests(correlations), "",
        "### Ranking the intermediate tasks for each (target, language)", "",
        *previous.ranking_table(correlations, gains), "",
        "### Does similarity add predictive value beyond the language?", "",
        "`xl tasksim predict`, grouped cross-validation (Δ < 0: the similarity lowers the held-out error):", "",
        *previous.prediction_table(predictions), "",
        "Per-family panels (textemb-lang similarity against gain): "
        f"![families]({os.path.relpath(args.plot or folder / 'families.png', args.readme.parent)})", "",
        *[f"![{name}]({os.path.relpath(folder / f'scatter-{name}.png', args.readme.parent)})" for name in sims],
    ]  # fmt: skip
    previous.splice_readme(args.readme, parts)


if __name__ == "__main__":
    main()
