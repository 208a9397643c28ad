"""Built-in language table (XTREME-R's 50, then every other Tatoeba and FLORES-200 language with its Glottolog
family), code normalisation (Tatoeba/LASER and FLORES-200 codes) and overrides."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from xl.core import languages_data
from xl.core.languages import (
    _ALIASES,
    FAMILY_SOURCES,
    XTREME_R_CODES,
    builtin_table,
    family_of,
    language_table,
    languages_by_family,
    normalize_lang_code,
    normalize_lang_codes,
)
from xl.errors import InputError

# The ten languages XTREME-R adds to XTREME's forty (Ruder et al. 2021, §3.3).
NEW_IN_XTREME_R = {"az", "gu", "ht", "lt", "pa", "pl", "qu", "ro", "uk", "wo"}
FAMILIES = {
    "Afro-Asiatic", "Austro-Asiatic", "Austronesian", "Creole", "Dravidian", "Indo-European", "Japonic",
    "Kartvelian", "Kra-Dai", "Niger-Congo", "Quechuan", "Sino-Tibetan", "Turkic", "Uralic",
}  # fmt: skip

# Every Tatoeba (LASER) and FLORES-200 code in ../shared/data, committed so that `make test-fast` (no data)
# checks them too; a data test checks that no code on disk is missing here.
TATOEBA_CODES = (
    "afr ang ara arq arz ast awa aze bel ben ber bos bre bul cat cbk ceb ces cha cmn cor csb dan deu dsb dtp ell "
    "fao fin fra fry gla gle gsw hin hrv hun ido ile ina ind ita kor kur kzj lat lfn lvs mal max mhr mkd nds nld "
    "nno nob nov oci orv pam pms por ron rus slv spa sqi srp swe swg tam tat tha tuk tur tzl ukr urd uzb vie war "
    "wuu yid zsm"
).split()
FLORES_CODES = (
    "afr_Latn arb_Arab azj_Latn ben_Beng bul_Cyrl ces_Latn deu_Latn ell_Grek eng_Latn fin_Latn fra_Latn hin_Deva "
    "hun_Latn ind_Latn ita_Latn kor_Hang mal_Mlym nld_Latn por_Latn ron_Latn rus_Cyrl spa_Latn tam_Taml tha_Thai "
    "tur_Latn ukr_Cyrl urd_Arab vie_Latn yor_Latn zho_Hans zul_Latn"
).split()
# Families with three or more languages among those codes (87 languages) and how many each has.
FAMILIES_OF_THREE_OR_MORE = {
    "Indo-European": 50, "Austronesian": 9, "Artificial Language": 6, "Turkic": 5, "Afro-Asiatic": 4, "Uralic": 3,
}  # fmt: skip

# Tatoeba (LASER) codes present in ../shared/data/tatoeba that are XTREME-R languages or Korean.
TATOEBA = {
    "afr": "af", "ara": "ar", "aze": "az", "ben": "bn", "bul": "bg", "cmn": "zh", "deu": "de", "ell": "el",
    "fin": "fi", "fra": "fr", "hin": "hi", "hun": "hu", "ind": "id", "ita": "it", "kor": "ko", "mal": "ml",
    "nld": "nl", "por": "pt", "ron": "ro", "rus": "ru", "spa": "es", "tam": "ta", "tha": "th", "tur": "tr",
    "ukr": "uk", "urd": "ur", "vie": "vi", "zsm": "ms",
}  # fmt: skip
# FLORES-200 codes present in ../shared/data/flores200 that are XTREME-R languages or Korean.
FLORES = {
    "afr_Latn": "af", "arb_Arab": "ar", "azj_Latn": "az", "ben_Beng": "bn", "bul_Cyrl": "bg",
    "deu_Latn": "de", "ell_Grek": "el", "eng_Latn": "en", "fin_Latn": "fi", "fra_Latn": "fr",
    "hin_Deva": "hi", "hun_Latn": "hu", "ind_Latn": "id", "ita_Latn": "it", "kor_Hang": "ko",
    "mal_Mlym": "ml", "nld_Latn": "nl", "por_Latn": "pt", "ron_Latn": "ro", "rus_Cyrl": "ru",
    "spa_Latn": "es", "tam_Taml": "ta", "tha_Thai": "th", "tur_Latn": "tr", "ukr_Cyrl": "uk",
    "urd_Arab": "ur", "vie_Latn": "vi", "yor_Latn": "yo", "zho_Hans": "zh",
}  # fmt: skip


def test_table_has_the_50_xtreme_r_languages_in_14_families_and_2_isolates() -> None:
    full = builtin_table()
    assert len(full) == 50 + len(languages_data.LANGUAGES) and len(set(XTREME_R_CODES)) == 50
    assert list(full)[:50] == list(XTREME_R_CODES)  # the hand-written rows come first, untouched
    table = {code: full[code] for code in XTREME_R_CODES}
    assert NEW_IN_XTREME_R <= set(table)
    isolates = {code for code, lang in full.items() if lang.isolate}
    assert isolates == {"eu", "ko"}
    families = {lang.family for lang in table.values() if not lang.isolate}
    assert families == FAMILIES
    # an isolate is its own one-member family
    by_family = languages_by_family(table)
    assert by_family["Basque"] == ["eu"] and by_family["Korean"] == ["ko"]
    assert len(by_family) == 16
    assert Counter(lang.family for lang in table.values())["Indo-European"] == 22


def test_korean_is_present_and_families_are_right_for_samples() -> None:
    assert builtin_table()["ko"].name == "Korean"
    assert family_of("ko") == "Korean"
    assert family_of("kor_Hang") == "Korean"
    assert family_of("deu") == "Indo-European"
    assert family_of("cmn") == "Sino-Tibetan"
    assert family_of("ht") == "Creole"
    assert family_of("qu") == "Quechuan"
    assert family_of("ja") == "Japonic"
    assert family_of("th") == "Kra-Dai"


def _codes_in(path: Path, pattern: str) -> set[str]:
    return {p.name.split(".")[1].split("-")[0] for p in path.glob(pattern)}


def _flores_codes(root: Path) -> set[str]:
    return {p.name.split(".")[0] for split in ("dev", "devtest") for p in (root / split).glob(f"*.{split}")}


def _lacking(codes: list[str]) -> list[str]:
    """The codes that do not resolve to a built-in language with a family and a script, each with why."""
    table = builtin_table()
    out = []
    for code in codes:
        try:
            language = table[normalize_lang_code(code)]
        except InputError:
            out.append(f"{code}: not in the table")
            continue
        if not language.family.strip() or not language.script.strip():
            out.append(f"{code}: {language}")
    return out


def test_every_committed_tatoeba_and_flores_code_has_a_family_and_a_script() -> None:
    assert len(TATOEBA_CODES) == 84 and len(FLORES_CODES) == 31
    assert _lacking([*TATOEBA_CODES, *FLORES_CODES]) == []
    table = builtin_table()
    for code in FLORES_CODES:  # ISO 15924 script matches the FLORES-200 suffix
        assert table[normalize_lang_code(code)].script == code.split("_")[1], code
    for key in set(normalize_lang_codes([*TATOEBA_CODES, *FLORES_CODES])):
        assert FAMILY_SOURCES[key], key  # every family says where it comes from


def test_at_least_five_families_have_three_languages_in_the_retrieval_data() -> None:
    table = builtin_table()
    keys = set(normalize_lang_codes([*TATOEBA_CODES, *FLORES_CODES]))
    counts = Counter(table[key].family for key in keys)
    print(f"{len(keys)} languages; per family: {dict(counts.most_common())}")
    large = {family: n for family, n in counts.items() if n >= 3}
    assert large == FAMILIES_OF_THREE_OR_MORE
    assert len(large) >= 5


@pytest.mark.parametrize(
    ("codes", "family"),
    [(("zul", "zul_Latn", "swh", "sw", "yor", "wo"), "Niger-Congo"),  # Glottolog's Atlantic-Congo, renamed
     (("tat", "tuk", "uzb", "tur", "aze"), "Turkic"),
     (("ceb", "war", "pam", "cha", "dtp", "kzj", "max", "zsm", "ind"), "Austronesian"),
     (("mhr", "fin", "hun"), "Uralic"),
     (("wuu", "cmn"), "Sino-Tibetan"),
     (("ber", "arq", "arz", "ara"), "Afro-Asiatic"),
     (("ido", "ile", "ina", "lfn", "nov", "tzl"), "Artificial Language"),  # constructed, never Indo-European
     (("ang", "lat", "orv", "ces", "lvs", "nob", "nno", "sqi", "kur", "yid"), "Indo-European"),
     (("cbk", "ht"), "Creole")],  # XTREME-R's choice for Haitian Creole, kept for Chavacano
)  # fmt: skip
def test_families_of_the_new_languages_are_right(codes: tuple[str, ...], family: str) -> None:
    for code in codes:
        assert family_of(code) == family, code


def test_families_read_from_glottolog_through_uriel() -> None:
    from xl.core.languages_build import glottolog_family

    # known truths of Glottolog, read from lang2vec's fam features (before renaming)
    assert glottolog_family("zul") == glottolog_family("swh") == "Atlantic-Congo"
    assert glottolog_family("kab") == glottolog_family("tzm") == "Afro-Asiatic"
    assert glottolog_family("tat") == glottolog_family("uzb") == "Turkic"
    assert glottolog_family("mhr") == "Uralic" and glottolog_family("wuu") == "Sino-Tibetan"
    assert glottolog_family("tha") == "Tai-Kadai" and glottolog_family("vie") == "Austroasiatic"
    assert glottolog_family("ina") == glottolog_family("epo") == "Artificial Language"
    assert glottolog_family("cbk") == "Indo-European"  # URIEL files creoles under their lexifier
    assert glottolog_family("eus") is None and glottolog_family("ido") is None  # no ancestor in URIEL
    assert glottolog_family("xyz") is None  # not in URIEL
    assert FAMILY_SOURCES["zu"] == "URIEL zul: Atlantic-Congo → Niger-Congo"
    assert FAMILY_SOURCES["io"].startswith("Glottolog: Artificial Language")


def test_generated_table_is_what_the_build_gives() -> None:
    from xl.core.languages_build import OUTPUT_PATH, build, render, xtreme_r_disagreements

    rows, aliases = build()
    assert tuple(rows) == languages_data.LANGUAGES and aliases == languages_data.ALIASES
    assert render(rows, aliases) == OUTPUT_PATH.read_text(encoding="utf-8"), "run python -m xl.core.languages_build"
    # renamed by GLOTTOLOG_TO_XTREME_R, Glottolog agrees with XTREME-R but for its documented choices
    assert xtreme_r_disagreements() == {"eu": ("Basque", None), "ht": ("Creole", "Indo-European"),
                                        "qu": ("Quechuan", None)}  # fmt: skip


def test_generated_aliases_take_no_key_or_hand_written_alias() -> None:
    keys = [row[0] for row in languages_data.LANGUAGES]
    assert len(set(keys)) == len(keys) and not set(keys) & {*XTREME_R_CODES, *_ALIASES}
    assert not set(languages_data.ALIASES) & {*XTREME_R_CODES, *keys, *_ALIASES}
    assert set(languages_data.ALIASES.values()) <= set(keys)


def test_importing_the_table_loads_neither_numpy_nor_lang2vec() -> None:
    code = "import sys, xl.core.languages; print(sorted(m for m in ('numpy', 'lang2vec') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("spellings", "key"),
    [(("ces", "ces_Latn", "cs", "CS", "cze", "cs-CZ"), "cs"),
     (("lvs", "lvs_Latn", "lav", "lv", "LV"), "lv"),
     (("nob", "nob_Latn", "nb", "no", "nor"), "nb"),
     (("nno", "nno_Latn", "nn"), "nn"),
     (("zsm", "zsm_Latn", "msa", "ms", "may"), "ms"),
     (("zul", "zul_Latn", "zu", "ZU"), "zu"),
     (("sqi", "als_Latn", "alb", "sq"), "sq"),
     (("srp", "srp_Cyrl", "srp_Latn", "sr"), "sr"),
     (("kur", "kmr_Latn", "ku"), "ku"),
     (("uzb", "uzn_Latn", "uz"), "uz"),
     (("yid", "ydd_Hebr", "yi"), "yi")],
)  # fmt: skip
def test_aliases_of_one_language(spellings: tuple[str, ...], key: str) -> None:
    assert normalize_lang_codes(spellings) == [key] * len(spellings)


def test_related_varieties_stay_their_own_languages() -> None:
    # code → (its own key, the table language it is close to but not folded into)
    kept_apart = {"arz": ("arz", "ar"), "arq": ("arq", "ar"), "wuu": ("wuu", "zh"), "gsw": ("gsw", "de"),
                  "swg": ("swg", "de"), "nds": ("nds", "de"), "max": ("max", "ms"), "orv": ("orv", "ru"),
                  "ang": ("ang", "en"), "kzj": ("kzj", "dtp"), "nno": ("nn", "nb")}  # fmt: skip
    for code, (own, near) in kept_apart.items():
        assert normalize_lang_code(code) == own != near, code
    assert family_of("arz") == family_of("ar") and family_of("wuu") == family_of("zh")
    with pytest.raises(InputError):
        normalize_lang_code("ckb")  # Central Kurdish is not folded into Kurmanji


_SCRIPTS = {"LATIN": "Latn", "CYRILLIC": "Cyrl", "ARABIC": "Arab", "HEBREW": "Hebr", "CJK": "Hani",
            "HANGUL": "Hang", "DEVANAGARI": "Deva", "BENGALI": "Beng", "TAMIL": "Taml", "MALAYALAM": "Mlym",
            "THAI": "Thai", "GREEK": "Grek", "TIFINAGH": "Tfng"}  # fmt: skip


def _line_script(line: str) -> str | None:
    """The ISO 15924 script of most letters of ``line`` (Han as ``Hani``), from the Unicode character names."""
    counts = Counter(
        _SCRIPTS.get(unicodedata.name(ch, "").split(" ")[0]) for ch in line if ch.isalpha()
    )  # fmt: skip
    counts.pop(None, None)
    return counts.most_common(1)[0][0] if counts else None


def test_every_code_on_disk_resolves_to_a_language_with_family_and_script(data_root: Path) -> None:
    tatoeba = _codes_in(data_root / "tatoeba", "tatoeba.*-eng.*") - {"eng"}
    flores = _flores_codes(data_root / "flores200")
    if not tatoeba and not flores:
        pytest.skip(f"no Tatoeba or FLORES-200 data under {data_root}")
    # a code on disk without a family fails here, naming it
    assert _lacking(sorted(tatoeba | flores)) == []
    assert tatoeba <= set(TATOEBA_CODES), "add the new Tatoeba codes to TATOEBA_CODES"
    assert flores <= set(FLORES_CODES), "add the new FLORES-200 codes to FLORES_CODES"


def test_table_scripts_are_those_of_the_tatoeba_text(data_root: Path) -> None:
    root = data_root / "tatoeba"
    if not root.is_dir():
        pytest.skip(f"no Tatoeba data at {root}")
    table = builtin_table()
    wrong = []
    for path in sorted(root.glob("tatoeba.*-eng.*")):
        code = path.name.split(".")[-1]
        if code == "eng":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        script = Counter(_line_script(line) for line in lines).most_common(1)[0][0]
        expected = table[normalize_lang_code(code)].script
        if script != ("Hani" if expected in ("Hans", "Hant") else expected):
            wrong.append(f"{code}: table {expected}, text {script}")
    assert wrong == []


def test_tatoeba_codes_in_the_data_normalise(data_root: Path) -> None:
    root = data_root / "tatoeba"
    if not root.is_dir():
        pytest.skip(f"no Tatoeba data at {root}")
    present = _codes_in(root, "tatoeba.*-eng.*")
    assert set(TATOEBA) <= present, "the expected Tatoeba files are missing"
    assert normalize_lang_codes(sorted(TATOEBA)) == [TATOEBA[c] for c in sorted(TATOEBA)]
    # every other Tatoeba language is a language of its own, not folded into an XTREME-R language
    others = sorted(present - set(TATOEBA) - {"eng"})
    assert others
    assert not set(normalize_lang_codes(others)) & set(XTREME_R_CODES)


def test_flores_codes_in_the_data_normalise_and_scripts_agree(data_root: Path) -> None:
    root = data_root / "flores200"
    present = _flores_codes(root)
    if not present:
        pytest.skip(f"no FLORES-200 data at {root}")
    assert set(FLORES) <= present
    table = builtin_table()
    for code, expected in FLORES.items():
        assert normalize_lang_code(code) == expected
    for code in sorted(present):  # ces_Latn, zul_Latn too: now built in
        assert table[normalize_lang_code(code)].script == code.split("_")[1], code  # ISO 15924 = the suffix
    assert normalize_lang_codes(sorted(present - set(FLORES))) == ["cs", "zu"]


def test_spellings_case_and_legacy_codes() -> None:
    assert normalize_lang_code("DE") == "de"
    assert normalize_lang_code(" zh-Hans ") == "zh"
    assert normalize_lang_code("zho_Hant") == "zh"
    assert normalize_lang_code("ger") == "de"
    assert normalize_lang_code("iw") == "he"
    assert normalize_lang_code("swh") == "sw"


def test_unknown_codes_raise_one_input_error_listing_them_all() -> None:
    with pytest.raises(InputError) as info:
        normalize_lang_codes(["de", "yue", "xx", "apc_Arab", "yue", ""])
    message = info.value.message
    for code in ("'yue'", "'xx'", "'apc_Arab'", "''"):
        assert code in message
    assert message.count("'yue'") == 1
    assert info.value.hint is not None and "override" in info.value.hint


def test_override_file_adds_and_amends_languages(tmp_path: Path) -> None:
    path = tmp_path / "langs.json"
    path.write_text(
        json.dumps(
            {
                "apc": {"name": "Levantine Arabic", "family": "Afro-Asiatic", "script": "Arab"},
                "KO": {"family": "Koreanic", "isolate": False},
                "cbk": {"family": "Indo-European"},
            }
        ),
        encoding="utf-8",
    )
    table = language_table(path)
    assert len(table) == len(builtin_table()) + 1
    assert normalize_lang_code("apc_Arab", table) == "apc"
    assert family_of("apc", table) == "Afro-Asiatic"
    assert family_of("cbk", table) == "Indo-European" and table["cbk"].name == "Chavacano"  # a generated entry
    assert table["ko"].family == "Koreanic" and table["ko"].name == "Korean" and not table["ko"].isolate
    assert family_of("kor", table) == "Koreanic"  # aliases still reach amended entries
    assert language_table(None) == builtin_table()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"x-y": {"name": "A", "family": "B", "script": "Latn"}}',
        '{"abc": {"name": "A", "family": "B"}}',
        '{"abc": {"name": "A", "family": "B", "script": ""}}',
        '{"de": {"familie": "B"}}',
        '{"de": {"isolate": "yes"}}',
        '{"de": "German"}',
    ],
)
def test_bad_override_files_raise_input_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        language_table(path)
    assert info.value.source == str(path)


def test_missing_override_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        language_table(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("code", "canonical"),
    [("pl", "pl"), ("pol", "pl"), ("pol_Latn", "pl"), ("PL", "pl"), (" de ", "de"), ("deu", "de"), ("ger", "de"),
     ("zh-Hans", "zh"), ("zh-cn", "zh"), ("cmn_Hani", "zh"), ("pt-BR", "pt"), ("es-419", "es"),
     ("en-ar", "en-ar"), ("eng_ara", "en-ar"), ("ar-ar", "ar-ar"), ("EN-TR", "en-tr"), ("tr-EN", "tr"),
     ("en-ext", "en-ext"), ("EN-ext", "en-ext"), ("yue", "yue"), ("xx", "xx"), ("ces_Latn", "cs"),
     ("ces-eng", "cs-en"), ("zul_Latn", "zu"), ("sr-Cyrl", "sr"), ("arz_Arab", "arz"), ("nob", "nb")],
)  # fmt: skip
def test_one_spelling_per_language(code: str, canonical: str) -> None:
    from xl.core.languages import canonical_lang

    assert canonical_lang(code) == canonical


def test_every_spelling_of_a_dataset_language_names_its_file() -> None:
    from xl.tasks import resolve

    for spelling in ("de", "deu", "deu_Latn", "DE", "ger"):
        assert resolve("xquad", "test", spelling)[2] == "de"
    assert resolve("sts2017", "test", "eng_ara")[2] == "en-ar"
    assert resolve("amcd", "test", "EN-ext")[2] == "en-ext"  # the dataset's own alias first


def _study_languages() -> set[str]:
    """Every language the families study's recipe evaluates in: its ``*_LANGS`` lists and the languages of its
    ``EVAL_*`` data specs (``DATASET:SPLIT:$(call comma_list,LANG LANG)``), read from the Makefile."""
    import re

    text = (Path(__file__).parents[2] / "examples" / "tasksim-families" / "Makefile").read_text(encoding="utf-8")
    text = text.replace("\\\n", " ")
    langs: set[str] = set()
    for line in text.splitlines():
        name, sep, value = line.partition(":=")
        if sep and name.strip().endswith("_LANGS"):
            langs.update(value.split())
        elif sep and name.strip().startswith("EVAL_"):
            for listed in re.findall(r"comma_list,([^)$]*)\)", value):
                langs.update(listed.split())
    return {lang.partition("-")[0] for lang in langs}


def test_every_language_of_the_families_study_has_a_family() -> None:
    """A new code in the recipe without a family (or one the table does not know) fails here, not in the study."""
    langs = _study_languages()
    assert {"ang", "arz", "ber", "ko", "ja", "yo", "zu", "nb"} <= langs and len(langs) >= 85
    table = builtin_table()
    lacking = sorted(lang for lang in langs if normalize_lang_code(lang) not in table)
    assert lacking == []
    assert all(table[normalize_lang_code(lang)].family for lang in langs)
