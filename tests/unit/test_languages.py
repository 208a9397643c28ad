"""Built-in XTREME-R language table, code normalisation (Tatoeba/LASER and FLORES-200 codes) and overrides."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from xl.config import data_dir
from xl.core.languages import (
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
    table = builtin_table()
    assert len(table) == 50 == len(set(XTREME_R_CODES))
    assert set(table) == set(XTREME_R_CODES)
    assert NEW_IN_XTREME_R <= set(table)
    isolates = {code for code, lang in table.items() if lang.isolate}
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


@pytest.mark.data
def test_tatoeba_codes_in_the_data_normalise() -> None:
    root = data_dir() / "tatoeba"
    if not root.is_dir():
        pytest.skip(f"no Tatoeba data at {root}")
    present = _codes_in(root, "tatoeba.*-eng.*")
    assert set(TATOEBA) <= present, "the expected Tatoeba files are missing"
    assert normalize_lang_codes(sorted(TATOEBA)) == [TATOEBA[c] for c in sorted(TATOEBA)]
    # every other Tatoeba language is not an XTREME-R language and must be refused, not guessed
    others = sorted(present - set(TATOEBA))
    assert others
    for code in others:
        with pytest.raises(InputError):
            normalize_lang_code(code)


@pytest.mark.data
def test_flores_codes_in_the_data_normalise_and_scripts_agree() -> None:
    root = data_dir() / "flores200" / "dev"
    if not root.is_dir():
        pytest.skip(f"no FLORES-200 data at {root}")
    present = {p.stem for p in root.glob("*.dev")}
    assert set(FLORES) <= present
    table = builtin_table()
    for code, expected in FLORES.items():
        assert normalize_lang_code(code) == expected
        assert table[expected].script == code.split("_")[1], code  # ISO 15924 script matches the suffix
    for code in sorted(present - set(FLORES)):  # ces_Latn, zul_Latn: not XTREME-R languages
        with pytest.raises(InputError):
            normalize_lang_code(code)


def test_spellings_case_and_legacy_codes() -> None:
    assert normalize_lang_code("DE") == "de"
    assert normalize_lang_code(" zh-Hans ") == "zh"
    assert normalize_lang_code("zho_Hant") == "zh"
    assert normalize_lang_code("ger") == "de"
    assert normalize_lang_code("iw") == "he"
    assert normalize_lang_code("swh") == "sw"


def test_unknown_codes_raise_one_input_error_listing_them_all() -> None:
    with pytest.raises(InputError) as info:
        normalize_lang_codes(["de", "wuu", "xx", "arz_Arab", "wuu", ""])
    message = info.value.message
    for code in ("'wuu'", "'xx'", "'arz_Arab'", "''"):
        assert code in message
    assert message.count("'wuu'") == 1
    assert info.value.hint is not None and "override" in info.value.hint


def test_override_file_adds_and_amends_languages(tmp_path: Path) -> None:
    path = tmp_path / "langs.json"
    path.write_text(
        json.dumps(
            {
                "arz": {"name": "Egyptian Arabic", "family": "Afro-Asiatic", "script": "Arab"},
                "KO": {"family": "Koreanic", "isolate": False},
            }
        ),
        encoding="utf-8",
    )
    table = language_table(path)
    assert len(table) == 51
    assert normalize_lang_code("arz_Arab", table) == "arz"
    assert family_of("arz", table) == "Afro-Asiatic"
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
     ("en-ext", "en-ext"), ("EN-ext", "en-ext"), ("yue", "yue"), ("xx", "xx")],
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
