"""The task objects of ``xl.tasks.objects``: one name per task, predictions from model outputs, scores, and the
rule that the trainer, the evaluator and the Fisher never branch on a task name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xl.errors import UsageError
from xl.tasks.data import TaskData, parse_task_input
from xl.tasks.features import QAFeatures
from xl.tasks.objects import CLASSIFY, OLD_NAMES, QA, STS, TRAINABLE, task_named

ROOT = Path(__file__).resolve().parents[2]


def test_one_name_per_task_and_old_names_map_to_it() -> None:
    assert list(TRAINABLE) == ["sts", "classify", "qa"]
    assert task_named("classification") is CLASSIFY and task_named("pair-classification") is CLASSIFY
    assert all(task_named(name).name == name for name in TRAINABLE)
    assert set(OLD_NAMES.values()) <= set(TRAINABLE)
    with pytest.raises(UsageError, match="unknown task 'nli'"):
        task_named("nli")


def test_headline_and_selection_metrics_are_among_the_scores() -> None:
    data = TaskData([{"text1": "a", "text2": "b", "score": s} for s in (0.0, 2.5, 5.0)], [[[1], [1]]] * 3,
                    [0.0, 0.5, 1.0], [2, 2, 2])  # fmt: skip
    metrics = STS.score(data, [0.1, 0.4, 0.9])
    assert set(STS.headline) <= set(metrics) and STS.selection in metrics
    assert metrics["spearman"] == pytest.approx(100.0)
    records = [{"text": "x", "label": label} for label in ("neg", "pos", "pos")]
    data = TaskData(records, [[[1]]] * 3, [0, 1, 1], [1, 1, 1])
    metrics = CLASSIFY.score(data, ["neg", "pos", "neg"])
    assert set(CLASSIFY.headline) <= set(metrics) and metrics["accuracy"] == pytest.approx(200 / 3)


def test_sts_predicts_the_cosine_of_the_two_texts_embeddings() -> None:
    data = TaskData([{}, {}], [[[1, 2], [3]], [[4], [5, 6]]], [0.0, 0.0], [3, 3])
    vectors = {(1, 2): [1.0, 0.0], (3,): [1.0, 1.0], (4,): [0.0, 2.0], (5, 6): [0.0, -1.0]}
    seen: list[list[tuple[int, ...]]] = []

    def run(rows: Any) -> list[np.ndarray]:
        seen.append([tuple(r) for r in rows])
        return [np.array(vectors[tuple(r)], np.float32) for r in rows]

    predictions, raw = STS.predict(run, data, [])
    assert seen == [[(1, 2), (4,), (3,), (5, 6)]]  # all first texts, then all second texts, one call
    np.testing.assert_allclose(predictions, [np.sqrt(0.5), -1.0], rtol=1e-6)
    assert raw["embeddings1"].shape == raw["embeddings2"].shape == (2, 2)


def test_classify_predicts_the_label_of_the_largest_logit() -> None:
    data = TaskData([{}, {}, {}], [[[1]], [[2]], [[3]]], [0, 0, 0], [1, 1, 1])
    logits = {1: [0.0, 2.0, 1.0], 2: [5.0, 0.0, 0.0], 3: [0.0, 0.0, 0.1]}
    predictions, raw = CLASSIFY.predict(lambda rows: [np.array(logits[r[0]], np.float32) for r in rows], data,
                                        ["contradiction", "entailment", "neutral"])  # fmt: skip
    assert predictions == ["entailment", "contradiction", "neutral"] and raw["logits"].shape == (3, 3)


def test_qa_predicts_the_best_span_over_windows() -> None:
    context = "Seoul is the capital of Korea"
    features = QAFeatures(ids=[[0, 1, 2, 3], [0, 1, 2, 3]], example=[0, 0],
                          offsets=[np.array([[-1, -1], [0, 5], [6, 8], [9, 12]], np.int32),
                                   np.array([[-1, -1], [13, 20], [21, 23], [24, 29]], np.int32)])  # fmt: skip
    data = TaskData([{"id": "q1", "context": context, "answers": {"text": ["Korea"], "answer_start": [24]}}],
                    [[row] for row in features.ids], [(0, 0), (0, 0)], [4, 4], features=features)  # fmt: skip
    starts_ends = [np.array([[0, 0], [1, 0], [0, 0], [0, 0]], np.float32),
                   np.array([[0, 0], [0, 0], [0, 0], [9, 9]], np.float32)]  # fmt: skip
    predictions, _ = QA.predict(lambda rows: starts_ends[: len(rows)], data, [])
    assert predictions == ["Korea"]
    assert QA.score(data, predictions)["exact_match"] == 100.0
    assert QA.prediction_bytes(data.records, predictions) == b'{\n  "q1": "Korea"\n}'


def test_the_schema_of_a_file_is_the_tasks() -> None:
    single = b'{"text": "good", "label": 1}\n'
    pair = b'{"text1": "a", "text2": "b", "label": "entailment"}\n'
    assert parse_task_input(single, "x.jsonl", CLASSIFY)[0] == "classification"
    assert parse_task_input(pair, "x.jsonl", CLASSIFY)[0] == "pair-classification"
    assert parse_task_input(b'{"text1": "a", "text2": "b", "score": 3}\n', "x.jsonl", STS)[0] == "sts"
    assert CLASSIFY.labels_of([{"label": 2}, {"label": 0}, {"label": 2}]) == [0, 2]
    assert STS.labels_of([{"score": 1}]) == []


def test_sts_losses_are_checked_by_the_task() -> None:
    assert STS.loss_name("cosent") == "cosent" and CLASSIFY.loss_name("cosine") == "cross-entropy"
    with pytest.raises(UsageError, match="not an sts loss"):
        STS.loss_name("mse")


TASK_NAMES = {"sts", "classify", "classification", "pair-classification", "qa"}
#: The modules that run tasks: they call the task objects and never compare anything with a task's name.
CALLERS = ["xl/finetune.py", "xl/evaluate.py", "xl/models/training.py", "xl/models/task_model.py",
           "xl/models/fisher.py", "xl/models/inference.py"]  # fmt: skip


def _task_name_branches(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(v, ast.Constant) and v.value in TASK_NAMES for v in values):
                    lines.append(node.lineno)
        if isinstance(node, ast.Dict) and sum(isinstance(k, ast.Constant) and k.value in TASK_NAMES
                                               for k in node.keys) >= 2:  # fmt: skip
            lines.append(node.lineno)  # a lookup table keyed by task
    return lines


def test_the_callers_never_branch_on_a_task_name() -> None:
    assert _task_name_branches('if task == "qa":\n    pass\nx = {"sts": 1, "qa": 2}\ny = t in ("sts",)\n') == [1, 3, 4]
    found = {path: _task_name_branches((ROOT / path).read_text()) for path in CALLERS}
    assert not any(found.values()), found
