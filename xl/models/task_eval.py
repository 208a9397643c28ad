"""Scoring a task model on tokenized data: the English dev set during ``xl finetune``, any language in
``xl eval``. Predictions come from :func:`xl.models.task_model.run_batches`; metrics from ``xl.core.metrics``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xl.core.metrics import classification_scores, qa_scores, sts_scores
from xl.models.features import best_spans
from xl.models.task_model import run_batches

if TYPE_CHECKING:
    import torch

    from xl.models.finetune import TaskData

SELECTION = {"sts": "spearman", "classify": "accuracy", "qa": "f1"}


def row_cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cosine of row i of A with row i of B: (n,) float64."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    return np.divide((A * B).sum(axis=1), norms, out=np.zeros(len(A)), where=norms > 0)


def predict_task_data(
    model: torch.nn.Module,
    task: str,
    data: TaskData,
    pad_id: int,
    device: Any,
    *,
    labels: Sequence[Any] | None = None,
    autocast: Any = None,
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Predictions for every record (sts: similarity; classify: label; qa: answer text) and raw outputs."""
    import contextlib

    import torch

    context = (torch.autocast(str(device).split(":")[0], dtype=autocast) if autocast is not None
               else contextlib.nullcontext())  # fmt: skip
    with context:
        if task == "sts":
            n = len(data.inputs)
            rows = [pair[0] for pair in data.inputs] + [pair[1] for pair in data.inputs]
            pooled = np.stack(run_batches(model, rows, pad_id, device)) if rows else np.zeros((0, 1), np.float32)
            a, b = pooled[:n], pooled[n:]
            similarity = row_cosines(a, b)
            return similarity.tolist(), {"embeddings1": a, "embeddings2": b}
        outputs = run_batches(model, [row[0] for row in data.inputs], pad_id, device)
    if task == "classify":
        logits = np.stack(outputs) if outputs else np.zeros((0, len(labels or [])), np.float32)
        names = list(labels or [])
        return [names[i] for i in logits.argmax(axis=1)], {"logits": logits}
    assert data.features is not None
    contexts = [r["context"] for r in data.records]
    answers = best_spans(data.features, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs], contexts)
    return answers, {}


def score_predictions(
    task: str,
    data: TaskData,
    predictions: Sequence[Any],
    *,
    n_boot: int = 0,
    seed: int = 0,
    normalization: str = "squad",
    lang: str | None = None,
) -> dict[str, Any]:
    """Metrics of predictions against the records' gold fields (see ``xl.core.metrics``)."""
    if task == "sts":
        metrics = sts_scores(predictions, [float(r["score"]) for r in data.records], n_boot=n_boot, seed=seed)
    elif task == "classify":
        metrics = classification_scores(list(predictions), [r["label"] for r in data.records], n_boot=n_boot,
                                        seed=seed)  # fmt: skip
    else:
        by_id = {str(r["id"]): text for r, text in zip(data.records, predictions, strict=True)}
        gold = [(str(r["id"]), list(r["answers"]["text"])) for r in data.records]
        metrics = qa_scores(by_id, gold, normalization=normalization, lang=lang, n_boot=n_boot,  # type: ignore[arg-type]
                            seed=seed)  # fmt: skip
    return metrics


def score_task_data(
    model: torch.nn.Module,
    task: str,
    data: TaskData,
    pad_id: int,
    device: Any,
    *,
    labels: Sequence[Any] | None = None,
    autocast: Any = None,
) -> dict[str, Any]:
    """Dev-set metrics plus ``selection_name``/``selection_metric`` (what picks the best checkpoint)."""
    predictions, _ = predict_task_data(model, task, data, pad_id, device, labels=labels, autocast=autocast)
    metrics = score_predictions(task, data, predictions)
    metrics.pop("per_label", None)
    name = SELECTION[task]
    return {**metrics, "selection_name": name, "selection_metric": metrics.get(name)}
