"""Per-language covariates of zero-shot transfer from English: URIEL distances, family, script, subword statistics.

URIEL (Littell et al. 2017, "URIEL and lang2vec: Representing languages as typological, geographical, and
phylogenetic vectors", EACL) is read offline from the data files of the ``lang2vec`` wheel (1.1.x). Its Python
module is never imported: ``lang2vec.lang2vec`` imports ``pkg_resources`` (gone from current setuptools), and
the wheel lacks the precomputed ``distances.zip`` that its ``distance()`` needs. The npz files are read with
``allow_pickle=False``, the way ``lang2vec.get_features`` reads them: rows ``langs`` (ISO 639-3), columns
``feats``, one source per file.

How each distance to the reference language (English) is computed, and how it relates to the distances that
URIEL publishes (its precomputed ``distances.zip``, described in the paper and lang2vec's README; the values
quoted below are the README's examples):

- ``syntactic``, ``phonological``, ``inventory``: cosine distance ``1 − a·b / (‖a‖ ‖b‖)`` of the binary
  ``syntax_knn`` (103 ``S_*`` features), ``phonology_knn`` (28 ``P_*``) and ``inventory_knn`` (158 ``INV_*``)
  vectors of ``feature_predictions.npz``. URIEL also defines these as cosine distances of feature vectors,
  but its published values do not match cosines of the k-NN-imputed vectors the wheel ships (syntactic
  eng–fra 0.4569 published, 0.188 here; frr–dan 0.6629 against 0.128), so they were computed from other
  vectors. The k-NN vectors are complete (no missing values), so every language gets a distance on the same
  103/28/158 features.
- ``genetic``: cosine distance of the ``fam`` vectors of ``family_features.npz``: one 0/1 column per Glottolog
  family or subgroup (3,718), 1 where the language belongs to it. For two lineages of m and n nodes that share
  k, this is ``1 − k / √(m n)`` (one minus the Ochiai coefficient). URIEL derives its published genetic
  distance from the Glottolog tree itself rather than from a cosine: its published frr–dan value, 0.625,
  equals ``1 − k / (max(m, n) + 1)`` (k = 3, m = 7), where our cosine gives 0.537; one pair does not establish
  URIEL's formula, so we do not claim to reproduce it. A language with no Glottolog ancestor in URIEL (an
  isolate such as Basque, or a macrolanguage code such as ``que``) has an all-zero vector and no cosine; it
  shares no node with English, so its genetic distance is set to 1 (0 only from a language to itself).
- ``geographic``: URIEL's own definition, the orthodromic (great-circle) distance divided by the antipodal
  distance, so in [0, 1]. The ``geo`` vector of ``geocoord_features.npz`` holds, for 299 fixed points
  ``GC_<lat>_<lon>``, the language's great-circle distance to each point divided by the antipodal distance
  (checked: every feature of every language agrees with that within 0.004, except for the pseudo-codes
  ``und``, ``mul``, ``mis``, ``zxx``, ``zbl``, whose vectors are all 1 and which are refused as having no
  location). Since ``cos(π g_i) = p_i · u`` for the unit vector u
  of the language's location and p_i of point i, u is recovered by linear least squares over the 299 points
  and normalised; the distance is ``arccos(u_a · u_b) / π``. This reproduces URIEL's published geographic
  distances to their four decimals (frr–dan 0.0028, dan–deu 0.0361; frr–deu 0.0358 against 0.0359) and puts
  English at 53.0° N 0.9° W. The cosine distance of the raw ``geo`` vectors would not: it is nearly zero for
  nearby languages and compresses far ones (eng–fra 0.0007, eng–jpn 0.14, against 0.030 and 0.467 here).

A code is looked up as itself when it is an ISO 639-3 code present in URIEL (``cmn``, ``arb``), else through
its ISO 639-1 code (``letter_codes.json`` of lang2vec; xl's aliases map other spellings to ISO 639-1 first), so
``zh`` reads URIEL's ``zho`` and ``ar`` its ``ara`` (macrolanguage) entries.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xl.core.languages import URIEL_ROW, Language, builtin_table, normalize_lang_codes
from xl.errors import InputError

F64 = NDArray[np.float64]

#: The five URIEL distances, in the order the covariate rows list them.
URIEL_DISTANCES: tuple[str, ...] = ("syntactic", "phonological", "inventory", "genetic", "geographic")
#: Subword statistics (``xl.models.tokenstats``) that serve as covariates; their counts do not.
SUBWORD_COVARIATES: tuple[str, ...] = ("fertility", "tokens_per_char", "overlap_types", "overlap_tokens")
#: Every numeric covariate a row of ``language_covariates`` may carry, in order.
NUMERIC_COVARIATES: tuple[str, ...] = ("same_script_as_english", *URIEL_DISTANCES, *SUBWORD_COVARIATES)

# (file, feature-name prefix) per distance that is a cosine of a feature set; the same files and prefixes as
# lang2vec's FEATURE_SETS_DICT entries syntax_knn, phonology_knn, inventory_knn and fam.
_COSINE_SETS: dict[str, tuple[str, str]] = {
    "syntactic": ("feature_predictions.npz", "S_"),
    "phonological": ("feature_predictions.npz", "P_"),
    "inventory": ("feature_predictions.npz", "INV_"),
    "genetic": ("family_features.npz", "F_"),
}
_GEO_FILE = "geocoord_features.npz"
_MAX_MISFIT = 0.01  # a real location fits every geo feature within 0.004 (module docstring)
_SPLIT_RE = re.compile(r"[_\-]")
_MISSING_HINT = (
    "drop those languages, or name them by an ISO 639-3 code that URIEL has (e.g. cmn, arb; a "
    "code outside the language table is added with --languages FILE.json)"
)


def _data_file(name: str) -> Any:
    """The path of one lang2vec data file; InputError when lang2vec is not installed.

    Found through the installed distribution's file list, not by importing ``lang2vec``: the wheel also
    installs a script ``lang2vec.py`` into the environment's ``bin``, which is ``sys.path[0]`` of every
    console script (``xl`` included) and shadows the package there (and it imports ``pkg_resources``)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution("lang2vec").locate_file(f"lang2vec/data/{name}")))
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise InputError(f"URIEL data not found: the lang2vec package (its data/{name}) is not installed",
                         hint="pip install lang2vec==1.1.2")  # fmt: skip
    return path


@dataclass(frozen=True)
class _FeatureFile:
    """One lang2vec npz held in memory: row index by ISO 639-3 code, feature names, and the values
    ``(languages, features)`` — float32, or for a 0/1 file its bits packed along the features (``packed``)."""

    index: dict[str, int]
    feats: list[str]
    values: NDArray[Any]
    packed: bool


@lru_cache(maxsize=4)
def _feature_file(name: str) -> _FeatureFile:
    """Read once per process: decompressing ``family_features.npz`` (7,970 × 3,718 float32, 118 MB) costs
    about 0.3 s, and its 0/1 values pack into 3.7 MB."""
    with _data_file(name).open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        langs = archive["langs"].tolist()
        feats = archive["feats"].tolist()
        # data is (languages, features, sources) with one source per file (lang2vec squeezes axis 2 too).
        data = archive["data"][:, :, 0]
    binary = bool(np.isin(data, (0.0, 1.0)).all())
    values = np.packbits(data > 0, axis=1) if binary else np.ascontiguousarray(data)
    return _FeatureFile({lang: i for i, lang in enumerate(langs)}, feats, values, binary)


def _read_rows(name: str, codes: Sequence[str], prefix: str = "") -> tuple[F64, list[str]]:
    """Rows ``(len(codes), f)`` float64 of ``name`` for ISO 639-3 ``codes`` (all present), the columns whose
    name starts with ``prefix``, and those column names."""
    table = _feature_file(name)
    rows = table.values[[table.index[code] for code in codes]]
    if table.packed:
        rows = np.unpackbits(rows, axis=1, count=len(table.feats))
    cols = [j for j, feat in enumerate(table.feats) if feat.startswith(prefix)]
    return np.asarray(rows[:, cols], dtype=np.float64), [table.feats[j] for j in cols]


def _uriel_languages() -> set[str]:
    """The ISO 639-3 codes in URIEL: the same 7,970 in every npz of the wheel (each file in its own order)."""
    return set(_feature_file("family_features.npz").index)


@lru_cache(maxsize=1)
def _letter_codes() -> dict[str, str]:
    """lang2vec's ISO 639-1 → ISO 639-3 map."""
    mapping: dict[str, str] = json.loads(_data_file("letter_codes.json").read_text(encoding="utf-8"))
    return mapping


def uriel_codes(codes: Sequence[str]) -> dict[str, str]:
    """The URIEL (ISO 639-3) code of each of ``codes``: ``{code: uriel_code}``, see the module docstring.

    Raises one InputError that lists every code URIEL lacks.
    """
    langs = _uriel_languages()
    letters = _letter_codes()
    found: dict[str, str] = {}
    missing: list[str] = []
    for code in codes:
        primary = _SPLIT_RE.split(code.strip().lower(), maxsplit=1)[0]
        uriel: str | None = primary if len(primary) == 3 and primary in langs else letters.get(primary)
        if uriel is None:
            try:
                uriel = letters.get(normalize_lang_codes([primary])[0])
            except InputError:
                uriel = None
        # the row the language table reads the family from, where the code's own row is empty or absent
        # (nob, nno → nor; lvs → lav; Tatoeba's collective ber → Kabyle): one row per language for every covariate
        uriel = URIEL_ROW.get(uriel or primary, uriel)
        if uriel is None or uriel not in langs:
            if code not in missing:
                missing.append(code)
        else:
            found[code] = uriel
    if missing:
        raise InputError(
            f"language(s) not in URIEL (lang2vec data): {', '.join(repr(c) for c in missing)}",
            expected="an ISO 639-1 code that lang2vec maps, or an ISO 639-3 code in URIEL",
            hint=_MISSING_HINT,
        )
    return found


def cosine_distances(X: F64, y: F64) -> F64:
    """``1 − cos(x_i, y)`` for each row of ``X: (n, f)`` against ``y: (f,)``, float64 ``(n,)`` in [0, 2].

    A zero row (or zero ``y``) has no cosine; it gets NaN, which callers resolve by their own rule.
    """
    norms = np.linalg.norm(X, axis=1) * float(np.linalg.norm(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        d: F64 = np.clip(1.0 - (X @ y) / norms, 0.0, 2.0)
    d[norms == 0] = np.nan
    return d


def _locations(geo: F64, point_names: Sequence[str]) -> tuple[F64, F64]:
    """Unit vectors ``(n, 3)`` of the languages' locations from their ``geo`` rows ``(n, 299)``, and the
    largest misfit ``(n,)`` of each row (about 0.003 for a real location, near 1 for a vector without one).

    ``geo[:, i]`` is the great-circle distance to point i over π, so ``cos(π geo) = P u``: a linear least
    squares problem in u (3 unknowns, 299 equations), normalised afterwards.
    """
    latlon = np.radians([[float(part) for part in name[3:].split("_")] for name in point_names])
    lat, lon = latlon[:, 0], latlon[:, 1]
    P = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    U, *_ = np.linalg.lstsq(P, np.cos(np.pi * geo).T, rcond=None)
    U = U.T
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    located: F64 = np.divide(U, norms, out=np.zeros_like(U), where=norms > 0)
    misfit: F64 = np.abs(np.arccos(np.clip(located @ P.T, -1.0, 1.0)) / math.pi - geo).max(axis=1)
    return located, misfit


def uriel_distances(codes: Sequence[str], reference: str = "en") -> dict[str, dict[str, float]]:
    """Distances of each language of ``codes`` to ``reference``: ``{code: {distance: value}}`` with the keys of
    ``URIEL_DISTANCES`` (module docstring: what each is and how it differs from URIEL's published ones).

    Codes are kept as given (duplicates collapse). Raises InputError listing every code URIEL lacks.
    """
    unique = list(dict.fromkeys([*codes, reference]))
    mapping = uriel_codes(unique)
    uriel = list(dict.fromkeys(mapping.values()))
    position = {code: i for i, code in enumerate(uriel)}
    ref = position[mapping[reference]]
    columns: dict[str, F64] = {}
    for name, (file, prefix) in _COSINE_SETS.items():
        X, _ = _read_rows(file, uriel, prefix)
        d = cosine_distances(X, X[ref])
        # An all-zero membership vector: no Glottolog node is shared, so the languages are unrelated (1).
        d[np.isnan(d)] = 1.0
        d[ref] = 0.0
        columns[name] = d
    geo, names = _read_rows(_GEO_FILE, uriel)
    U, misfit = _locations(geo, names)
    unlocated = [code for code in unique if misfit[position[mapping[code]]] > _MAX_MISFIT]
    if unlocated:
        raise InputError(f"URIEL has no location for: {', '.join(repr(c) for c in unlocated)}", hint=_MISSING_HINT)
    geographic = np.arccos(np.clip(U @ U[ref], -1.0, 1.0)) / math.pi
    geographic[ref] = 0.0  # exactly, not the rounding noise of arccos near 1
    columns["geographic"] = geographic
    out: dict[str, dict[str, float]] = {}
    for code in dict.fromkeys(codes):
        i = position[mapping[code]]
        out[code] = {name: float(columns[name][i]) for name in URIEL_DISTANCES}
    return out


def language_covariates(
    codes: Sequence[str],
    table: Mapping[str, Language] | None = None,
    *,
    subword: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per language (normalised with ``table``, default the built-in one; duplicates collapse):
    ``code``, ``uriel_code``, ``family``, ``script``, ``same_script_as_english`` (the script is English's,
    ``Latn``), the five ``URIEL_DISTANCES`` to English, and, when ``subword`` is given (``{lang: stats}`` from
    ``xl.models.tokenstats.subword_statistics``, keyed by any spelling of the codes), that language's stats.

    Raises InputError for unknown codes, languages URIEL lacks, or languages missing from ``subword``.
    """
    table = builtin_table() if table is None else table
    keys = list(dict.fromkeys(normalize_lang_codes(codes, table)))
    english = table["en"].script if "en" in table else "Latn"
    distances = uriel_distances(keys, "en")
    mapping = uriel_codes(keys)
    stats: dict[str, Mapping[str, Any]] = {}
    if subword is not None:
        for lang, values in subword.items():
            stats[normalize_lang_codes([lang], table)[0]] = values
        absent = [code for code in keys if code not in stats]
        if absent:
            raise InputError(
                f"no subword statistics for: {', '.join(absent)}",
                hint="give texts in every language whose covariates are asked for, or drop those languages",
            )
    rows: list[dict[str, Any]] = []
    for code in keys:
        language = table[code]
        row: dict[str, Any] = {
            "code": code,
            "uriel_code": mapping[code],
            "family": language.family,
            "script": language.script,
            "same_script_as_english": language.script == english,
            **distances[code],
        }
        if subword is not None:
            row.update(stats[code])
        rows.append(row)
    return rows
