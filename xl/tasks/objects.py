"""One object per trainable task: ``sts``, ``classify``, ``qa`` and ``align`` (MTEB's one class per task over one
encoder interface; sentence-transformers' one ``encode`` for training and evaluation).

Each object owns everything that differs between tasks — the schema of its data, the tokenisation of a split
(:class:`xl.tasks.data.TaskData`), its head, its loss, how model outputs become predictions, how predictions are
scored, the headline and model-selection metrics, and the file its predictions are written to. The trainer
(``xl.finetune``), the evaluator (``xl.evaluate``) and the Fisher (``xl.models.fisher``) call these
methods and never branch on a task name.

- ``sts``: no head; a siamese bi-encoder (Reimers & Gurevych 2019) scores a pair by the cosine of the pooled
  embeddings of its two texts, each encoded on its own. Losses: ``cosine`` (MSE of the pair cosine against
  score / 5, sentence-transformers' CosineSimilarityLoss) or ``cosent`` (Su 2022). Metric: Spearman × 100.
- ``classify``: dropout and one linear layer on the pooled embedding of the text, or of the pair encoded together
  (``<s> text1 </s></s> text2 </s>``, as XLM-R is fine-tuned on XNLI); cross-entropy, optionally weighted per
  class (``--class-weight balanced``). Metric: accuracy.
- ``qa``: one linear layer from each token state to a start and an end logit (Devlin et al. 2019); windows of
  question and context (:mod:`xl.tasks.features`); cross-entropy, the mean of the start and end losses. Metric: F1.
- ``align``: no head; English–xx translation pairs, each text pooled on its own as ``xl embed`` pools it; the
  bidirectional translation-ranking loss with in-batch negatives and an additive margin (Guo et al. 2018; Yang
  et al. 2019; Feng et al. 2022), the batch gathered across DDP processes. Metric: retrieval accuracy × 100, the
  mean of en→xx and xx→en.

Model outputs reach a task through ``run``: a function from token id rows to one float32 array per row (the
stack of :func:`xl.models.inference.run_batches`), so the tasks hold no model plumbing. Torch is imported inside
the head and loss methods only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson

from xl.errors import InputError, UsageError
from xl.models.registry import OLD_TASK_NAMES
from xl.tasks.data import TaskData, label_set, pair_repeats

if TYPE_CHECKING:
    import torch

#: Token id rows in, one float32 array per row out (pooled embedding, logits, or (t, k) token logits).
Run = Callable[[Sequence[Sequence[int]]], list[np.ndarray]]


class TaskObject:
    """What every task provides; see the module docstring. Subclasses set the class attributes."""

    name: ClassVar[str]
    #: The metrics a result line and ``--format md`` lead with.
    headline: ClassVar[tuple[str, ...]]
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
    #: Whether the loss gathers the batch across the processes of a torchrun job: every process then calls it,
    #: even one with no examples of a short last batch (a collective needs them all).
    gathers: ClassVar[bool] = False
    #: Whether the sets of one ``xl eval`` run share many inputs, whose outputs are then computed once.
    shares_inputs: ClassVar[bool] = False
    #: Whether the loss weighs its classes (``TaskData.class_weights``, ``--class-weight``).
    weighs_classes: ClassVar[bool] = False

    # ---------------------------------------------------------------- data

    def sniff_schema(self, first: Mapping[str, Any] | None) -> str:
        """The schema of a file whose first record is ``first``."""
        return self.schema_for(False)

    def schema_for(self, pair: bool) -> str:
        """The schema of the task's data (``pair``: a pair-classification head)."""
        return self.name

    def fields(self) -> tuple[str, ...]:
        """The record fields of the task's schemas (single text and pair), then ``lang``: what ``--columns`` maps."""
        from xl.tasks.schemas import TASK_FIELDS

        names = [f for pair in (False, True) for f in TASK_FIELDS[self.schema_for(pair)]]  # type: ignore[index]
        return (*dict.fromkeys(names), "lang")

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

    def check_training(self, records: Sequence[Mapping[str, Any]], source: str) -> list[str]:
        """Refuse (``InputError``) a training file that the loss would learn the wrong thing from although every
        record is valid on its own; return notes on it for stderr. Records are in file order (record i = line i)."""
        return []

    def dev_lang_of(self, lang: str) -> str:
        """The language a dev record's ``lang`` puts model choice in (see ``xl.tasks.data.check_dev_lang``)."""
        return lang

    def result_lang(self, lang: str | None) -> str | None:
        """The ``lang`` of an ``xl eval`` result line for a set whose records say ``lang``."""
        return lang

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

    def fisher_losses(self, model: Any, data: TaskData, chosen: Sequence[int], pad_id: int, device: Any,
                      loss: str) -> Iterator[torch.Tensor]:  # fmt: skip
        """The loss of each example of ``chosen`` with its gold target, one float32 scalar at a time, for the
        empirical Fisher (:mod:`xl.models.fisher`); each is differentiated on its own (``retain_graph``)."""
        for index in chosen:
            yield self.loss(model, data, np.array([index]), pad_id, device, loss)

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


class _PooledTask(TaskObject):
    """A task trained on the pooled embeddings themselves (what ``xl embed`` writes): no head."""

    def build_head(self, hidden: int, n_labels: int) -> torch.nn.Module | None:
        return None

    def outputs(self, model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled (b, hidden) float32 embeddings."""
        return model.embed(input_ids, mask)  # type: ignore[no-any-return]


class StsTask(_PooledTask):
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
    weighs_classes = True

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
        # Σ_i w_{y_i} CE_i: each example weighs its class's weight (the trainer divides by the batch size, not by
        # Σ w as reduction="mean" would, so a batch's weight does not depend on which classes it drew).
        weight = None if data.class_weights is None else torch.tensor(data.class_weights, device=logits.device)
        return F.cross_entropy(logits, target, weight=weight, reduction="sum")

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

    def check_training(self, records: Sequence[Mapping[str, Any]], source: str) -> list[str]:
        """Refuse (``InputError``) a training file that the loss would learn the wrong thing from although every
        record is valid on its own; return notes on it for stderr. Records are in file order (record i = line i)."""
        return []

    def dev_lang_of(self, lang: str) -> str:
        """The language a dev record's ``lang`` puts model choice in (see ``xl.tasks.data.check_dev_lang``)."""
        return lang

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


# --------------------------------------------------------------------------------------------- align


class AlignTask(_PooledTask):
    """Translation ranking on English–xx pairs (``{"text1": English, "text2": translation}``).

    A dual encoder with shared weights: each text is encoded on its own and pooled as ``xl embed`` pools it (the
    model's pooling and prefix, as sts), so training improves what ``xl eval retrieval`` measures on ``xl embed``
    outputs. The loss is the bidirectional in-batch translation ranking of Guo et al. 2018 ("Effective parallel
    corpus mining using bilingual sentence embeddings") with the additive margin softmax of Yang et al. 2019
    ("Improving multilingual sentence embedding using bi-directional dual encoder with additive margin softmax"),
    as LaBSE trains it (Feng et al. 2022): for a batch of n pairs with unit embeddings ``x_i`` (English) and
    ``y_i``, ``φ(i, j) = cos(x_i, y_j)`` and row i's loss is the mean of

        en→xx:  −log  e^{s(φ(i,i) − m)} / (e^{s(φ(i,i) − m)} + Σ_{j≠i} e^{s φ(i,j)})
        xx→en:  the same over φ(j, i),

    with ``s = SCALE`` (20, sentence-transformers' MultipleNegativesRankingLoss, whose loss is the en→xx term
    with m = 0) and ``m = MARGIN`` (0.3, Yang et al. 2019 and LaBSE). Under torchrun the negatives are the whole
    global batch, gathered from every process (LaBSE's cross-accelerator negatives), so N processes compute what
    one does. A candidate ``j`` that shares a side with pair ``i`` (the same English with another translation —
    several languages in one file — or the same translation) is a correct answer, not a negative: it is left out
    of row i's softmax (false-negative masking), keyed on the token ids, so identical inputs always match.

    Dev metric: nearest-neighbour retrieval by cosine in both directions over the dev pairs (the ``nn`` scoring
    of ``xl eval retrieval``), × 100; ``accuracy`` is the mean of ``en2xx_accuracy`` and ``xx2en_accuracy``. A
    retrieved text counts when the dev file pairs it with the query (with no repeated side: row i ↔ row i).
    """

    name = "align"
    headline = ("accuracy", "en2xx_accuracy", "xx2en_accuracy")
    selection = "accuracy"
    has_head = False
    gathers = True
    losses = ("translation-ranking",)
    prediction_suffix = ".tsv"
    #: s: the cosines' scale in the softmax (sentence-transformers' MultipleNegativesRankingLoss default).
    SCALE: ClassVar[float] = 20.0
    #: m: subtracted from the true pair's cosine (Yang et al. 2019; Feng et al. 2022).
    MARGIN: ClassVar[float] = 0.3
    #: The Fisher ranks each pair among a group of about this many (the default --batch-size).
    FISHER_GROUP: ClassVar[int] = 16

    def tokenize(self, records: Sequence[Mapping[str, Any]], tokenizer: Any, *, schema: str, prefix: str,
                 max_length: int, doc_stride: int = 128, labels: Sequence[Any] = (),
                 with_labels: bool = True) -> TaskData:  # fmt: skip
        """Inputs ``[text1 ids, text2 ids]``; targets ``(k1, k2)``: one int per distinct token row of each side,
        which the loss masks false negatives with and the score matches retrieved texts by (not labels: the same
        with and without ``with_labels``)."""
        from xl.models.inference import tokenize_texts

        first = tokenize_texts(tokenizer, [r["text1"] for r in records], prefix=prefix, max_length=max_length)
        second = tokenize_texts(tokenizer, [r["text2"] for r in records], prefix=prefix, max_length=max_length)
        keys1, keys2 = _row_keys(first.ids), _row_keys(second.ids)
        inputs = [[a, b] for a, b in zip(first.ids, second.ids, strict=True)]
        return TaskData(list(records), inputs, list(zip(keys1, keys2, strict=True)),
                        [len(a) + len(b) for a, b in inputs], first.truncated + second.truncated)  # fmt: skip

    def check_training(self, records: Sequence[Mapping[str, Any]], source: str) -> list[str]:
        """Refuse a pair given twice (its copy would be a negative of itself); note sides shared by several pairs
        (masked out of each other's negatives, see the class docstring)."""
        repeats = pair_repeats(records)
        if repeats.duplicates:
            shown = ", ".join(f"line {line} repeats line {first}" for line, first in repeats.duplicates[:3])
            count = len(repeats.duplicates)
            raise InputError(
                f"{count} duplicate pair{'s' if count > 1 else ''} ({shown}{', …' if count > 3 else ''})",
                source=source, line=repeats.duplicates[0][0],
                hint="in-batch negatives would score a pair's copy as a wrong translation of it: keep one line of "
                     "each pair (identical lines: awk '!seen[$0]++')",
            )  # fmt: skip
        notes = []
        if repeats.shared_text1 or repeats.shared_text2:
            r = repeats
            notes.append(f"note: {r.shared_text1:,} of {len(records):,} pairs share their English side with another "
                         f"pair ({r.distinct_text1:,} distinct English texts) and {r.shared_text2:,} their "
                         "translation; such pairs are never each other's negatives in a batch")  # fmt: skip
        return notes

    def dev_lang_of(self, lang: str) -> str:
        """``en-de`` is English paired with German: the pairs are the languages the run trains on, not labels of a
        target-language task, so model choice on them is English-side (the first of the pair)."""
        return lang.partition("-")[0]

    def loss(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any,
             loss: str) -> torch.Tensor:  # fmt: skip
        return self.row_losses(model, data, share, pad_id, device).sum()

    def fisher_losses(self, model: Any, data: TaskData, chosen: Sequence[int], pad_id: int, device: Any,
                      loss: str) -> Iterator[torch.Tensor]:  # fmt: skip
        """Each pair's loss ranked among its group of about ``FISHER_GROUP`` chosen pairs (one alone has nothing
        to be ranked against): one forward pass per group, one loss per pair."""
        groups = max(1, -(-len(chosen) // self.FISHER_GROUP))
        for group in np.array_split(np.asarray(chosen, dtype=np.int64), groups):
            yield from self.row_losses(model, data, group, pad_id, device)

    def row_losses(self, model: Any, data: TaskData, share: np.ndarray, pad_id: int, device: Any) -> torch.Tensor:
        """(n,) float32: the loss of each pair of ``share`` against the whole (gathered) batch."""
        import torch
        import torch.nn.functional as F

        from xl.models.inference import pad_batch
        from xl.models.training import gather_rows

        n = len(share)
        # A process with no pairs of a short last batch still encodes one, weighted zero: it takes part in the
        # gather and in its backward, and DDP sees every parameter used.
        picked = [int(i) for i in share] if n else [0]
        ids, mask = pad_batch([data.inputs[i][0] for i in picked] + [data.inputs[i][1] for i in picked], pad_id,
                              device)  # fmt: skip
        pooled = F.normalize(model(ids, mask).float(), dim=-1)
        m = len(picked)
        local = torch.cat([pooled[:m], pooled[m:]], dim=1)[:n]  # (n, 2 hidden): one gather for both sides
        keys = torch.tensor([data.targets[i] for i in picked], dtype=torch.long, device=pooled.device)[:n]
        rows, all_keys, offset = gather_rows(local, keys)
        hidden = pooled.shape[1]
        return ranking_losses(rows[:, :hidden], rows[:, hidden:], all_keys, offset, n, self.SCALE, self.MARGIN)

    def predict(self, run: Run, data: TaskData, labels: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        """(row of the text2 retrieved for text1, row of the text1 retrieved for text2) per pair, by cosine over
        the set (:func:`xl.core.retrieval.retrieve`, ``nn``); raw: ``embeddings1``/``embeddings2`` (n, hidden)."""
        from xl.core.retrieval import retrieve

        n = len(data.inputs)
        outputs = run([pair[0] for pair in data.inputs] + [pair[1] for pair in data.inputs])
        pooled = np.stack(outputs) if outputs else np.zeros((0, 1), np.float32)
        X, Y = pooled[:n], pooled[n:]
        found = retrieve(X, Y, ("nn",))
        predictions = [(int(j), int(k)) for j, k in zip(found.src2tgt["nn"], found.tgt2src["nn"], strict=True)]
        return predictions, {"embeddings1": X, "embeddings2": Y}

    def score(self, data: TaskData, predictions: Sequence[Any], *, n_boot: int = 0, seed: int = 0,
              normalization: str = "squad", lang: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Accuracy × 100 in each direction and their mean (``accuracy``), with a bootstrap interval of the mean
        over pairs (``n_boot`` resamples)."""
        from xl.core.metrics import mean_ci

        keys = [tuple(k) for k in data.targets]
        pairs = set(keys)
        en2xx = np.array([(keys[i][0], keys[j][1]) in pairs for i, (j, _) in enumerate(predictions)], np.float64)
        xx2en = np.array([(keys[k][0], keys[i][1]) in pairs for i, (_, k) in enumerate(predictions)], np.float64)
        both = (en2xx + xx2en) * 50.0
        n = len(keys)
        metrics: dict[str, Any] = {"n": n, "accuracy": float(both.mean()) if n else None,
                                   "en2xx_accuracy": float(en2xx.mean() * 100) if n else None,
                                   "xx2en_accuracy": float(xx2en.mean() * 100) if n else None}  # fmt: skip
        if n_boot and n:
            metrics["accuracy_ci"] = list(mean_ci(both, n_boot=n_boot, seed=seed))
        return metrics

    def prediction_bytes(self, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> bytes:
        """A line per pair: the 0-based rows retrieved for its text1 and for its text2, tab-separated."""
        return "".join(f"{j}\t{k}\n" for j, k in predictions).encode()


class RetrievalTask(AlignTask):
    """Zero-shot bitext retrieval of English–xx pairs with any encoder (``xl eval retrieval --model M DATA``):
    XTREME's Tatoeba task (Hu et al. 2020; Artetxe & Schwenk 2019), also on FLORES-200, scored in both
    directions by the computation that picks an align run's kept model (``AlignTask.predict``/``score``). Not
    trainable: ``xl finetune --task align`` trains on pairs. A result line's ``lang`` is the pair's second
    language (``de`` for ``en-de``): English is the pivot of every set."""

    name = "retrieval"
    shares_inputs = True  # FLORES-200: one English side for every language

    def schema_for(self, pair: bool) -> str:
        return ALIGN.name  # the pairs an align run trains on

    def result_lang(self, lang: str | None) -> str | None:
        return None if lang is None else (lang.partition("-")[2] or lang)


def _row_keys(rows: Sequence[Sequence[int]]) -> list[int]:
    """One int per distinct token row, in order of first appearance (equal rows, equal keys)."""
    index: dict[tuple[int, ...], int] = {}
    return [index.setdefault(tuple(row), len(index)) for row in rows]


def ranking_losses(X: torch.Tensor, Y: torch.Tensor, keys: torch.Tensor, offset: int, n: int, scale: float,
                   margin: float) -> torch.Tensor:  # fmt: skip
    """(n,) float32 bidirectional additive-margin ranking losses (see :class:`AlignTask`) of pairs
    ``offset … offset + n − 1`` of a batch: ``X``, ``Y`` (N, d) unit float32 embeddings of its two sides (row i ↔
    row i), ``keys`` (N, 2) int64 ids of each side's text. A candidate sharing a key with the query's pair is left
    out of the query's softmax (not a negative)."""
    import torch
    import torch.nn.functional as F

    rows = torch.arange(n, device=X.device)
    target = rows + offset
    mine = keys[offset : offset + n]
    shared = (mine[:, None, 0] == keys[None, :, 0]) | (mine[:, None, 1] == keys[None, :, 1])  # (n, N)
    shared[rows, target] = False
    positive = F.one_hot(target, X.shape[0]).to(X.dtype)
    losses = []
    with torch.autocast(X.device.type, enabled=False):  # the similarities in float32, also under bf16 training
        for queries, candidates in ((X[offset : offset + n], Y), (Y[offset : offset + n], X)):
            logits = (queries.float() @ candidates.float().T - margin * positive) * scale
            losses.append(F.cross_entropy(logits.masked_fill(shared, float("-inf")), target, reduction="none"))
    return (losses[0] + losses[1]) / 2


# --------------------------------------------------------------------------------------------- registry

STS = StsTask()
CLASSIFY = ClassifyTask()
QA = QaTask()
ALIGN = AlignTask()
RETRIEVAL = RetrievalTask()
#: The trainable tasks by their one name (``--task``, manifests, heads).
TRAINABLE: dict[str, TaskObject] = {task.name: task for task in (STS, CLASSIFY, QA, ALIGN)}
#: Every task ``xl eval`` scores with a model: the trainable ones and retrieval.
EVALUATED: dict[str, TaskObject] = {**TRAINABLE, RETRIEVAL.name: RETRIEVAL}
#: Names older run directories and heads used for a task (read as the task's one name).
OLD_NAMES = OLD_TASK_NAMES


def task_named(name: str) -> TaskObject:
    """The task object of ``name`` (an old name of a task read from a run directory maps to its current one)."""
    task = EVALUATED.get(OLD_NAMES.get(name, name))
    if task is None:
        raise UsageError(f"unknown task {name!r}", hint=f"use {', '.join(EVALUATED)}")
    return task
