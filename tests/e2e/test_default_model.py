"""End to end on the default model and real data: retrieval quality, invariance, defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from xl.embed import EmbedOptions, embed_texts
from xl.models.inference import Encoder
from xl.models.registry import resolve_model

pytestmark = pytest.mark.e2e

TATOEBA_LANGS = ("deu", "rus", "cmn")  # three scripts; 1,000 pairs each, as XTREME scores them


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def encoder(default_model_path: Path) -> Encoder:
    return Encoder(resolve_model("default"))  # auto dtype: bf16 on AMX CPUs, as users run it


def _top1_accuracy(queries: np.ndarray, keys: np.ndarray) -> float:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    k = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    return float((np.argmax(q @ k.T, axis=1) == np.arange(len(q))).mean())


def test_tatoeba_retrieval_of_the_english_translation(encoder: Encoder, data_root: Path) -> None:
    options = EmbedOptions()
    accuracies = {}
    for lang in TATOEBA_LANGS:
        xx = _lines(data_root / "tatoeba" / f"tatoeba.{lang}-eng.{lang}")
        en = _lines(data_root / "tatoeba" / f"tatoeba.{lang}-eng.eng")
        assert len(xx) == len(en) == 1000
        accuracies[lang] = _top1_accuracy(embed_texts(encoder, xx, options), embed_texts(encoder, en, options))
    print(f"tatoeba xx->eng top-1 accuracy ({encoder.dtype_name}):", accuracies, file=sys.stderr)
    assert all(acc >= 0.90 for acc in accuracies.values()), accuracies


def test_results_do_not_depend_on_batching_window_or_order(default_model_path: Path, data_root: Path) -> None:
    """fp32: row cosine ≥ 0.99999 across batch sizes, token budgets and windows."""
    fp32 = Encoder(resolve_model("default"), dtype="float32")
    texts: list[str] = []
    # 72 sentences (two windows of 40 in the first setting): the batch-1 reference is most of the test's time
    for lang in ("eng_Latn", "kor_Hang", "zho_Hans", "arb_Arab", "hin_Deva", "rus_Cyrl"):
        texts += _lines(data_root / "flores200" / "dev" / f"{lang}.dev")[:12]
    reference = embed_texts(fp32, texts, EmbedOptions(batch_size=1, window=len(texts)))
    for batch_size, max_tokens, window in ((7, 100_000, 40), (32, 512, 150), (64, 8192, 4096)):
        got = embed_texts(fp32, texts, EmbedOptions(batch_size=batch_size, max_tokens=max_tokens, window=window))
        cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        assert cosine.min() >= 0.99999, (batch_size, max_tokens, window, cosine.min())


def test_default_prefix_and_nfc(encoder: Encoder) -> None:
    assert encoder.ref.prefix == "query: "
    options = EmbedOptions()
    composed = "한국어 문장입니다"
    import unicodedata

    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    a, b = embed_texts(encoder, [composed, decomposed], options)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.9999


def test_the_readme_sizes_of_the_default_model_are_its_own(default_model_path: Path) -> None:
    """The vocabulary rows and the TaskEmb vector length the README states, counted on the model: the Fisher keeps
    one value per output unit of each matrix and every vector, and leaves the word embedding matrix out."""
    from xl.models.fisher import SKIPPED
    from xl.models.inference import load_encoder

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    model = load_encoder(resolve_model("default"))
    rows = model.get_input_embeddings().weight.shape[0]
    fisher = sum(p.shape[0] if p.ndim >= 2 else p.numel() for name, p in model.named_parameters()
                 if not any(s in name for s in SKIPPED))  # fmt: skip
    assert f"{rows:,}-row word embedding matrix" in readme and f"embedding matrix of\n{rows:,} rows" in readme
    assert f"{fisher:,} non-negative values per task" in readme
