"""The task objects of ``xl.tasks.objects``: one name per task, predictions from model outputs, scores, and the
rule that the trainer, the evaluator and the Fisher never branch on a task name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xl.errors import InputError, UsageError
from xl.tasks.data import TaskData, parse_task_input
from xl.tasks.features import QAFeatures
from xl.tasks.objects import ALIGN, CLASSIFY, OLD_NAMES, QA, STS, TRAINABLE, AlignTask, ranking_losses, task_named

ROOT = Path(__file__).resolve().parents[2]


def test_one_name_per_task_and_old_names_map_to_it() -> None:
    assert list(TRAINABLE) == ["sts", "classify", "qa", "align"]
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
    assert parse_task_input(b'{"text1": "a", "text2": "b", "lang": "en-de"}\n', "x.jsonl", ALIGN)[0] == "align"


def test_align_retrieves_in_both_directions_and_a_repeated_side_counts_as_found() -> None:
    # pairs 0 and 1 share their English text (key 0): either translation is a right answer for it
    data = TaskData([{}, {}, {}], [[[1], [4]], [[1], [5]], [[2], [6]]], [(0, 0), (0, 1), (1, 2)], [2, 2, 2])
    vectors = {1: [1.0, 0.0], 2: [0.0, 1.0], 4: [0.9, 0.1], 5: [1.0, 0.05], 6: [0.1, 1.0]}
    seen: list[list[int]] = []

    def run(rows: Any) -> list[np.ndarray]:
        seen.append([r[0] for r in rows])
        return [np.array(vectors[r[0]], np.float32) for r in rows]

    predictions, raw = ALIGN.predict(run, data, [])
    assert seen == [[1, 1, 2, 4, 5, 6]] and raw["embeddings1"].shape == (3, 2)
    assert [p[0] for p in predictions] == [1, 1, 2]  # en→xx: English 0 (= English 1) finds translation 1
    metrics = ALIGN.score(data, predictions)
    assert metrics["en2xx_accuracy"] == pytest.approx(100.0) and metrics["xx2en_accuracy"] == pytest.approx(100.0)
    assert metrics["accuracy"] == pytest.approx(100.0) and metrics["n"] == 3
    wrong = ALIGN.score(data, [(1, 0), (1, 0), (0, 0)], n_boot=200)  # pair 2 retrieves pair 0's texts both ways
    assert wrong["en2xx_accuracy"] == pytest.approx(200 / 3) and wrong["xx2en_accuracy"] == pytest.approx(200 / 3)
    assert wrong["accuracy_ci"][0] <= wrong["accuracy"] <= wrong["accuracy_ci"][1]
    assert set(ALIGN.headline) <= set(metrics) and ALIGN.selection in metrics
    assert ALIGN.prediction_bytes(data.records, [(1, 0), (2, 2)]) == b"1\t0\n2\t2\n"


def test_align_loss_is_bidirectional_additive_margin_ranking_by_hand() -> None:
    """The loss of each pair against every candidate of the batch, masked where a candidate shares a side with
    the pair, computed again in float64 NumPy from the formula of Yang et al. 2019."""
    import torch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 4))
    Y = X + 0.5 * rng.standard_normal((5, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    keys = np.array([[0, 0], [1, 1], [0, 2], [3, 3], [4, 3]])  # 0 and 2: one English; 3 and 4: one translation
    s, m = ALIGN.SCALE, ALIGN.MARGIN

    def direction(S: np.ndarray, i: int) -> float:
        allowed = [j for j in range(5) if j == i or not (keys[i] == keys[j]).any()]
        z = np.array([s * (S[i, j] - (m if j == i else 0.0)) for j in allowed])
        return float(np.log(np.exp(z).sum()) - z[allowed.index(i)])

    S = X @ Y.T
    expected = [(direction(S, i) + direction(S.T, i)) / 2 for i in range(5)]
    t = {name: torch.tensor(v, dtype=torch.float32) for name, v in (("X", X), ("Y", Y))}
    got = ranking_losses(t["X"], t["Y"], torch.tensor(keys), 0, 5, s, m)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # a share of the batch (rows 2-3 of 5, as a process under torchrun holds them) is those rows' losses
    np.testing.assert_allclose(ranking_losses(t["X"], t["Y"], torch.tensor(keys), 2, 2, s, m).numpy(), expected[2:4],
                               rtol=1e-5)  # fmt: skip
    none = ranking_losses(t["X"].requires_grad_(), t["Y"], torch.tensor(keys), 5, 0, s, m)
    assert none.shape == (0,) and float(none.sum().detach()) == 0.0 and none.sum().grad_fn is not None


def test_align_refuses_duplicate_pairs_and_notes_shared_sides() -> None:
    pair = {"text1": "Hello.", "text2": "Hallo."}
    records = [pair, {"text1": "Hello.", "text2": "Salut."}, {"text1": "Bye.", "text2": "Tschüss."}, pair, pair]
    with pytest.raises(InputError) as info:
        ALIGN.check_training(records, "train.jsonl")
    assert info.value.render() == "train.jsonl:4: 2 duplicate pairs (line 4 repeats line 1, line 5 repeats line 1)"
    assert info.value.hint is not None and "negative" in info.value.hint
    notes = ALIGN.check_training(records[:3], "train.jsonl")
    assert notes == ["note: 2 of 3 pairs share their English side with another pair (2 distinct English texts) and 0 "
                     "their translation; such pairs are never each other's negatives in a batch"]  # fmt: skip
    assert ALIGN.check_training(records[1:3], "train.jsonl") == [] and STS.check_training(records, "x") == []
    assert ALIGN.dev_lang_of("en-de") == "en" and STS.dev_lang_of("en-de") == "en-de"


def test_align_fisher_ranks_each_pair_within_a_group() -> None:
    seen: list[list[int]] = []

    class Stub(AlignTask):
        def row_losses(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any) -> Any:
            seen.append([int(i) for i in share])
            return [float(i) for i in share]

    losses = list(Stub().fisher_losses(None, TaskData([], [], [], []), list(range(40)), 1, "cpu", "x"))
    assert losses == [float(i) for i in range(40)]  # one loss per chosen pair, in order
    assert [len(group) for group in seen] == [14, 13, 13]  # about FISHER_GROUP each, never one alone


def test_balanced_class_weights_change_the_classify_loss_as_computed_by_hand() -> None:
    """scikit-learn's balanced weights (n / (classes × count)) of an imbalanced set, and the weighted sum of the
    per-example cross-entropies that ClassifyTask.loss returns with them."""
    import torch

    from xl.tasks.data import balanced_class_weights

    targets = [0, 0, 0, 0, 0, 0, 1, 1, 2]  # 6 : 2 : 1
    weights = balanced_class_weights(targets, 3)
    assert weights == pytest.approx([9 / 18, 9 / 6, 9 / 3])
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    expected = sklearn.compute_class_weight("balanced", classes=np.arange(3), y=np.array(targets))
    np.testing.assert_allclose(weights, expected)
    logits = np.random.default_rng(0).standard_normal((9, 3))

    def model(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tensor(logits[ids[:, 0].numpy() - 10], dtype=torch.float32)  # row i: token id 10 + i

    data = TaskData([{}] * 9, [[[10 + i]] for i in range(9)], targets, [1] * 9)
    per_example = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(9), targets]
    plain = CLASSIFY.loss(model, data, np.arange(9), 1, "cpu", "cross-entropy")
    assert float(plain) == pytest.approx(per_example.sum(), rel=1e-5)
    data.class_weights = weights
    weighted = CLASSIFY.loss(model, data, np.arange(9), 1, "cpu", "cross-entropy")
    assert float(weighted) == pytest.approx(float((np.array(weights)[targets] * per_example).sum()), rel=1e-5)
    assert abs(float(weighted) - float(plain)) > 0.1
    assert CLASSIFY.weighs_classes and not STS.weighs_classes and not ALIGN.weighs_classes


def test_sts_losses_are_checked_by_the_task() -> None:
    assert STS.loss_name("cosent") == "cosent" and CLASSIFY.loss_name("cosine") == "cross-entropy"
    with pytest.raises(UsageError, match="not an sts loss"):
        STS.loss_name("mse")


TASK_NAMES = {"sts", "classify", "classification", "pair-classification", "qa", "align"}
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
