"""Does task similarity predict transfer gains beyond what the target language alone explains?

A gain row is one (source task, target task, target language) with its measured ``gain`` and the
``similarity`` of source and target (``xl.core.tasksim``). Languages differ in how much any source helps them
(distance to English, script, tokenizer fit), and a similarity that merely tracks the language would look
predictive without saying anything about tasks. So gains are predicted out of sample from four feature sets,
and the question is whether adding similarity lowers the error:

- ``mean``: the training fold's mean gain (no features);
- ``covariates``: the language covariates of ``xl.core.covariates`` (``NUMERIC_COVARIATES`` present in the
  covariate rows, by default) plus one-hot script and one-hot family;
- ``similarity``: the similarity alone;
- ``similarity+covariates``: both.

**Grouped cross-validation**, leave one group out (the unit of analysis is the group held out, so that a
prediction never uses its own group): ``pair`` (every row of one (source, target) pair: a pair never trained
on), ``language`` (every row of one target language is held out: can gains in an unseen language be
predicted?), ``family`` (every language of one family: a new family), ``source`` (every row of one source
task: a new source). A pair-level similarity takes one value per pair, so under ``language`` and ``family``
every held-out row's pair is in training through its other languages: there the similarity can stand in for
the pair's identity and "help" with no similarity effect at all (random pair effects suffice). Whether
similarity predicts the gain of an *unseen* pair is what ``pair`` and ``source`` measure; the ``language`` and
``family`` rows say whether it helps for new languages of pairs already measured. The fold assignment drives
the training selection and is returned (``kind: "folds"``), and the code checks that no group is on both
sides. Family one-hot columns are left out under leave-one-family-out: the held-out family's column is all
zero in training, so it could carry nothing. Any column that is constant in a training fold (a one-member
family's indicator under leave-one-language-out) is dropped for that fold.

**Models**: ``ridge`` (features standardised on the training fold, unpenalised intercept, closed form
``w = (ZᵀZ + αI)⁻¹ Zᵀ(y − ȳ)``; Hoerl & Kennard 1970) or ``gbm`` (scikit-learn's
``HistGradientBoostingRegressor(random_state=seed)``, default settings; Ke et al. 2017's histogram boosting).

**Reported**, per grouping and feature set: RMSE and MAE over all held-out rows, n (rows) and n_groups. Per
grouping, the differences ``similarity+covariates − covariates`` and ``similarity − mean`` in RMSE and MAE
(negative: similarity helps) with a 95% percentile bootstrap interval that resamples the held-out **groups**
with replacement (a cluster bootstrap: rows of one group share a language, family or source and are not
independent; Field & Welsh 2007, "Bootstrapping clustered data"), both feature sets on the same resamples.
The interval treats the fitted fold models as fixed, so it reflects which groups were evaluated, not the
variability of training (Bates, Hastie & Tibshirani 2023, "Cross-validation: what does it estimate and how
well does it do it?"). With fewer than ``MIN_GROUPS_FOR_CI`` held-out groups no interval is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from xl.core.covariates import NUMERIC_COVARIATES
from xl.core.languages import Language, builtin_table, normalize_lang_codes
from xl.errors import InputError, UsageError

Grouping = Literal["pair", "language", "family", "source"]
GROUPINGS: tuple[Grouping, ...] = get_args(Grouping)
FeatureSet = Literal["mean", "covariates", "similarity", "similarity+covariates"]
FEATURE_SETS: tuple[FeatureSet, ...] = get_args(FeatureSet)
PredictModel = Literal["ridge", "gbm"]
PREDICT_MODELS: tuple[PredictModel, ...] = get_args(PredictModel)
#: (with, without) pairs whose error difference is reported.
COMPARISONS: tuple[tuple[FeatureSet, FeatureSet], ...] = (("similarity+covariates", "covariates"),
                                                          ("similarity", "mean"))  # fmt: skip
MIN_GROUPS = 2
MIN_GROUPS_FOR_CI = 5
CI_LEVEL = 0.95
_PLURAL = {"pair": "pairs", "language": "languages", "family": "families", "source": "sources"}
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class _Data:
    """The validated inputs: per row the gain ``y (n,)``, similarity ``s (n,)``, group labels, and the
    covariate blocks (numeric ``(n, k)``, script and family one-hot) with their column names."""

    y: F64
    s: F64
    groups: dict[str, list[str]]
    numeric: F64
    numeric_names: list[str]
    script: F64
    script_names: list[str]
    family: F64
    family_names: list[str]


def _number(value: Any) -> float | None:
    """``value`` as a finite float (a bool as 0/1), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def _one_hot(labels: Sequence[str], prefix: str) -> tuple[F64, list[str]]:
    categories = sorted(set(labels))
    index = {c: j for j, c in enumerate(categories)}
    M = np.zeros((len(labels), len(categories)))
    M[np.arange(len(labels)), [index[label] for label in labels]] = 1.0
    return M, [f"{prefix}={c}" for c in categories]


def _prepare(
    rows: Sequence[Mapping[str, Any]],
    covariates: Sequence[Mapping[str, Any]],
    table: Mapping[str, Language],
    columns: Sequence[str] | None,
) -> _Data:
    """The validated gain rows joined with their language's covariates (``columns``: the numeric ones;
    default: every one of ``NUMERIC_COVARIATES`` the covariate rows carry). Raises InputError for a bad row."""
    y, s, sources, pairs, raw_langs = _gain_columns(rows)
    langs = normalize_lang_codes(raw_langs, table)
    by_code = _covariates_by_code(covariates, table)
    used = list(dict.fromkeys(langs))
    absent = [code for code in used if code not in by_code]
    if absent:
        raise InputError(f"no covariates for language(s): {', '.join(absent)}",
                         hint="compute covariates for every language of the gain rows, or drop those rows")  # fmt: skip
    names = list(columns) if columns is not None else [c for c in NUMERIC_COVARIATES
                                                       if any(c in by_code[code] for code in used)]  # fmt: skip
    numeric = _numeric_covariates(by_code, used, langs, names)
    families = [str(by_code[code]["family"]) for code in langs]
    script, script_names = _one_hot([str(by_code[code]["script"]) for code in langs], "script")
    family, family_names = _one_hot(families, "family")
    return _Data(
        y=np.asarray(y), s=np.asarray(s),
        groups={"pair": pairs, "language": langs, "family": families, "source": sources},
        numeric=numeric, numeric_names=names, script=script, script_names=script_names,
        family=family, family_names=family_names,
    )  # fmt: skip


def _gain_columns(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[float], list[float], list[str], list[str], list[str]]:
    """(gains, similarities, sources, pair names ``source→target``, languages as written) of the gain rows, in
    order; InputError for no rows, or a row without its fields or with a gain or similarity not a number."""
    if not rows:
        raise InputError("predict needs gain rows; found none")
    y: list[float] = []
    s: list[float] = []
    sources: list[str] = []
    pairs: list[str] = []
    raw_langs: list[str] = []
    for number, row in enumerate(rows, start=1):
        for name in ("source", "target", "lang"):
            if not isinstance(row.get(name), str) or not row.get(name):
                raise InputError(f"row {number}: field {name!r} is missing or not a string",
                                 expected='{"source", "target", "lang", "gain", "similarity"}')  # fmt: skip
        for name, out in (("gain", y), ("similarity", s)):
            value = _number(row.get(name))
            if value is None or isinstance(row.get(name), bool):
                raise InputError(f"row {number}: {name!r} is missing, NaN or not a number", found=repr(row.get(name)),
                                 hint="drop the row, or give every (source, target) pair a similarity")  # fmt: skip
            out.append(value)
        sources.append(str(row["source"]))
        pairs.append(f"{row['source']}→{row['target']}")
        raw_langs.append(str(row["lang"]))
    return y, s, sources, pairs, raw_langs


def _covariates_by_code(covariates: Sequence[Mapping[str, Any]],
                        table: Mapping[str, Language]) -> dict[str, Mapping[str, Any]]:  # fmt: skip
    """The covariate rows by normalised language code (a later row of a code wins); InputError for a row
    without a ``code``, ``family`` or ``script`` string."""
    by_code: dict[str, Mapping[str, Any]] = {}
    for number, cov in enumerate(covariates, start=1):
        code = cov.get("code")
        if not isinstance(code, str):
            raise InputError(f"covariate row {number}: no language 'code'", expected="rows of language_covariates")
        for name in ("family", "script"):
            if not isinstance(cov.get(name), str):
                raise InputError(f"covariate row {number} ({code}): {name!r} is missing or not a string")
        by_code[normalize_lang_codes([code], table)[0]] = cov
    return by_code


def _numeric_covariates(by_code: Mapping[str, Mapping[str, Any]], used: Sequence[str], langs: Sequence[str],
                        names: Sequence[str]) -> F64:  # fmt: skip
    """The ``(n, len(names))`` float64 matrix of covariates ``names`` of each row's language (``langs``;
    ``used``: the distinct ones in order of appearance); InputError for a missing or non-finite value."""
    values: dict[str, list[float]] = {}
    for code in used:
        vector = []
        for name in names:
            value = _number(by_code[code].get(name))
            if value is None:
                raise InputError(f"covariate {name!r} of language {code!r} is missing or not a finite number",
                                 found=repr(by_code[code].get(name)),
                                 hint="give every language the same covariates, or leave that one out")  # fmt: skip
            vector.append(value)
        values[code] = vector
    return np.asarray([values[code] for code in langs], dtype=np.float64).reshape(len(langs), len(names))


def _design(data: _Data, features: FeatureSet, grouping: Grouping) -> tuple[F64, list[str]]:
    """The feature matrix ``(n, p)`` of a feature set and its column names (``p = 0`` for ``mean``)."""
    blocks: list[F64] = []
    names: list[str] = []
    if features in ("similarity", "similarity+covariates"):
        blocks.append(data.s[:, None])
        names.append("similarity")
    if features in ("covariates", "similarity+covariates"):
        blocks += [data.numeric, data.script]
        names += [*data.numeric_names, *data.script_names]
        if grouping != "family":  # under leave-one-family-out the held-out family's indicator is all zero
            blocks.append(data.family)
            names += data.family_names
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(data.y), 0))
    return X, names


def ridge_predict(X_train: F64, y_train: F64, X_test: F64, alpha: float) -> F64:
    """Ridge predictions ``(m,)`` for ``X_test: (m, p)`` from ``X_train: (n, p)``, ``y_train: (n,)`` (float64).

    Columns are standardised with the training mean and standard deviation (constant ones dropped); the
    intercept, the training mean of y, is not penalised. ``alpha = 0`` is least squares (minimum-norm).
    """
    mu = X_train.mean(axis=0)
    sd = X_train.std(axis=0)
    keep = sd > 1e-12
    y_bar = float(y_train.mean())
    if not keep.any():
        return np.full(X_test.shape[0], y_bar)
    Z = (X_train[:, keep] - mu[keep]) / sd[keep]
    Z_test = (X_test[:, keep] - mu[keep]) / sd[keep]
    target = y_train - y_bar
    if alpha > 0:
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ target)
    else:
        w = np.linalg.lstsq(Z, target, rcond=None)[0]
    predictions: F64 = y_bar + Z_test @ w
    return predictions


def _gbm_predict(X_train: F64, y_train: F64, X_test: F64, seed: int) -> F64:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise UsageError(
            "--regressor gbm needs scikit-learn", hint="pip install scikit-learn, or use --regressor ridge"
        ) from None
    # Gain tables are small (hundreds to thousands of rows): OpenMP's start-up costs more than it saves
    # (measured: 0.09 s per fit on one thread, 0.4-2 s on two, for 300 rows × 20 features).
    with threadpool_limits(limits=1, user_api="openmp"):
        model = HistGradientBoostingRegressor(random_state=seed).fit(X_train, y_train)
        predictions: F64 = np.asarray(model.predict(X_test), dtype=np.float64)
    return predictions


def _check_options(folds: Sequence[str], model: str, alpha: float, n_boot: int) -> None:
    if not folds:
        raise UsageError("--folds names no grouping", hint=f"use any of: {', '.join(GROUPINGS)}")
    for grouping in folds:
        if grouping not in GROUPINGS:
            raise UsageError(f"--folds: unknown grouping {grouping!r}",
                             hint=f"use any of: {', '.join(GROUPINGS)}")  # fmt: skip
    if len(set(folds)) != len(folds):
        raise UsageError("--folds: a grouping is given twice", found=", ".join(folds))
    if model not in PREDICT_MODELS:
        raise UsageError(f"--regressor: unknown model {model!r}", hint="use ridge or gbm")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise UsageError(f"alpha must be a finite number ≥ 0; found {alpha!r}", hint="e.g. --alpha 1.0")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise UsageError(f"n_boot must be an integer ≥ 0; found {n_boot!r}", hint="e.g. --bootstrap 2000")


def _interval(values: F64) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(low), float(high)


def grouped_cv(
    rows: Sequence[Mapping[str, Any]],
    covariates: Sequence[Mapping[str, Any]],
    *,
    folds: Sequence[Grouping] = GROUPINGS,
    model: PredictModel = "ridge",
    alpha: float = 1.0,
    n_boot: int = 2000,
    seed: int = 0,
    table: Mapping[str, Language] | None = None,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Leave-one-group-out predictions of the gains of ``rows`` (``{source, target, lang, gain, similarity}``)
    from the feature sets of the module docstring, for each grouping of ``folds``.

    ``covariates``: one row per language (``xl.core.covariates.language_covariates``: ``code``, ``family``,
    ``script`` and numeric covariates); ``columns`` picks the numeric ones (default: every one of
    ``NUMERIC_COVARIATES`` they carry). Language codes are normalised with ``table`` (default: built-in).

    Returns JSON-ready lines, per grouping: one ``kind: "prediction"`` line per feature set (``rmse``, ``mae``,
    ``n``, ``n_groups``, ``columns``), one ``kind: "comparison"`` line per pair of ``COMPARISONS``
    (``rmse`` and ``mae`` each ``{difference, ci_low, ci_high}``), and one ``kind: "folds"`` line
    (``groups``: the held-out group of each fold; ``fold_of_row``: the fold that holds out each input row).
    Raises UsageError for bad options and InputError for bad rows or a grouping with fewer than 2 groups.
    """
    _check_options(folds, model, alpha, n_boot)
    data = _prepare(rows, covariates, builtin_table() if table is None else table, columns)
    out: list[dict[str, Any]] = []
    for g_index, grouping in enumerate(folds):
        out += _grouping_lines(data, grouping, g_index, model=model, alpha=alpha, n_boot=n_boot, seed=seed)
    return out


def _folds(data: _Data, grouping: Grouping) -> tuple[list[str], I64]:
    """The sorted group names of ``grouping`` and ``fold_of_row: (n,) int64``, the index of each row's group;
    InputError for fewer than ``MIN_GROUPS`` groups."""
    labels = data.groups[grouping]
    names = sorted(set(labels))
    if len(names) < MIN_GROUPS:
        raise InputError(
            f"predict needs ≥ {MIN_GROUPS} {_PLURAL[grouping]} for leave-one-{grouping}-out; "
            f"found {len(names)} ({', '.join(names)})",
            hint=f"add rows of more {_PLURAL[grouping]}, or leave {grouping!r} out of the groupings",
        )
    fold_of_row: I64 = np.asarray([names.index(label) for label in labels], dtype=np.int64)
    return names, fold_of_row


def _held_out_errors(data: _Data, grouping: Grouping, fold_of_row: I64, n_folds: int, *, model: PredictModel,
                     alpha: float, seed: int) -> tuple[dict[FeatureSet, F64], dict[FeatureSet, list[str]]]:  # fmt: skip
    """Per feature set, the held-out errors ``predicted − gain: (n,) float64`` of leave-one-group-out over the
    ``n_folds`` folds of ``fold_of_row``, and the feature columns used."""
    label_array = np.asarray(data.groups[grouping], dtype=object)
    errors: dict[FeatureSet, F64] = {}
    used_columns: dict[FeatureSet, list[str]] = {}
    for features in FEATURE_SETS:
        X, used_columns[features] = _design(data, features, grouping)
        predicted = np.empty(len(data.y))
        for k in range(n_folds):
            test = fold_of_row == k
            train = ~test
            # The invariant the whole analysis rests on: nothing of a held-out group is trained on.
            if set(label_array[train]) & set(label_array[test]):
                raise RuntimeError(f"internal error: a {grouping} is on both sides of fold {k}")
            if X.shape[1] == 0:
                predicted[test] = data.y[train].mean()
            elif model == "gbm":
                predicted[test] = _gbm_predict(X[train], data.y[train], X[test], seed)
            else:
                predicted[test] = ridge_predict(X[train], data.y[train], X[test], float(alpha))
        errors[features] = predicted - data.y
    return errors, used_columns


def _grouping_lines(data: _Data, grouping: Grouping, g_index: int, *, model: PredictModel, alpha: float,
                    n_boot: int, seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """The lines of one grouping (the ``g_index``-th of ``folds``): a prediction line per feature set, a
    comparison line per pair of ``COMPARISONS``, and the folds line."""
    n = len(data.y)
    names, fold_of_row = _folds(data, grouping)
    errors, used_columns = _held_out_errors(data, grouping, fold_of_row, len(names), model=model, alpha=alpha,
                                            seed=seed)  # fmt: skip
    counts = np.bincount(fold_of_row, minlength=len(names)).astype(np.float64)
    sse = {f: np.bincount(fold_of_row, weights=e**2, minlength=len(names)) for f, e in errors.items()}
    sae = {f: np.bincount(fold_of_row, weights=np.abs(e), minlength=len(names)) for f, e in errors.items()}
    common = {"grouping": grouping, "model": model, "alpha": alpha if model == "ridge" else None, "seed": seed}
    out: list[dict[str, Any]] = []
    for features in FEATURE_SETS:
        out.append({"kind": "prediction", **common, "features": features,
                    "rmse": math.sqrt(sse[features].sum() / n), "mae": float(sae[features].sum() / n),
                    "n": n, "n_groups": len(names), "columns": used_columns[features]})  # fmt: skip
    # One set of group resamples per grouping, shared by every comparison (paired differences).
    draws = np.random.default_rng([seed, g_index]).integers(0, len(names), size=(n_boot, len(names)))
    out += _comparison_lines(common, grouping, sse, sae, counts, draws, n_boot)
    out.append({"kind": "folds", "grouping": grouping, "groups": names, "fold_of_row": fold_of_row.tolist()})
    return out


def _comparison_lines(common: Mapping[str, Any], grouping: Grouping, sse: Mapping[FeatureSet, NDArray[Any]],
                      sae: Mapping[FeatureSet, NDArray[Any]], counts: F64, draws: I64,
                      n_boot: int) -> list[dict[str, Any]]:  # fmt: skip
    """One comparison line per pair of ``COMPARISONS``, from the per-group sums of squared (``sse``) and
    absolute (``sae``) errors ``(G,) float64``, the rows per group ``counts: (G,)`` and the group resamples
    ``draws: (n_boot, G) int64`` (an interval only with ≥ ``MIN_GROUPS_FOR_CI`` groups and ``n_boot > 0``)."""
    n, n_groups = int(counts.sum()), counts.size
    enough = n_groups >= MIN_GROUPS_FOR_CI and n_boot > 0
    boot_n = counts[draws].sum(axis=1) if enough else None
    lines: list[dict[str, Any]] = []
    for with_sim, without in COMPARISONS:
        line: dict[str, Any] = {
            "kind": "comparison", **common, "features": with_sim, "baseline": without, "n": n,
            "n_groups": n_groups, "n_boot": n_boot if enough else 0, "ci_level": CI_LEVEL,
            "ci_method": f"percentile bootstrap over held-out {_PLURAL[grouping]}", "reason": None,
        }  # fmt: skip
        for metric in ("rmse", "mae"):
            a_sum, b_sum = (sse[with_sim], sse[without]) if metric == "rmse" else (sae[with_sim], sae[without])
            line[metric] = _difference(metric, a_sum, b_sum, n, draws, boot_n)
        if not enough:
            line["reason"] = (f"fewer than {MIN_GROUPS_FOR_CI} held-out {_PLURAL[grouping]}: no interval"
                              if n_boot > 0 else "n_boot = 0: no interval")  # fmt: skip
        lines.append(line)
    return lines


def _difference(metric: str, a_sum: NDArray[Any], b_sum: NDArray[Any], n: int, draws: I64,
                boot_n: F64 | None) -> dict[str, float | None]:  # fmt: skip
    """``{difference, ci_low, ci_high}`` of ``metric`` (rmse or mae) between two feature sets from their
    per-group error sums ``a_sum``, ``b_sum: (G,)``; the interval over the resamples ``draws`` of groups
    (``boot_n``: the rows of each resample), None without them."""
    a_all, b_all = a_sum.sum() / n, b_sum.sum() / n
    point = math.sqrt(a_all) - math.sqrt(b_all) if metric == "rmse" else a_all - b_all
    entry: dict[str, float | None] = {"difference": float(point), "ci_low": None, "ci_high": None}
    if boot_n is not None:
        a, b = a_sum[draws].sum(axis=1) / boot_n, b_sum[draws].sum(axis=1) / boot_n
        diffs = np.sqrt(a) - np.sqrt(b) if metric == "rmse" else a - b
        entry["ci_low"], entry["ci_high"] = _interval(diffs)
    return entry


def render_predict_markdown(lines: Sequence[Mapping[str, Any]]) -> str:
    """Two tables of ``grouped_cv``'s lines: the held-out errors per grouping and feature set, and the
    differences "with similarity − without" with their intervals (negative: similarity helps)."""

    def fmt(v: Any, spec: str = ".3f") -> str:
        return "–" if v is None else format(v, spec)

    out = ["| held out | features | n | groups | RMSE | MAE |", "|---|---|---:|---:|---:|---:|"]
    for line in lines:
        if line["kind"] == "prediction":
            out.append(f"| {line['grouping']} | {line['features']} | {line['n']} | {line['n_groups']} | "
                       f"{fmt(line['rmse'])} | {fmt(line['mae'])} |")  # fmt: skip
    out += ["", "| held out | difference | RMSE Δ | 95% CI | MAE Δ | 95% CI | note |",
            "|---|---|---:|---|---:|---|---|"]  # fmt: skip
    for line in lines:
        if line["kind"] != "comparison":
            continue
        cells = []
        for metric in ("rmse", "mae"):
            entry = line[metric]
            ci = "" if entry["ci_low"] is None else f"{entry['ci_low']:+.3f} – {entry['ci_high']:+.3f}"
            cells += [f"{entry['difference']:+.3f}", ci]
        out.append(f"| {line['grouping']} | {line['features']} − {line['baseline']} | " + " | ".join(cells)
                   + f" | {line.get('reason') or ''} |")  # fmt: skip
    return "\n".join(out)
