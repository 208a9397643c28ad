"""Transfer gains from ``xl eval`` result lines, run by run, and how the variance of the gains splits (no torch).

**Gains** (``build_gains``). An intermediate-task study trains a model on a source task, then on a target task,
and evaluates it zero-shot in the target's languages; the target-only model (source tag ``none``) is the
baseline. Every ``xl eval`` line carries the run's tags (``--tag inter=sst2 --tag target=sts --tag seed=0``);
a *run* is one (source, target, seed). For each (source, target, language)::

    score_with    = mean over the seeds of source→target       (n_seeds of them)
    score_without = mean over the seeds of the target-only run (n_seeds_without)
    gain          = score_with − score_without
    gain_se       = sqrt(s_w² / n_w + s_wo² / n_wo)            (s: sample SDs over seeds; both sides ≥ 2 seeds)

``gain_se`` is the standard error of a difference of two independent means (Welch 1947); it measures seed
noise only, not the sampling error of the test set (that is the CI of each ``xl eval`` line). ``gain_by_seed``
(two or more seeds measured on both sides, else None): ``{seed: score_with[seed] − score_without[seed]}``,
what the seed-stability ceiling of a source ranking compares (``xl.core.ranking.seed_stability``). Scores are read
from one metric per target: the task's headline (``DEFAULT_METRICS``) unless ``GainOptions.metrics`` names one.

Which eval sets count (each left-out set is reported in ``GainResult.dropped``): English is left out unless
asked for (the question is zero-shot transfer); so are sets named in ``exclude_sets``, sets whose language is a
pair of two languages (the cross-lingual STS2017 tracks ``en-ar``; ``ar-ar`` counts as ``ar``), and — when one
target has two sets for one language (XQuAD ``de`` and MLQA-de) — every set but the first one listed in the
input. Language codes go through ``xl.core.languages`` (``pol``, ``pol_Latn`` → ``pl``); a code not in the
table is kept as written (its script or region subtag dropped: ``yue_Hant`` → ``yue``).

**Decomposition** (``decompose``) of the variance of the gains, one per (source, target, language). The design
is sources crossed with targets, languages nested in targets (each target has its own languages), one gain per
cell::

    gain[s, t, l] = μ + target[t] + source[s] + pair[s, t] + language[t, l] + residual[s, t, l]

The residual is the source × language-within-target interaction, which one gain per cell cannot tell
from seed noise. Sums of squares are sequential least-squares projections (type I SS; Searle 1987,
"Linear Models for Unbalanced Data", §7): with orthogonal projectors P0 ⊂ P1 ⊂ … ⊂ P4 onto the spans of
the intercept, + target, + source, + pair (= the pair cell means), + (target, language) indicators,
``SS_k = ‖P_k y − P_(k−1) y‖²`` and ``SS_residual = ‖y − P4 y‖²``; they sum to ``SS_total = ‖y − ȳ‖²``
(Pythagoras; to rounding), and ``df_k`` is the rank each step adds. In a balanced design (every source for
every target and every language of it) these are the classical crossed/nested ANOVA sums of squares
(Montgomery, "Design and Analysis of Experiments", ch. 14) and do not depend on the order. Otherwise
(e.g. no source is its own target) the split between target, source and pair depends on the order above
and is approximate; ``balanced`` says which case holds.

Ceilings for a predictor that takes one value per (source, target) pair, such as a task similarity.
The best such predictor is the pair means, so, exactly in any design:

- ``pair_ceiling``: the largest R² (squared Pearson correlation) with the gains over all rows,
  ``‖P_pair y − ȳ‖² / SS_total`` = target + source + pair shares;
- ``pair_within_target_ceiling``: compared within targets (gains and predictor centred per target),
  ``share`` = (source + pair SS) / SS_total and ``share_within`` = (source + pair SS) / (SS_total − SS_target);
- ``pair_within_target_language_ceiling``: compared within each (target, language), as a ranking of
  sources per target language is, ``share_within`` = ‖P4 y − P_tl y‖² / ‖y − P_tl y‖²
  (balanced: (source + pair) / (source + pair + residual)).

A predictor that varies by language too (``xnli@de``) is not bound by these.

``seed_noise`` (None without any noise estimate): the sums of squares that seed noise alone is expected
to put in each component, ``E SS_k = tr((P_k − P_(k−1)) Σ)``, under this model of the noise Σ: a row's
own source→target noise (variance ``seed_sd² / n_seeds``) independent across rows, and the target-only
run's noise (``baseline_seed_sd² / n_seeds_without``) shared by every source of one (target, language) —
it is the same baseline — so it lands in the language component, never in the residual. A source run
with one seed is assumed as noisy as its target-only run (``n_rows_assumed``); with ``gain_se`` alone all
of it counts as the row's own noise; rows with no estimate count with the mean. Seed noise that one run
shares across its languages would land in the pair component: per-row independence makes the residual
figure an upper bound and the pair figure a lower bound. Reported: ``mean_gain_se2`` (mean seed variance
of a gain), ``ss`` and ``share`` (of SS_total), per component ``ss`` and ``share_of_component``
(expected noise SS / observed SS), and ``share_of_residual``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xl.core.languages import Language, builtin_table, normalize_lang_code
from xl.errors import InputError, UsageError

F64 = NDArray[np.float64]

#: The metric a gain is measured in, keyed by the ``task`` field of an eval line. Macro-F1 for classification
#: because accuracy rewards the majority class of skewed sets (AMCD); F1 for QA as XTREME reports it; for
#: bitext retrieval the accuracy of the ``--src`` side's queries (XTREME's Tatoeba accuracy; a dotted name
#: reads a nested field of the ``xl eval retrieval`` line).
DEFAULT_METRICS: Mapping[str, str] = MappingProxyType(
    {"sts": "spearman", "classify": "macro_f1", "qa": "f1", "retrieval": "src2tgt.accuracy"}
)

_MAX_LISTED = 6  # runs or lines named in one message


@dataclass(frozen=True)
class GainOptions:
    """How eval lines are read as runs, and which eval sets count (see the module docstring).

    ``metrics``: target name → metric field (overrides ``DEFAULT_METRICS``). ``exclude_sets``: data names
    (``mlqa-de.dev``) or ``DATA:LANG`` (``sts2017.test:es-es``; the language as written or normalised).
    ``baseline``: the value of the source tag that marks a target-only run.
    """

    source_tag: str = "inter"
    target_tag: str = "target"
    seed_tag: str = "seed"
    baseline: str = "none"
    metrics: Mapping[str, str] = field(default_factory=dict)
    include_english: bool = False
    exclude_sets: Sequence[str] = ()
    languages_only: bool = True
    keep_first_set_per_language: bool = True


@dataclass(frozen=True)
class GainResult:
    """``rows``: one gain dict per (source, target, language), sorted by (target, source, lang).
    ``dropped``: one line per left-out eval set and why. ``notes``: caveats about the rows (seed counts)."""

    rows: list[dict[str, Any]]
    dropped: list[str]
    notes: list[str]


@dataclass(frozen=True)
class _Line:
    number: int
    source: str
    target: str
    seed: str | None
    data: str
    raw_lang: str
    record: Mapping[str, Any]


# --------------------------------------------------------------------------------------------- languages

_PAIR_PART = re.compile(r"^[a-z]{2,3}$")
_SUBTAG = re.compile(r"^([A-Za-z]{2,3})[-_](?:[A-Z][a-z]{3}|[A-Z]{2}|\d{3})$")


def _known(code: str, table: Mapping[str, Language]) -> str | None:
    try:
        return normalize_lang_code(code, table)
    except InputError:
        return None


def _language(raw: str, table: Mapping[str, Language]) -> tuple[str, bool]:
    """(code, is a pair of two different languages) for a language as an eval line writes it.

    ``xx-yy`` in lower case with two known codes is a language pair (STS2017 tracks): ``ar-ar`` is ``ar``,
    ``en-ar`` is the cross-lingual pair ``en-ar`` (each side normalised). An upper-case second part is a
    region: ``en-IN`` is English, not English + Indonesian (``in``).
    """
    text = raw.strip()
    parts = re.split(r"[-_]", text)
    if len(parts) == 2 and all(_PAIR_PART.match(p) for p in parts):
        first, second = _known(parts[0], table), _known(parts[1], table)
        if first is not None and second is not None:
            return (first, False) if first == second else (f"{first}-{second}", True)
    code = _known(text, table)
    if code is not None:
        return code, False
    # Unknown to the table: only a script or region subtag is dropped, so "yue" and "yue_Hant" agree.
    match = _SUBTAG.match(text)
    return (match.group(1).lower() if match else text), False


# --------------------------------------------------------------------------------------------- reading


def _tag(record: Mapping[str, Any], name: str, where: tuple[str, int]) -> str | None:
    """The tag ``name`` of an eval line as a string, None if absent; InputError if it is not a string."""
    value = record.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"tag {name!r} is not a string", source=where[0], line=where[1], found=repr(value),
                         hint=f"tags are strings, e.g. --tag {name}=…")  # fmt: skip
    return str(value)


def _required_tag(record: Mapping[str, Any], name: str, where: tuple[str, int]) -> str:
    value = _tag(record, name, where)
    if value is None:
        present = sorted(k for k, v in record.items() if isinstance(v, str) and len(v) < 40)
        hint = f"tag each run when evaluating (xl eval … --tag {name}=…), or name the tag that holds it"
        if "source" in record:
            hint += "; the field 'source' is xl eval's data spec, not a run tag"
        raise InputError(
            f"eval line lacks the tag {name!r}",
            source=where[0],
            line=where[1],
            found=f"string fields {', '.join(present) or 'none'}",
            hint=hint,
        )
    return value


def _parse_lines(records: Iterable[Mapping[str, Any]], options: GainOptions, source_name: str) -> list[_Line]:
    """Eval lines (summary lines skipped) with their tags; InputError on a missing tag or a duplicate."""
    lines: list[_Line] = []
    seen: dict[tuple[str, str, str | None, str, str], int] = {}
    for number, record in enumerate(records, start=1):
        where = (source_name, number)
        if not isinstance(record, Mapping):
            raise InputError("eval line is not a JSON object", source=source_name, line=number,
                             found=type(record).__name__)  # fmt: skip
        if record.get("summary"):
            continue
        source = _required_tag(record, options.source_tag, where)
        target = _required_tag(record, options.target_tag, where)
        seed = _tag(record, options.seed_tag, where)
        data = record.get("data") or record.get("task")  # retrieval lines have no data name: their task is one
        if not isinstance(data, str):
            raise InputError("eval line has no 'data' (eval set name) or 'task'", source=source_name, line=number,
                             hint="give the line of `xl eval` unchanged")  # fmt: skip
        lang = record.get("lang")
        if not isinstance(lang, str) or not lang.strip():
            raise InputError("eval line has no 'lang'", source=source_name, line=number, found=repr(lang),
                             hint="tag it when evaluating: xl eval … --tag lang=xx")  # fmt: skip
        key = (source, target, seed, data, lang)
        if key in seen:
            raise InputError(
                f"duplicate eval line: the same run {source}→{target} (seed {seed or '–'}) on {data} {lang} "
                f"as line {seen[key]}",
                source=source_name,
                line=number,
                hint=f"keep one line per run and set; tag a rerun with another seed (--tag {options.seed_tag}=…)",
            )
        seen[key] = number
        lines.append(_Line(number, source, target, seed, data, lang, record))
    _check_seed_tags(lines, options, source_name)
    return lines


def _check_seed_tags(lines: Sequence[_Line], options: GainOptions, source_name: str) -> None:
    """Seed tags on all lines or on none: a run without one would silently pass for seed 0 of another."""
    with_seed: dict[str, int] = {}
    without: dict[str, int] = {}
    for line in lines:
        run = f"{line.source}→{line.target}"
        (with_seed if line.seed is not None else without).setdefault(run, line.number)
    if with_seed and without:

        def listed(runs: Mapping[str, int]) -> str:
            shown = [f"{run} (line {n})" for run, n in list(runs.items())[:_MAX_LISTED]]
            return ", ".join(shown) + (" …" if len(runs) > _MAX_LISTED else "")

        raise InputError(
            f"tag {options.seed_tag!r} is on some eval lines but not on others: with it {listed(with_seed)}; "
            f"without it {listed(without)}",
            source=source_name,
            hint=f"tag every run with its seed (--tag {options.seed_tag}=0 for the first), or tag none",
        )


def _metric_value(record: Mapping[str, Any], metric: str) -> tuple[bool, Any]:
    """(found, value) of ``metric``; a dotted name walks nested objects (``src2tgt.accuracy``)."""
    if metric in record:
        return True, record[metric]
    value: Any = record
    for part in metric.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _numeric_fields(record: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The fields that could be a metric: numbers (n excluded), nested ones dotted."""
    names: list[str] = []
    for key, value in record.items():
        if isinstance(value, Mapping):
            names += _numeric_fields(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "n":
            names.append(f"{prefix}{key}")
    return names


# --------------------------------------------------------------------------------------------- gains


def _check_options(options: GainOptions) -> None:
    tags = (options.source_tag, options.target_tag, options.seed_tag)
    if any(not t for t in tags) or len(set(tags)) != 3:
        raise UsageError(f"the source, target and seed tags must be three different names, got {tags}",
                         hint="e.g. inter, target, seed")  # fmt: skip
    for target, metric in options.metrics.items():
        if not target or not metric:
            raise UsageError(
                f"--metric {target}={metric} needs a target and a metric", hint="e.g. --metric sts=pearson"
            )


def _excluded(line: _Line, code: str, exclude: Sequence[str], data_names: set[str]) -> str | None:
    """The exclude entry that names this set, or None."""
    for entry in exclude:
        if entry in data_names:
            if entry == line.data:
                return entry
            continue
        data, _, lang = entry.rpartition(":")
        if data == line.data and lang in (line.raw_lang, code):
            return entry
    return None


def build_gains(
    records: Iterable[Mapping[str, Any]],
    options: GainOptions | None = None,
    *,
    source_name: str = "results",
    table: Mapping[str, Language] | None = None,
) -> GainResult:
    """Gain rows from ``xl eval`` result lines (see the module docstring); records in, dicts out.

    ``records``: the lines in input order (record i is line i of ``source_name`` in error messages); summary
    lines (``"summary": true``) are skipped.
    Each row: ``{source, target, lang, data, metric, score_with, score_without, gain, gain_se, se_reason,
    seed_sd, baseline_seed_sd, n_seeds, n_seeds_without}`` (``seed_sd``/``baseline_seed_sd``: sample SDs over
    the seeds of source→target / of the target-only run, None with one seed); nothing is rounded.
    ``table``: the language table (default: built-in). Without a seed tag on any line each run is one seed, ``"0"``.

    Raises InputError (naming the line or run) for a missing tag, a duplicate line, seed tags on only some
    lines, a missing or undefined metric, a target without a target-only run or without its score for a
    language that a source run has, and when no row results; UsageError for options that match nothing.
    """
    options = GainOptions() if options is None else options
    _check_options(options)
    table = builtin_table() if table is None else table
    lines = _parse_lines(records, options, source_name)
    _check_metric_targets(lines, options)
    kept, dropped = _choose_sets(lines, options, table, source_name)
    scores, metric_of, set_of = _collect_scores(kept, options, source_name)
    rows, notes = _gain_rows(scores, metric_of, set_of, options, lines, source_name)
    if not rows:
        raise _no_rows_error(lines, options, dropped, source_name)
    return GainResult(rows, dropped, notes)


#: scores[(source, target)][seed][code] = value
_Scores = dict[tuple[str, str], dict[str, dict[str, float]]]


def _check_metric_targets(lines: Sequence[_Line], options: GainOptions) -> None:
    """Raise UsageError when ``--metric`` names a target that no line has."""
    targets = {line.target for line in lines}
    unknown = sorted(set(options.metrics) - targets)
    if unknown:
        raise UsageError(f"--metric names target(s) not in the input: {', '.join(unknown)}",
                         hint=f"targets: {', '.join(sorted(targets))}")  # fmt: skip


def _choose_sets(lines: Sequence[_Line], options: GainOptions, table: Mapping[str, Language],
                 source_name: str) -> tuple[list[tuple[_Line, str]], list[str]]:  # fmt: skip
    """The lines that count, each with its normalised language code, and one note per left-out set.

    Which eval set gives each (target, language): the first one listed, the same for every run of the target.
    Raises InputError for a second set of one language (unless ``keep_first_set_per_language``) and
    UsageError for an ``exclude_sets`` entry that matches no set.
    """
    data_names = {line.data for line in lines}
    dropped: list[str] = []

    def drop(note: str) -> None:
        if note not in dropped:
            dropped.append(note)

    kept: list[tuple[_Line, str]] = []
    used: set[str] = set()
    chosen: dict[tuple[str, str], tuple[str, str, int]] = {}
    for line in lines:
        code, cross = _language(line.raw_lang, table)
        what = f"{line.target}: {line.data} {line.raw_lang}"
        entry = _excluded(line, code, options.exclude_sets, data_names)
        if entry is not None:
            used.add(entry)
            drop(f"{what} left out: excluded ({entry})")
        elif cross and options.languages_only:
            drop(f"{what} left out: not one language (a cross-lingual pair)")
        elif code == "en" and not options.include_english:
            drop(f"{what} left out: English (zero-shot transfer is measured in the other languages)")
        else:
            first = chosen.setdefault((line.target, code), (line.data, line.raw_lang, line.number))
            if first[0] == line.data:  # the same set, whatever the spelling of its language ("pl", "pol_Latn")
                kept.append((line, code))
            elif options.keep_first_set_per_language:
                drop(f"{what} left out: {code} is already given by {first[0]} {first[1]} (listed first)")
            else:
                raise InputError(
                    f"target {line.target!r} has two eval sets for language {code}: {first[0]} {first[1]} "
                    f"(line {first[2]}) and {line.data} {line.raw_lang}",
                    source=source_name,
                    line=line.number,
                    hint=f"leave one out with --exclude-set {line.data}:{line.raw_lang}",
                )

    unused = [entry for entry in options.exclude_sets if entry not in used]
    if unused:
        raise UsageError(f"--exclude-set {unused[0]!r} matches no eval set",
                         hint=f"give DATA or DATA:LANG; eval sets: {', '.join(sorted(data_names))}")  # fmt: skip
    return kept, dropped


def _collect_scores(kept: Sequence[tuple[_Line, str]], options: GainOptions, source_name: str,
                    ) -> tuple[_Scores, dict[str, tuple[str, int]], dict[tuple[str, str], str]]:  # fmt: skip
    """(scores[(source, target)][seed][code], target → (metric, first line), (target, code) → data name) of
    the kept lines; the metric is fixed per target.

    Raises InputError for a target scored in two metrics, a missing or undefined score, or a duplicate line.
    """
    metric_of: dict[str, tuple[str, int]] = {}
    scores: _Scores = {}
    set_of: dict[tuple[str, str], str] = {}
    line_of: dict[tuple[str, str, str, str], int] = {}  # (source, target, seed, code) -> its line
    for line, code in kept:
        metric = _line_metric(line, options, source_name)
        first_metric = metric_of.setdefault(line.target, (metric, line.number))
        if first_metric[0] != metric:
            raise InputError(
                f"target {line.target!r} is scored in {first_metric[0]!r} (line {first_metric[1]}) but this "
                f"{line.record.get('task')!r} line in {metric!r}",
                source=source_name,
                line=line.number,
                hint=f"name one metric for the target: --metric {line.target}=NAME",
            )
        value = _score(line, metric, source_name)
        seed = line.seed or "0"
        by_code = scores.setdefault((line.source, line.target), {}).setdefault(seed, {})
        key = (line.source, line.target, seed, code)
        if key in line_of:
            raise InputError(
                f"duplicate eval line: {line.data} {line.raw_lang} is language {code} again for run "
                f"{line.source}→{line.target} (seed {line.seed or '–'}), as line {line_of[key]}",
                source=source_name,
                line=line.number,
                hint="keep one line per run and set; one language written two ways counts once",
            )
        by_code[code] = value
        line_of[key] = line.number
        set_of[(line.target, code)] = line.data
    return scores, metric_of, set_of


def _no_rows_error(lines: Sequence[_Line], options: GainOptions, dropped: Sequence[str],
                   source_name: str) -> InputError:  # fmt: skip
    """The InputError for input that gives no gain row, saying why (no lines, no source runs, all left out)."""
    sources = {line.source for line in lines} - {options.baseline}
    if not lines:
        why = "no eval lines (summary lines are skipped)"
    elif not sources:
        why = f"only target-only runs ({options.source_tag}={options.baseline})"
    else:
        why = f"every set of the source runs was left out ({len(dropped)} sets)"
    return InputError(
        f"no gain rows: {why}",
        source=source_name,
        hint="evaluate source→target runs and the target-only run on the same non-English sets",
    )


def _line_metric(line: _Line, options: GainOptions, source_name: str) -> str:
    metric = options.metrics.get(line.target)
    if metric is not None:
        return metric
    task = line.record.get("task")
    metric = DEFAULT_METRICS.get(task) if isinstance(task, str) else None
    if metric is None:
        raise InputError(
            f"no default metric for task {task!r} (target {line.target!r})",
            source=source_name,
            line=line.number,
            hint=f"name it: --metric {line.target}=NAME (one of {', '.join(_numeric_fields(line.record))})",
        )
    return metric


def _score(line: _Line, metric: str, source_name: str) -> float:
    found, value = _metric_value(line.record, metric)
    if not found:
        raise InputError(
            f"eval line has no metric {metric!r} (target {line.target!r}); it has "
            f"{', '.join(_numeric_fields(line.record)) or 'no numeric fields'}",
            source=source_name,
            line=line.number,
            hint=f"choose one: --metric {line.target}=NAME",
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(
            f"metric {metric!r} is undefined on this line ({line.data} {line.raw_lang})",
            source=source_name,
            line=line.number,
            found=repr(value),
            hint=f"leave the set out (--exclude-set {line.data}:{line.raw_lang}) or choose another --metric",
        )
    return float(value)


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    mean = float(np.mean(values))
    return mean, (float(np.std(values, ddof=1)) if len(values) >= 2 else None)


def _gain_rows(
    scores: Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]],
    metric_of: Mapping[str, tuple[str, int]],
    set_of: Mapping[tuple[str, str], str],
    options: GainOptions,
    lines: Sequence[_Line],
    source_name: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The gain rows (sorted by target, source, lang) and notes on them, from the collected scores.

    Raises InputError for a target without a target-only run, or without its score for a language that a
    source run has.
    """
    baseline = options.baseline
    had_baseline = {line.target for line in lines if line.source == baseline}
    one_seed_everywhere = all(len(seeds) == 1 for seeds in scores.values())
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    missing: dict[str, dict[str, list[str]]] = {}  # target -> language -> sources lacking a baseline score
    single_runs: list[str] = []
    for (source, target), seeds in scores.items():
        if source == baseline:
            continue
        codes = sorted({code for by_code in seeds.values() for code in by_code})
        if target not in had_baseline:
            raise InputError(
                f"target {target!r} has no target-only run ({options.source_tag}={baseline}); its source runs "
                f"cover {', '.join(codes)}",
                source=source_name,
                hint=f"evaluate the model trained on {target} alone with --tag {options.source_tag}={baseline}",
            )
        base = scores.get((baseline, target), {})
        if len(seeds) < 2:
            single_runs.append(f"{source}→{target}")
        for code in codes:
            if not any(code in by_code for by_code in base.values()):
                missing.setdefault(target, {}).setdefault(code, []).append(source)
                continue
            row, note = _gain_row((source, target, code), seeds, base, one_seed_everywhere,
                                  data=set_of[(target, code)], metric=metric_of[target][0])  # fmt: skip
            if note is not None:
                notes.append(note)
            rows.append(row)
    if missing:
        raise _missing_baseline_error(missing, options, source_name)
    rows.sort(key=lambda r: (r["target"], r["source"], r["lang"]))
    _add_seed_notes(notes, rows, scores, options, one_seed_everywhere, single_runs)
    return rows, notes


def _gain_row(cell: tuple[str, str, str], seeds: Mapping[str, Mapping[str, float]],
              base: Mapping[str, Mapping[str, float]], one_seed_everywhere: bool, *, data: str,
              metric: str) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """The gain row of ``cell`` = (source, target, language code) from the scores by seed of its run
    (``seeds``) and of the target-only run (``base``, which scores the language in at least one seed), and a
    note when some seeds of the run lack the language."""
    source, target, code = cell
    with_values = [by_code[code] for by_code in seeds.values() if code in by_code]
    without_values = [by_code[code] for by_code in base.values() if code in by_code]
    note = None
    if len(with_values) < len(seeds):
        note = f"{source}→{target}: {code} is scored by {len(with_values)} of {len(seeds)} seeds"
    score_with, sd_with = _mean_sd(with_values)
    score_without, sd_without = _mean_sd(without_values)
    se: float | None = None
    reasons: list[str] = []
    if one_seed_everywhere:
        reasons.append("no noise estimate: one seed per run")
    else:
        if sd_with is None:
            reasons.append(f"1 seed of {source}→{target}")
        if sd_without is None:
            reasons.append(f"1 seed of the target-only {target} run")
    if sd_with is not None and sd_without is not None:
        se = math.sqrt(sd_with**2 / len(with_values) + sd_without**2 / len(without_values))
    # the gain of each seed measured on both sides (source→target seed k − target-only seed k): what
    # the seed-stability ceiling of a source ranking compares (xl.core.ranking.seed_stability)
    by_seed = {seed: by_code[code] - base[seed][code] for seed, by_code in seeds.items()
               if code in by_code and code in base.get(seed, {})}  # fmt: skip
    row = {
        "source": source, "target": target, "lang": code, "data": data, "metric": metric,
        "score_with": score_with, "score_without": score_without,
        "gain": score_with - score_without, "gain_se": se, "se_reason": "; ".join(reasons) or None,
        "seed_sd": sd_with, "baseline_seed_sd": sd_without,
        "n_seeds": len(with_values), "n_seeds_without": len(without_values),
        "gain_by_seed": by_seed if len(by_seed) >= 2 else None,
    }  # fmt: skip
    return row, note


def _missing_baseline_error(missing: Mapping[str, Mapping[str, Sequence[str]]], options: GainOptions,
                            source_name: str) -> InputError:  # fmt: skip
    """The InputError for target-only runs that lack a language (``missing``: target → language → the
    sources that need it)."""
    parts = []
    for target, langs in missing.items():
        needed = ", ".join(f"{code} (needed by {', '.join(users)})" for code, users in langs.items())
        parts.append(f"target {target!r} lacks {needed}")
    return InputError(
        f"no target-only ({options.source_tag}={options.baseline}) score for a language a source run has: "
        + "; ".join(parts),
        source=source_name,
        hint="evaluate the target-only model on the same sets, or leave them out with --exclude-set DATA:LANG",
    )


def _add_seed_notes(notes: list[str], rows: Sequence[Mapping[str, Any]],
                    scores: Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]], options: GainOptions,
                    one_seed_everywhere: bool, single_runs: Sequence[str]) -> None:  # fmt: skip
    """Add to ``notes`` (in place): targets with only their target-only run (at the end), and how many rows
    lack a gain_se and why (first)."""
    baseline = options.baseline
    with_sources = {target for source, target in scores if source != baseline}
    for target in sorted({target for source, target in scores if source == baseline} - with_sources):
        notes.append(f"target {target!r} has only its target-only run: no gains")
    if rows and one_seed_everywhere:
        notes.insert(0, "one seed per run: no noise estimate (gain_se is None); rerun some runs with another "
                        f"--tag {options.seed_tag}=… to measure seed noise")  # fmt: skip
    elif rows:
        without_se = sum(r["gain_se"] is None for r in rows)
        if without_se:
            shown = ", ".join(single_runs[:_MAX_LISTED]) + (" …" if len(single_runs) > _MAX_LISTED else "")
            notes.insert(0, f"{without_se} of {len(rows)} rows have no gain_se (it needs 2+ seeds on both sides)"
                            + (f"; one seed of {shown}" if single_runs else ""))  # fmt: skip


# --------------------------------------------------------------------------------------------- decomposition

COMPONENTS: tuple[str, ...] = ("target", "source", "pair", "target_language", "residual")
_LABELS = {
    "target": "target",
    "source": "source",
    "pair": "source × target (pair)",
    "target_language": "language within target",
    "residual": "residual (source × language within target)",
}


@dataclass(frozen=True)
class _DesignRow:
    source: str
    target: str
    lang: str
    gain: float
    # Seed variance of the gain, split into the source→target side (its own) and the target-only side
    # (shared by every source of one target language); None where the row says nothing about it.
    var_with: float | None
    var_without: float | None
    assumed: bool  # var_with taken from the target-only run's seeds (the source run has one seed)


def _nonnegative(row: Mapping[str, Any], name: str, where: tuple[str, int], *, integer: bool = False) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} is not a non-negative {'integer' if integer else 'number'}", source=where[0],
                         line=where[1], found=repr(value))  # fmt: skip
    return float(value)


def _seed_variances(row: Mapping[str, Any], where: tuple[str, int]) -> tuple[float | None, float | None, bool]:
    """(var_with, var_without, assumed) of one gain row from gain_se, seed_sd, baseline_seed_sd, n_seeds*."""
    se = _nonnegative(row, "gain_se", where)
    sd_with = _nonnegative(row, "seed_sd", where)
    sd_without = _nonnegative(row, "baseline_seed_sd", where)
    n_with = _nonnegative(row, "n_seeds", where, integer=True) or 1.0
    n_without = _nonnegative(row, "n_seeds_without", where, integer=True) or 2.0
    var_without = None if sd_without is None else sd_without**2 / n_without
    if sd_with is not None:
        return sd_with**2 / n_with, var_without, False
    if se is not None:
        # gain_se² = var_with + var_without; without the split all of it counts as the row's own noise.
        return (se**2 if var_without is None else max(se**2 - var_without, 0.0)), var_without, False
    if sd_without is not None:
        # One seed of the source run: assume it is as noisy as the target-only run (Var = σ²/n_w).
        return sd_without**2 / n_with, var_without, True
    return None, None, False


def _parse_rows(rows: Iterable[Mapping[str, Any]], source_name: str,
                table: Mapping[str, Language]) -> list[_DesignRow]:  # fmt: skip
    """Validated gain rows, each language code normalised as ``build_gains`` writes it (``deu``, ``de`` → one
    (target, language) cell)."""
    out: list[_DesignRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError("gain row is not a JSON object", source=source_name, line=number,
                             found=type(row).__name__)  # fmt: skip
        for name in ("source", "target", "lang"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise InputError(f"gain row lacks {name!r}", source=source_name, line=number,
                                 expected='{"source", "target", "lang", "gain"}')  # fmt: skip
        gain = row.get("gain")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain):
            raise InputError("gain is missing, NaN or not a number", source=source_name, line=number,
                             found=repr(gain), hint="drop the row or rerun that experiment")  # fmt: skip
        key = (row["source"], row["target"], _language(row["lang"], table)[0])
        if key in seen:
            raise InputError(
                f"duplicate gain row for {key[0]}→{key[1]} {key[2]} (first at row {seen[key]})",
                source=source_name,
                line=number,
                hint="keep one row per (source, target, lang)",
            )
        seen[key] = number
        var_with, var_without, assumed = _seed_variances(row, (source_name, number))
        out.append(_DesignRow(key[0], key[1], key[2], float(gain), var_with, var_without, assumed))
    if not out:
        raise InputError("no gain rows to decompose", source=source_name)
    return out


def _codes(labels: Sequence[Any]) -> tuple[NDArray[np.intp], int]:
    """0-based codes of ``labels`` (in order of appearance) and how many distinct ones there are."""
    index: dict[Any, int] = {}
    codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.intp)
    return codes, len(index)


def _indicators(codes: NDArray[np.intp], k: int) -> F64:
    """(n, k) 0/1 matrix of ``codes``."""
    M = np.zeros((codes.size, k))
    M[np.arange(codes.size), codes] = 1.0
    return M


def _orthonormal(block: F64) -> F64:
    """An orthonormal basis of the column space of ``block``."""
    U, s, _ = np.linalg.svd(block, full_matrices=False)
    # Indicator columns have norm ≤ √n: a direction smaller than this is rounding error, not a new effect.
    tol = 1e-9 * max(1.0, math.sqrt(block.shape[0]))
    basis: F64 = U[:, s > tol]
    return basis


@dataclass(frozen=True)
class _Projection:
    """One orthogonal projector P applied to the gains: ``fit`` = P y, its ``rank``, the leverages
    ``diag(P)`` and, per (target, language) cell c, ``reach[c] = 1_cᵀ P 1_c`` (what ``_seed_noise`` needs)."""

    fit: F64
    rank: int
    leverage: F64
    reach: F64


def _project(y: F64, parts: Sequence[tuple[NDArray[np.intp], F64]], cells: NDArray[np.intp],
             n_cells: int) -> _Projection:  # fmt: skip
    """The projector onto the span of block-diagonal ``parts`` (row indices, their block of columns): rows of
    different parts are disjoint, so P is the direct sum of the parts' projectors and each is computed on its
    rows alone. Pair and (target, language) effects are both nested in the target, so every projector of
    ``decompose`` but the one with the (crossed) source effect splits by target: 10,000 rows of 10 targets
    cost ten small decompositions instead of one of a 10,000 × 730 matrix."""
    fit, leverage, reach = np.zeros(y.size), np.zeros(y.size), np.zeros(n_cells)
    rank = 0
    for idx, block in parts:
        Q = _orthonormal(block)
        fit[idx] = Q @ (Q.T @ y[idx])
        leverage[idx] = np.sum(Q**2, axis=1)
        rank += Q.shape[1]
        for column in Q.T:  # ‖Qᵀ 1_c‖² summed over the basis, one bincount per basis vector
            reach += np.bincount(cells[idx], weights=column, minlength=n_cells) ** 2
    return _Projection(fit, rank, leverage, reach)


def decompose(rows: Iterable[Mapping[str, Any]], *, source_name: str = "gains",
              table: Mapping[str, Language] | None = None) -> dict[str, Any]:  # fmt: skip
    """How the variance of transfer gains splits over source, target, pair, language and residual (the
    model, the sums of squares, the ceilings and the seed-noise model: see the module docstring).

    rows: gain rows ``{source, target, lang, gain}`` (optionally ``gain_se``, ``seed_sd``, ``baseline_seed_sd``,
    ``n_seeds``, ``n_seeds_without``), one per (source, target, language), as ``build_gains`` writes them.

    Returns ``{n_rows, n_pairs, n_languages, n_target_language_cells, sources, targets, balanced, total_ss,
    df_total, components: {name: {ss, share, df}}, pair_ceiling, pair_within_target_ceiling,
    pair_within_target_language_ceiling, seed_noise, notes}``; shares are None when all gains are equal.
    """
    parsed = _parse_rows(rows, source_name, builtin_table() if table is None else table)
    n = len(parsed)
    y: F64 = np.array([r.gain for r in parsed])
    codes = _design_codes(parsed)
    projections = _nested_projections(y, codes)
    fits = [P.fit for P in projections]
    ranks = [P.rank for P in projections]
    ss = [float(np.sum((fits[k] - fits[k - 1]) ** 2)) for k in range(1, 5)]
    ss.append(float(np.sum((y - fits[4]) ** 2)))
    dfs = [ranks[k] - ranks[k - 1] for k in range(1, 5)] + [n - ranks[4]]
    total = float(np.sum((y - y.mean()) ** 2))
    # Equal gains: nothing to share out (a tiny total is rounding error in the mean, not variance).
    constant = bool(np.ptp(y) == 0.0)
    components = {name: {"ss": value, "share": _share(value, total, constant), "df": df}
                  for name, value, df in zip(COMPONENTS, ss, dfs, strict=True)}  # fmt: skip
    layout, notes = _design_layout(parsed)
    if dfs[4] == 0:
        notes.append("no residual degrees of freedom: the residual (source × language) cannot be estimated")
    if constant:
        notes.append("all gains are equal: no variance to decompose")
    return {
        **layout,
        "total_ss": total,
        "df_total": n - 1,
        "components": components,
        **_ceilings(y, fits[4], codes, ss, total, constant),
        "seed_noise": _seed_noise(parsed, projections, codes.cells, ss, dfs[4], total),
        "notes": notes,
    }


@dataclass(frozen=True)
class _DesignCodes:
    """Integer codes ``(n,) intp`` of each row's target, source, pair and (target, language) cell (codes
    ``0 … k − 1`` in sorted order of the labels), with the number of levels of each."""

    targets: NDArray[np.intp]
    n_targets: int
    sources: NDArray[np.intp]
    n_sources: int
    pairs: NDArray[np.intp]
    cells: NDArray[np.intp]
    n_cells: int


def _design_codes(parsed: Sequence[_DesignRow]) -> _DesignCodes:
    """The codes of target, source, pair and (target, language) of each parsed gain row."""
    t_codes, n_targets = _codes([r.target for r in parsed])
    s_codes, n_sources = _codes([r.source for r in parsed])
    p_codes, _ = _codes([(r.source, r.target) for r in parsed])
    c_codes, n_cell_codes = _codes([(r.target, r.lang) for r in parsed])
    return _DesignCodes(t_codes, n_targets, s_codes, n_sources, p_codes, c_codes, n_cell_codes)


def _per_target(by_target: Sequence[NDArray[np.intp]],
                *codes: NDArray[np.intp]) -> list[tuple[NDArray[np.intp], F64]]:  # fmt: skip
    """Each target's rows (``by_target``: their indices) with the indicators ``(rows, levels) float64`` of
    the levels of ``codes`` present in them, side by side."""
    parts = []
    for idx in by_target:
        local = [np.unique(c[idx], return_inverse=True) for c in codes]
        parts.append((idx, np.hstack([_indicators(inverse, levels.size) for levels, inverse in local])))
    return parts


def _nested_projections(y: F64, codes: _DesignCodes) -> list[_Projection]:
    """The five nested projections of the gains ``y: (n,) float64``: intercept ⊂ + target ⊂ + source ⊂ + pair
    (the pair means) ⊂ + (target, language); all but the one with the crossed source effect split by target."""
    n = y.size
    by_target = [np.flatnonzero(codes.targets == t) for t in range(codes.n_targets)]
    everything = np.arange(n)
    cells, n_cells = codes.cells, codes.n_cells
    with_source = np.hstack([np.ones((n, 1)), _indicators(codes.targets, codes.n_targets),
                             _indicators(codes.sources, codes.n_sources)])  # fmt: skip
    return [
        _project(y, [(everything, np.ones((n, 1)))], cells, n_cells),
        _project(y, _per_target(by_target, codes.targets), cells, n_cells),
        _project(y, [(everything, with_source)], cells, n_cells),
        _project(y, _per_target(by_target, codes.pairs), cells, n_cells),
        _project(y, _per_target(by_target, codes.pairs, codes.cells), cells, n_cells),
    ]


def _share(value: float, of: float, constant: bool) -> float | None:
    """``value / of``, or None when the gains are all equal (``constant``) or ``of`` is not positive."""
    return None if constant or of <= 0.0 else value / of


def _design_layout(parsed: Sequence[_DesignRow]) -> tuple[dict[str, Any], list[str]]:
    """``{n_rows, n_pairs, n_languages, n_target_language_cells, sources, targets, balanced}`` of the gain rows,
    and a note on whether the design is balanced (what the sequential sums of squares then mean)."""
    n = len(parsed)
    source_set = sorted({r.source for r in parsed})
    target_set = sorted({r.target for r in parsed})
    n_pairs, n_cells = len({(r.source, r.target) for r in parsed}), len({(r.target, r.lang) for r in parsed})
    balanced = n_pairs == len(source_set) * len(target_set) and n == len(source_set) * n_cells
    notes: list[str] = []
    if balanced:
        notes.append("balanced design: the components are the classical ANOVA sums of squares, in any order")
    else:
        notes.append(f"unbalanced design ({n_pairs} of {len(source_set)}×{len(target_set)} pairs, {n} of "
                     f"{len(source_set) * n_cells} cells): sequential sums of squares in the order target, "
                     "source, pair, language; the target/source/pair split depends on that order, the ceilings "
                     "do not")  # fmt: skip
    # a language is counted once however many targets it was scored under; a cell is one (target, language)
    layout = {"n_rows": n, "n_pairs": n_pairs, "n_languages": len({r.lang for r in parsed}),
              "n_target_language_cells": n_cells, "sources": source_set, "targets": target_set,
              "balanced": balanced}  # fmt: skip
    return layout, notes


def _ceilings(y: F64, fit_full: F64, codes: _DesignCodes, ss: Sequence[float], total: float,
              constant: bool) -> dict[str, Any]:  # fmt: skip
    """The ceilings of a pair-level predictor: ``{pair_ceiling, pair_within_target_ceiling,
    pair_within_target_language_ceiling}`` from the gains ``y: (n,) float64``, their full-model fit
    ``fit_full = P4 y`` and the component sums of squares ``ss``."""
    # Within (target, language): the (target, language) cell means, and P4 which contains them.
    c_codes = codes.cells
    fit_tl = (np.bincount(c_codes, weights=y, minlength=codes.n_cells) / np.bincount(c_codes))[c_codes]
    within_tl = float(np.sum((y - fit_tl) ** 2))
    reach_tl = float(np.sum((fit_full - fit_tl) ** 2))
    t_ss, s_ss, p_ss = ss[0], ss[1], ss[2]
    return {
        "pair_ceiling": {"share": _share(t_ss + s_ss + p_ss, total, constant),
                         "components": ["target", "source", "pair"]},
        "pair_within_target_ceiling": {
            "share": _share(s_ss + p_ss, total, constant),
            "share_within": _share(s_ss + p_ss, total - t_ss, constant),
            "components": ["source", "pair"],
        },
        "pair_within_target_language_ceiling": {"share_within": _share(reach_tl, within_tl, constant)},
    }  # fmt: skip


def _seed_noise(
    parsed: Sequence[_DesignRow], projections: Sequence[_Projection], cells: NDArray[np.intp], ss: Sequence[float],
    df_residual: int, total: float,
) -> dict[str, Any] | None:  # fmt: skip
    """Expected noise SS per component, tr((P_k − P_(k−1)) Σ), for the noise model in ``decompose``."""
    own = np.array([math.nan if r.var_with is None else r.var_with for r in parsed])
    shared = np.array([math.nan if r.var_without is None else r.var_without for r in parsed])
    known = ~np.isnan(own)
    if not known.any():
        return None
    own = np.where(known, own, float(own[known].mean()))
    shared_known = ~np.isnan(shared)
    shared = np.where(shared_known, shared, float(shared[shared_known].mean()) if shared_known.any() else 0.0)
    # One shared variance per (target, language): the rows of a cell share its baseline (mean over its rows).
    counts = np.bincount(cells).astype(np.float64)
    cell_var = np.bincount(cells, weights=shared) / counts
    # Diagonal part: Σ_i v_i (h_k,i − h_(k−1),i) with leverages h; shared part: Σ_g b_g 1_gᵀ P_k 1_g.
    leverage = [P.leverage for P in projections] + [np.ones(len(parsed))]
    reach = [P.reach for P in projections] + [counts]
    expected = [
        float(own @ (leverage[k] - leverage[k - 1]) + cell_var @ (reach[k] - reach[k - 1]))
        for k in range(1, len(leverage))
    ]
    expected = [max(value, 0.0) for value in expected]  # rounding can leave −1e-16 where nothing lands
    noise_total = float(sum(expected))
    # A component with no sum of squares (a df-0 step: one target, no pair beyond source) has rounding noise
    # there, whose ratio to the expected noise means nothing: no share.
    empty = 1e-9 * max(float(sum(ss)), np.finfo(np.float64).tiny)
    by_component = {
        name: {"ss": value, "share_of_component": None if observed <= empty else value / observed}
        for name, value, observed in zip(COMPONENTS, expected, ss, strict=True)
    }
    n_assumed = sum(r.assumed for r in parsed)
    return {
        "mean_gain_se2": float(np.mean(own + shared)),
        "n_rows_measured": int(sum(r.var_with is not None and not r.assumed for r in parsed)),
        "n_rows_assumed": int(n_assumed),
        "assumption": "source runs with one seed are taken to be as noisy as their target-only run"
        if n_assumed
        else None,
        "ss": noise_total,
        "share": None if total <= 0 else noise_total / total,
        "components": by_component,
        "share_of_residual": by_component["residual"]["share_of_component"],
        "residual_mean_square": None if df_residual == 0 else ss[4] / df_residual,
    }


def render_decomposition_markdown(result: Mapping[str, Any]) -> str:
    """A table (component | df | share | SS, then the total) and one line per ceiling and for seed noise."""

    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "–" if value is None else format(value, spec)

    lines = ["| component | df | share | SS |", "|---|---:|---:|---:|"]
    for name, c in result["components"].items():
        lines.append(f"| {_LABELS.get(name, name)} | {c['df']} | {fmt(c['share'])} | {fmt(c['ss'], '.4g')} |")
    total_share = None if result["components"]["target"]["share"] is None else 1.0
    lines.append(f"| **total** | {result['df_total']} | {fmt(total_share)} | {fmt(result['total_ss'], '.4g')} |")
    within_t = result["pair_within_target_ceiling"]
    lines += [
        "",
        f"{result['n_rows']} gains: {len(result['sources'])} sources × {len(result['targets'])} targets, "
        f"{result['n_pairs']} pairs, {result['n_languages']} languages in {result['n_target_language_cells']} "
        "(target, language) cells.",
        "",
        f"- a pair-level predictor (one value per source→target) reaches at most R² = "
        f"{fmt(result['pair_ceiling']['share'])} (target + source + pair shares: the pair means)",
        f"- within targets: at most {fmt(within_t['share'])} of the total, {fmt(within_t['share_within'])} of the "
        "variance within targets (source + pair)",
        "- within (target, language), as a ranking of sources is: at most "
        f"{fmt(result['pair_within_target_language_ceiling']['share_within'])} of the variance there",
    ]
    noise = result.get("seed_noise")
    if noise is not None:
        basis = f"{noise['n_rows_measured']} rows measured"
        if noise["n_rows_assumed"]:
            basis += f", {noise['n_rows_assumed']} assumed as noisy as the target-only run"
        parts = ", ".join(f"{_LABELS[name].split(' (')[0]} {fmt(c['share_of_component'])}"
                          for name, c in noise["components"].items())  # fmt: skip
        lines.append(f"- seed noise alone (mean gain_se² {fmt(noise['mean_gain_se2'], '.4g')}; {basis}) is expected "
                     f"to give {fmt(noise['share'])} of the total SS; of each component: {parts}")  # fmt: skip
    lines += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(lines)
