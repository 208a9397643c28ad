"""Builds ``xl/core/languages_data.py``: the languages of the table beyond XTREME-R's 50, each with its family
from Glottolog as URIEL ships it in the lang2vec wheel, so that where a family comes from can be checked again.

Run ``python -m xl.core.languages_build`` (``make languages``) after changing the inputs below or upgrading
lang2vec; ``--check`` writes nothing and exits 1 when the committed module differs from what the inputs and the
installed lang2vec give (``tests/unit/test_languages.py`` makes the same comparison). Nothing is downloaded:
lang2vec's data files are read offline through ``xl.core.covariates`` (never by importing ``lang2vec``).

What is entered by hand, below, with its source:

- ``NEW_LANGUAGES``: every code of the retrieval data (Tatoeba as LASER ships it, FLORES-200) that is not an
  XTREME-R language, as the data writes it (ISO 639-3), with its English name and ISO 15924 script. Names are
  the ISO 639-3 reference names (ISO 639-5 for the collective ``ber``; the retired ``kzj`` as it was named),
  without their parenthetical qualifiers. Scripts are the script of most lines of the Tatoeba text (a data
  test counts them), or the FLORES-200 suffix.
- ``URIEL_ROW`` (in ``xl.core.languages``): codes whose own URIEL row has no Glottolog ancestor, and the row
  whose family they take.
- ``GLOTTOLOG_ONLY``: codes that URIEL has no family for and that Glottolog classifies.
- ``CREOLES``: creoles, filed under XTREME-R's "Creole" as it files Haitian Creole (URIEL files them under
  their lexifier's family).
- ``EXTRA_ALIASES``: other codes of a table language that data sets use (macrolanguage and individual codes).

What is read from lang2vec: the key (the ISO 639-1 code that ``letter_codes.json`` gives the language, else the
ISO 639-3 code), the ISO 639-2/B aliases (the three-letter keys of that file), and the family: the top node of
the language's Glottolog lineage in ``family_features.npz`` (the ``fam`` features, one 0/1 column per
Glottolog family or subgroup), renamed by ``xl.core.languages.GLOTTOLOG_TO_XTREME_R``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from xl.core.covariates import _feature_file, _letter_codes
from xl.core.languages import _ALIASES, _XTREME_R, GLOTTOLOG_TO_XTREME_R, URIEL_ROW

#: (key, English name, family, ISO 15924 script, where the family comes from): one row of the generated table.
Row = tuple[str, str, str, str, str]

OUTPUT_PATH = Path(__file__).with_name("languages_data.py")
_FAMILY_FILE = "family_features.npz"

#: ISO 639-3 code as the data writes it → (English name, ISO 15924 script). Comments say why a choice was made.
NEW_LANGUAGES: dict[str, tuple[str, str]] = {
    "ang": ("Old English", "Latn"),
    "arq": ("Algerian Arabic", "Arab"),
    "arz": ("Egyptian Arabic", "Arab"),
    "ast": ("Asturian", "Latn"),
    "awa": ("Awadhi", "Deva"),
    "bel": ("Belarusian", "Cyrl"),
    "ber": ("Berber languages", "Latn"),  # Tatoeba's Berber is written in Latin letters (ɣ, ḥ, ẓ: Kabyle)
    "bos": ("Bosnian", "Latn"),
    "bre": ("Breton", "Latn"),
    "cat": ("Catalan", "Latn"),
    "cbk": ("Chavacano", "Latn"),
    "ceb": ("Cebuano", "Latn"),
    "ces": ("Czech", "Latn"),
    "cha": ("Chamorro", "Latn"),
    "cor": ("Cornish", "Latn"),
    "csb": ("Kashubian", "Latn"),
    "dan": ("Danish", "Latn"),
    "dsb": ("Lower Sorbian", "Latn"),
    "dtp": ("Kadazan Dusun", "Latn"),
    "fao": ("Faroese", "Latn"),
    "fry": ("Western Frisian", "Latn"),
    "gla": ("Scottish Gaelic", "Latn"),
    "gle": ("Irish", "Latn"),
    "gsw": ("Swiss German", "Latn"),
    "hrv": ("Croatian", "Latn"),
    "ido": ("Ido", "Latn"),
    "ile": ("Interlingue", "Latn"),
    "ina": ("Interlingua", "Latn"),
    "kur": ("Kurdish", "Latn"),  # Tatoeba's Kurdish is Kurmanji in Latin letters (97% of lines)
    "kzj": ("Coastal Kadazan", "Latn"),  # retired from ISO 639-3 in 2016 (merged into dtp); Tatoeba keeps it
    "lat": ("Latin", "Latn"),
    "lfn": ("Lingua Franca Nova", "Latn"),  # 72% of Tatoeba's lines; the rest Cyrillic
    "lvs": ("Latvian", "Latn"),  # ISO 639-3 "Standard Latvian"; named as its key lv, the macrolanguage
    "max": ("North Moluccan Malay", "Latn"),
    "mhr": ("Eastern Mari", "Cyrl"),
    "mkd": ("Macedonian", "Cyrl"),
    "nds": ("Low German", "Latn"),
    "nno": ("Norwegian Nynorsk", "Latn"),
    "nob": ("Norwegian Bokmål", "Latn"),
    "nov": ("Novial", "Latn"),
    "oci": ("Occitan", "Latn"),
    "orv": ("Old Russian", "Cyrl"),
    "pam": ("Pampanga", "Latn"),
    "pms": ("Piemontese", "Latn"),
    "slv": ("Slovenian", "Latn"),
    "sqi": ("Albanian", "Latn"),
    "srp": ("Serbian", "Latn"),  # 70% of Tatoeba's lines; the rest Cyrillic (FLORES-200 writes srp_Cyrl)
    "swe": ("Swedish", "Latn"),
    "swg": ("Swabian", "Latn"),
    "tat": ("Tatar", "Cyrl"),  # 97% of Tatoeba's lines
    "tuk": ("Turkmen", "Latn"),
    "tzl": ("Talossan", "Latn"),
    "uzb": ("Uzbek", "Latn"),  # 70% of Tatoeba's lines; the rest Cyrillic
    "war": ("Waray", "Latn"),
    "wuu": ("Wu Chinese", "Hans"),  # Tatoeba's wuu set: 942 simplified characters against 41 traditional ones
    "yid": ("Yiddish", "Hebr"),
    "zul": ("Zulu", "Latn"),  # FLORES-200 zul_Latn
}

#: Code → family where URIEL has no family and Glottolog has one: Glottolog files Ido, Interlingue (Occidental)
#: and Novial under its pseudo-family "Artificial Language", where URIEL files ina, lfn, tzl and epo.
GLOTTOLOG_ONLY: dict[str, str] = {
    "ido": "Artificial Language",
    "ile": "Artificial Language",
    "nov": "Artificial Language",
}
#: Creoles: XTREME-R's "Creole" (as for Haitian Creole), not their lexifier's family as in URIEL.
CREOLES: frozenset[str] = frozenset({"cbk"})
#: Code that data sets use → the code of ``NEW_LANGUAGES`` it names.
EXTRA_ALIASES: dict[str, str] = {
    "lav": "lvs",  # Latvian (macrolanguage, ISO 639-1 lv)
    # Norwegian (macrolanguage) is Bokmål where data sets write "no" (no.wikipedia.org; Nynorsk is nn); nn stays apart
    "nor": "nob",
    "no": "nob",
    "als": "sqi",  # Tosk Albanian, on which standard Albanian is based: FLORES-200's als_Latn
    "uzn": "uzb",  # Northern Uzbek: FLORES-200's uzn_Latn
    "kmr": "kur",  # Northern Kurdish (Kurmanji), Tatoeba's kur; Central Kurdish (ckb) is not folded in
    "ydd": "yid",  # Eastern Yiddish: FLORES-200's ydd_Hebr
}
#: Code → the code whose ISO 639-1 code is its key (an individual language under its macrolanguage's code).
KEY_VIA: dict[str, str] = {"lvs": "lav"}


def glottolog_family(code: str) -> str | None:
    """The top node of ``code``'s Glottolog lineage in URIEL (``family_features.npz``), as Glottolog names it;
    None when URIEL lacks the code or has no ancestor for it (an all-zero row).

    A lineage is a chain of nested groups, so its top node is the active column with the most members; lang2vec
    lists each lineage from the top down, which decides between a group and a sole child of the same members."""
    table = _feature_file(_FAMILY_FILE)
    if code not in table.index:
        return None
    row = np.unpackbits(table.values[table.index[code]], count=len(table.feats)).astype(bool)
    active = np.flatnonzero(row)
    if active.size == 0:
        return None
    top = int(active[np.argmax(_members()[active])])  # argmax keeps the first of equals
    return table.feats[top].removeprefix("F_")


@lru_cache(maxsize=1)
def _members() -> NDArray[np.int64]:
    """Members per ``fam`` column, over every URIEL language."""
    table = _feature_file(_FAMILY_FILE)
    bits = np.unpackbits(table.values, axis=1, count=len(table.feats))
    counts: NDArray[np.int64] = bits.sum(axis=0, dtype=np.int64)
    return counts


def _family(code: str) -> tuple[str, str]:
    """(family, source) of one code of ``NEW_LANGUAGES``; ValueError when no rule gives one."""
    if code in GLOTTOLOG_ONLY:
        return GLOTTOLOG_ONLY[code], f"Glottolog: {GLOTTOLOG_ONLY[code]} (not in URIEL)"
    row = URIEL_ROW.get(code, code)
    found = glottolog_family(row)
    if found is None:
        raise ValueError(f"URIEL has no family for {row!r}: add {code!r} to URIEL_ROW or GLOTTOLOG_ONLY")
    named = GLOTTOLOG_TO_XTREME_R.get(found, found)
    read = f"URIEL {row}" + (f" (for {code})" if row != code else "") + f": {found}"
    if code in CREOLES:
        return "Creole", f"XTREME-R: Creole ({read})"
    return named, read + (f" → {named}" if named != found else "")


def build() -> tuple[list[Row], dict[str, str]]:
    """The generated rows (sorted by key) and aliases (sorted), from the inputs above and lang2vec's files.

    Raises ValueError when an input contradicts the hand-written XTREME-R table (a code already there, a key or
    alias taken) or when a language gets no family."""
    letters = _letter_codes()
    iso639_1 = {three: two for two, three in letters.items() if len(two) == 2}
    bibliographic = {three: b for b, three in letters.items() if len(b) == 3}
    taken = {row[0] for row in _XTREME_R} | set(_ALIASES)
    keys: dict[str, str] = {}
    rows: list[Row] = []
    for code, (name, script) in NEW_LANGUAGES.items():
        if code in taken:
            raise ValueError(f"{code!r} is already an XTREME-R language or alias")
        key = iso639_1.get(KEY_VIA.get(code, code), code)
        if key in taken or key in keys.values():
            raise ValueError(f"the key {key!r} of {code!r} is taken")
        keys[code] = key
        family, source = _family(code)
        rows.append((key, name, family, script, source))
    aliases: dict[str, str] = {}
    for code, key in keys.items():
        spellings = [code, bibliographic.get(code, code)]
        spellings += [alias for alias, target in EXTRA_ALIASES.items() if target == code]
        for alias in spellings:
            if alias == key:
                continue
            if alias in taken or alias in keys.values() or aliases.get(alias, key) != key:
                raise ValueError(f"the alias {alias!r} of {code!r} is taken")
            aliases[alias] = key
    return sorted(rows), dict(sorted(aliases.items()))


def xtreme_r_disagreements() -> dict[str, tuple[str, str | None]]:
    """XTREME-R languages whose XTREME-R family is not Glottolog's (through URIEL, renamed by
    ``GLOTTOLOG_TO_XTREME_R``): ``{code: (XTREME-R's, Glottolog's or None when URIEL has none)}``. The renaming is
    right when only documented choices remain: Haitian Creole (Creole against Indo-European), and Basque and
    Quechua, whose URIEL rows (``eus``, ``que``) have no family."""
    letters = _letter_codes()
    out: dict[str, tuple[str, str | None]] = {}
    for code, _name, family, _script in _XTREME_R:
        found = glottolog_family(letters.get(code, code))
        named = None if found is None else GLOTTOLOG_TO_XTREME_R.get(found, found)
        if named != family:
            out[code] = (family, named)
    return out


def render(rows: Sequence[Row], aliases: dict[str, str]) -> str:
    """The text of ``languages_data.py`` (as ``ruff format`` leaves it)."""
    lines = [
        '"""The languages of the table beyond XTREME-R\'s 50: every other code of the Tatoeba and FLORES-200 data.',
        "",
        f"Generated by ``python -m xl.core.languages_build`` from lang2vec {version('lang2vec')}'s data files; do not",
        "edit by hand: change the inputs in ``xl/core/languages_build.py`` and run it again (``make languages``).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "#: (key, English name, family, ISO 15924 script, where the family comes from), sorted by key.",
        "LANGUAGES: tuple[tuple[str, str, str, str, str], ...] = (",
    ]
    lines += [f"    ({', '.join(_quoted(field) for field in row)})," for row in rows]
    lines += [
        ")",
        "",
        "#: Other codes of those languages (ISO 639-3, ISO 639-2/B, macrolanguage and individual codes) → key.",
        "ALIASES: dict[str, str] = {",
    ]
    lines += [f"    {_quoted(alias)}: {_quoted(key)}," for alias, key in aliases.items()]
    lines += ["}", ""]
    return "\n".join(lines)


def _quoted(text: str) -> str:
    """``text`` as a Python literal in double quotes, as ``ruff format`` writes it (non-ASCII kept)."""
    return json.dumps(text, ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xl.core.languages_build", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed module is out of date")
    args = parser.parse_args(argv)
    text = render(*build())
    for code, (ours, theirs) in xtreme_r_disagreements().items():
        print(f"XTREME-R {code}: {ours}; Glottolog via URIEL: {theirs or 'none'}", file=sys.stderr)
    if args.check:
        current = OUTPUT_PATH.read_text(encoding="utf-8") if OUTPUT_PATH.is_file() else ""
        if current != text:
            print(f"{OUTPUT_PATH} is out of date: run python -m xl.core.languages_build", file=sys.stderr)
            return 1
        return 0
    OUTPUT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT_PATH}: {text.count(chr(10))} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
