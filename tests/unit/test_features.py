"""QA windows and span decoding with the real XLM-R tokenizer (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from xl.models.inference import tokenize_pairs
from xl.tasks.features import best_spans, qa_features


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    from xl.models.registry import TOKENIZER_SOURCE, fetch_member

    data, _ = fetch_member(TOKENIZER_SOURCE)
    return Tokenizer.from_str(data.decode())


def _record(context: str, answer: str, qid: str = "q") -> dict:
    start = context.index(answer)
    return {"id": qid, "question": "Where is it?", "context": context,
            "answers": {"text": [answer], "answer_start": [start]}}  # fmt: skip


def test_windows_overlap_and_labels_point_at_the_answer(tokenizer) -> None:  # type: ignore[no-untyped-def]
    filler = " ".join(f"Satz{i} über nichts." for i in range(120))
    context = filler + " Die Hauptstadt von Südkorea ist Seoul, eine große Stadt. " + filler
    record = _record(context, "Seoul")
    features = qa_features(tokenizer, [record], max_length=128, doc_stride=32, with_labels=True)
    assert len(features.ids) > 3 and all(len(ids) <= 128 for ids in features.ids)
    holding = [f for f in range(len(features.ids)) if features.start[f] > 0]
    assert holding, "some window must hold the answer"
    for f in range(len(features.ids)):
        if features.start[f] == 0:
            continue
        spans = features.offsets[f]
        text = context[spans[features.start[f], 0] : spans[features.end[f], 1]]
        assert text.strip() == "Seoul"  # a SentencePiece offset may include the space before the word
    # decoding with logits that peak at the labelled tokens gives the answer back
    starts = [np.where(np.arange(len(i)) == features.start[f], 10.0, 0.0) for f, i in enumerate(features.ids)]
    ends = [np.where(np.arange(len(i)) == features.end[f], 10.0, 0.0) for f, i in enumerate(features.ids)]
    assert best_spans(features, starts, ends, [context]) == ["Seoul"]


def test_span_decoding_respects_order_length_and_context(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = _record("Alpha beta gamma delta epsilon.", "gamma")
    features = qa_features(tokenizer, [record], max_length=64, doc_stride=16)
    n = len(features.ids[0])
    starts, ends = np.zeros(n), np.zeros(n)
    starts[0] = ends[0] = 100.0  # the <s> token is not context: never an answer
    context_tokens = np.flatnonzero(features.offsets[0][:, 0] >= 0)
    t1, t3 = context_tokens[1], context_tokens[3]
    starts[t3] = 5.0
    ends[t1] = 9.0  # the best end, but before the best start: (t3, t1) is not a valid pair
    ends[t3] = 4.5  # (t3, t3) scores 9.5 and beats every start at or before t1 with ends[t1] (0 + 9)
    answer = best_spans(features, [starts], [ends], [record["context"]])[0]
    first, last = features.offsets[0][t3]
    assert answer == record["context"][first:last].strip() and answer
    # a span longer than max_answer_tokens is refused: then the best is a start at or before t1 with end t1
    ends[t3] = -100.0
    long = best_spans(features, [starts], [ends], [record["context"]], max_answer_tokens=1)[0]
    assert long == record["context"][features.offsets[0][t1][0] : features.offsets[0][t1][1]].strip()


def test_pairs_are_encoded_together_and_truncated(tokenizer) -> None:  # type: ignore[no-untyped-def]
    result = tokenize_pairs(
        tokenizer, ["ein kurzer Satz", "x " * 300], ["a second text", "y"], prefix="", max_length=32
    )
    first = result.ids[0]
    assert first[0] == 0 and first[-1] == 2 and first.count(2) == 3  # <s> A </s></s> B </s>
    assert len(result.ids[1]) == 32 and result.truncated == 1


def _word_tokenizer_json(words: list[str]) -> str:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    return tokenizer.to_str()


def test_a_tokenizer_file_loaded_again_is_built_once_keyed_by_its_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xl.models import inference

    a, b, c = (tmp_path / name for name in ("a", "b", "c"))
    for folder, words in ((a, ["alpha", "beta"]), (b, ["alpha", "beta"]), (c, ["beta", "alpha"])):
        folder.mkdir()
        (folder / "tokenizer.json").write_text(_word_tokenizer_json(words), encoding="utf-8")
    first = inference.load_tokenizer(str(a))
    assert inference.load_tokenizer(str(b)) is first  # another directory, the same bytes (a run's copy)
    other = inference.load_tokenizer(str(c))
    assert other is not first and other.encode("alpha beta").ids == [2, 1] != first.encode("alpha beta").ids
    # the file is read each time: a rewritten tokenizer.json is never served from what it was
    (a / "tokenizer.json").write_text(_word_tokenizer_json(["beta", "alpha"]), encoding="utf-8")
    assert inference.load_tokenizer(str(a)) is other
    # a bounded number are kept: two more files push the first one out
    for index, words in enumerate((["gamma"], ["delta"])):
        (tmp_path / f"d{index}").mkdir()
        (tmp_path / f"d{index}" / "tokenizer.json").write_text(_word_tokenizer_json(words), encoding="utf-8")
        inference.load_tokenizer(str(tmp_path / f"d{index}"))
    assert len(inference._TOKENIZERS) == inference._TOKENIZERS_KEPT
    assert inference.load_tokenizer(str(b)) is not first


def test_a_shared_tokenizer_carries_no_truncation_from_one_caller_to_the_next(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every caller sets its own truncation: a QA feature pass (stride, only_second) or a short max length
    before gives the same ids as a tokenizer fresh from the file."""
    from tokenizers import Tokenizer

    from xl.models import inference
    from xl.models.registry import TOKENIZER_SOURCE, fetch_member

    data, _ = fetch_member(TOKENIZER_SOURCE)
    (tmp_path / "tokenizer.json").write_bytes(data)
    shared = inference.load_tokenizer(str(tmp_path))
    texts = ["ein ziemlich langer Satz über das Wetter in Seoul " * 8, "kurz"]
    fresh = inference.tokenize_texts(Tokenizer.from_str(data.decode()), texts, prefix="", max_length=64)
    inference.tokenize_texts(shared, texts, prefix="", max_length=8)
    qa_features(shared, [_record("Alpha beta gamma delta epsilon." * 40, "gamma")], max_length=64, doc_stride=16)
    inference.tokenize_pairs(shared, texts, texts, prefix="", max_length=16)
    again = inference.load_tokenizer(str(tmp_path))
    assert again is shared and again.truncation is None and again.padding is None
    assert inference.tokenize_texts(again, texts, prefix="", max_length=64) == fresh
    assert fresh.truncated == 1 and len(fresh.ids[0]) == 64
