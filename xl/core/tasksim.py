"""Task similarity and its relation to transfer gains (no torch).

- **Similarity** of task embeddings ``E: (t, d)`` (one row per task, e.g. TextEmb or TaskEmb of Vu et al.
  2020): ``cosine``; ``centered`` (cosine after subtracting the mean task embedding, so that what all tasks
  share does not dominate); ``task2vec`` (Achille et al. 2019's normalised cosine for Fisher embeddings,
  ``cos(a / (a + b), b / (a + b))`` element-wise, for non-negative vectors).
- **Gains**: rows ``{source, target, lang, gain}`` or ``{source, target, lang, score_with, score_without}``
  (gain = score_with − score_without), one per (source task, target task, target language).
- **Correlation** of the similarity of (source, target) with the gain, over all rows and per language family
  (``xl.core.languages``): Pearson, Spearman and Kendall with analytic and permutation p-values and bootstrap
  intervals (``xl.core.stats``), always with n; **ranking** of sources by similarity per (target, language)
  with NDCG, Regret@k and the rank of the best source (``xl.core.ranking``), averaged overall and per family.

A similarity label may name a task (``xnli``) or a task in a language (``xnli@de``); a gain row's target is
looked up as ``target@lang`` first, then as ``target``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.core.languages import Language, builtin_table, normalize_lang_codes
from xl.core.ranking import RankingScores, aggregate_rankings, rank_metrics
from xl.core.stats import METHODS, Method, correlations_by_group
from xl.errors import InputError, ShapeError, UsageError

SimilarityMethod = Literal["cosine", "centered", "task2vec"]
SIMILARITY_METHODS: tuple[SimilarityMethod, ...] = get_args(SimilarityMethod)
F64 = NDArray[np.float64]


# --------------------------------------------------------------------------------------------- similarity


def similarity_matrix(E: ArrayLike, method: SimilarityMethod = "cosine") -> F64:
    """Pairwise similarity ``(t, t)`` float64 of the rows of ``E: (t, d)`` (see the module docstring)."""
    X = np.asarray(E, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ShapeError("task embeddings must be a 2-D matrix with a row per task", found=f"shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("task embeddings hold NaN or Inf", hint="recompute them")
    if method == "centered":
        X = X - X.mean(axis=0, keepdims=True)
    elif method == "task2vec":
        if (X < 0).any():
            raise InputError("task2vec similarity needs non-negative (Fisher) embeddings",
                             hint="use --method cosine or centered for other embeddings")  # fmt: skip
        total = X[:, None, :] + X[None, :, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            A = np.where(total > 0, X[:, None, :] / total, 0.0)
            B = np.where(total > 0, X[None, :, :] / total, 0.0)
        norms = np.linalg.norm(A, axis=2) * np.linalg.norm(B, axis=2)
        S: F64 = np.divide((A * B).sum(axis=2), norms, out=np.zeros(norms.shape), where=norms > 0)
        return S
    elif method != "cosine":
        raise UsageError(f"unknown similarity {method!r}", hint="use cosine, centered or task2vec")
    norms = np.linalg.norm(X, axis=1)
    U = np.divide(X, norms[:, None], out=np.zeros_like(X), where=norms[:, None] > 0)
    cosine: F64 = np.clip(U @ U.T, -1.0, 1.0)
    return cosine


@dataclass(frozen=True)
class Similarity:
    """A square similarity matrix with a label per row/column."""

    labels: tuple[str, ...]
    matrix: F64

    def __post_init__(self) -> None:
        m = self.matrix
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ShapeError("the similarity matrix is not square", found=f"shape {m.shape}")
        if len(self.labels) != m.shape[0]:
            raise ShapeError(f"{len(self.labels)} labels for a {m.shape[0]} × {m.shape[1]} similarity matrix",
                             hint="the manifest's labels must name every row")  # fmt: skip
        if len(set(self.labels)) != len(self.labels):
            raise InputError("duplicate labels in the similarity matrix")
        if not np.isfinite(m).all():
            raise InputError("the similarity matrix holds NaN or Inf")

    def lookup(self, source: str, target: str, lang: str) -> float | None:
        index = {label: i for i, label in enumerate(self.labels)}
        i = index.get(source)
        j = index.get(f"{target}@{lang}", index.get(target))
        return None if i is None or j is None else float(self.matrix[i, j])


# --------------------------------------------------------------------------------------------- gains


@dataclass(frozen=True)
class GainRow:
    """One measured gain; ``baseline`` is the target's score without the source (``score_without``), if given."""

    source: str
    target: str
    lang: str
    gain: float
    baseline: float | None = None


def parse_gains(records: Iterable[Mapping[str, Any]], *, source_name: str = "gains") -> list[GainRow]:
    """Validate gain records (1-based record numbers in errors): fields, finite numbers, no duplicates."""
    rows: list[GainRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, record in enumerate(records, start=1):
        where = f"{source_name}:{number}"
        for name in ("source", "target", "lang"):
            if not isinstance(record.get(name), str) or not record.get(name):
                raise InputError(
                    f"{where}: field {name!r} is missing or not a string",
                    expected='{"source", "target", "lang", "gain"} or score_with/score_without',
                )
        if "gain" in record:
            gain = record["gain"]
        elif "score_with" in record and "score_without" in record:
            try:
                gain = float(record["score_with"]) - float(record["score_without"])
            except (TypeError, ValueError):
                raise InputError(f"{where}: score_with/score_without are not numbers") from None
        else:
            raise InputError(f"{where}: no gain", expected='"gain", or "score_with" and "score_without"')
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(float(gain)):
            raise InputError(f"{where}: the gain is missing, NaN or not a number", found=repr(gain),
                             hint="drop the row or rerun that experiment")  # fmt: skip
        key = (record["source"], record["target"], record["lang"])
        if key in seen:
            raise InputError(
                f"{where}: duplicate row for source {key[0]!r}, target {key[1]!r}, lang {key[2]!r} "
                f"(first at record {seen[key]})",
                hint="keep one row per (source, target, lang)",
            )
        seen[key] = number
        without = record.get("score_without")
        baseline: float | None = None
        if isinstance(without, (int, float)) and not isinstance(without, bool) and math.isfinite(without):
            baseline = float(without)
        rows.append(GainRow(key[0], key[1], key[2], float(gain), baseline))
    if not rows:
        raise InputError(f"{source_name}: no gain rows")
    return rows


# --------------------------------------------------------------------------------------------- correlation


def _check_covered(sim: Similarity, rows: Sequence[GainRow]) -> list[float]:
    values: list[float] = []
    missing: list[str] = []
    for row in rows:
        value = sim.lookup(row.source, row.target, row.lang)
        if value is None:
            for name in (row.source, row.target):
                if name not in sim.labels and f"{name}@{row.lang}" not in sim.labels and name not in missing:
                    missing.append(name)
        else:
            values.append(value)
    if missing:
        more = " …" if len(sim.labels) > 20 else ""
        raise InputError(
            f"tasks missing from the similarity matrix: {', '.join(missing)}",
            hint=f"its labels are: {', '.join(sim.labels[:20])}{more}",
        )
    return values


def correlate(
    sim: Similarity,
    rows: Sequence[GainRow],
    *,
    table: Mapping[str, Language] | None = None,
    methods: Sequence[Method] = METHODS,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    seed: int = 0,
    ks: Sequence[int] = (1, 3),
    ndcg_k: int | None = None,
) -> list[dict[str, Any]]:
    """Correlation lines (overall, then per family) and ranking lines (overall, then per family)."""
    table = builtin_table() if table is None else table
    x = np.asarray(_check_covered(sim, rows))
    y = np.asarray([r.gain for r in rows])
    langs = normalize_lang_codes([r.lang for r in rows], table)
    families = [table[code].family for code in langs]
    out: list[dict[str, Any]] = []
    # Overall (key None) and per family; with enough work half of it runs in a second process.
    by_family = correlations_by_group(x, y, families, methods, n_perm=n_perm, n_boot=n_boot, seed=seed, overall=True)
    overall = by_family.pop(None)
    for c in overall.values():
        out.append({"kind": "correlation", "scope": "overall", "family": None, "languages": sorted(set(langs)),
                    **c.to_dict()})  # fmt: skip
    for family, results in by_family.items():
        members = sorted({code for code, fam in zip(langs, families, strict=True) if fam == family})
        for c in results.values():
            out.append({"kind": "correlation", "scope": "family", "family": family, "languages": members,
                        **c.to_dict()})  # fmt: skip
    # Ranking: for each (target, language), order the sources by similarity and compare with their gains.
    target_rows: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        target_rows.setdefault((row.target, langs[i]), []).append(i)
    # Regret is relative to the best target score (Poth et al. 2021) where the rows give the score without
    # the source (one baseline per target and language), else relative to the best gain.
    ranked = {key: indices for key, indices in target_rows.items() if len(indices) >= 2}
    baselines = {key: {rows[i].baseline for i in indices} for key, indices in ranked.items()}
    on_scores = all(len(b) == 1 and None not in b for b in baselines.values())
    per_target: list[tuple[str, RankingScores]] = []
    for (target, code), indices in ranked.items():
        baseline = next(iter(baselines[(target, code)])) if on_scores else None
        ranking = rank_metrics(x[indices], y[indices], ks=ks, ndcg_k=ndcg_k, baseline=baseline)
        per_target.append((table[code].family, ranking))
    scopes: dict[str | None, list[RankingScores]] = {None: [r for _, r in per_target]}
    for fam, ranking in per_target:
        scopes.setdefault(fam, []).append(ranking)
    for scope_family, rankings in scopes.items():
        if not rankings:
            continue
        means = aggregate_rankings(rankings)
        metrics = {k: {"mean": v.mean, "n": v.n, "n_undefined": v.n_undefined} for k, v in means.items()}
        scope = "overall" if scope_family is None else "family"
        out.append({"kind": "ranking", "scope": scope, "family": scope_family, "targets": len(rankings),
                    "regret_relative_to": "best score" if on_scores else "best gain", **metrics})  # fmt: skip
    return out


def render_markdown(lines: Sequence[Mapping[str, Any]]) -> str:
    """Two tables: correlations (value, p, permutation p, CI, n) and ranking means, per scope."""

    def fmt(v: Any, spec: str = ".3f") -> str:
        return "–" if v is None else format(v, spec)

    out = ["| scope | method | n | value | p | p (perm.) | 95% CI | note |", "|---|---|---:|---:|---:|---:|---|---|"]
    for line in lines:
        if line["kind"] != "correlation":
            continue
        scope = "all" if line["scope"] == "overall" else line["family"]
        ci = "" if line["ci_low"] is None else f"{line['ci_low']:.3f} – {line['ci_high']:.3f}"
        out.append(f"| {scope} | {line['method']} | {line['n']} | {fmt(line['value'])} | {fmt(line['p_value'], '.3g')} "
                   f"| {fmt(line['p_perm'], '.3g')} | {ci} | {line.get('reason') or ''} |")  # fmt: skip
    ranking = [line for line in lines if line["kind"] == "ranking"]
    if ranking:
        metrics = [k for k, v in ranking[0].items() if isinstance(v, dict) and "mean" in v]
        out += ["", "| scope | targets | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
        for line in ranking:
            scope = "all" if line["scope"] == "overall" else line["family"]
            out.append(f"| {scope} | {line['targets']} | " + " | ".join(fmt(line[m]["mean"]) for m in metrics) + " |")
    return "\n".join(out)
