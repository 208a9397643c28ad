"""Task metrics: QA EM/F1 against the SQuAD v1.1 rules on hand-made cases, MLQA normalisation,
classification accuracy/macro-F1 by hand, STS correlations against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from xl.core.metrics import (
    classification_scores,
    normalize_answer,
    qa_example_scores,
    qa_scores,
    sts_scores,
)

# (prediction, gold answers, exact match, F1) worked out by hand with the SQuAD v1.1 rules:
# lower-case, drop ASCII punctuation, drop a/an/the, split on whitespace, bag-of-tokens F1, max over golds.
SQUAD_CASES = [
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"], 1.0, 1.0),
    ("the  Denver Broncos!", ["Denver Broncos"], 1.0, 1.0),
    ("Denver", ["Denver Broncos"], 0.0, 2 * (1.0 * 0.5) / 1.5),
    ("Carolina Panthers", ["Denver Broncos"], 0.0, 0.0),
    ("an apple a day", ["apple day"], 1.0, 1.0),
    ("1,000 km", ["1000 km"], 1.0, 1.0),  # the comma is punctuation
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara"], 0.0, 2 * (2 / 3 * 1.0) / (2 / 3 + 1.0)),
    ("", ["Denver"], 0.0, 0.0),
    ("naïve café", ["Naïve Café"], 1.0, 1.0),
    ("red red blue", ["red blue blue"], 0.0, 2 / 3),  # Counter overlap: red 1, blue 1 -> p = r = 2/3
]


@pytest.mark.parametrize(("prediction", "answers", "exact", "f1"), SQUAD_CASES)
def test_squad_exact_match_and_f1_by_hand(prediction: str, answers: list[str], exact: float, f1: float) -> None:
    em, got_f1 = qa_example_scores(prediction, answers)
    assert em == exact
    assert got_f1 == pytest.approx(f1)


def test_qa_scores_average_and_count_missing_predictions() -> None:
    gold = [(str(i), answers) for i, (_, answers, _, _) in enumerate(SQUAD_CASES[:4])]
    predictions = {str(i): SQUAD_CASES[i][0] for i in range(3)}  # the fourth is missing: scores 0
    result = qa_scores(predictions, gold, n_boot=200, seed=1)
    em = [case[2] for case in SQUAD_CASES[:3]] + [0.0]  # the hand-worked values of the table above
    f1 = [case[3] for case in SQUAD_CASES[:3]] + [0.0]
    assert result["exact_match"] == pytest.approx(100 * np.mean(em))
    assert result["f1"] == pytest.approx(100 * np.mean(f1))
    assert result["missing"] == 1 and result["n"] == 4
    low, high = result["f1_ci"]
    assert low <= result["f1"] <= high


def test_mlqa_normalisation_is_language_aware() -> None:
    # German articles go, Unicode punctuation goes (SQuAD keeps « »), Chinese is split into characters.
    assert normalize_answer("Der «Rhein»", "mlqa", "de") == "rhein"
    assert normalize_answer("Der «Rhein»", "squad") == "der «rhein»"
    assert normalize_answer("el río", "mlqa", "es") == "río"
    assert normalize_answer("北京大学", "mlqa", "zh") == "北 京 大 学"
    em, f1 = qa_example_scores("北京", ["北京大学"], "mlqa", "zh")
    assert em == 0.0 and f1 == pytest.approx(2 * (1.0 * 0.5) / 1.5)
    assert qa_example_scores("北京", ["北京大学"], "squad")[1] == 0.0  # one token each under SQuAD rules


def test_classification_accuracy_and_macro_f1_by_hand() -> None:
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    result = classification_scores(pred, gold, n_boot=300)
    assert result["accuracy"] == pytest.approx(100 * 4 / 6)
    # per-label F1: 0 -> p 1, r 2/3 -> 0.8; 1 -> p 1/2, r 1/2 -> 0.5; 2 -> p 1/2, r 1 -> 2/3
    assert result["macro_f1"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 3)
    assert result["per_label"]["2"]["recall"] == pytest.approx(100.0)
    assert result["accuracy_ci"][0] <= result["accuracy"] <= result["accuracy_ci"][1]
    strings = classification_scores(["entailment", "neutral"], ["entailment", "contradiction"])
    assert strings["accuracy"] == 50.0
    # labels never gold and never predicted do not exist; a predicted-only label counts with F1 0
    assert strings["macro_f1"] == pytest.approx(100 * (1.0 + 0.0 + 0.0) / 3)


def test_sts_scores_match_scipy() -> None:
    rng = np.random.default_rng(5)
    gold = rng.uniform(0, 5, 300)
    predicted = gold / 5 + rng.normal(0, 0.3, 300)
    result = sts_scores(predicted, gold, n_boot=500, seed=2)
    assert result["spearman"] == pytest.approx(100 * scipy.stats.spearmanr(predicted, gold).statistic)
    assert result["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(predicted, gold).statistic)
    low, high = result["spearman_ci"]
    assert low < result["spearman"] < high and high - low < 20
    constant = sts_scores(np.ones(10), gold[:10])
    assert constant["spearman"] is None and constant["reason"]
