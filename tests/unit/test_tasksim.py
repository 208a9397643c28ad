"""Task similarity and its correlation with gains (xl.core.tasksim)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from xl.core.tasksim import GainRow, Similarity, correlate, parse_gains, similarity_matrix
from xl.errors import InputError, ShapeError


def test_similarity_methods() -> None:
    rng = np.random.default_rng(0)
    E = rng.standard_normal((5, 8)) + 3.0
    S = similarity_matrix(E)
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    np.testing.assert_allclose(S, U @ U.T, atol=1e-12)
    C = similarity_matrix(E, "centered")
    Z = E - E.mean(0)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    np.testing.assert_allclose(C, Z @ Z.T, atol=1e-12)
    assert C.mean() < S.mean()  # the shared component no longer dominates
    F = np.abs(E)
    T = similarity_matrix(F, "task2vec")
    np.testing.assert_allclose(np.diag(T), 1.0)
    np.testing.assert_allclose(T, T.T)
    a, b = F[0], F[1]
    x, y = a / (a + b), b / (a + b)
    assert T[0, 1] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    with pytest.raises(InputError, match="non-negative"):
        similarity_matrix(E - 10, "task2vec")


def test_similarity_must_be_square_with_matching_labels() -> None:
    with pytest.raises(ShapeError, match="not square"):
        Similarity(("a", "b"), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="3 labels"):
        Similarity(("a", "b", "c"), np.eye(2))


def test_gains_are_validated_with_record_numbers() -> None:
    rows = parse_gains([{"source": "s", "target": "t", "lang": "de", "score_with": 71.5, "score_without": 70.0}])
    assert rows[0].gain == pytest.approx(1.5)
    with pytest.raises(InputError, match="gains:2.*NaN"):
        parse_gains([{"source": "s", "target": "t", "lang": "de", "gain": 1},
                     {"source": "s", "target": "t", "lang": "fr", "gain": math.nan}])  # fmt: skip
    with pytest.raises(InputError, match="gains:2: duplicate.*first at record 1"):
        parse_gains([{"source": "s", "target": "t", "lang": "de", "gain": 1}] * 2)
    with pytest.raises(InputError, match="'lang'"):
        parse_gains([{"source": "s", "target": "t", "gain": 1}])
    with pytest.raises(InputError, match="no gain"):
        parse_gains([{"source": "s", "target": "t", "lang": "de"}])


def _study(perfect: bool, seed: int = 0) -> tuple[Similarity, list[GainRow]]:
    rng = np.random.default_rng(seed)
    sources, targets = [f"s{i}" for i in range(6)], ["t0", "t1"]
    labels = (*sources, *targets)
    S = rng.uniform(0, 1, (8, 8))
    S = (S + S.T) / 2
    sim = Similarity(labels, S)
    rows = []
    for lang in ("de", "fr", "ar", "ko", "hi"):
        for t in targets:
            for s in sources:
                value = sim.lookup(s, t, lang) or 0.0
                rows.append(GainRow(s, t, lang, 10 * value if perfect else float(rng.standard_normal())))
    return sim, rows


def test_correlate_overall_per_family_and_ranking() -> None:
    sim, rows = _study(perfect=True)
    lines = correlate(sim, rows, n_perm=2000, n_boot=200)
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["design", "decomposition"]  # what a pair-level predictor can reach, before any correlation
    assert lines[0]["unit"] == "pair" and lines[0]["n_pairs"] == 12 and lines[0]["n_rows"] == 60

    def correlations(unit: str, scope: str) -> dict[str, dict[str, object]]:
        return {line["method"]: line for line in lines
                if line["kind"] == "correlation" and line["scope"] == scope and line["unit"] == unit}  # fmt: skip

    overall = correlations("pair", "overall")
    assert overall["spearman"]["value"] == pytest.approx(1.0) and overall["spearman"]["p_perm"] < 0.01
    assert overall["pearson"]["n"] == 12  # one point per (source, target) pair, not one per row
    naive = correlations("naive", "overall")
    assert naive["pearson"]["n"] == 60 and naive["pearson"]["p_perm"] is None  # analytic p only
    families = {line["family"] for line in lines if line["kind"] == "correlation" and line["scope"] == "family"}
    assert families == {"Indo-European", "Afro-Asiatic", "Korean"}
    korean = next(line for line in lines if line.get("family") == "Korean" and line.get("method") == "kendall")
    assert korean["n"] == 12 and korean["languages"] == ["ko"]
    # 12 pairs of 2 targets: the centring spends one degree of freedom per target beyond the first (n = 11)
    assert korean["eligible"] is False and korean["mde_r"] == pytest.approx(  # Fisher z
        np.tanh((scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)) / np.sqrt(11 - 3))
    )
    # one language per family but Indo-European's three: no family test, and the lines say why
    tests = [line for line in lines if line["kind"] == "family_test"]
    assert len(tests) == 2 and all("needs two families" in line["reason"] for line in tests)
    ranking = next(line for line in lines if line["kind"] == "ranking" and line["scope"] == "overall")
    assert ranking["targets"] == 10 and ranking["best_rank"]["mean"] == 1.0 and ranking["regret@1"]["mean"] == 0.0
    assert ranking["top1_negative"]["mean"] == 0.0 and ranking["regret_abs@1"]["mean"] == 0.0
    assert lines[-1]["kind"] == "ranking_ceiling" and "two seeds" in lines[-1]["reason"]
    pair_x = [sim.lookup(s, t, "de") for t in ("t0", "t1") for s in (f"s{i}" for i in range(6))]
    pair_y = [10 * value for value in pair_x]  # the mean over languages of a pair-level gain is the gain
    assert overall["pearson"]["value"] == pytest.approx(scipy.stats.pearsonr(pair_x, pair_y).statistic)


def test_language_codes_are_normalised_before_any_lookup() -> None:
    """The same gains with lang written pl, pol or pol_Latn, and labels sts@pl / sts@pol_Latn, give one result."""
    sources = [f"s{i}" for i in range(5)]
    keys = [(s, lang) for lang in ("pl", "de") for s in sources]
    gains = dict(zip(keys, np.random.default_rng(1).normal(size=len(keys)), strict=True))
    results = []
    for spelling, label_spelling in (("pl", "pl"), ("pol", "pl"), ("pol_Latn", "pol_Latn"), ("pl", "pol")):
        labels = (*sources, "sts", f"sts@{label_spelling}", "sts@de")
        S = np.random.default_rng(0).uniform(0, 1, (len(labels), len(labels)))
        sim = Similarity(labels, (S + S.T) / 2)
        rows = [GainRow(s, "sts", spelling if lang == "pl" else lang, float(g)) for (s, lang), g in gains.items()]
        lines = correlate(sim, rows, n_perm=0, n_boot=0, unit="row", naive=False, family_test="none")
        results.append([line["value"] for line in lines if line["kind"] == "correlation"])
    assert all(r == pytest.approx(results[0]) for r in results)
    # a per-language label set that lacks a language of the rows is refused, not silently replaced by `sts`
    sim = Similarity((*sources, "sts", "sts@de"), np.eye(len(sources) + 2))
    with pytest.raises(InputError, match="sts@LANG labels but none for pl"):
        correlate(sim, [GainRow(s, "sts", lang, 1.0) for s in sources for lang in ("pol", "de")], n_perm=0, n_boot=0)


def test_correlate_names_missing_tasks_and_unknown_languages() -> None:
    sim, rows = _study(perfect=False)
    with pytest.raises(InputError, match="missing from the similarity matrix: s9, t7"):
        correlate(sim, [*rows, GainRow("s9", "t7", "de", 1.0)], n_perm=0, n_boot=0)
    with pytest.raises(InputError, match="'xx'.*'qq'|unknown language"):
        correlate(sim, [*rows, GainRow("s0", "t0", "xx", 1.0), GainRow("s1", "t0", "qq", 1.0)], n_perm=0, n_boot=0)


def test_per_language_target_labels_are_preferred() -> None:
    sim = Similarity(("s", "t", "t@de"), np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.5], [0.9, 0.5, 1.0]]))
    assert sim.lookup("s", "t", "de") == 0.9
    assert sim.lookup("s", "t", "fr") == 0.2


def test_regret_is_relative_to_the_best_score_when_rows_give_the_score_without() -> None:
    matrix = np.array([[1, 0, 0, 0.9], [0, 1, 0, 0.5], [0, 0, 1, 0.1], [0.9, 0.5, 0.1, 1]])
    sim = Similarity(("a", "b", "c", "t"), matrix)
    scores = [{"source": s, "target": "t", "lang": "de", "score_with": 50.0 + g, "score_without": 50.0}
              for s, g in (("a", 1.0), ("b", 3.0), ("c", 2.0))]  # fmt: skip
    gains_only = [{"source": r["source"], "target": "t", "lang": "de", "gain": r["score_with"] - 50.0} for r in scores]

    def ranking(records: list[dict[str, object]]) -> list[dict[str, object]]:
        return [line for line in correlate(sim, parse_gains(records), n_perm=0, n_boot=0) if line["kind"] == "ranking"]

    on_scores, on_gains = ranking(scores), ranking(gains_only)
    # the top source by similarity is a (gain 1); the best is b (gain 3, score 53)
    assert on_scores[0]["regret@1"]["mean"] == pytest.approx(100 * 2 / 53)
    assert on_scores[0]["regret_relative_to"] == "best score"
    assert on_gains[0]["regret@1"]["mean"] == pytest.approx(100 * 2 / 3)
    assert on_gains[0]["regret_relative_to"] == "best gain"


@pytest.mark.slow
def test_within_target_centering_keeps_the_pair_level_test_calibrated_and_powerful() -> None:
    """correlate's statistic: x centred per target, y per (target, language); the within-target permutation
    test stays at its level on null gains with shared pair and (target, language) effects, and finds a slope."""
    from xl.core.inference import clustered_correlations
    from xl.core.tasksim import center_within_target

    n_s, n_t, n_l = 6, 4, 12
    s, t, lc = (a.ravel() for a in np.meshgrid(np.arange(n_s), np.arange(n_t), np.arange(n_l), indexing="ij"))
    src, tgt, lang = np.array([f"s{i}" for i in s]), np.array([f"t{i}" for i in t]), np.array([f"l{i}" for i in lc])
    rng = np.random.default_rng(2026)

    def rate(slope: float, n_sets: int) -> float:
        rejected = 0
        for i in range(n_sets):
            sim = rng.random((n_s, n_t))[s, t]
            # target-level offsets in both x and y: what the raw correlation would pick up, the centering removes
            offset = rng.normal(size=n_t)[t]
            gains = (slope * sim + 3 * offset + rng.normal(size=(n_s, n_t))[s, t] + rng.normal(size=(n_t, n_l))[t, lc]
                     + 0.5 * rng.normal(size=s.size))  # fmt: skip
            x, y = center_within_target(sim + offset, gains, tgt, lang)
            p = clustered_correlations(x, y, src, tgt, lang, methods=("pearson",), n_perm=199, n_boot=0,
                                       seed=i)["pearson"].p_perm  # fmt: skip
            rejected += p is not None and p <= 0.05
        return rejected / n_sets

    assert 0.02 <= rate(0.0, 200) <= 0.09
    assert rate(4.0, 30) >= 0.8


@pytest.mark.slow
def test_family_tests_run_when_two_families_are_eligible_and_render() -> None:
    """Three families of three languages: both family tests run, each line with p and per-family slopes; a
    family test asked for without two eligible families is a usage error."""
    from xl.core.tasksim import render_markdown
    from xl.errors import UsageError

    rng = np.random.default_rng(4)
    sources, targets = [f"s{i}" for i in range(5)], ["t0", "t1", "t2"]
    labels = (*sources, *targets)
    S = rng.uniform(0, 1, (8, 8))
    sim = Similarity(labels, (S + S.T) / 2)
    langs = {"de": 3.0, "fr": 3.0, "es": 3.0, "ta": 0.0, "te": 0.0, "ml": 0.0, "fi": 0.0, "et": 0.0, "hu": 0.0}
    rows = [GainRow(s, t, lang, slope * sim.matrix[labels.index(s), labels.index(t)] + float(rng.normal(0, 0.3)))
            for lang, slope in langs.items() for t in targets for s in sources]  # fmt: skip
    lines = correlate(sim, rows, methods=("pearson",), n_perm=499, n_boot=0, family_test="both", naive=False)
    tests = {line["test"]: line for line in lines if line["kind"] == "family_test"}
    assert tests["permutation"]["reason"] is None and tests["permutation"]["n_eligible"] == 3
    assert tests["mixed_model"]["df"] == 2 and tests["mixed_model"]["p_value"] < 0.05
    slopes = {f["family"]: f for f in tests["mixed_model"]["families"]}
    assert slopes["Indo-European"]["ci_low"] > slopes["Dravidian"]["slope"]
    md = render_markdown(lines)
    assert "| mixed model LRT (sim × family) |" in md and "Indo-European +" in md and "p Holm" in md
    with pytest.raises(UsageError, match="needs two families"):
        correlate(sim, [r for r in rows if r.lang in ("de", "fr", "es", "ta")], n_perm=0, n_boot=0,
                  family_test="permutation")  # fmt: skip


def test_ranking_ceiling_from_the_gains_of_two_seeds() -> None:
    """Records with gain_by_seed (``xl tasksim gains`` with two seeds a side) give the seed-stability ceiling;
    identical seeds rank each other perfectly."""
    sim, rows = _study(perfect=False, seed=5)
    records = [{"source": r.source, "target": r.target, "lang": r.lang, "gain": r.gain,
                "gain_by_seed": {"0": r.gain, "1": r.gain}} for r in rows]  # fmt: skip
    ceiling = correlate(sim, rows, n_perm=0, n_boot=0, records=records)[-1]
    assert ceiling["kind"] == "ranking_ceiling" and ceiling["reason"] is None and ceiling["seeds"] == ["0", "1"]
    assert ceiling["best_rank"]["mean"] == 1.0 and ceiling["best_rank"]["n"] == 10
    assert ceiling["regret_abs@1"]["mean"] == 0.0 and ceiling["spearman"]["mean"] == pytest.approx(1.0)
    noisy = [{**r, "gain_by_seed": {"0": r["gain"], "1": float(np.random.default_rng(i).normal())}}
             for i, r in enumerate(records)]  # fmt: skip
    worse = correlate(sim, rows, n_perm=0, n_boot=0, records=noisy)[-1]
    assert worse["best_rank"]["mean"] > 1.0
