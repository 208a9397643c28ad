"""One object per trainable task: ``sts``, ``classify`` and ``qa`` (MTEB's one class per task over one encoder
interface; sentence-transformers' one ``encode`` for training and evaluation).

Each object owns everything that differs between tasks — the schema of its data, the tokenisation of a split
(:class:`xl.tasks.data.TaskData`), its head, its loss, how model outputs become predictions, how predictions are
scored, the headline and model-selection metrics, and the file its predictions are written to. The trainer
(``xl.finetune``), the evaluator (``xl.evaluate``) and the Fisher (``xl.models.fisher``) call these
methods and never branch on a task name.

- ``sts``: no head; a siamese bi-encoder (Reimers & Gurevych 2019) scores a pair by the cosine of the pooled
  embeddings of its two texts, each encoded on its own. Losses: ``cosine`` (MSE of the pair cosine against
  score / 5, sentence-transformers' CosineSimilarityLoss) or ``cosent`` (Su 2022). Metric: Spearman × 100.
- ``classify``: dropout and one linear layer on the pooled embedding of the text, or of the pair encoded together
  (``<s> text1 </s></s> text2 </s>``, as XLM-R is fine-tuned on XNLI); cross-entropy. Metric: accuracy.
- ``qa``: one linear layer from each token state to a start and an end logit (Devlin et al. 2019); windows of
  question and context (:mod:`xl.tasks.features`); cross-entropy, the mean of the start and end losses. Metric: F1.

Model outputs reach a task through ``run``: a function from token id rows to one float32 array per row (the
stack of :func:`xl.models.inference.run_batches`), so the tasks hold no model plumbing. Torch is imported inside
the head and loss methods only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson

from xl.errors import UsageError
from xl.models.registry import OLD_TASK_NAMES
from xl.tasks.data import TaskData, label_set

if TYPE_CHECKING:
    import torch

#: Token id rows in, one float32 array per row out (pooled embedding, logits, or (t, k) token logits).
Run = Callable[[Sequence[Sequence[int]]], list[np.ndarray]]


class TaskObject:
    """What every task provides; see the module docstring. Subclasses set the class attributes."""

    name: ClassVar[str]
    #: The two metrics a result line and ``--format md`` lead with.
    headline: ClassVar[tuple[str, str]]
    #: The dev metric that picks the kept model (higher is better).
    selection: ClassVar[str]
    #: The default ``--max-length`` of ``xl finetune`` (recorded in the head; evaluation then uses it).
    train_max_length: ClassVar[int] = 128
    #: The length of a model without a recorded one.
    default_max_length: ClassVar[int] = 512
    #: Whether the task has a trained head (evaluation then needs a model with that head).
    has_head: ClassVar[bool] = True
    #: Whether predictions are pooled embeddings that a linear map (``--proj``) can act on.
    embeds: ClassVar[bool] = False
    losses: ClassVar[tuple[str, ...]] = ("cross-entropy",)
    prediction_suffix: ClassVar[str] = ".txt"

    # ---------------------------------------------------------------- data

    def sniff_schema(self, first: Mapping[str, Any] | None) -> str:
        """The schema of a file whose first record is ``first``."""
        return self.schema_for(False)

    def schema_for(self, pair: bool) -> str:
        """The schema of the task's data (``pair``: a pair-classification head)."""
        return self.name

    def labels_of(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The label set a head is trained on (empty for tasks without labels)."""
        return []

    def is_pair(self, schema: str) -> bool:
        """Whether inputs of ``schema`` are two texts encoded together (recorded in the head as ``pair``)."""
        return False

    def tokenize(self, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, schema: str, prefix: str,
                 max_length: int, doc_stride: int = 128, labels: Sequence[Any] = (),
                 with_labels: bool = True) -> TaskData:  # fmt: skip
        """Token ids (and, ``with_labels``, training targets) of the records of one split."""
        raise NotImplementedError

    def inputs_note(self, data: TaskData) -> str:
        """What to add when counting a split's model inputs (qa: its windows)."""
        return ""

    def fisher_examples(self, data: TaskData) -> list[int]:
        """The inputs the Fisher is summed over: one per example."""
        return list(range(len(data.inputs)))

    def loss_name(self, requested: str) -> str:
        """The loss a run uses (recorded in its head), given ``--loss``."""
        return self.losses[0]

    # ---------------------------------------------------------------- model

    def build_head(self, hidden: int, n_labels: int) -> torch.nn.Module | None:
        """A fresh head on ``hidden``-wide token states (None: the task has no parameters of its own)."""
        raise NotImplementedError

    def outputs(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The task model's forward pass (``model``: :func:`xl.models.task_model.make_task_model`'s module)."""
        raise NotImplementedError

    def loss(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
             loss: str) -> torch.Tensor:  # fmt: skip
        """Sum of the per-example losses of the examples ``share`` of ``data`` (float32 scalar)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- predictions and scores

    def predict(self, run: Run, data: TaskData, labels: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """One prediction per record (a similarity, a label, an answer text) and the raw outputs."""
        raise NotImplementedError

    def score(self, data: TaskData, predictions: Sequence[Any], *, n_boot: int = 0, seed: int = 0,
              normalization: str = "squad", lang: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Metrics of the predictions against the records' gold fields (``xl.core.metrics``)."""
        raise NotImplementedError

    def dev_score(self, run: Run, data: TaskData, labels: Sequence[Any]) -> dict[str, Any]:
        """Dev-set metrics plus ``selection_name``/``selection_metric`` (what picks the kept model)."""
        predictions, _ = self.predict(run, data, labels)
        metrics = self.score(data, predictions)
        metrics.pop("per_label", None)
        return {**metrics, "selection_name": self.selection, "selection_metric": metrics.get(self.selection)}

    def prediction_bytes(self, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> bytes:
        """The predictions file of one data set, XTREME-style: a line per record."""
        return "".join(f"{p}\n" for p in predictions).encode()


# --------------------------------------------------------------------------------------------- sts


class StsTask(TaskObject):
    name = "sts"
    headline = ("spearman", "pearson")
    selection = "spearman"
    has_head = False
    embeds = True
    losses = ("cosine", "cosent")

    def tokenize(self, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, schema: str, prefix: str,
                 max_length: int, doc_stride: int = 128, labels: Sequence[Any] = (),
                 with_labels: bool = True) -> TaskData:  # fmt: skip
        from xl.models.inference import tokenize_texts

        first = tokenize_texts(tokenizer, [r["text1"] for r in records], prefix=prefix, max_length=max_length)
        second = tokenize_texts(tokenizer, [r["text2"] for r in records], prefix=prefix, max_length=max_length)
        inputs = [[a, b] for a, b in zip(first.ids, second.ids, strict=True)]
        targets = [float(r["score"]) / 5.0 for r in records]
        return TaskData(list(records), inputs, targets, [len(a) + len(b) for a, b in inputs],
                        first.truncated + second.truncated)  # fmt: skip

    def loss_name(self, requested: str) -> str:
        if requested not in self.losses:
            raise UsageError(f"--loss {requested!r} is not an sts loss", hint="use cosine or cosent")
        return requested

    def build_head(self, hidden: int, n_labels: int) -> torch.nn.Module | None:
        return None

    def outputs(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled (b, hidden) float32 embeddings."""
        return model.embed(input_ids, mask)  # type: ignore[no-any-return]

    def loss(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
             loss: str) -> torch.Tensor:  # fmt: skip
        import torch
        import torch.nn.functional as F

        from xl.models.inference import pad_batch

        rows = [data.inputs[i][0] for i in share] + [data.inputs[i][1] for i in share]
        ids, mask = pad_batch(rows, pad_id, device)
        pooled = model(ids, mask).float()
        a, b = pooled[: len(share)], pooled[len(share) :]
        cosine = F.cosine_similarity(a, b, dim=-1)
        target = torch.tensor([data.targets[i] for i in share], dtype=torch.float32, device=cosine.device)
        if loss == "cosine":
            return F.mse_loss(cosine, target, reduction="sum")
        # CoSENT (Su 2022): log(1 + Σ_{s_i > s_j} exp(λ (cos_j − cos_i))), λ = 20, over the pairs of the share.
        scaled = cosine * 20.0
        diff = scaled[None, :] - scaled[:, None]  # [i, j] = cos_j − cos_i
        worse = target[:, None] > target[None, :]
        diff = diff.masked_fill(~worse, -1e12)
        zero = torch.zeros(1, device=diff.device)
        return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0) * len(share)

    def predict(self, run: Run, data: TaskData, labels: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """Cosine of the two texts' pooled embeddings; raw: ``embeddings1``/``embeddings2`` (n, hidden) float32."""
        from xl.core.metrics import row_cosines

        n = len(data.inputs)
        rows = [pair[0] for pair in data.inputs] + [pair[1] for pair in data.inputs]
        outputs = run(rows)
        pooled = np.stack(outputs) if outputs else np.zeros((0, 1), np.float32)
        a, b = pooled[:n], pooled[n:]
        return row_cosines(a, b).tolist(), {"embeddings1": a, "embeddings2": b}

    def score(self, data: TaskData, predictions: Sequence[Any], *, n_boot: int = 0, seed: int = 0,
              normalization: str = "squad", lang: str | None = None) -> dict[str, Any]:  # fmt: skip
        from xl.core.metrics import sts_scores

        return sts_scores(predictions, [float(r["score"]) for r in data.records], n_boot=n_boot, seed=seed)

    def prediction_bytes(self, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> bytes:
        return "".join(f"{p:.6f}\n" for p in predictions).encode()


# --------------------------------------------------------------------------------------------- classify


class ClassifyTask(TaskObject):
    name = "classify"
    headline = ("accuracy", "macro_f1")
    selection = "accuracy"

    def sniff_schema(self, first: Mapping[str, Any] | None) -> str:
        from xl.tasks.schemas import detect_schema

        return self.schema_for(first is not None and detect_schema(first) == "pair-classification")

    def schema_for(self, pair: bool) -> str:
        return "pair-classification" if pair else "classification"

    def is_pair(self, schema: str) -> bool:
        return schema == "pair-classification"

    def labels_of(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return label_set(records)

    def tokenize(self, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, schema: str, prefix: str,
                 max_length: int, doc_stride: int = 128, labels: Sequence[Any] = (),
                 with_labels: bool = True) -> TaskData:  # fmt: skip
        from xl.models.inference import tokenize_pairs, tokenize_texts

        if schema == "pair-classification":
            tok = tokenize_pairs(tokenizer, [r["text1"] for r in records], [r["text2"] for r in records],
                                 prefix=prefix, max_length=max_length)  # fmt: skip
        else:
            tok = tokenize_texts(tokenizer, [r["text"] for r in records], prefix=prefix, max_length=max_length)
        index = {label: i for i, label in enumerate(labels)}
        targets = [index[r["label"]] for r in records] if with_labels else [0] * len(records)
        return TaskData(list(records), [[row] for row in tok.ids], targets, [len(row) for row in tok.ids],
                        tok.truncated)  # fmt: skip

    def build_head(self, hidden: int, n_labels: int) -> torch.nn.Module | None:
        import torch

        return torch.nn.Linear(hidden, n_labels)

    def outputs(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, labels) float32 logits."""
        pooled = model.embed(input_ids, mask)
        return model.head(model.dropout(pooled).to(model.head.weight.dtype)).float()  # type: ignore[no-any-return]

    def loss(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
             loss: str) -> torch.Tensor:  # fmt: skip
        import torch
        import torch.nn.functional as F

        from xl.models.inference import pad_batch

        ids, mask = pad_batch([data.inputs[i][0] for i in share], pad_id, device)
        logits = model(ids, mask).float()
        target = torch.tensor([data.targets[i] for i in share], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum")

    def predict(self, run: Run, data: TaskData, labels: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """The most likely label of each record; raw: ``logits`` (n, labels) float32."""
        outputs = run([row[0] for row in data.inputs])
        logits = np.stack(outputs) if outputs else np.zeros((0, len(labels)), np.float32)
        names = list(labels)
        return [names[i] for i in logits.argmax(axis=1)], {"logits": logits}

    def score(self, data: TaskData, predictions: Sequence[Any], *, n_boot: int = 0, seed: int = 0,
              normalization: str = "squad", lang: str | None = None) -> dict[str, Any]:  # fmt: skip
        from xl.core.metrics import classification_scores

        return classification_scores(list(predictions), [r["label"] for r in data.records], n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------------------------- qa


class QaTask(TaskObject):
    name = "qa"
    headline = ("exact_match", "f1")
    selection = "f1"
    train_max_length = 384
    default_max_length = 384
    prediction_suffix = ".json"

    def tokenize(self, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, schema: str, prefix: str,
                 max_length: int, doc_stride: int = 128, labels: Sequence[Any] = (),
                 with_labels: bool = True) -> TaskData:  # fmt: skip
        from xl.tasks.features import qa_features

        features = qa_features(tokenizer, records, prefix=prefix, max_length=max_length, doc_stride=doc_stride,
                               with_labels=with_labels)  # fmt: skip
        targets = list(zip(features.start, features.end, strict=True)) if with_labels else [(0, 0)] * len(features.ids)
        return TaskData(list(records), [[row] for row in features.ids], targets, [len(row) for row in features.ids],
                        features.truncated_questions, features)  # fmt: skip

    def inputs_note(self, data: TaskData) -> str:
        return f" ({len(data.inputs)} windows)"

    def fisher_examples(self, data: TaskData) -> list[int]:
        """One window per question: the first that holds the answer (else its first window)."""
        assert data.features is not None
        first: dict[int, int] = {}
        for f, example in enumerate(data.features.example):
            if example not in first or (data.targets[first[example]] == (0, 0) and data.targets[f] != (0, 0)):
                first[example] = f
        return sorted(first.values())

    def build_head(self, hidden: int, n_labels: int) -> torch.nn.Module | None:
        import torch

        return torch.nn.Linear(hidden, 2)

    def outputs(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, t, 2) float32 start and end logits."""
        states = model.states(input_ids, mask)
        return model.head(states.to(model.head.weight.dtype)).float()  # type: ignore[no-any-return]

    def loss(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
             loss: str) -> torch.Tensor:  # fmt: skip
        import torch
        import torch.nn.functional as F

        from xl.models.inference import pad_batch

        ids, mask = pad_batch([data.inputs[i][0] for i in share], pad_id, device)
        logits = model(ids, mask).float()
        starts = torch.tensor([data.targets[i][0] for i in share], dtype=torch.long, device=logits.device)
        ends = torch.tensor([data.targets[i][1] for i in share], dtype=torch.long, device=logits.device)
        logits = logits.masked_fill(mask[..., None] == 0, -1e4)
        return (F.cross_entropy(logits[..., 0], starts, reduction="sum")
                + F.cross_entropy(logits[..., 1], ends, reduction="sum")) / 2  # fmt: skip

    def predict(self, run: Run, data: TaskData, labels: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """The best span of each question over its windows (:func:`xl.tasks.features.best_spans`)."""
        from xl.tasks.features import best_spans

        assert data.features is not None
        outputs = run([row[0] for row in data.inputs])
        contexts = [r["context"] for r in data.records]
        answers = best_spans(data.features, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs], contexts)
        return answers, {}

    def score(self, data: TaskData, predictions: Sequence[Any], *, n_boot: int = 0, seed: int = 0,
              normalization: str = "squad", lang: str | None = None) -> dict[str, Any]:  # fmt: skip
        from xl.core.metrics import qa_scores

        by_id = {str(r["id"]): text for r, text in zip(data.records, predictions, strict=True)}
        gold = [(str(r["id"]), list(r["answers"]["text"])) for r in data.records]
        return qa_scores(by_id, gold, normalization=normalization, lang=lang, n_boot=n_boot,  # type: ignore[arg-type]
                         seed=seed)  # fmt: skip

    def prediction_bytes(self, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> bytes:
        """``{id: answer}`` JSON, as the SQuAD and MLQA evaluation scripts read it."""
        return orjson.dumps({str(r["id"]): p for r, p in zip(records, predictions, strict=True)},
                            option=orjson.OPT_INDENT_2)  # fmt: skip


# --------------------------------------------------------------------------------------------- registry

STS = StsTask()
CLASSIFY = ClassifyTask()
QA = QaTask()
#: The trainable tasks by their one name (``--task``, manifests, heads).
TRAINABLE: dict[str, TaskObject] = {task.name: task for task in (STS, CLASSIFY, QA)}
#: Names older run directories and heads used for a task (read as the task's one name).
OLD_NAMES = OLD_TASK_NAMES


def task_named(name: str) -> TaskObject:
    """The task object of ``name`` (an old name of a task read from a run directory maps to its current one)."""
    task = TRAINABLE.get(OLD_NAMES.get(name, name))
    if task is None:
        raise UsageError(f"unknown task {name!r}", hint=f"use {', '.join(TRAINABLE)}")
    return task
