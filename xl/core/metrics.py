"""Task metrics of zero-shot evaluation: STS correlation, classification accuracy/macro-F1, QA EM/F1.

All scores are on a 0–100 scale, as the benchmarks report them, with per-example vectors kept so that
confidence intervals come from resampling examples (percentile bootstrap), never from recomputing a model.

- STS: Pearson and Spearman × 100 between predicted similarities and gold scores (Cer et al. 2017;
  Reimers & Gurevych 2019 report Spearman of cosines); computed by ``xl.core.stats`` (scipy's estimates).
- Classification: accuracy and macro-F1 (unweighted mean of per-label F1 over the labels of the gold set
  and the predictions; a label never predicted and never gold is left out, as scikit-learn does).
- QA: exact match and token F1 with the normalisation of the SQuAD v1.1 evaluation script (Rajpurkar et
  al. 2016: lower-case, drop ASCII punctuation, drop English articles, collapse whitespace), or MLQA's
  language-aware one (Lewis et al. 2020: Unicode punctuation, the language's articles, and characters as
  tokens for Chinese), both the maximum over the gold answers of a question.
"""

from __future__ import annotations

import math
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.core.stats import correlations
from xl.errors import ShapeError, UsageError

Normalization = Literal["squad", "mlqa"]
NORMALIZATIONS: tuple[Normalization, ...] = ("squad", "mlqa")

F64 = NDArray[np.float64]


# --------------------------------------------------------------------------------------------- bootstrap


def _percentile_ci(stats: F64, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _resample_indices(n: int, n_boot: int, seed: int) -> NDArray[np.int64]:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def mean_ci(values: ArrayLike, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a per-example vector ``values: (n,)``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or n_boot < 1:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    slab = max(1, (1 << 22) // v.size)
    for start in range(0, n_boot, slab):
        stop = min(start + slab, n_boot)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    return _percentile_ci(means, confidence)


def _check_boot(n_boot: int, confidence: float) -> None:
    if n_boot < 0:
        raise UsageError(f"--bootstrap must be 0 or more, not {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, not {confidence}")


# --------------------------------------------------------------------------------------------- STS


def sts_scores(
    predicted: ArrayLike, gold: ArrayLike, *, n_boot: int = 0, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Spearman and Pearson × 100 of ``predicted: (n,)`` similarities against ``gold: (n,)`` scores.

    With ``n_boot`` > 0 each gets a percentile bootstrap interval over resampled pairs (``*_ci``).
    A sample too small or constant gives None with a ``reason``.
    """
    _check_boot(n_boot, confidence)
    pred = np.asarray(predicted, dtype=np.float64).ravel()
    ref = np.asarray(gold, dtype=np.float64).ravel()
    if pred.shape != ref.shape:
        raise ShapeError(f"{pred.size} predictions but {ref.size} gold scores", hint="one score per pair")
    result = correlations(pred, ref, ("spearman", "pearson"), n_perm=0, n_boot=n_boot, ci_level=confidence, seed=seed)
    out: dict[str, Any] = {"n": int(pred.size)}
    for name in ("spearman", "pearson"):
        c = result[name]
        out[name] = None if c.value is None else 100.0 * c.value
        if n_boot:
            out[f"{name}_ci"] = None if c.ci_low is None or c.ci_high is None else [100 * c.ci_low, 100 * c.ci_high]
        if c.reason:
            out["reason"] = c.reason
    return out


# --------------------------------------------------------------------------------------------- classification


def _macro_f1_from_confusion(confusion: NDArray[np.int64]) -> float:
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    present = (predicted + actual) > 0
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else math.nan


def classification_scores(
    predicted: Sequence[Any],
    gold: Sequence[Any],
    *,
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy and macro-F1 × 100 of ``predicted`` labels against ``gold`` labels (any hashable labels).

    Per-label precision/recall/F1 are returned too (``per_label``), keyed by the label as a string.
    """
    _check_boot(n_boot, confidence)
    if len(predicted) != len(gold):
        raise ShapeError(f"{len(predicted)} predictions but {len(gold)} gold labels", hint="one label per record")
    n = len(gold)
    labels = sorted(set(gold) | set(predicted), key=lambda v: (isinstance(v, str), v))
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    g = np.fromiter((index[v] for v in gold), dtype=np.int64, count=n)
    p = np.fromiter((index[v] for v in predicted), dtype=np.int64, count=n)
    codes = g * k + p
    confusion = np.bincount(codes, minlength=k * k).reshape(k, k)
    out: dict[str, Any] = {
        "n": n,
        "accuracy": 100.0 * float((g == p).mean()) if n else None,
        "macro_f1": 100.0 * _macro_f1_from_confusion(confusion) if n else None,
    }
    per_label = {}
    for label, i in index.items():
        tp, predicted_i, actual_i = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        per_label[str(label)] = {
            "support": int(actual_i),
            "precision": 100.0 * tp / predicted_i if predicted_i else None,
            "recall": 100.0 * tp / actual_i if actual_i else None,
            "f1": 100.0 * 2 * tp / (predicted_i + actual_i) if predicted_i + actual_i else None,
        }
    out["per_label"] = per_label
    if n_boot and n:
        idx = _resample_indices(n, n_boot, seed)
        accuracy = (g == p)[idx].mean(axis=1)
        macro = np.array([
            _macro_f1_from_confusion(np.bincount(codes[row], minlength=k * k).reshape(k, k)) for row in idx
        ])  # fmt: skip
        out["accuracy_ci"] = [100 * v for v in _percentile_ci(accuracy, confidence)]
        out["macro_f1_ci"] = [100 * v for v in _percentile_ci(macro, confidence)]
    return out


# --------------------------------------------------------------------------------------------- QA


_SQUAD_PUNCTUATION = frozenset(string.punctuation)


@lru_cache(maxsize=1)
def _unicode_punctuation() -> frozenset[str]:
    """Every character of a Unicode punctuation category (P*) plus ASCII punctuation (MLQA's set)."""
    chars = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")}
    return frozenset(chars | _SQUAD_PUNCTUATION)


#: MLQA's articles per language (Lewis et al. 2020, the evaluation script of the MLQA release); languages
#: without an entry (hi, zh and every language MLQA does not cover) have no article removal.
_ARTICLES: Mapping[str, re.Pattern[str]] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
}
_SQUAD_ARTICLES = _ARTICLES["en"]
_CJK = re.compile(r"[\u4e00-\u9fa5]")
#: Languages whose answers MLQA splits into characters (CJK ideographs one by one, the rest on whitespace).
_MIXED_SEGMENTATION = frozenset({"zh"})


def _mixed_segmentation(text: str, punctuation: frozenset[str]) -> list[str]:
    tokens: list[str] = []
    run: list[str] = []
    for char in text:
        if _CJK.match(char) or char in punctuation:
            tokens.extend("".join(run).split())
            run = []
            tokens.append(char)
        else:
            run.append(char)
    tokens.extend("".join(run).split())
    return tokens


def qa_tokens(text: str, normalization: Normalization = "squad", lang: str | None = None) -> list[str]:
    """Normalised answer tokens (see the module docstring); their join with spaces is the normal form."""
    if normalization == "squad":
        text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCTUATION)
        return _SQUAD_ARTICLES.sub(" ", text).split()
    if normalization != "mlqa":
        raise UsageError(f"unknown normalization {normalization!r}", hint="use squad or mlqa")
    punctuation = _unicode_punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punctuation)
    base = (lang or "en").split("-")[0]
    articles = _ARTICLES.get(base)
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text, punctuation) if base in _MIXED_SEGMENTATION else text.split()
    return [t for t in tokens if t.strip()]


def normalize_answer(text: str, normalization: Normalization = "squad", lang: str | None = None) -> str:
    """The normal form of an answer string, compared for exact match."""
    return " ".join(qa_tokens(text, normalization, lang))


def _token_f1(prediction: list[str], gold: list[str]) -> float:
    common = Counter(prediction) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction)
    recall = overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def qa_example_scores(
    prediction: str, answers: Sequence[str], normalization: Normalization = "squad", lang: str | None = None
) -> tuple[float, float]:
    """(exact match, F1) in [0, 1] of one prediction: the maximum over the gold ``answers``."""
    if not answers:
        raise ShapeError("a question without gold answers cannot be scored", hint="check the qa records")
    pred = qa_tokens(prediction, normalization, lang)
    pred_text = " ".join(pred)
    exact = max(float(pred_text == normalize_answer(a, normalization, lang)) for a in answers)
    f1 = max(_token_f1(pred, qa_tokens(a, normalization, lang)) for a in answers)
    return exact, f1


def qa_scores(
    predictions: Mapping[str, str],
    gold: Sequence[tuple[str, Sequence[str]]],
    *,
    normalization: Normalization = "squad",
    lang: str | None = None,
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Exact match and F1 × 100 over the questions of ``gold`` (``(id, answer texts)`` pairs).

    A question without a prediction scores 0 and is counted in ``missing`` (as the SQuAD script does).
    """
    _check_boot(n_boot, confidence)
    exact = np.zeros(len(gold))
    f1 = np.zeros(len(gold))
    missing = 0
    for i, (qid, answers) in enumerate(gold):
        if qid not in predictions:
            missing += 1
            continue
        exact[i], f1[i] = qa_example_scores(predictions[qid], answers, normalization, lang)
    n = len(gold)
    out: dict[str, Any] = {
        "n": n,
        "exact_match": 100.0 * float(exact.mean()) if n else None,
        "f1": 100.0 * float(f1.mean()) if n else None,
        "missing": missing,
        "normalization": normalization,
    }
    if n_boot and n:
        out["exact_match_ci"] = [100 * v for v in mean_ci(exact, n_boot=n_boot, confidence=confidence, seed=seed)]
        out["f1_ci"] = [100 * v for v in mean_ci(f1, n_boot=n_boot, confidence=confidence, seed=seed)]
    return out


def row_cosines(A: ArrayLike, B: ArrayLike) -> NDArray[np.float64]:
    """Cosine of row i of A with row i of B: (n,) float64 (0 where a row is all zeros)."""
    X = np.asarray(A, dtype=np.float64)
    Y = np.asarray(B, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1)
    out: NDArray[np.float64] = np.divide((X * Y).sum(axis=1), norms, out=np.zeros(len(X)), where=norms > 0)
    return out
