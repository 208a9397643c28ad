"""Run-aware gains from `xl eval` lines and the variance decomposition of gains (xl.core.gains)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from xl.core.gains import (
    DEFAULT_METRICS,
    GainOptions,
    build_gains,
    decompose,
    render_decomposition_markdown,
)
from xl.errors import InputError, UsageError

STUDY = Path(__file__).resolve().parents[2] / "examples" / "tasksim"


def ev(inter: str, target: str, lang: str, value: float | None, *, seed: str | None = "0", data: str = "set.test",
       task: str = "sts", metric: str = "spearman", **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One eval line as `xl eval … --tag inter=… --tag target=… --tag seed=…` prints it."""
    line: dict[str, Any] = {"inter": inter, "target": target}
    if seed is not None:
        line["seed"] = seed
    line.update({"task": task, "data": data, "lang": lang, "n": 100, metric: value, "pearson": 0.0,
                 "source": f"{data}:{lang}", **extra})  # fmt: skip
    return line


def rendered(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.render())


# --------------------------------------------------------------------------------------------- gains


def test_two_seeds_mean_and_standard_error() -> None:
    lines = [
        ev("none", "sts", "de", 70.0, seed="0"), ev("none", "sts", "de", 72.0, seed="1"),
        ev("none", "sts", "fr", 60.0, seed="0"), ev("none", "sts", "fr", 61.0, seed="1"),
        ev("sst2", "sts", "de", 75.0, seed="0"), ev("sst2", "sts", "de", 74.0, seed="1"),
        ev("sst2", "sts", "fr", 58.0, seed="0"), ev("sst2", "sts", "fr", 62.0, seed="1"),
        {"inter": "sst2", "target": "sts", "seed": "0", "summary": True, "task": "sts", "mean_spearman": 66.5},
    ]  # fmt: skip
    result = build_gains(lines, GainOptions(), source_name="r.jsonl")
    assert [(r["source"], r["target"], r["lang"]) for r in result.rows] == [
        ("sst2", "sts", "de"),
        ("sst2", "sts", "fr"),
    ]
    de, fr = result.rows
    assert de["score_with"] == pytest.approx(74.5) and de["score_without"] == pytest.approx(71.0)
    assert de["gain"] == pytest.approx(3.5)
    # sqrt(s_w²/n_w + s_wo²/n_wo) with sample variances over seeds
    assert de["gain_se"] == pytest.approx(math.sqrt(np.var([75, 74], ddof=1) / 2 + np.var([70, 72], ddof=1) / 2))
    assert fr["gain_se"] == pytest.approx(math.sqrt(np.var([58, 62], ddof=1) / 2 + np.var([60, 61], ddof=1) / 2))
    assert de["baseline_seed_sd"] == pytest.approx(np.std([70, 72], ddof=1))
    assert de["seed_sd"] == pytest.approx(np.std([75, 74], ddof=1))
    assert (de["n_seeds"], de["n_seeds_without"], de["se_reason"]) == (2, 2, None)
    assert de["metric"] == "spearman" and de["data"] == "set.test"
    assert result.dropped == [] and result.notes == []


def test_one_seed_per_run_has_no_noise_estimate() -> None:
    lines = [ev("none", "sts", "de", 70.0, seed=None), ev("sst2", "sts", "de", 72.5, seed=None)]
    result = build_gains(lines)
    (row,) = result.rows
    assert row["gain"] == pytest.approx(2.5)
    assert row["gain_se"] is None and row["baseline_seed_sd"] is None
    assert row["se_reason"] == "no noise estimate: one seed per run"
    assert (row["n_seeds"], row["n_seeds_without"]) == (1, 1)
    assert any("one seed per run" in note for note in result.notes)


def test_one_source_seed_two_baseline_seeds() -> None:
    lines = [ev("none", "sts", "de", 70.0, seed="0"), ev("none", "sts", "de", 74.0, seed="1"),
             ev("sst2", "sts", "de", 73.0, seed="0")]  # fmt: skip
    result = build_gains(lines)
    (row,) = result.rows
    assert row["score_without"] == pytest.approx(72.0) and row["gain"] == pytest.approx(1.0)
    assert row["gain_se"] is None and row["se_reason"] == "1 seed of sst2→sts"
    assert row["baseline_seed_sd"] == pytest.approx(math.sqrt(8.0))
    assert any("no gain_se" in note for note in result.notes)


def test_english_left_out_unless_asked_for() -> None:
    lines = [ev("none", "sts", "en", 80.0), ev("none", "sts", "de", 70.0),
             ev("sst2", "sts", "en", 81.0), ev("sst2", "sts", "de", 71.0)]  # fmt: skip
    result = build_gains(lines)
    assert [r["lang"] for r in result.rows] == ["de"]
    assert len(result.dropped) == 1 and "set.test en" in result.dropped[0] and "English" in result.dropped[0]
    with_english = build_gains(lines, GainOptions(include_english=True))
    assert [r["lang"] for r in with_english.rows] == ["de", "en"] and with_english.dropped == []


def test_second_set_for_a_language_is_dropped_and_reported() -> None:
    lines = []
    for inter, shift in (("none", 0.0), ("sst2", 1.0)):
        lines += [ev(inter, "qa", "de", 50 + shift, data="xquad.test", task="qa", metric="f1"),
                  ev(inter, "qa", "ar", 40 + shift, data="xquad.test", task="qa", metric="f1"),
                  ev(inter, "qa", "de", 30 + 2 * shift, data="mlqa-de.dev", task="qa", metric="f1")]  # fmt: skip
    result = build_gains(lines)
    assert [(r["lang"], r["data"], r["gain"]) for r in result.rows] == [
        ("ar", "xquad.test", 1.0),
        ("de", "xquad.test", 1.0),
    ]
    assert result.dropped == ["qa: mlqa-de.dev de left out: de is already given by xquad.test de (listed first)"]
    assert result.rows[0]["metric"] == "f1"
    # named explicitly instead, the other set is kept
    excluded = build_gains(lines, GainOptions(exclude_sets=["xquad.test:de"]))
    assert {(r["lang"], r["data"]) for r in excluded.rows} == {("ar", "xquad.test"), ("de", "mlqa-de.dev")}
    assert excluded.dropped == ["qa: xquad.test de left out: excluded (xquad.test:de)"]
    with pytest.raises(InputError) as excinfo:
        build_gains(lines, GainOptions(keep_first_set_per_language=False), source_name="r.jsonl")
    message = rendered(excinfo)
    assert message.startswith("r.jsonl:3: ") and "xquad.test de (line 1)" in message and "mlqa-de.dev de" in message
    assert excinfo.value.hint and "--exclude-set mlqa-de.dev:de" in excinfo.value.hint


def test_cross_lingual_sets_dropped_and_same_language_pairs_kept() -> None:
    lines = []
    for inter, shift in (("none", 0.0), ("sst2", 2.0)):
        # en-IN: a region subtag, not a pair (English + Indonesian "in")
        lines += [ev(inter, "sts", "ar-ar", 60 + shift, data="sts2017.test"),
                  ev(inter, "sts", "en-ar", 50 + shift, data="sts2017.test"),
                  ev(inter, "sts", "en-IN", 55 + shift, data="regional.test")]  # fmt: skip
    result = build_gains(lines)
    assert [(r["lang"], r["gain"]) for r in result.rows] == [("ar", 2.0)]
    assert "sts: sts2017.test en-ar left out: not one language (a cross-lingual pair)" in result.dropped
    assert any("regional.test en-IN" in note and "English" in note for note in result.dropped)
    both = build_gains(lines, GainOptions(languages_only=False))
    assert [r["lang"] for r in both.rows] == ["ar", "en-ar"]


def test_one_language_written_three_ways_is_one_code() -> None:
    lines = [ev("none", "classify", "pl", 50.0, task="classify", metric="macro_f1"),
             ev("sst2", "classify", "pol", 52.0, task="classify", metric="macro_f1"),
             ev("sts", "classify", "pol_Latn", 49.0, task="classify", metric="macro_f1"),
             ev("none", "classify", "yue", 30.0, task="classify", metric="macro_f1"),
             ev("sst2", "classify", "yue_Hant", 31.0, task="classify", metric="macro_f1")]  # fmt: skip
    result = build_gains(lines)
    assert [(r["source"], r["lang"], r["gain"]) for r in result.rows] == [
        ("sst2", "pl", 2.0), ("sst2", "yue", 1.0), ("sts", "pl", -1.0)]  # fmt: skip
    assert result.rows[0]["metric"] == "macro_f1" and result.dropped == []
    # the same language twice in one run is a duplicate, however it is written
    with pytest.raises(InputError) as excinfo:
        build_gains([*lines, ev("sst2", "classify", "pl", 51.0, task="classify", metric="macro_f1")], source_name="r")
    assert rendered(excinfo).startswith("r:6: duplicate eval line") and "as line 2" in rendered(excinfo)


def test_metric_override() -> None:
    lines = [ev("none", "sts", "de", 70.0, pearson=71.0), ev("sst2", "sts", "de", 75.0, pearson=70.0)]
    (row,) = build_gains(lines, GainOptions(metrics={"sts": "pearson"})).rows
    assert row["metric"] == "pearson" and row["gain"] == pytest.approx(-1.0)


def test_retrieval_lines_use_the_nested_accuracy() -> None:
    def retrieval(inter: str, accuracy: float) -> dict[str, Any]:
        return {"inter": inter, "target": "tatoeba", "lang": "kor", "task": "retrieval", "src": f"{inter}.npy",
                "src2tgt": {"accuracy": accuracy, "f1": 0.5}, "tgt2src": {"accuracy": 0.1}}  # fmt: skip

    assert DEFAULT_METRICS["retrieval"] == "src2tgt.accuracy"
    (row,) = build_gains([retrieval("none", 0.50), retrieval("xnli", 0.55)]).rows
    assert (row["lang"], row["data"], row["metric"]) == ("ko", "retrieval", "src2tgt.accuracy")
    assert row["gain"] == pytest.approx(0.05)


def test_custom_tag_names() -> None:
    common = {"tgt": "sts", "rep": "1", "task": "sts", "data": "d", "lang": "de"}
    lines = [{"run": "base", **common, "spearman": 1.0}, {"run": "xnli", **common, "spearman": 3.0}]
    options = GainOptions(source_tag="run", target_tag="tgt", seed_tag="rep", baseline="base")
    (row,) = build_gains(lines, options).rows
    assert (row["source"], row["gain"]) == ("xnli", 2.0)
    with pytest.raises(UsageError, match="three different names"):
        build_gains(lines, GainOptions(source_tag="tgt", target_tag="tgt"))


@pytest.mark.parametrize("missing", ["inter", "target"])
def test_line_lacking_a_tag(missing: str) -> None:
    lines = [ev("none", "sts", "de", 70.0), ev("sst2", "sts", "fr", 1.0), ev("sst2", "sts", "de", 72.0)]
    del lines[2][missing]
    with pytest.raises(InputError) as excinfo:
        build_gains(lines, source_name="results.jsonl")
    assert rendered(excinfo).startswith(f"results.jsonl:3: eval line lacks the tag '{missing}'")
    assert excinfo.value.hint and f"--tag {missing}=" in excinfo.value.hint


def test_target_without_target_only_run() -> None:
    lines = [ev("sst2", "sts", "de", 70.0), ev("sst2", "sts", "fr", 60.0)]
    with pytest.raises(InputError) as excinfo:
        build_gains(lines)
    message = rendered(excinfo)
    assert "target 'sts' has no target-only run (inter=none)" in message and "de, fr" in message
    assert excinfo.value.hint and "--tag inter=none" in excinfo.value.hint


def test_source_language_without_target_only_score() -> None:
    lines = [ev("none", "sts", "de", 70.0), ev("sst2", "sts", "de", 71.0), ev("sst2", "sts", "fr", 60.0),
             ev("qa", "sts", "fr", 61.0), ev("qa", "sts", "de", 69.0)]  # fmt: skip
    with pytest.raises(InputError) as excinfo:
        build_gains(lines)
    assert "target 'sts' lacks fr (needed by sst2, qa)" in rendered(excinfo)


def test_seed_tags_on_some_lines_only() -> None:
    lines = [ev("none", "sts", "de", 70.0, seed=None), ev("sst2", "sts", "de", 71.0, seed="0"),
             ev("qa", "sts", "de", 71.0, seed=None)]  # fmt: skip
    with pytest.raises(InputError) as excinfo:
        build_gains(lines, source_name="r.jsonl")
    message = rendered(excinfo)
    assert "tag 'seed' is on some eval lines but not on others" in message
    assert "with it sst2→sts (line 2)" in message and "without it none→sts (line 1), qa→sts (line 3)" in message


def test_duplicate_line() -> None:
    lines = [ev("none", "sts", "de", 70.0), ev("sst2", "sts", "de", 71.0), ev("sst2", "sts", "de", 72.0)]
    with pytest.raises(InputError) as excinfo:
        build_gains(lines, source_name="r.jsonl")
    message = rendered(excinfo)
    assert message.startswith("r.jsonl:3: duplicate eval line") and "as line 2" in message
    assert "sst2→sts (seed 0) on set.test de" in message


def test_metric_missing_or_undefined() -> None:
    lines = [ev("none", "sts", "de", 70.0), ev("sst2", "sts", "de", 71.0, metric="kendall")]
    with pytest.raises(InputError) as excinfo:
        build_gains(lines, source_name="r.jsonl")
    message = rendered(excinfo)
    assert message.startswith("r.jsonl:2: eval line has no metric 'spearman'") and "kendall, pearson" in message
    assert excinfo.value.hint == "choose one: --metric sts=NAME"
    with pytest.raises(InputError, match="undefined") as excinfo:
        build_gains([ev("none", "sts", "de", 70.0), ev("sst2", "sts", "de", None)], source_name="r.jsonl")
    assert rendered(excinfo).startswith("r.jsonl:2: ")
    with pytest.raises(InputError, match="no default metric for task 'ner'") as excinfo:
        build_gains([ev("none", "ner", "de", 1.0, task="ner"), ev("sst2", "ner", "de", 2.0, task="ner")])
    assert excinfo.value.hint and "--metric ner=NAME" in excinfo.value.hint


def test_no_rows() -> None:
    with pytest.raises(InputError, match="no gain rows: only target-only runs"):
        build_gains([ev("none", "sts", "de", 70.0)])
    with pytest.raises(InputError, match="no gain rows: every set of the source runs was left out"):
        build_gains([ev("none", "sts", "en", 70.0), ev("sst2", "sts", "en", 71.0)])
    with pytest.raises(InputError, match="no gain rows: no eval lines"):
        build_gains([{"summary": True, "task": "sts"}])


def test_options_that_match_nothing_are_usage_errors() -> None:
    lines = [ev("none", "sts", "de", 70.0), ev("sst2", "sts", "de", 71.0)]
    with pytest.raises(UsageError, match="--exclude-set 'set.test:fr' matches no eval set"):
        build_gains(lines, GainOptions(exclude_sets=["set.test:fr"]))
    with pytest.raises(UsageError, match="--metric names target"):
        build_gains(lines, GainOptions(metrics={"qa": "f1"}))


def _study_lines() -> list[dict[str, Any]]:
    """The study's eval lines with runs as tags: a second target-only seed once was ``inter=none-seed1``."""
    lines = []
    for raw in (STUDY / "results.jsonl").read_bytes().splitlines():
        line = orjson.loads(raw)
        if line["inter"] == "none-seed1":
            line = {**line, "inter": "none", "seed": "1"}
        lines.append({**line, "seed": str(line.get("seed", "0"))})
    return lines


def test_study_results() -> None:
    lines = _study_lines()
    options = GainOptions(exclude_sets=["mlqa-de.dev", "sts2017.test:es-es"])
    result = build_gains(lines, options, source_name="results.jsonl")
    expected = {(r["source"], r["target"], r["lang"]): r
                for r in map(orjson.loads, (STUDY / "gains.jsonl").read_bytes().splitlines())}  # fmt: skip
    got = {(r["source"], r["target"], r["lang"]): r for r in result.rows}
    assert set(got) == set(expected) and len(result.rows) == 124
    baseline: dict[tuple[str, str, str], list[float]] = {}
    for line in lines:
        if line["inter"] == "none" and not line.get("summary"):
            metric = DEFAULT_METRICS[line["task"]]
            baseline.setdefault((line["target"], line["data"], line["lang"]), []).append(line[metric])
    for key, row in got.items():
        assert row["score_with"] == pytest.approx(expected[key]["score_with"], abs=1e-4)
        assert row["metric"] == expected[key]["metric"]
        seeds = baseline[(row["target"], row["data"], "ar-ar" if row["data"] == "sts2017.test" else row["lang"])]
        assert len(seeds) == 2 and row["n_seeds_without"] == 2 and row["n_seeds"] == 1
        assert row["score_without"] == pytest.approx(np.mean(seeds))
        assert row["gain"] == pytest.approx(row["score_with"] - np.mean(seeds))
        assert row["baseline_seed_sd"] == pytest.approx(np.std(seeds, ddof=1))
        assert row["gain_se"] is None and row["se_reason"] == f"1 seed of {key[0]}→{key[1]}"
    # Left to input order instead of named, the same sets are kept (XQuAD and stsb-multi-mt come first).
    by_order = build_gains(lines, source_name="results.jsonl")
    assert by_order.rows == result.rows
    assert any("mlqa-de.dev de left out: de is already given by xquad.test de" in d for d in by_order.dropped)
    assert any("sts2017.test en-ar left out: not one language" in d for d in by_order.dropped)

    decomposition = decompose(result.rows)
    assert decomposition["n_rows"] == 124 and decomposition["balanced"] is False
    total = sum(c["ss"] for c in decomposition["components"].values())
    assert total == pytest.approx(decomposition["total_ss"], rel=1e-10)
    noise = decomposition["seed_noise"]
    assert noise is not None and noise["n_rows_assumed"] == 124 and noise["n_rows_measured"] == 0


# --------------------------------------------------------------------------------------------- decomposition


def _design(S: int = 4, L: tuple[int, ...] = (3, 5, 4), *, skip_self: bool = False) -> list[tuple[str, str, str]]:
    """(source, target, lang) cells: sources s0… crossed with targets t0…, each target with its own languages."""
    cells = []
    for t, n_lang in enumerate(L):
        for s in range(S):
            if skip_self and s == t:
                continue
            cells += [(f"s{s}", f"t{t}", f"l{t}{i}") for i in range(n_lang)]
    return cells


def _planted(cells: list[tuple[str, str, str]], rng: np.random.Generator, **scale: float) -> list[dict[str, Any]]:
    """Gains with normal effects of the given SDs per component (target, source, pair, lang, noise)."""
    effects: dict[tuple[str, Any], float] = {}

    def effect(kind: str, key: Any) -> float:
        if (kind, key) not in effects:
            effects[(kind, key)] = float(rng.normal(0.0, scale.get(kind, 0.0)))
        return effects[(kind, key)]

    return [{"source": s, "target": t, "lang": lang,
             "gain": effect("target", t) + effect("source", s) + effect("pair", (s, t)) + effect("lang", (t, lang))
             + float(rng.normal(0.0, scale.get("noise", 0.0)))} for s, t, lang in cells]  # fmt: skip


def _sum_check(result: dict[str, Any]) -> None:
    components = result["components"]
    assert sum(c["ss"] for c in components.values()) == pytest.approx(result["total_ss"], rel=1e-10)
    assert sum(c["share"] for c in components.values()) == pytest.approx(1.0, abs=1e-12)
    assert sum(c["df"] for c in components.values()) == result["df_total"]


def test_one_target_leaves_no_noise_share_for_its_empty_components() -> None:
    """With one target (the retrieval half of a study), the target and pair steps add no degree of freedom: their
    SS is rounding noise, so the expected seed noise has no share of them (not a ratio to 1e-26)."""
    rng = np.random.default_rng(1)
    rows = [{**row, "gain_se": 0.5} for row in _planted(_design(4, (30,)), rng, source=2.0, lang=1.0, noise=1.0)]
    noise = decompose(rows)["seed_noise"]["components"]
    assert noise["target"]["share_of_component"] is None and noise["pair"]["share_of_component"] is None
    assert 0.0 < noise["residual"]["share_of_component"] < 1.0 and noise["source"]["share_of_component"] < 0.1


def test_balanced_design_sums_and_degrees_of_freedom() -> None:
    rng = np.random.default_rng(0)
    S, L = 4, (3, 5, 4)
    rows = _planted(_design(S, L), rng, target=1.0, source=1.0, pair=1.0, lang=1.0, noise=1.0)
    result = decompose(rows)
    _sum_check(result)
    T, n_lang = len(L), sum(L)
    assert result["balanced"] is True
    assert [c["df"] for c in result["components"].values()] == [T - 1, S - 1, (S - 1) * (T - 1), n_lang - T,
                                                                (S - 1) * (n_lang - T)]  # fmt: skip
    assert (result["n_rows"], result["n_pairs"], result["n_target_language_cells"]) == (S * n_lang, S * T, n_lang)
    assert result["n_languages"] == n_lang  # each target has its own languages here
    # one language under two targets: one language, two cells
    shared = decompose([{**r, "lang": r["lang"].replace("l1", "l0")} for r in rows])
    assert (shared["n_languages"], shared["n_target_language_cells"]) == (n_lang - min(L[:2]), n_lang)
    assert f"{n_lang - min(L[:2])} languages in {n_lang} (target, language) cells" in render_decomposition_markdown(
        shared
    )
    assert result["sources"] == ["s0", "s1", "s2", "s3"] and result["targets"] == ["t0", "t1", "t2"]
    # classical main-effect sums of squares (proportional frequencies make them orthogonal)
    y = np.array([r["gain"] for r in rows])

    def between(key: str) -> float:
        groups: dict[str, list[float]] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r["gain"])
        return float(sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values()))

    assert result["components"]["target"]["ss"] == pytest.approx(between("target"))
    assert result["components"]["source"]["ss"] == pytest.approx(between("source"))
    # and the same numbers in any order of the rows
    shuffled = decompose([rows[i] for i in rng.permutation(len(rows))])
    for name, c in result["components"].items():
        assert shuffled["components"][name]["ss"] == pytest.approx(c["ss"])


@pytest.mark.slow
def test_sequential_sums_of_squares_match_statsmodels() -> None:
    """Type I SS = the drops in residual SS of nested OLS fits (statsmodels' model comparison), unbalanced too."""
    import warnings

    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(1)
    for cells in (_design(4, (3, 5, 4)), _design(4, (3, 5, 4), skip_self=True)[5:]):
        rows = _planted(cells, rng, target=1.0, source=1.0, pair=1.0, lang=1.0, noise=1.0)
        frame = pd.DataFrame(rows)
        frame["pair"] = frame["source"] + ">" + frame["target"]
        frame["cell"] = frame["target"] + "/" + frame["lang"]
        formulas = ["1", "C(target)", "C(target) + C(source)", "C(pair)", "C(pair) + C(cell)"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the nested indicator sets are collinear by design (pinv handles it)
            fits = [smf.ols(f"gain ~ {formula}", frame).fit() for formula in formulas]
            table = anova_lm(*fits)
        result = decompose(rows)
        ours = result["components"]
        names = ("target", "source", "pair", "target_language")
        np.testing.assert_allclose([ours[name]["ss"] for name in names], table["ss_diff"].to_numpy()[1:], rtol=1e-8)
        assert [ours[name]["df"] for name in names] == table["df_diff"].to_numpy()[1:].astype(int).tolist()
        assert ours["residual"]["ss"] == pytest.approx(fits[-1].ssr, rel=1e-8)
        assert ours["residual"]["df"] == int(fits[-1].df_resid)


def test_planted_pair_effects_are_within_the_pair_ceiling() -> None:
    rng = np.random.default_rng(2)
    rows = _planted(_design(6, (4, 6, 5)), rng, pair=3.0, noise=0.1)
    result = decompose(rows)
    _sum_check(result)
    shares = {name: c["share"] for name, c in result["components"].items()}
    assert shares["target"] + shares["source"] + shares["pair"] == pytest.approx(result["pair_ceiling"]["share"])
    assert result["pair_ceiling"]["share"] > 0.99
    assert shares["target_language"] + shares["residual"] < 0.01
    assert result["pair_within_target_language_ceiling"]["share_within"] > 0.98


def test_planted_language_effects_are_out_of_reach_of_a_pair_predictor() -> None:
    rng = np.random.default_rng(3)
    rows = _planted(_design(6, (4, 6, 5)), rng, lang=3.0, noise=0.1)
    result = decompose(rows)
    shares = {name: c["share"] for name, c in result["components"].items()}
    assert shares["target"] + shares["target_language"] > 0.99
    assert result["pair_within_target_ceiling"]["share_within"] < 0.01
    assert result["pair_within_target_language_ceiling"]["share_within"] < 0.5  # only noise is left there


def test_unbalanced_design_sums_and_exact_ceilings() -> None:
    rng = np.random.default_rng(4)
    cells = _design(5, (3, 6, 4, 2), skip_self=True)
    cells = [cells[i] for i in sorted(rng.choice(len(cells), size=len(cells) - 7, replace=False))]
    rows = _planted(cells, rng, target=1.0, source=1.0, pair=1.0, lang=1.0, noise=1.0)
    result = decompose(rows)
    _sum_check(result)
    assert result["balanced"] is False and "unbalanced" in result["notes"][0]
    y = np.array([r["gain"] for r in rows])

    def fitted(*keys: tuple[str, ...]) -> np.ndarray:
        """Least-squares fit of y on the indicators of each key (tuples of row fields), by lstsq."""
        columns = [np.ones(len(rows))]
        for key in keys:
            labels = [tuple(r[k] for k in key) for r in rows]
            columns += [np.array([label == level for label in labels], float) for level in dict.fromkeys(labels)]
        X = np.column_stack(columns)
        fit: np.ndarray = X @ np.linalg.lstsq(X, y, rcond=None)[0]
        return fit

    total = np.sum((y - y.mean()) ** 2)
    pair_means = fitted(("source", "target"))
    target_means = fitted(("target",))
    assert result["pair_ceiling"]["share"] == pytest.approx(np.sum((pair_means - y.mean()) ** 2) / total)
    # the pair means do reach it: their squared correlation with the gains
    assert result["pair_ceiling"]["share"] == pytest.approx(np.corrcoef(pair_means, y)[0, 1] ** 2)
    within_t = result["pair_within_target_ceiling"]
    assert within_t["share_within"] == pytest.approx(
        np.corrcoef(pair_means - target_means, y - target_means)[0, 1] ** 2
    )
    cell_means = fitted(("target", "lang"))
    both = fitted(("source", "target"), ("target", "lang"))
    assert result["pair_within_target_language_ceiling"]["share_within"] == pytest.approx(
        np.sum((both - cell_means) ** 2) / np.sum((y - cell_means) ** 2)
    )


@pytest.mark.slow
def test_seed_noise_expected_sums_of_squares_are_calibrated() -> None:
    """Pure seed noise, own per row plus shared per target language: observed SS average to the expected."""
    rng = np.random.default_rng(5)
    cells = _design(4, (3, 5, 4), skip_self=True)
    sd_own, sd_base = 1.0, 2.0
    fields = {"seed_sd": sd_own * math.sqrt(2), "n_seeds": 2, "baseline_seed_sd": sd_base * math.sqrt(3),
              "n_seeds_without": 3}  # fmt: skip
    observed = []
    expected = None
    for _ in range(300):
        base = {(t, lang): rng.normal(0.0, sd_base) for _, t, lang in cells}
        rows = [{"source": s, "target": t, "lang": lang, "gain": rng.normal(0.0, sd_own) - base[(t, lang)],
                 **fields} for s, t, lang in cells]  # fmt: skip
        result = decompose(rows)
        observed.append([c["ss"] for c in result["components"].values()])
        expected = result["seed_noise"]
    assert expected is not None
    assert expected["mean_gain_se2"] == pytest.approx(sd_own**2 + sd_base**2)
    means = np.mean(observed, axis=0)
    sems = np.std(observed, axis=0, ddof=1) / math.sqrt(len(observed))
    for name, mean, sem in zip(expected["components"], means, sems, strict=True):
        assert abs(mean - expected["components"][name]["ss"]) < 4 * sem + 1e-9, name
    # the shared baseline noise never reaches the residual
    residual_df = result["components"]["residual"]["df"]
    assert expected["components"]["residual"]["ss"] == pytest.approx(residual_df * sd_own**2, rel=1e-9)


def test_seed_noise_from_gain_se_and_from_the_baseline_seeds() -> None:
    rng = np.random.default_rng(6)
    rows = _planted(_design(3, (3, 4)), rng, pair=1.0, noise=1.0)
    assert decompose(rows)["seed_noise"] is None
    with_se = decompose([{**r, "gain_se": 0.5} for r in rows])
    noise = with_se["seed_noise"]
    assert noise["mean_gain_se2"] == pytest.approx(0.25) and noise["n_rows_measured"] == len(rows)
    residual = with_se["components"]["residual"]
    assert noise["components"]["residual"]["ss"] == pytest.approx(0.25 * residual["df"])
    assert noise["share_of_residual"] == pytest.approx(0.25 * residual["df"] / residual["ss"])
    assumed = decompose([{**r, "baseline_seed_sd": 1.0, "n_seeds": 1, "n_seeds_without": 2} for r in rows])
    noise = assumed["seed_noise"]
    assert noise["n_rows_assumed"] == len(rows) and noise["assumption"]
    assert noise["mean_gain_se2"] == pytest.approx(1.0 + 0.5)  # σ²/1 + σ²/2


def test_decompose_edge_cases_and_errors() -> None:
    rows = [{"source": s, "target": "t", "lang": lang, "gain": 1.0} for s, lang in itertools.product("ab", "xy")]
    result = decompose(rows)
    assert all(c["share"] is None for c in result["components"].values())
    assert result["pair_ceiling"]["share"] is None and any("all gains are equal" in n for n in result["notes"])
    with pytest.raises(InputError) as excinfo:
        decompose([*rows, dict(rows[0])], source_name="g.jsonl")
    assert rendered(excinfo).startswith("g.jsonl:5: duplicate gain row for a→t x")
    with pytest.raises(InputError, match="gain is missing"):
        decompose([{"source": "a", "target": "t", "lang": "x", "gain": float("nan")}])
    with pytest.raises(InputError, match="no gain rows"):
        decompose([])


def test_render_markdown() -> None:
    rng = np.random.default_rng(7)
    rows = [{**r, "gain_se": 0.3} for r in _planted(_design(), rng, target=1.0, pair=1.0, noise=0.5)]
    text = render_decomposition_markdown(decompose(rows))
    lines = text.splitlines()
    assert lines[0] == "| component | df | share | SS |"
    assert lines[2].startswith("| target | 2 | ") and lines[6].startswith("| residual (source × language")
    assert lines[7].startswith("| **total** | 47 | 1.000 |")
    assert "pair-level predictor" in text and "seed noise alone" in text and "balanced design" in text
