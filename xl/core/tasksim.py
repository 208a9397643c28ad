"""Task similarity and its relation to transfer gains (no torch).

- **Similarity** of task embeddings ``E: (t, d)`` (one row per task, e.g. TextEmb or TaskEmb of Vu et al.
  2020): ``cosine``; ``centered`` (cosine after subtracting the mean task embedding, so that what all tasks
  share does not dominate); ``task2vec`` (Achille et al. 2019's normalised cosine for Fisher embeddings,
  ``cos(a / (a + b), b / (a + b))`` element-wise, for non-negative vectors).
- **Gains**: rows ``{source, target, lang, gain}`` or ``{source, target, lang, score_with, score_without}``
  (gain = score_with − score_without), one per (source task, target task, target language).
- **Correlation** of the similarity of (source, target) with the gain (``correlate``): the design and the
  variance decomposition of the gains first (``xl.core.gains``), then correlations at the unit where the
  similarity varies — (source, target) pairs for a pair-level similarity — with permutations among the
  sources of each target and cluster bootstraps (``xl.core.inference``), on values centred within targets
  (``center_within_target``), overall and per language family (``xl.core.languages``); the naive row-level
  numbers labelled as such; the family-difference tests; the **ranking** of sources by similarity per
  (target, language) with NDCG, Regret@k (relative and absolute), the rank of the best source and the share of
  top-1 picks that hurt (``xl.core.ranking``), and the seed-stability ceiling of that ranking.

A similarity label may name a task (``xnli``) or a task in a language (``xnli@de``); a gain row's target is
looked up as ``target@lang`` first, then as ``target``, with every language code normalised first (``pl``,
``pol`` and ``pol_Latn`` are one language).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xl.core.inference import Bootstrap, Unit
from xl.core.languages import Language, builtin_table, normalize_lang_code, normalize_lang_codes
from xl.core.ranking import RankingScores, aggregate_rankings, rank_metrics
from xl.core.stats import METHODS, Method
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

    def index(self, table: Mapping[str, Language] | None = None) -> dict[str, int]:
        """Label → row, with the language of every ``name@lang`` label normalised through ``table`` (the
        built-in one by default; a code it does not know is kept as written), so that ``sts@pol_Latn``,
        ``sts@pol`` and ``sts@pl`` are one label."""
        table = builtin_table() if table is None else table
        out: dict[str, int] = {}
        for i, label in enumerate(self.labels):
            name, sep, lang = label.rpartition("@")
            key = f"{name}@{_normalized(lang, table)}" if sep else label
            if key in out:
                raise InputError(f"the similarity labels {self.labels[out[key]]!r} and {label!r} name one language",
                                 hint="keep one label per task and language")  # fmt: skip
            out[key] = i
        return out

    def lookup(self, source: str, target: str, lang: str, table: Mapping[str, Language] | None = None,
               index: Mapping[str, int] | None = None) -> float | None:  # fmt: skip
        """sim(source, target) in language ``lang`` (any spelling the table knows): the label
        ``target@lang`` if there is one, else ``target``; None when a task is not labelled."""
        table = builtin_table() if table is None else table
        index = self.index(table) if index is None else index
        i = index.get(source)
        j = index.get(f"{target}@{_normalized(lang, table)}", index.get(target))
        return None if i is None or j is None else float(self.matrix[i, j])

    def per_language_targets(self) -> set[str]:
        """The task names that have at least one ``name@lang`` label."""
        return {label.rpartition("@")[0] for label in self.labels if "@" in label}


def _normalized(code: str, table: Mapping[str, Language]) -> str:
    """``code`` as its table key when the table knows it, else as written."""
    try:
        return normalize_lang_code(code, table)
    except InputError:
        return code


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


def similarity_values(sim: Similarity, rows: Sequence[GainRow], langs: Sequence[str],
                      table: Mapping[str, Language]) -> list[float]:  # fmt: skip
    """sim(source, target@lang) of every row (``langs``: the rows' codes, normalised).

    A target with ``target@lang`` labels must have one for every language of its rows: falling back to the
    plain ``target`` label for some languages would mix two predictors in one correlation without a word."""
    index = sim.index(table)
    per_language = sim.per_language_targets()
    values: list[float] = []
    missing: list[str] = []
    unlabelled: dict[str, list[str]] = {}
    for row, code in zip(rows, langs, strict=True):
        if row.target in per_language and f"{row.target}@{code}" not in index:
            unlabelled.setdefault(row.target, [])
            if code not in unlabelled[row.target]:
                unlabelled[row.target].append(code)
            continue
        value = sim.lookup(row.source, row.target, code, table, index)
        if value is None:
            for name in (row.source, row.target):
                if name not in index and name not in per_language and name not in missing:
                    missing.append(name)
        else:
            values.append(value)
    if missing:
        more = " …" if len(sim.labels) > 20 else ""
        raise InputError(
            f"tasks missing from the similarity matrix: {', '.join(missing)}",
            hint=f"its labels are: {', '.join(sim.labels[:20])}{more}",
        )
    if unlabelled:
        target, codes = next(iter(unlabelled.items()))
        raise InputError(
            f"the similarity matrix has {target}@LANG labels but none for {', '.join(codes)}",
            hint=f"embed {target}@{codes[0]} too, or drop those rows (language codes are compared normalised)",
        )
    return values


CENTERINGS = ("within-target", "none")


def center_within_target(x: F64, y: F64, targets: Sequence[str], langs: Sequence[str]) -> tuple[F64, F64]:
    """``x − mean of x over its target's rows`` and ``y − mean of y over its (target, language)'s rows``.

    Why: the permutation test shuffles similarities among the sources of one target, so it asks whether, for
    one target, the more similar sources give the larger gains. A correlation of the raw values also picks up
    how targets differ from each other (their mean similarity and mean gain: with four targets, three degrees
    of freedom), which no within-target permutation can test; its interval could then exclude zero while the
    test finds nothing. Centered, the statistic, its interval and its test measure the same thing. Centering y
    within (target, language) removes each language's baseline too (what all sources of it share), so a pair's
    mean over any subset of languages (a family) stays centered, and reassigning languages to families (the
    family test) leaves the centering unchanged. Both means are invariant under the permutations used, so
    the tests stay exact."""
    t_codes = np.unique(np.asarray(targets, dtype=object), return_inverse=True)[1]
    tl_codes = np.unique(np.asarray([f"{t}\0{lang}" for t, lang in zip(targets, langs, strict=True)], dtype=object),
                         return_inverse=True)[1]  # fmt: skip
    x_mean = np.bincount(t_codes, weights=x) / np.bincount(t_codes)
    y_mean = np.bincount(tl_codes, weights=y) / np.bincount(tl_codes)
    return x - x_mean[t_codes], y - y_mean[tl_codes]


FamilyTestChoice = Literal["auto", "none", "permutation", "mixed", "both"]
FAMILY_TESTS: tuple[FamilyTestChoice, ...] = get_args(FamilyTestChoice)


def correlate(
    sim: Similarity, rows: Sequence[GainRow], *, table: Mapping[str, Language] | None = None,
    methods: Sequence[Method] = METHODS, n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0,
    unit: Unit | None = None, center: str = "within-target", resample: Bootstrap = "cluster", min_n: int = 5,
    naive: bool = True, family_test: FamilyTestChoice = "auto", min_languages: int = 3,
    records: Sequence[Mapping[str, Any]] | None = None, ks: Sequence[int] = (1, 3), ndcg_k: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Does similarity predict the gain? JSON-able lines, in the order a reader needs them:

    1. ``design``: the unit of analysis (``unit`` None: ``pair`` when the similarity varies only by (source,
       target), else ``row``), the permutation and the resampling scheme, the numbers of rows, pairs, sources,
       targets, languages and the families;
    2. ``decomposition`` of the gains' variance (``xl.core.gains.decompose``; ``records``: the gain records as
       read, so that their seed spreads enter too): the ceiling of a pair-level predictor comes before any
       correlation;
    3. ``correlation`` lines at that unit (``xl.core.inference``), overall and per family, each family with its
       number of languages, whether it is ``eligible`` (≥ ``min_languages``) and the smallest correlation its
       pairs can detect (``mde_r``); then, with ``naive``, the row-level numbers that treat every row as
       independent (``unit: naive``; analytic p-values only);
    4. ``family_test`` lines: whether the slope differs between families (permutation of whole languages;
       mixed model with a likelihood-ratio test). ``family_test`` "auto" runs both when two families are
       eligible and otherwise says why not; "permutation", "mixed" or "both" insist (UsageError without two
       eligible families); "none" skips them;
    5. ``ranking`` lines per scope (NDCG, Regret@k relative and absolute, rank of the best source, share of
       top-1 picks that hurt), and ``ranking_ceiling``: how well one seed's gains rank the sources of another
       (``xl.core.ranking.seed_stability``) where the records carry ``gain_by_seed``.
    """
    from xl.core.gains import decompose
    from xl.core.inference import clustered_correlations, family_mixed_model, family_slopes_permutation

    if family_test not in FAMILY_TESTS:
        raise UsageError(f"unknown family test {family_test!r}", hint=f"use {', '.join(FAMILY_TESTS)}")
    table = builtin_table() if table is None else table
    d = _correlation_data(sim, rows, table)
    if center not in CENTERINGS:
        raise UsageError(f"unknown centering {center!r}", hint=f"use {' or '.join(CENTERINGS)}")
    # xc, yc: what the clustered statistics see (see center_within_target); the naive lines keep x and y
    xc, yc = center_within_target(d.x, d.y, d.targets, d.langs) if center == "within-target" else (d.x, d.y)
    overall = clustered_correlations(xc, yc, d.sources, d.targets, d.langs, unit=unit, methods=methods,
                                     n_perm=n_perm, n_boot=n_boot, bootstrap=resample, seed=seed,
                                     min_n=min_n)  # fmt: skip
    resolved: Unit = "pair" if next(iter(overall.values())).unit == "pair" else "row"
    out = [_design_line(d, resolved, center=center, resample=resample, min_n=min_n, min_languages=min_languages)]
    out.append({"kind": "decomposition", **decompose(records if records is not None else d.plain(), table=table)})
    out += _correlation_lines(d, (xc, yc), overall, resolved, methods=methods, n_perm=n_perm, n_boot=n_boot,
                              resample=resample, seed=seed, min_n=min_n, center=center,
                              min_languages=min_languages)  # fmt: skip
    if naive:
        out += _naive_lines(d, methods, min_n)
    out += _family_tests((xc, yc), (d.x, d.y), d.sources, d.targets, d.langs, d.families, d.members, family_test,
                         min_languages, n_perm, seed, family_slopes_permutation, family_mixed_model)  # fmt: skip
    out += _rankings(d.x, d.y, d.rows, d.langs, table, ks, ndcg_k)
    out.append(_ranking_ceiling(records, table, ks, ndcg_k))
    return out


@dataclass(frozen=True)
class _CorrelationData:
    """The gain rows that take part in ``correlate`` (targets with one source left out: ``alone``), with their
    normalised language codes, similarity ``x: (n,) float64``, gain ``y: (n,) float64``, sources, targets,
    language families, and ``members``: the languages of each family (sorted)."""

    rows: list[GainRow]
    langs: list[str]
    x: F64
    y: F64
    sources: list[str]
    targets: list[str]
    families: list[str]
    members: dict[str, list[str]]
    alone: list[str]

    def plain(self) -> list[dict[str, Any]]:
        """The rows as gain records ``{source, target, lang, gain}`` (what ``decompose`` reads)."""
        return [{"source": r.source, "target": r.target, "lang": code, "gain": r.gain}
                for r, code in zip(self.rows, self.langs, strict=True)]  # fmt: skip


def _correlation_data(sim: Similarity, rows: Sequence[GainRow], table: Mapping[str, Language]) -> _CorrelationData:
    """The rows of ``correlate`` with their similarities; InputError when a task is missing from the matrix or
    every target has one source only."""
    langs = normalize_lang_codes([r.lang for r in rows], table)
    x_all = similarity_values(sim, rows, langs, table)  # every row: names the tasks missing from the matrix
    # A target with one source has nothing to compare within it: centred, it would be a point at (0, 0).
    sources_of: dict[str, set[str]] = {}
    for r in rows:
        sources_of.setdefault(r.target, set()).add(r.source)
    alone = sorted(t for t, names in sources_of.items() if len(names) < 2)
    kept = list(rows)
    if alone:
        keep = [i for i, r in enumerate(rows) if r.target not in alone]
        if not keep:
            raise InputError("every target has gains of one source only: nothing to compare within a target",
                             hint="give each target the gains of two or more sources")  # fmt: skip
        kept, langs, x_all = [rows[i] for i in keep], [langs[i] for i in keep], [x_all[i] for i in keep]
    families = [table[code].family for code in langs]
    members: dict[str, list[str]] = {}
    for code, fam in sorted(set(zip(langs, families, strict=True))):
        members.setdefault(fam, []).append(code)
    return _CorrelationData(kept, langs, np.asarray(x_all), np.asarray([r.gain for r in kept]),
                            [r.source for r in kept], [r.target for r in kept], families, members,
                            alone)  # fmt: skip


def _design_line(d: _CorrelationData, resolved: Unit, *, center: str, resample: Bootstrap, min_n: int,
                 min_languages: int) -> dict[str, Any]:  # fmt: skip
    """The ``design`` line of ``correlate``: unit, permutation, resampling and the numbers of the design."""
    from xl.core.inference import WITHIN_TARGET

    pairs = {(r.source, r.target) for r in d.rows}
    return {
        "kind": "design", "unit": resolved, "predictor_level": "pair" if resolved == "pair" else "language",
        "permutation": WITHIN_TARGET, "center": center, "resample": resample, "n_rows": len(d.rows),
        "n_pairs": len(pairs), "n_sources": len(set(d.sources)), "n_targets": len(set(d.targets)),
        "n_languages": len(set(d.langs)), "families": d.members, "min_n": min_n, "min_languages": min_languages,
        "targets_left_out": d.alone,
    }  # fmt: skip


def _correlation_lines(d: _CorrelationData, centered: tuple[F64, F64], overall: Mapping[str, Any],
                       resolved: Unit, *, methods: Sequence[Method], n_perm: int, n_boot: int, resample: Bootstrap,
                       seed: int, min_n: int, center: str, min_languages: int) -> list[dict[str, Any]]:  # fmt: skip
    """The clustered ``correlation`` lines: ``overall`` (its results by method), then each family's (computed
    here on the ``centered`` x and y) with its number of languages, eligibility and ``mde_r``."""
    from xl.core.inference import family_correlations, min_detectable_r

    out: list[dict[str, Any]] = []
    for c in overall.values():
        out.append({"kind": "correlation", "scope": "overall", "family": None, "languages": sorted(set(d.langs)),
                    "n_languages": len(set(d.langs)), **c.to_dict()})  # fmt: skip
    by_family = family_correlations(*centered, d.sources, d.targets, d.langs, d.families, unit=resolved,
                                    methods=methods, n_perm=n_perm, n_boot=n_boot, bootstrap=resample, seed=seed,
                                    min_n=min_n)  # fmt: skip
    for name, results in by_family.items():
        if name is None:  # the overall result, computed above
            continue
        n_pairs = len({(r.source, r.target) for r, f in zip(d.rows, d.families, strict=True) if f == name})
        # centring within targets spends one degree of freedom per target
        n_targets = len({r.target for r, f in zip(d.rows, d.families, strict=True) if f == name})
        effective = n_pairs - (n_targets - 1 if center == "within-target" else 0)
        flag = {"n_languages": len(d.members[name]), "eligible": len(d.members[name]) >= min_languages,
                "mde_r": min_detectable_r(effective)}  # fmt: skip
        for c in results.values():
            out.append({"kind": "correlation", "scope": "family", "family": name, "languages": d.members[name],
                        **flag, **c.to_dict()})  # fmt: skip
    return out


def _naive_lines(d: _CorrelationData, methods: Sequence[Method], min_n: int) -> list[dict[str, Any]]:
    """The row-level ``correlation`` lines (``unit: naive``) on the raw x and y, overall and per family."""
    from xl.core.inference import naive_correlations

    out: list[dict[str, Any]] = []
    scoped: list[tuple[str | None, NDArray[np.bool_]]] = [(None, np.ones(len(d.rows), dtype=bool))]
    scoped += [(name, np.asarray(d.families) == name) for name in d.members]
    for scope_family, mask in scoped:
        idx = np.flatnonzero(mask)
        naive_results = naive_correlations(d.x[idx], d.y[idx], [d.sources[i] for i in idx],
                                           [d.targets[i] for i in idx], [d.langs[i] for i in idx], methods=methods,
                                           n_perm=0, n_boot=0, min_n=min_n)  # fmt: skip
        for c in naive_results.values():
            out.append({"kind": "correlation", "scope": "overall" if scope_family is None else "family",
                        "family": scope_family, "languages": sorted({d.langs[i] for i in idx}),
                        **c.to_dict()})  # fmt: skip
    return out


def _family_tests(centered: tuple[F64, F64], raw: tuple[F64, F64], sources: list[str], targets: list[str],
                  langs: list[str], families: list[str],
                  members: Mapping[str, list[str]], choice: str, min_languages: int, n_perm: int, seed: int,
                  permutation_test: Any, mixed_model: Any) -> list[dict[str, Any]]:  # fmt: skip
    """The family-difference test lines (see ``correlate``), both on the within-target similarity (x of
    ``centered``): the permutation test with y centred too, the mixed model on the ``raw`` gains (its random
    target, pair and (target, language) intercepts take the place of y's centring). In "auto" a test that
    cannot be computed (a family slope undefined, a fit that fails) becomes a line with its ``reason``."""
    if choice == "none":
        return []
    eligible = [fam for fam, codes in members.items() if len(codes) >= min_languages]
    if len(eligible) < 2:
        listed = ", ".join(f"{fam} {len(codes)}" for fam, codes in members.items())
        reason = f"needs two families with ≥ {min_languages} languages; languages per family: {listed}"
        if choice != "auto":
            raise UsageError(f"a family test {reason}",
                             hint="add languages, lower --min-languages, or use --family-test none")  # fmt: skip
        return [
            {"kind": "family_test", "test": "permutation", "reason": reason},
            {"kind": "family_test", "test": "mixed_model", "reason": reason},
        ]
    out: list[dict[str, Any]] = []
    runs: list[tuple[str, Any]] = []
    if choice in ("auto", "both", "permutation"):
        runs.append(
            (
                "permutation",
                lambda: permutation_test(
                    *centered, sources, targets, langs, families, n_perm=n_perm, min_languages=min_languages, seed=seed
                ),
            )
        )
    if choice in ("auto", "both", "mixed"):
        runs.append(("mixed_model", lambda: mixed_model(centered[0], raw[1], sources, targets, langs, families,
                                                        min_languages=min_languages)))  # fmt: skip
    for name, run in runs:
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                result = run()
        except (InputError, UsageError, np.linalg.LinAlgError, ValueError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            if choice != "auto":
                if isinstance(exc, (InputError, UsageError)):
                    raise
                raise InputError(f"the {name} family test failed: {reason}",
                                 hint="use --family-test auto to report it and go on") from None  # fmt: skip
            out.append({"kind": "family_test", "test": name, "reason": reason})
            continue
        out.append({"kind": "family_test", "test": name, "reason": None, **result.to_dict()})
    return out


def _rankings(x: F64, y: F64, rows: Sequence[GainRow], langs: Sequence[str], table: Mapping[str, Language],
              ks: Sequence[int], ndcg_k: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """Ranking lines: for each (target, language), the sources ordered by similarity against their gains."""
    target_rows: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        target_rows.setdefault((row.target, langs[i]), []).append(i)
    # Regret is relative to the best target score (Poth et al. 2021) where the rows give the score without
    # the source (one baseline per target and language), else relative to the best gain.
    ranked = {key: indices for key, indices in target_rows.items() if len(indices) >= 2}
    baselines = {key: {rows[i].baseline for i in indices} for key, indices in ranked.items()}
    on_scores = all(len(b) == 1 and None not in b for b in baselines.values())
    per_target: list[tuple[str, RankingScores]] = []
    for (_target, code), indices in ranked.items():
        baseline = next(iter(baselines[(_target, code)])) if on_scores else None
        ranking = rank_metrics(x[indices], y[indices], ks=ks, ndcg_k=ndcg_k, baseline=baseline)
        per_target.append((table[code].family, ranking))
    scopes: dict[str | None, list[RankingScores]] = {None: [r for _, r in per_target]}
    for fam, ranking in per_target:
        scopes.setdefault(fam, []).append(ranking)
    out: list[dict[str, Any]] = []
    for scope_family, rankings in scopes.items():
        if not rankings:
            continue
        means = aggregate_rankings(rankings)
        metrics = {k: {"mean": v.mean, "n": v.n, "n_undefined": v.n_undefined} for k, v in means.items()}
        scope = "overall" if scope_family is None else "family"
        out.append({"kind": "ranking", "scope": scope, "family": scope_family, "targets": len(rankings),
                    "regret_relative_to": "best score" if on_scores else "best gain", **metrics})  # fmt: skip
    return out


def _ranking_ceiling(records: Sequence[Mapping[str, Any]] | None, table: Mapping[str, Language],
                     ks: Sequence[int], ndcg_k: int | None) -> dict[str, Any]:  # fmt: skip
    """The seed-stability ceiling of source ranking from the records' ``gain_by_seed`` (two seeds: the first
    two in sorted order), or a line saying why there is none."""
    from xl.core.ranking import seed_stability

    line: dict[str, Any] = {"kind": "ranking_ceiling", "scope": "overall"}
    by_seed: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    for record in records or []:
        per_seed = record.get("gain_by_seed")
        if not isinstance(per_seed, Mapping):
            continue
        code = _normalized(str(record["lang"]), table)
        for seed_name, value in per_seed.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                key = (str(record["target"]), code)
                by_seed.setdefault(str(seed_name), {}).setdefault(key, {})[str(record["source"])] = float(value)
    if len(by_seed) < 2:
        return {**line, "reason": "needs the gains of two seeds of every run (gain_by_seed from `xl tasksim "
                                  "gains` with 2+ seeds on both sides)"}  # fmt: skip
    first, second = sorted(by_seed)[:2]
    means = seed_stability(by_seed[first], by_seed[second], ks=ks, ndcg_k=ndcg_k, symmetric=True)
    if not means:
        return {**line, "reason": "no (target, language) has two sources measured under both seeds"}
    metrics = {k: {"mean": v.mean, "n": v.n, "n_undefined": v.n_undefined} for k, v in means.items()}
    return {**line, "reason": None, "seeds": [first, second], **metrics}


def render_markdown(lines: Sequence[Mapping[str, Any]]) -> str:
    """Markdown of ``correlate``'s lines: the design, the decomposition, the correlations (unit stated, the
    naive row-level ones labelled), the family tests and the ranking means, each with its n."""
    out = _design_markdown(lines)
    out += _correlation_table(lines)
    tests = [line for line in lines if line["kind"] == "family_test"]
    if tests:
        out += [
            "",
            "| family test | statistic | df | p | slope per family compared | note |",
            "|---|---:|---:|---:|---|---|",
        ]
        out += [_family_test_row(line) for line in tests]
    out += _ranking_table(lines)
    for line in lines:
        if line["kind"] == "ranking_ceiling" and line.get("reason"):
            out += ["", f"Ranking ceiling: {line['reason']}."]
    return "\n".join(out)


def _fmt(v: Any, spec: str = ".3f") -> str:
    """``v`` formatted with ``spec``, or an en dash for None."""
    return "–" if v is None else format(v, spec)


def _design_markdown(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines of the design sentence and the decomposition, in the order of ``lines``."""
    from xl.core.gains import render_decomposition_markdown

    out: list[str] = []
    for line in lines:
        if line["kind"] == "design":
            out += [
                f"Unit of analysis: **{line['unit']}** ({line['n_pairs']} pairs of {line['n_sources']} sources "
                f"× {line['n_targets']} targets, {line['n_rows']} rows, {line['n_languages']} languages); "
                f"permuted: {line['permutation']}; centred: {line.get('center')}; bootstrap: {line['resample']}.",
                "",
            ]
        elif line["kind"] == "decomposition":
            out += [render_decomposition_markdown(line), ""]
    return out


def _correlation_table(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Markdown table of the correlation lines, one row each, with notes (eligibility, naive)."""
    out = ["| scope | unit | method | n | languages | value | p (perm.) | p (analytic) | 95% CI | note |",
           "|---|---|---|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for line in lines:
        if line["kind"] != "correlation":
            continue
        scope = "all" if line["scope"] == "overall" else line["family"]
        ci = "" if line.get("ci_low") is None else f"{line['ci_low']:.3f} – {line['ci_high']:.3f}"
        notes = [line.get("reason") or ""]
        if line["scope"] == "family" and line.get("eligible") is False and line.get("unit") != "naive":
            notes.append(f"not compared: {line['n_languages']} language(s); MDE r = {_fmt(line.get('mde_r'), '.2f')}")
        if line.get("unit") == "naive":
            notes.append("rows treated as independent: p too small")
        out.append(f"| {scope} | {line['unit']} | {line['method']} | {line['n']} | "
                   f"{len(line.get('languages') or [])} | {_fmt(line['value'])} | {_fmt(line.get('p_perm'), '.3g')} | "
                   f"{_fmt(line.get('p_analytic'), '.3g')} | {ci} | {'; '.join(n for n in notes if n)} |")  # fmt: skip
    return out


def _family_test_row(line: Mapping[str, Any]) -> str:
    """One row of the family-test table: the statistic, df, p and the eligible families' slopes (the
    permutation test's with Holm p-values, the mixed model's with Wald intervals), or the reason for none."""
    if line.get("reason"):
        return f"| {line['test']} | – | – | – | – | {line['reason']} |"
    eligible = [f for f in line["families"] if f.get("eligible")]
    if line["test"] == "permutation":  # per-family slope, its Holm-adjusted within-target p-value
        compared = ", ".join(f"{f['family']} {_fmt(f.get('slope'), '+.2f')} (p Holm "
                             f"{_fmt(f.get('slope_p_holm'), '.2g')})" for f in eligible)  # fmt: skip
        return (f"| slope spread, languages permuted | {_fmt(line['statistic'], '.3g')} | – | "
                f"{_fmt(line['p_perm'], '.3g')} | {compared} | {line['n_perm']} permutations |")  # fmt: skip
    # per-family slope with its Wald 95% interval
    compared = ", ".join(f"{f['family']} {_fmt(f.get('slope'), '+.2f')} [{_fmt(f.get('ci_low'), '+.2f')}, "
                         f"{_fmt(f.get('ci_high'), '+.2f')}]" for f in eligible)  # fmt: skip
    note = line["method"]
    if not (line.get("converged_full") and line.get("converged_reduced")):
        note += "; **a fit did not converge: do not read the p-value**"
    if line.get("warnings"):
        note += f"; {len(line['warnings'])} warning(s) from statsmodels (in the JSON)"
    return (f"| mixed model LRT (sim × family) | {_fmt(line['lr_stat'], '.3g')} | {line['df']} | "
            f"{_fmt(line['p_value'], '.3g')} | {compared} | {note} |")  # fmt: skip


def _ranking_table(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Markdown table of the ranking means (and the seed ceiling), with n and undefined counts per metric;
    nothing when no ranking line has numbers."""
    ranking = [line for line in lines if line["kind"] in ("ranking", "ranking_ceiling") and not line.get("reason")]
    if not ranking:
        return []
    metrics = [k for k, v in ranking[0].items() if isinstance(v, dict) and "mean" in v]
    out = ["", "| scope | targets | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for line in ranking:
        scope = "all" if line["scope"] == "overall" else line["family"]
        if line["kind"] == "ranking_ceiling":
            scope = f"ceiling: seed {line['seeds'][0]} ranks seed {line['seeds'][1]}"
        cells = []
        for m in metrics:
            v = line.get(m) or {}
            extra = f" ({v['n_undefined']} undef.)" if v.get("n_undefined") else ""
            cells.append(f"{_fmt(v.get('mean'))} n={v.get('n', 0)}{extra}")
        out.append(f"| {scope} | {line.get('targets', '–')} | " + " | ".join(cells) + " |")
    return out
