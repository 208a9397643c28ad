"""QA inputs: windows of question and context, and span decoding (texts and pairs are tokenized by
:func:`xl.models.inference.tokenize_texts` and :func:`~xl.models.inference.tokenize_pairs`).

Tokenization uses the model's ``tokenizers.Tokenizer`` directly (Rust, batched). No torch here.

QA follows the SQuAD recipe of Devlin et al. 2019 as Hugging Face's ``run_qa`` implements it: the question
(at most ``max_query_tokens``), then the context cut into windows of ``max_length`` tokens that overlap by
``doc_stride`` tokens; a training window whose context does not hold the whole answer points at token 0.
Offsets come from the tokenizer and refer to the original context string, so answers are sliced from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xl.errors import UsageError

# --------------------------------------------------------------------------------------------- QA


@dataclass
class QAFeatures:
    """Windows of QA examples.

    ``ids[f]``: token ids of window ``f``; ``example[f]``: the index of its example; ``offsets[f]``: (t, 2)
    int32 character spans in the context for context tokens, (-1, -1) elsewhere; ``start``/``end``: the
    answer's token positions in the window for training (0, 0 when the window does not hold it).
    """

    ids: list[list[int]] = field(default_factory=list)
    example: list[int] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    truncated_questions: int = 0


def _truncate_question(tokenizer: Any, question: str, max_query_tokens: int) -> tuple[str, int, bool]:
    """The question cut to ``max_query_tokens`` tokens, its length in tokens, and whether it was cut."""
    encoding = tokenizer.encode(question, add_special_tokens=False)
    if len(encoding.ids) <= max_query_tokens:
        return question, len(encoding.ids), False
    return question[: encoding.offsets[max_query_tokens - 1][1]], max_query_tokens, True


def qa_features(
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    prefix: str = "",
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_tokens: int = 64,
    with_labels: bool = False,
) -> QAFeatures:
    """Cut ``qa`` records into windows (see the module docstring); labels from each record's first answer."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    features = QAFeatures()
    questions = []
    for record in records:
        question, length, cut = _truncate_question(tokenizer, prefix + record["question"], max_query_tokens)
        # <s> question </s></s> context </s>: what is left for the context must exceed the overlap.
        if doc_stride >= max_length - length - 4:
            raise UsageError(
                f"--doc-stride {doc_stride} leaves no room: windows of {max_length} tokens with a question of "
                f"{length} tokens hold at most {max_length - length - 4} context tokens",
                hint="use a --doc-stride well below --max-length (e.g. 128 with 384)",
            )
        features.truncated_questions += cut
        questions.append(question)
    tokenizer.enable_truncation(max_length, stride=doc_stride, strategy="only_second")
    encodings = tokenizer.encode_batch(list(zip(questions, [r["context"] for r in records], strict=True)))
    for index, (record, encoding) in enumerate(zip(records, encodings, strict=True)):
        if with_labels:
            answers = record["answers"]
            first_char = int(answers["answer_start"][0])
            last_char = first_char + len(answers["text"][0])  # exclusive
        for window in [encoding, *encoding.overflowing]:
            sequence_ids = window.sequence_ids
            spans = np.array(window.offsets, dtype=np.int32).reshape(-1, 2)
            context = np.array([s == 1 for s in sequence_ids], dtype=bool)
            spans[~context] = -1
            features.ids.append(list(window.ids))
            features.example.append(index)
            features.offsets.append(spans)
            if not with_labels:
                continue
            positions = np.flatnonzero(context)
            start = end = 0
            if positions.size and spans[positions[0], 0] <= first_char and spans[positions[-1], 1] >= last_char:
                inside = positions[spans[positions, 1] > first_char]
                start = int(inside[0]) if inside.size else 0
                before_end = positions[spans[positions, 0] < last_char]
                end = int(before_end[-1]) if before_end.size else 0
                if end < start:
                    start = end = 0
            features.start.append(start)
            features.end.append(end)
    tokenizer.no_truncation()
    return features


def best_spans(
    features: QAFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_tokens: int = 30,
) -> list[str]:
    """The highest-scoring answer text of every example over all its windows.

    A span scores ``start_logit + end_logit`` over the ``n_best`` best starts and ends of context tokens,
    with ``end >= start`` and at most ``max_answer_tokens`` tokens; an example with no valid span gets "".
    """
    best: list[tuple[float, str]] = [(-np.inf, "") for _ in contexts]
    for f, example in enumerate(features.example):
        spans = features.offsets[f]
        starts = np.asarray(start_logits[f], dtype=np.float64)[: len(spans)]
        ends = np.asarray(end_logits[f], dtype=np.float64)[: len(spans)]
        context = spans[:, 0] >= 0
        if not context.any():
            continue
        starts = np.where(context, starts, -np.inf)
        ends = np.where(context, ends, -np.inf)
        top_start = np.argsort(-starts)[:n_best]
        top_end = np.argsort(-ends)[:n_best]
        score = starts[top_start][:, None] + ends[top_end][None, :]
        length = top_end[None, :] - top_start[:, None]
        score = np.where((length >= 0) & (length < max_answer_tokens), score, -np.inf)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[i, j]) or score[i, j] <= best[example][0]:
            continue
        first, last = spans[top_start[i], 0], spans[top_end[j], 1]
        # SentencePiece pieces carry the space before a word ("▁Seoul"), and so do their offsets.
        best[example] = (float(score[i, j]), contexts[example][first:last].strip())
    return [text for _, text in best]
