"""Subword statistics of a model's tokenizer per language: fertility and vocabulary overlap with English.

Both are standard covariates of zero-shot transfer from English. For each language, over its texts:

- **fertility**: subword tokens per whitespace-separated word (Ács 2019, "Exploring BERT's vocabulary"; Rust et
  al. 2021, "How good is your tokenizer?"). Scripts written without spaces between words (Chinese, Japanese,
  Thai, Burmese, …) make a whitespace "word" a phrase or a sentence, so their fertility is large and not
  comparable with other languages'; **tokens_per_char** (tokens per non-whitespace character, after NFC) is
  comparable across scripts, though not across writing systems of different density (a Chinese character
  carries more than a Latin letter).
- **overlap** with English: of the language's token types, the share that also occur among the tokens of the
  English texts (``overlap_types``), and the same share weighted by how often each type occurs in the
  language's texts (``overlap_tokens``: the share of its token occurrences whose type English also uses). Shared
  subwords were proposed as an anchor of multilingual BERT's transfer and measured this way, against the
  English training data, by Wu & Dredze 2019 ("Beto, Bentz, Becas: The surprising cross-lingual effectiveness
  of BERT"); K et al. 2020 ("Cross-lingual ability of multilingual BERT: An empirical study", ICLR) found
  transfer to survive without any overlap, which is why it is a covariate to test rather than assume.
  Pires et al. 2019 ("How multilingual is multilingual BERT?") used the Jaccard overlap of the two vocabularies
  instead; we report the target-side share, which does not shrink when the English sample grows.

Tokens are counted without the special tokens the tokenizer adds (``<s>``, ``</s>``, padding) or that appear
literally in the text (``<mask>``). The unknown token is counted as a token (the model does see it) but never as
shared with English: it stands for "no subword for this", not for a piece the languages have in common. Texts
are NFC-normalised, as ``xl.models.inference`` does before encoding, and never truncated.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from xl.errors import InputError
from xl.models.registry import ModelRef, resolve_model

_CHUNK = 1024  # texts per encode_batch call: bounded memory whatever the input size


@dataclass
class _Counts:
    """Token counts of one language's texts."""

    texts: int
    words: int
    chars: int
    tokens: Counter[int]
    unk: int


def load_model_tokenizer(model: str | ModelRef) -> Any:
    """The ``tokenizers.Tokenizer`` of a model spec (``default``, a directory, a hub id) or resolved ref, loaded
    the way ``xl.models.inference`` loads it (``tokenizer.json``, else the Hugging Face tokenizer's backend);
    no weights are read. ``default`` is built on first use like everywhere in xl."""
    from xl.models.inference import from_pretrained, load_tokenizer, stdout_to_stderr

    ref = resolve_model(model) if isinstance(model, str) else model
    with stdout_to_stderr():
        return from_pretrained(load_tokenizer, ref)


@contextmanager
def _untruncated(tokenizer: Any) -> Iterator[None]:
    """Encode without truncation or padding, and leave the caller's tokenizer as it was."""
    truncation = getattr(tokenizer, "truncation", None)
    padding = getattr(tokenizer, "padding", None)
    if truncation is not None:
        tokenizer.no_truncation()
    if padding is not None:
        tokenizer.no_padding()
    try:
        yield
    finally:
        if truncation is not None:
            tokenizer.enable_truncation(**truncation)
        if padding is not None:
            tokenizer.enable_padding(**padding)


def _unk_id(tokenizer: Any) -> int | None:
    """The unknown token's id from the tokenizer's serialised model (``unk_id`` or ``unk_token``), if any."""
    try:
        model = json.loads(tokenizer.to_str())["model"]
    except (AttributeError, ValueError, KeyError, TypeError):
        return None
    if isinstance(model.get("unk_id"), int):
        return int(model["unk_id"])
    token = model.get("unk_token")
    found = tokenizer.token_to_id(token) if isinstance(token, str) else None
    return int(found) if found is not None else None


def _special_ids(tokenizer: Any, unk: int | None) -> set[int]:
    """Ids of the added special tokens, except the unknown token (see the module docstring)."""
    decoder = getattr(tokenizer, "get_added_tokens_decoder", None)
    if decoder is None:
        return set()
    return {int(i) for i, token in decoder().items() if getattr(token, "special", False) and i != unk}


def _count(tokenizer: Any, texts: Sequence[str], special: set[int], unk: int | None) -> _Counts:
    prepared = [unicodedata.normalize("NFC", text) for text in texts]
    words = [text.split() for text in prepared]
    tokens: Counter[int] = Counter()
    for start in range(0, len(prepared), _CHUNK):
        for encoding in tokenizer.encode_batch(prepared[start : start + _CHUNK], add_special_tokens=False):
            masks = getattr(encoding, "special_tokens_mask", None) or [0] * len(encoding.ids)
            tokens.update(i for i, m in zip(encoding.ids, masks, strict=True) if not m and i not in special)
    return _Counts(
        texts=len(prepared),
        words=sum(len(w) for w in words),
        chars=sum(len(word) for text in words for word in text),
        tokens=tokens,
        unk=tokens.get(unk, 0) if unk is not None else 0,
    )


def subword_statistics(
    tokenizer: Any, english_texts: Sequence[str], texts_by_lang: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float | int]]:
    """Per language of ``texts_by_lang``: ``fertility``, ``tokens_per_char``, ``overlap_types``,
    ``overlap_tokens`` (float, see the module docstring) and the counts they come from (``n_texts``,
    ``n_words``, ``n_chars``, ``n_tokens``, ``n_types``, ``n_unk``; int).

    ``tokenizer``: a ``tokenizers.Tokenizer`` (``load_model_tokenizer``) or any object with the same
    ``encode_batch(texts, add_special_tokens=False)`` returning encodings with ``ids``. Raises InputError when
    the English texts or a language's texts hold no word.
    """
    unk = _unk_id(tokenizer)
    special = _special_ids(tokenizer, unk)
    with _untruncated(tokenizer):
        english = _count(tokenizer, english_texts, special, unk)
        counts = {lang: _count(tokenizer, texts, special, unk) for lang, texts in texts_by_lang.items()}
    if english.words == 0 or not english.tokens:
        raise InputError("the English texts hold no words", hint="pass English texts (one sentence per line)")
    empty = [lang for lang, c in counts.items() if c.words == 0 or not c.tokens]
    if empty:
        raise InputError(
            f"no words in the texts of: {', '.join(empty)}", hint="give those languages texts or drop them"
        )
    shared_vocabulary = set(english.tokens) - ({unk} if unk is not None else set())
    out: dict[str, dict[str, float | int]] = {}
    for lang, c in counts.items():
        n_tokens = sum(c.tokens.values())
        shared = [t for t in c.tokens if t in shared_vocabulary]
        out[lang] = {
            "fertility": n_tokens / c.words,
            "tokens_per_char": n_tokens / c.chars,
            "overlap_types": len(shared) / len(c.tokens),
            "overlap_tokens": sum(c.tokens[t] for t in shared) / n_tokens,
            "n_texts": c.texts,
            "n_words": c.words,
            "n_chars": c.chars,
            "n_tokens": n_tokens,
            "n_types": len(c.tokens),
            "n_unk": c.unk,
        }
    return out
