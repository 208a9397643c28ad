"""Grouped cross-validation of gains from similarity and language covariates (xl.core.predict)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xl.core.languages import XTREME_R_CODES, builtin_table
from xl.core.predict import FEATURE_SETS, GROUPINGS, grouped_cv, ridge_predict
from xl.errors import InputError, UsageError


def _simulate(
    effect: float, seed: int, *, langs: tuple[str, ...] = XTREME_R_CODES[:30], sources: int = 6, targets: int = 2
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Gains ``−2·syntactic(lang) + effect·similarity + noise`` over sources × targets × languages, with
    covariate rows shaped like language_covariates' (family and script from the built-in table)."""
    rng = np.random.default_rng(seed)
    table = builtin_table()
    covariates = [{"code": c, "family": table[c].family, "script": table[c].script,
                   "same_script_as_english": table[c].script == "Latn",
                   "syntactic": float(rng.uniform()), "geographic": float(rng.uniform())} for c in langs]  # fmt: skip
    syntactic = {row["code"]: row["syntactic"] for row in covariates}
    rows = []
    for i in range(sources):
        for t in range(targets):
            for code in langs:
                s = float(rng.normal())
                gain = -2.0 * syntactic[code] + effect * s + float(rng.normal(scale=0.5))
                rows.append({"source": f"src{i}", "target": f"tgt{t}", "lang": code, "gain": gain, "similarity": s})
    return rows, covariates


def _lines(out: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [line for line in out if line["kind"] == kind and all(line[k] == v for k, v in match.items())]


def test_folds_never_put_a_group_in_train_and_test() -> None:
    rows, covariates = _simulate(0.5, 0, sources=4, targets=1)
    out = grouped_cv(rows, covariates, n_boot=0)
    family = {row["code"]: row["family"] for row in covariates}
    langs = np.array([row["lang"] for row in rows])
    keys = {"language": langs, "family": np.array([family[c] for c in langs]),
            "source": np.array([row["source"] for row in rows]),
            "pair": np.array([f"{row['source']}→{row['target']}" for row in rows])}  # fmt: skip
    for grouping in GROUPINGS:
        (folds,) = _lines(out, "folds", grouping=grouping)
        fold_of_row = np.asarray(folds["fold_of_row"])
        assert len(fold_of_row) == len(rows) and sorted(set(fold_of_row)) == list(range(len(folds["groups"])))
        for k, held_out in enumerate(folds["groups"]):
            test, train = fold_of_row == k, fold_of_row != k
            assert set(keys[grouping][test]) == {held_out}
            assert held_out not in set(keys[grouping][train])
            if grouping == "family":  # a held-out family takes all of its languages with it
                assert not set(langs[test]) & set(langs[train])
    n_groups = {line["grouping"]: line["n_groups"] for line in _lines(out, "prediction")}
    assert n_groups == {"pair": 4, "language": 30, "family": len(set(family.values())), "source": 4}


def test_planted_similarity_effect_is_found() -> None:
    rows, covariates = _simulate(0.5, 1)
    out = grouped_cv(rows, covariates, n_boot=1000, seed=1)
    for grouping in GROUPINGS:
        for features, baseline in [("similarity+covariates", "covariates"), ("similarity", "mean")]:
            (line,) = _lines(out, "comparison", grouping=grouping, features=features, baseline=baseline)
            for metric in ("rmse", "mae"):
                d = line[metric]
                assert d["difference"] < 0 and d["ci_low"] <= d["difference"] <= d["ci_high"] < 0, (grouping, line)
        rmse = {line["features"]: line["rmse"] for line in _lines(out, "prediction", grouping=grouping)}
        assert set(rmse) == set(FEATURE_SETS)
        assert rmse["covariates"] < rmse["mean"]  # the syntactic distance carries the language effect


def test_similarity_adds_nothing_when_gains_depend_on_a_covariate_only() -> None:
    for seed in range(3):
        rows, covariates = _simulate(0.0, seed)
        out = grouped_cv(rows, covariates, n_boot=1000, seed=seed)
        for line in _lines(out, "comparison", features="similarity+covariates"):
            assert not line["rmse"]["ci_high"] < 0, line  # never significantly better
            assert abs(line["rmse"]["difference"]) < 0.02
        for line in _lines(out, "prediction", features="covariates"):
            assert line["rmse"] == pytest.approx(0.5, abs=0.1)  # down to the noise


def test_family_indicators_are_left_out_under_leave_one_family_out() -> None:
    rows, covariates = _simulate(0.5, 2, sources=2, targets=1)
    out = grouped_cv(rows, covariates, n_boot=0)
    columns = {line["grouping"]: line["columns"] for line in _lines(out, "prediction", features="covariates")}
    assert not any(c.startswith("family=") for c in columns["family"])
    assert any(c.startswith("family=") for c in columns["language"])
    assert columns["source"][:3] == ["same_script_as_english", "syntactic", "geographic"]
    (both,) = _lines(out, "prediction", grouping="source", features="similarity+covariates")
    assert both["columns"][0] == "similarity" and _lines(out, "prediction", features="mean")[0]["columns"] == []


def test_ridge_matches_scikit_learn() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 4)) * [1.0, 10.0, 0.1, 3.0] + 5
    X[:, 3] = 2.0  # a constant column is dropped, as the standard scaler's zero variance would leave it
    y = X[:, 0] - X[:, 1] + rng.normal(size=40)
    X_test = rng.normal(size=(7, 4))
    mu, sd = X[:, :3].mean(0), X[:, :3].std(0)
    expected = Ridge(alpha=2.5).fit((X[:, :3] - mu) / sd, y).predict((X_test[:, :3] - mu) / sd)
    np.testing.assert_allclose(ridge_predict(X, y, X_test, 2.5), expected, rtol=1e-10)


@pytest.mark.slow
def test_gbm_option_runs() -> None:
    rows, covariates = _simulate(1.0, 4, langs=XTREME_R_CODES[:20], sources=5, targets=2)
    out = grouped_cv(rows, covariates, folds=("source",), model="gbm", n_boot=200)
    rmse = {line["features"]: line["rmse"] for line in _lines(out, "prediction")}
    assert all(np.isfinite(v) for v in rmse.values()) and rmse["similarity+covariates"] < rmse["covariates"]
    assert all(line["model"] == "gbm" and line["alpha"] is None for line in _lines(out, "prediction"))
    (line,) = _lines(out, "comparison", features="similarity+covariates")
    assert line["rmse"]["ci_high"] < 0


def test_too_few_groups_and_bad_options() -> None:
    rows, covariates = _simulate(0.5, 5, langs=("de",), sources=3, targets=1)
    with pytest.raises(InputError, match=r"needs ≥ 2 languages for leave-one-language-out; found 1 \(de\)"):
        grouped_cv(rows, covariates, folds=("language",))
    # Fewer than five held-out groups: the differences come without an interval, and say why.
    out = grouped_cv(rows, covariates, folds=("source",), n_boot=100)
    (line,) = _lines(out, "comparison", features="similarity", baseline="mean")
    assert line["rmse"]["ci_low"] is None and "fewer than 5 held-out sources" in line["reason"]
    for bad in [{"folds": ("target",)}, {"folds": ()}, {"folds": ("source", "source")}, {"model": "svm"},
                {"alpha": -1.0}, {"n_boot": -5}]:  # fmt: skip
        with pytest.raises(UsageError):
            grouped_cv(rows, covariates, **bad)


def test_bad_rows_and_missing_covariates() -> None:
    rows, covariates = _simulate(0.5, 6, langs=("de", "fr", "ja"), sources=2, targets=1)
    with pytest.raises(InputError, match="no covariates for language"):
        grouped_cv(rows, covariates[:2], n_boot=0)
    with pytest.raises(InputError, match="row 2: 'similarity'"):
        grouped_cv([rows[0], {**rows[1], "similarity": None}], covariates, n_boot=0)
    broken = [dict(covariates[0], syntactic=float("nan")), *covariates[1:]]
    with pytest.raises(InputError, match="covariate 'syntactic' of language 'de'"):
        grouped_cv(rows, broken, n_boot=0)
    # Codes are normalised on both sides: deu rows find the de covariates.
    renamed = [{**row, "lang": {"de": "deu", "fr": "fra_Latn", "ja": "jpn"}[row["lang"]]} for row in rows]
    assert grouped_cv(renamed, covariates, folds=("language",), n_boot=0)[0]["n_groups"] == 3


@pytest.mark.slow
def test_a_pair_level_similarity_helps_for_known_pairs_only_through_pair_identity() -> None:
    """Random pair effects and no similarity effect: held out by language, a pair-level similarity stands in for
    the pair's identity (its other languages are in training) and seems to help; held out by pair it does not."""
    rng = np.random.default_rng(8)
    table = builtin_table()
    langs = XTREME_R_CODES[:20]
    covariates = [{"code": c, "family": table[c].family, "script": table[c].script,
                   "syntactic": float(rng.uniform())} for c in langs]  # fmt: skip
    rows = []
    for i in range(6):
        for t in range(4):
            sim, pair_effect = float(rng.uniform()), float(rng.normal(scale=2.0))
            rows += [{"source": f"s{i}", "target": f"t{t}", "lang": c, "similarity": sim,
                      "gain": pair_effect + float(rng.normal(scale=0.3))} for c in langs]  # fmt: skip
    out = grouped_cv(rows, covariates, folds=("language", "pair"), model="gbm", n_boot=500, seed=0)
    (by_language,) = _lines(out, "comparison", grouping="language", features="similarity", baseline="mean")
    (by_pair,) = _lines(out, "comparison", grouping="pair", features="similarity", baseline="mean")
    assert by_language["rmse"]["ci_high"] < 0  # "helps": it only recognises the pair
    assert by_pair["rmse"]["ci_low"] < 0 < by_pair["rmse"]["ci_high"] or by_pair["rmse"]["difference"] > 0
