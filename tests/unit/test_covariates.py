"""Language covariates: URIEL distances (xl.core.covariates) and subword statistics (xl.models.tokenstats)."""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

import numpy as np
import pytest

from xl.core.covariates import URIEL_DISTANCES, language_covariates, uriel_distances
from xl.errors import InputError


@functools.cache
def _npz(name: str) -> tuple[list[str], list[str], np.ndarray]:
    with (files("lang2vec") / "data" / name).open("rb") as handle, np.load(handle) as archive:
        return list(archive["langs"]), [str(f) for f in archive["feats"]], archive["data"]


def _rows(name: str, codes: list[str], prefix: str = "") -> np.ndarray:
    """Rows of one lang2vec npz read by hand, the way lang2vec.get_features indexes them."""
    langs, feats, data = _npz(name)
    cols = [j for j, f in enumerate(feats) if f.startswith(prefix)]
    return np.stack([data[langs.index(c), cols, 0] for c in codes]).astype(np.float64)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_cosine_distances_match_hand_computed() -> None:
    got = uriel_distances(["de", "ja"])
    for file, prefix, name in [("feature_predictions.npz", "S_", "syntactic"),
                               ("feature_predictions.npz", "P_", "phonological"),
                               ("feature_predictions.npz", "INV_", "inventory"),
                               ("family_features.npz", "F_", "genetic")]:  # fmt: skip
        eng, deu, jpn = _rows(file, ["eng", "deu", "jpn"], prefix)
        assert got["de"][name] == pytest.approx(_cosine_distance(eng, deu), abs=1e-12), name
        if name != "genetic":  # Japanese shares no Glottolog node with English (see the next test)
            assert got["ja"][name] == pytest.approx(_cosine_distance(eng, jpn), abs=1e-12), name
    assert set(got["de"]) == set(URIEL_DISTANCES)
    # German and English share Indo-European, Germanic, Northwest Germanic, West Germanic: 4 of 6 and 9 nodes.
    eng, deu = _rows("family_features.npz", ["eng", "deu"])
    assert eng @ deu == 4 and deu.sum() == 6 and eng.sum() == 9
    assert got["de"]["genetic"] == pytest.approx(1 - 4 / np.sqrt(54))


def test_unrelated_and_isolate_languages_are_genetically_one() -> None:
    got = uriel_distances(["ja", "eu", "en", "eng"])
    assert got["ja"]["genetic"] == 1.0
    assert got["eu"]["genetic"] == 1.0  # Basque has no Glottolog ancestor in URIEL: an all-zero vector
    assert got["en"] == dict.fromkeys(URIEL_DISTANCES, 0.0) == got["eng"]


def test_geographic_reproduces_uriel_published_distances() -> None:
    # lang2vec's README: l2v.distance(['syntactic','geographic'], 'frr', 'dan', 'deu') → geographic
    # frr–dan 0.0028, frr–deu 0.0359, dan–deu 0.0361 (orthodromic / antipodal distance).
    from_frr = uriel_distances(["dan", "deu"], reference="frr")
    assert from_frr["dan"]["geographic"] == pytest.approx(0.0028, abs=1e-4)
    assert from_frr["deu"]["geographic"] == pytest.approx(0.0359, abs=2e-4)
    assert uriel_distances(["deu"], reference="dan")["deu"]["geographic"] == pytest.approx(0.0361, abs=1e-4)
    # Glottolog puts English at 53° N 1° W and Japanese at 35° N 135° E: 0.4670 of the antipodal distance.
    a, b = np.radians([53.0, -1.0]), np.radians([35.0, 135.0])
    angle = np.arccos(np.sin(a[0]) * np.sin(b[0]) + np.cos(a[0]) * np.cos(b[0]) * np.cos(a[1] - b[1]))
    assert uriel_distances(["ja"])["ja"]["geographic"] == pytest.approx(angle / np.pi, abs=1e-3)


def test_languages_missing_from_uriel_are_listed() -> None:
    with pytest.raises(InputError) as info:
        uriel_distances(["de", "xx", "qqq", "xx"])
    assert "'xx', 'qqq'" in info.value.message and "'de'" not in info.value.message
    assert info.value.hint is not None and "--languages" in info.value.hint
    with pytest.raises(InputError, match="no location for: 'und'"):  # a pseudo-code whose geo vector is all 1
        uriel_distances(["de", "und"])


def test_language_covariates_rows() -> None:
    subword = {"deu": {"fertility": 1.5, "overlap_types": 0.2}, "ja": {"fertility": 9.0, "overlap_types": 0.0},
               "en": {"fertility": 1.2, "overlap_types": 1.0}}  # fmt: skip
    rows = language_covariates(["deu", "ja_Jpan", "en", "de"], None, subword=subword)
    assert [r["code"] for r in rows] == ["de", "ja", "en"]
    de, ja, en = rows
    assert (de["family"], de["script"], de["same_script_as_english"], de["uriel_code"]) == (
        "Indo-European", "Latn", True, "deu")  # fmt: skip
    assert (ja["family"], ja["script"], ja["same_script_as_english"]) == ("Japonic", "Jpan", False)
    assert de["syntactic"] == uriel_distances(["de"])["de"]["syntactic"]
    assert en["geographic"] == 0.0 and de["fertility"] == 1.5 and ja["overlap_types"] == 0.0
    with pytest.raises(InputError, match="no subword statistics for: ja"):
        language_covariates(["de", "ja"], subword={"de": {"fertility": 1.0}})


# ------------------------------------------------------------------------------------- subword statistics


def _tiny_tokenizer() -> Any:
    """A WordPiece tokenizer built in memory, with BERT-style special tokens around every encoding."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "die", "katze", "##n", "sitzt", "##s"]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    return tokenizer


def test_subword_statistics_by_hand() -> None:
    from xl.models.tokenstats import subword_statistics

    tokenizer = _tiny_tokenizer()
    tokenizer.enable_truncation(2)  # must neither cut the counts nor be lost
    english = ["the cat sat", "the cats"]  # the cat sat | the cat ##s → types {the, cat, sat, ##s}
    german = ["die katzen sitzt", "the katzes [MASK] qqq"]  # die katze ##n sitzt | the katze ##s [UNK]
    stats = subword_statistics(tokenizer, english, {"de": german, "en": english})
    de = stats["de"]
    assert (de["n_texts"], de["n_words"], de["n_tokens"], de["n_types"], de["n_unk"]) == (2, 7, 8, 7, 1)
    assert de["n_chars"] == 3 + 6 + 5 + 3 + 6 + 6 + 3
    assert de["fertility"] == pytest.approx(8 / 7)
    assert de["tokens_per_char"] == pytest.approx(8 / 32)
    assert de["overlap_types"] == pytest.approx(2 / 7)  # the, ##s of die katze ##n sitzt the ##s [UNK]
    assert de["overlap_tokens"] == pytest.approx(2 / 8)
    en = stats["en"]
    assert (en["fertility"], en["overlap_types"], en["overlap_tokens"]) == (6 / 5, 1.0, 1.0)
    assert tokenizer.truncation is not None and tokenizer.truncation["max_length"] == 2
    # The unknown token is counted but never shared, even when English has it too.
    both_unknown = subword_statistics(tokenizer, ["the zzz"], {"de": ["qqq"]})["de"]
    assert (both_unknown["n_tokens"], both_unknown["overlap_types"], both_unknown["n_unk"]) == (1, 0.0, 1)


def test_subword_statistics_refuses_empty_texts() -> None:
    from xl.models.tokenstats import subword_statistics

    tokenizer = _tiny_tokenizer()
    with pytest.raises(InputError, match="no words in the texts of: ko"):
        subword_statistics(tokenizer, ["the cat"], {"de": ["die katze"], "ko": ["", "  "]})
    with pytest.raises(InputError, match="English texts hold no words"):
        subword_statistics(tokenizer, [""], {"de": ["die"]})


def test_letter_codes_cover_the_builtin_table() -> None:
    # Every XTREME-R language has URIEL vectors (through lang2vec's ISO 639-1 map or its own code).
    from xl.core.languages import XTREME_R_CODES

    letters = json.loads((files("lang2vec") / "data" / "letter_codes.json").read_text())
    assert all(code in letters for code in XTREME_R_CODES)
    rows = language_covariates(XTREME_R_CODES)
    assert len(rows) == 50 and all(0.0 <= r[name] <= 1.0 for r in rows for name in URIEL_DISTANCES)


def test_every_table_language_has_covariates_from_the_row_its_family_comes_from() -> None:
    """All 107 languages of the table (the Tatoeba and FLORES-200 ones too) get covariates; a code whose own URIEL
    row is empty or absent reads the row the language table takes its family from (nob, nno → nor; lvs → lav;
    Tatoeba's collective ber → Kabyle), not a zero vector that would make it unrelated to everything."""
    from xl.core.languages import builtin_table

    rows = {r["code"]: r for r in language_covariates(sorted(builtin_table()))}
    assert len(rows) == len(builtin_table()) >= 107
    assert all(0.0 <= r[name] <= 1.0 for r in rows.values() for name in URIEL_DISTANCES)
    assert rows["ber"]["uriel_code"] == "kab" and rows["ber"]["family"] == "Afro-Asiatic"
    assert rows["nb"]["uriel_code"] == rows["nn"]["uriel_code"] == "nor"
    assert rows["nb"]["genetic"] < 1.0 and rows["lv"]["genetic"] < 1.0  # Indo-European, related to English
    assert rows["io"]["genetic"] == 1.0  # an artificial language shares no Glottolog node with English
