"""Built-in language metadata: the 50 languages of XTREME-R, their family and script, and code normalisation.

The table follows XTREME-R (Ruder et al. 2021, "XTREME-R: Towards More Challenging and Nuanced Multilingual
Evaluation", §3.3 and Appendix B, Table 7): 50 languages, given by ISO 639-1 code, from 14 language families
(Afro-Asiatic, Austro-Asiatic, Austronesian, Creole, Dravidian, Indo-European, Japonic, Kartvelian, Kra-Dai,
Niger-Congo, Quechuan, Sino-Tibetan, Turkic, Uralic) and two isolates (Basque and Korean). The 40 languages
inherited from XTREME and their families are also listed in the README of google-research/xtreme
("… Afro-Asiatic, …, Uralic language families as well as of two isolates, Basque and Korean"). XTREME-R files
Haitian Creole under "Creole", not under the Indo-European family of its French lexifier; we keep its choice
so that per-family results line up with the benchmark's.

Scripts are ISO 15924 codes, the same ones FLORES-200 uses as suffixes (``kor_Hang``, ``zho_Hans``), so a
FLORES code can be checked against the table.

Codes are normalised to the ISO 639-1 keys of the table: ISO 639-3 codes as used by Tatoeba/LASER
(``deu``, ``cmn`` → ``zh``, ``zsm`` → ``ms``), ISO 639-2/B codes (``ger``), the pre-1989 ISO 639-1 codes
that Google data still uses (``iw``, ``in``, ``jw``), and FLORES-200/BCP-47 style tags whose first subtag is
one of those (``arb_Arab`` → ``ar``, ``zh-Hans`` → ``zh``). Only the first subtag decides: a script or region
subtag is ignored, because the family does not depend on it. Related but distinct varieties (Egyptian Arabic
``arz``, Wu Chinese ``wuu``, Cantonese ``yue``) are deliberately *not* folded into a table language; add
them through an override file when a study wants them.

The override file is JSON, ``{code: {"name": …, "family": …, "script": …, "isolate": false}}``, merged over
the built-in table: a new code needs name, family and script (``isolate`` defaults to false); an existing code
may set only the fields it changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xl.errors import InputError


@dataclass(frozen=True)
class Language:
    """One language: ``code`` (ISO 639-1, or the key given in an override file), English ``name``,
    ``family`` (as XTREME-R names it; an isolate is its own one-member family), ``script`` (ISO 15924)."""

    code: str
    name: str
    family: str
    script: str
    isolate: bool = False


# (code, name, family, script) for the 50 XTREME-R languages; isolates are marked below.
_XTREME_R: tuple[tuple[str, str, str, str], ...] = (
    ("af", "Afrikaans", "Indo-European", "Latn"),
    ("ar", "Arabic", "Afro-Asiatic", "Arab"),
    ("az", "Azerbaijani", "Turkic", "Latn"),
    ("bg", "Bulgarian", "Indo-European", "Cyrl"),
    ("bn", "Bengali", "Indo-European", "Beng"),
    ("de", "German", "Indo-European", "Latn"),
    ("el", "Greek", "Indo-European", "Grek"),
    ("en", "English", "Indo-European", "Latn"),
    ("es", "Spanish", "Indo-European", "Latn"),
    ("et", "Estonian", "Uralic", "Latn"),
    ("eu", "Basque", "Basque", "Latn"),
    ("fa", "Persian", "Indo-European", "Arab"),
    ("fi", "Finnish", "Uralic", "Latn"),
    ("fr", "French", "Indo-European", "Latn"),
    ("gu", "Gujarati", "Indo-European", "Gujr"),
    ("he", "Hebrew", "Afro-Asiatic", "Hebr"),
    ("hi", "Hindi", "Indo-European", "Deva"),
    ("ht", "Haitian Creole", "Creole", "Latn"),
    ("hu", "Hungarian", "Uralic", "Latn"),
    ("id", "Indonesian", "Austronesian", "Latn"),
    ("it", "Italian", "Indo-European", "Latn"),
    ("ja", "Japanese", "Japonic", "Jpan"),
    ("jv", "Javanese", "Austronesian", "Latn"),
    ("ka", "Georgian", "Kartvelian", "Geor"),
    ("kk", "Kazakh", "Turkic", "Cyrl"),
    ("ko", "Korean", "Korean", "Hang"),
    ("lt", "Lithuanian", "Indo-European", "Latn"),
    ("ml", "Malayalam", "Dravidian", "Mlym"),
    ("mr", "Marathi", "Indo-European", "Deva"),
    ("ms", "Malay", "Austronesian", "Latn"),
    ("my", "Burmese", "Sino-Tibetan", "Mymr"),
    ("nl", "Dutch", "Indo-European", "Latn"),
    ("pa", "Punjabi", "Indo-European", "Guru"),
    ("pl", "Polish", "Indo-European", "Latn"),
    ("pt", "Portuguese", "Indo-European", "Latn"),
    ("qu", "Quechua", "Quechuan", "Latn"),
    ("ro", "Romanian", "Indo-European", "Latn"),
    ("ru", "Russian", "Indo-European", "Cyrl"),
    ("sw", "Swahili", "Niger-Congo", "Latn"),
    ("ta", "Tamil", "Dravidian", "Taml"),
    ("te", "Telugu", "Dravidian", "Telu"),
    ("th", "Thai", "Kra-Dai", "Thai"),
    ("tl", "Tagalog", "Austronesian", "Latn"),
    ("tr", "Turkish", "Turkic", "Latn"),
    ("uk", "Ukrainian", "Indo-European", "Cyrl"),
    ("ur", "Urdu", "Indo-European", "Arab"),
    ("vi", "Vietnamese", "Austro-Asiatic", "Latn"),
    ("wo", "Wolof", "Niger-Congo", "Latn"),
    ("yo", "Yoruba", "Niger-Congo", "Latn"),
    ("zh", "Chinese", "Sino-Tibetan", "Hans"),
)
_ISOLATES = frozenset({"eu", "ko"})

#: The 50 XTREME-R languages (ISO 639-1), in the order of the paper's list.
XTREME_R_CODES: tuple[str, ...] = tuple(row[0] for row in _XTREME_R)

# Other codes for the table languages. ISO 639-3 first (the Tatoeba/LASER and FLORES-200 codes), with the
# individual codes that our data uses for macrolanguages (cmn for Chinese, arb for Arabic, zsm for Malay,
# swh for Swahili, pes for Persian, azj for Azerbaijani, ekk for Estonian, quy/quz for Quechua), then ISO
# 639-2/B codes, then withdrawn ISO 639-1 codes still found in Google data sets.
_ALIASES: dict[str, str] = {
    "afr": "af", "ara": "ar", "arb": "ar", "aze": "az", "azj": "az", "bul": "bg", "ben": "bn",
    "deu": "de", "ell": "el", "eng": "en", "spa": "es", "est": "et", "ekk": "et", "eus": "eu",
    "fas": "fa", "pes": "fa", "fin": "fi", "fra": "fr", "guj": "gu", "heb": "he", "hin": "hi",
    "hat": "ht", "hun": "hu", "ind": "id", "ita": "it", "jpn": "ja", "jav": "jv", "kat": "ka",
    "kaz": "kk", "kor": "ko", "lit": "lt", "mal": "ml", "mar": "mr", "msa": "ms", "zsm": "ms",
    "zlm": "ms", "mya": "my", "nld": "nl", "pan": "pa", "pol": "pl", "por": "pt", "que": "qu",
    "quy": "qu", "quz": "qu", "ron": "ro", "rus": "ru", "swa": "sw", "swh": "sw", "tam": "ta",
    "tel": "te", "tha": "th", "tgl": "tl", "fil": "tl", "tur": "tr", "ukr": "uk", "urd": "ur",
    "vie": "vi", "wol": "wo", "yor": "yo", "zho": "zh", "cmn": "zh",
    # ISO 639-2/B (bibliographic) codes
    "ger": "de", "gre": "el", "baq": "eu", "per": "fa", "fre": "fr", "geo": "ka", "may": "ms",
    "bur": "my", "dut": "nl", "rum": "ro", "chi": "zh",
    # withdrawn ISO 639-1 codes (Hebrew, Indonesian, Javanese)
    "iw": "he", "in": "id", "jw": "jv",
}  # fmt: skip

_CODE_RE = re.compile(r"^[a-z]{2,3}$")
_SPLIT_RE = re.compile(r"[_\-]")
_FIELDS = ("name", "family", "script")
_OVERRIDE_HINT = 'add them to a JSON override file {"code": {"name": …, "family": …, "script": …}} and pass its path'


def builtin_table() -> dict[str, Language]:
    """The built-in table: XTREME-R's 50 languages keyed by ISO 639-1 code (a fresh dict every call)."""
    return {
        code: Language(code, name, family, script, isolate=code in _ISOLATES)
        for code, name, family, script in _XTREME_R
    }


def language_table(override_path: Path | None = None) -> dict[str, Language]:
    """The built-in table with the entries of ``override_path`` (JSON, see module docstring) merged over it.

    Raises InputError naming the file (and the offending entry) when it cannot be read or has the wrong shape.
    """
    table = builtin_table()
    if override_path is None:
        return table
    source = str(override_path)
    try:
        raw: Any = json.loads(Path(override_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            "language override file not found", source=source, hint="check the path of the override file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read language override file: {exc}", source=source) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"language override file is not valid JSON: {exc.msg}",
            source=source,
            line=exc.lineno,
            hint='the file must hold one object: {"code": {"name": …, "family": …, "script": …}}',
        ) from None
    if not isinstance(raw, dict):
        raise InputError(
            "language override file must hold one JSON object",
            source=source,
            expected="an object keyed by language code",
            found=type(raw).__name__,
        )
    for key, entry in raw.items():
        code = str(key).strip().lower()
        if not _CODE_RE.match(code):
            raise InputError(
                f"bad language code {key!r} in override file",
                source=source,
                expected="a 2- or 3-letter ISO 639 code",
                found=repr(key),
            )
        table[code] = _merge_entry(code, entry, table.get(code), source)
    return table


def _merge_entry(code: str, entry: object, base: Language | None, source: str) -> Language:
    """One override entry merged over ``base`` (None for a new code); InputError on a malformed entry."""
    if not isinstance(entry, dict):
        raise InputError(
            f"override entry {code!r} must be an object",
            source=source,
            expected='{"name": …, "family": …, "script": …}',
            found=type(entry).__name__,
        )
    unknown = sorted(set(entry) - {*_FIELDS, "isolate"})
    if unknown:
        raise InputError(
            f"override entry {code!r} has unknown field(s): {', '.join(unknown)}",
            source=source,
            expected="name, family, script, isolate",
        )
    values: dict[str, str] = {}
    for field in _FIELDS:
        value = entry.get(field)
        if value is None:
            if base is None:
                raise InputError(
                    f"override entry {code!r} for a new language lacks {field!r}",
                    source=source,
                    hint="a language that is not built in needs name, family and script",
                )
            continue
        if not isinstance(value, str) or not value.strip():
            raise InputError(
                f"override entry {code!r}: {field!r} must be a non-empty string",
                source=source,
                found=repr(value),
            )
        values[field] = value.strip()
    isolate = entry.get("isolate")
    if isolate is not None and not isinstance(isolate, bool):
        raise InputError(
            f"override entry {code!r}: 'isolate' must be true or false", source=source, found=repr(isolate)
        )
    if base is None:
        return Language(code, values["name"], values["family"], values["script"], isolate=bool(isolate))
    return Language(
        code,
        values.get("name", base.name),
        values.get("family", base.family),
        values.get("script", base.script),
        isolate=base.isolate if isolate is None else isolate,
    )


def _lookup(code: str, table: Mapping[str, Language]) -> str | None:
    """The table key for ``code``, or None. An exact table key wins over an alias."""
    primary = _SPLIT_RE.split(code.strip(), maxsplit=1)[0].lower()
    if primary in table:
        return primary
    target = _ALIASES.get(primary)
    return target if target is not None and target in table else None


def canonical_lang(code: str, table: Mapping[str, Language] | None = None) -> str:
    """The one spelling of a language code that every command uses (data specs, ``LANG=PATH``, ``--src-lang``,
    result lines): ``pl``, ``pol``, ``pol_Latn`` and ``PL`` are all ``pl``.

    - a known code (ISO 639-1, 639-3, 639-2/B, FLORES-200 ``xxx_Scrp``, BCP-47 with a script or region subtag,
      any case) → its key in ``table`` (default: the built-in table);
    - a pair of two known codes (``en-ar``, ``eng_ara``: a cross-lingual test set) → both, joined by ``-``;
    - anything else (a language outside the table, a data set's variant such as ``en-ext``) → stripped and
      lower-cased, never refused: only statistics by family need the table (:func:`normalize_lang_codes`).
    """
    table = builtin_table() if table is None else table
    text = code.strip()
    parts = _SPLIT_RE.split(text)
    known = [_lookup(part, table) for part in parts]
    if len(parts) == 2 and known[0] is not None:
        # BCP-47 writes a region in capitals after a lower-case language (pt-BR); a code all in one case says nothing
        region_case = len(parts[1]) == 2 and parts[1].isupper() and not parts[0].isupper()
        if known[1] is not None and len(parts[1]) in (2, 3) and not region_case:
            return f"{known[0]}-{known[1]}"  # two languages
        if len(parts[1]) == 4 or (len(parts[1]) == 2 and (known[1] is None or region_case)) or parts[1].isdigit():
            return known[0]  # a script (pol_Latn, zh-Hans) or a region (zh-cn, pt-BR, es-419)
    if len(parts) == 1 and known[0] is not None:
        return known[0]
    return text.lower()


def normalize_lang_codes(codes: Iterable[str], table: Mapping[str, Language] | None = None) -> list[str]:
    """Each of ``codes`` as its key in ``table`` (default: the built-in table), in input order.

    Accepts ISO 639-1/639-3/639-2B codes and FLORES-200/BCP-47 tags (``deu_Latn``, ``zh-Hans``), case-blind.
    Raises one InputError that lists every unknown code (each once, in order of appearance).
    """
    table = builtin_table() if table is None else table
    out: list[str] = []
    unknown: list[str] = []
    for code in codes:
        key = _lookup(code, table)
        if key is None:
            if code not in unknown:
                unknown.append(code)
        else:
            out.append(key)
    if unknown:
        raise InputError(
            f"unknown language code(s): {', '.join(repr(c) for c in unknown)}",
            expected="an ISO 639-1/639-3 or FLORES-200 code of an XTREME-R language or of an override entry",
            hint=_OVERRIDE_HINT,
        )
    return out


def normalize_lang_code(code: str, table: Mapping[str, Language] | None = None) -> str:
    """``code`` as its key in ``table`` (default: built-in), e.g. ``"kor_Hang"`` → ``"ko"``.

    Raises InputError if the code is unknown.
    """
    return normalize_lang_codes([code], table)[0]


def family_of(code: str, table: Mapping[str, Language] | None = None) -> str:
    """The language family of ``code`` (any accepted spelling); an isolate's family is its own name."""
    table = builtin_table() if table is None else table
    return table[normalize_lang_code(code, table)].family


def languages_by_family(table: Mapping[str, Language] | None = None) -> dict[str, list[str]]:
    """Family → sorted codes of its languages, families sorted by name (an isolate is a one-member family)."""
    table = builtin_table() if table is None else table
    groups: dict[str, list[str]] = {}
    for code, lang in table.items():
        groups.setdefault(lang.family, []).append(code)
    return {family: sorted(groups[family]) for family in sorted(groups)}
