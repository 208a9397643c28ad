"""Tests of xl.tasks: schemas, validators, and converters of the benchmark data.

Row counts and label counts below are copied from each data folder's README.md (not from the registry), so a
registry or parser mistake fails here. Tests on the real data skip when ``xl.config.data_dir()`` is missing.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xl.config import data_dir
from xl.core.languages import canonical_lang
from xl.errors import InputError, UsageError
from xl.tasks import (
    DATASETS,
    LABEL_SETS,
    SCHEMA_MARKDOWN,
    RecordError,
    available,
    convert,
    datasets_markdown,
    detect_schema,
    read_task_file,
    resolve,
    squad_minus_xquad,
    validate_records,
)
from xl.tasks.schemas import iter_task_file

DATA = data_dir()
_skip_without_data = pytest.mark.skipif(
    not (DATA / "stsbenchmark").is_dir(), reason=f"benchmark data not found at {DATA} (set XL_DATA)"
)


def needs_data(test: Any) -> Any:
    """A test on the real data: marked ``data`` (left out of make test-fast), skipped where they are missing."""
    return pytest.mark.data(_skip_without_data(test))


# (dataset, split, lang, rows) as the READMEs state them.
_STSB = {"train": 5749, "dev": 1500, "test": 1379}
# tatoeba/README.md: pairs per language, by LASER's code
_TATOEBA = """
afr 1000 ang 134 ara 1000 arq 911 arz 477 ast 127 awa 231 aze 1000 bel 1000 ben 1000 ber 1000
bos 354 bre 1000 bul 1000 cat 1000 cbk 1000 ceb 600 ces 1000 cha 137 cmn 1000 cor 1000 csb 253
dan 1000 deu 1000 dsb 479 dtp 1000 ell 1000 fao 262 fin 1000 fra 1000 fry 173 gla 829 gle 1000
gsw 117 hin 1000 hrv 1000 hun 1000 ido 1000 ile 1000 ina 1000 ind 1000 ita 1000 kor 1000 kur 410
kzj 1000 lat 1000 lfn 1000 lvs 1000 mal 687 max 284 mhr 1000 mkd 1000 nds 1000 nld 1000 nno 1000
nob 1000 nov 257 oci 1000 orv 835 pam 1000 pms 525 por 1000 ron 1000 rus 1000 slv 823 spa 1000
sqi 1000 srp 1000 swe 1000 swg 112 tam 307 tat 1000 tha 548 tuk 203 tur 1000 tzl 104 ukr 1000
urd 1000 uzb 428 vie 1000 war 1000 wuu 1000 yid 848 zsm 1000
"""


def _pairs_of(table: str) -> list[tuple[str, str]]:
    """``"afr 1000 ang 134"`` → ``[("afr", "1000"), ("ang", "134")]``."""
    words = table.split()
    return list(zip(words[::2], words[1::2], strict=True))


README_ROWS: list[tuple[str, str, str, int]] = [
    *[("stsb", s, "en", n) for s, n in _STSB.items()],
    *[
        ("stsb-multi-mt", s, lang, n)
        for s, n in _STSB.items()
        for lang in ("de", "en", "es", "fr", "it", "nl", "pt", "ru", "zh")
    ],
    *[("korsts", s, "ko", n) for s, n in _STSB.items()],
    *[("sts2017", "test", lang, 250) for lang in ("ar-ar", "en-ar", "es-es", "es-en", "en-es", "en-en")],
    ("sst2", "train", "en", 60614),
    ("sst2", "dev", "en", 6735),
    ("sst2", "test", "en", 872),
    ("nsmc", "test", "ko", 50000),
    *[
        ("umsab", s, lang, n)
        for s, n in {"train": 1839, "val": 324, "test": 870}.items()
        for lang in ("ar", "de", "en", "es", "fr", "hi", "it", "pt")
    ],
    ("amcd", "train", "en", 4018),
    ("amcd", "valid", "en", 335),
    ("amcd", "test", "en", 670),
    ("amcd", "train", "en-ext", 8000),
    ("amcd", "valid", "en-ext", 666),
    ("amcd", "test", "en-ext", 1334),
    *[("amcd", s, lang, n) for s, n in {"train": 5600, "valid": 466, "test": 934}.items() for lang in ("de", "ja")],
    ("xnli-de", "train", "de", 2245),
    ("xnli-de", "dev", "de", 250),
    ("xnli-de", "test", "de", 5010),
    ("kornli", "dev", "ko", 2490),
    ("kornli", "test", "ko", 5010),
    ("pawsx-de", "dev", "de", 2000),
    ("pawsx-de", "test", "de", 2000),
    ("squad", "dev", "en", 10570),
    *[
        ("xquad", "test", lang, 1190)
        for lang in ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
    ],
    ("korquad", "dev", "ko", 5774),
    ("mlqa-de", "dev", "de", 512),
    ("squad-minus-xquad", "train", "en", 9380),
    *[
        ("flores200", split, f"en-{lang}", rows)
        for split, rows in {"dev": 997, "devtest": 1012}.items()
        for lang in "af ar az bn bg cs de el fi fr hi hu id it ko ml nl pt ro ru es ta th tr uk ur vi yo zh zu".split()
    ],
    *[
        ("tatoeba", "test", f"en-{canonical_lang(code)}", int(n))
        for code, n in zip(*[iter(_TATOEBA.split())] * 2, strict=True)
    ],
]

# Label counts stated in the READMEs.
README_LABELS: list[tuple[str, str, str, dict[Any, int]]] = [
    ("sst2", "train", "en", {1: 33828, 0: 26786}),
    ("sst2", "test", "en", {1: 444, 0: 428}),
    ("nsmc", "test", "ko", {1: 25173, 0: 24827}),
    ("umsab", "test", "hi", {0: 290, 1: 290, 2: 290}),
    ("amcd", "train", "de", {0: 1735, 1: 3865}),
    ("amcd", "test", "en-ext", {0: 1195, 1: 139}),
    ("amcd", "valid", "ja", {0: 420, 1: 46}),
    ("pawsx-de", "dev", "de", {1: 831, 0: 1169}),
    ("pawsx-de", "test", "de", {1: 895, 0: 1105}),
    ("xnli-de", "test", "de", {"entailment": 1670, "neutral": 1670, "contradiction": 1670}),
]


def _errors(records: list[Any], task: Any, **kwargs: Any) -> RecordError:
    with pytest.raises(RecordError) as info:
        list(validate_records(records, task, source="dev.jsonl", **kwargs))
    return info.value


# ------------------------------------------------------------------------------------------- validators

STS_OK = {"text1": "a", "text2": "b", "score": 3.5}
ALIGN_OK = {"text1": "The cat sleeps.", "text2": "Die Katze schläft.", "lang": "en-de"}
QA_OK = {
    "id": "q1",
    "context": "Köln liegt am Rhein.",
    "question": "Woran?",
    "answers": {"text": ["Rhein"], "answer_start": [14]},
}


@pytest.mark.parametrize(
    ("records", "task", "kwargs", "line", "field", "words"),
    [
        ([STS_OK, {"text1": "a", "score": 1.0}], "sts", {}, 2, "text2", 'missing field "text2"'),
        ([STS_OK, STS_OK, {**STS_OK, "score": 5.2}], "sts", {}, 3, "score", "out of range"),
        ([{**STS_OK, "score": -0.1}], "sts", {}, 1, "score", "out of range"),
        ([{**STS_OK, "score": math.nan}], "sts", {}, 1, "score", "out of range"),
        ([{**STS_OK, "score": "3.5"}], "sts", {}, 1, "score", "not a number"),
        ([{**STS_OK, "text1": None}], "sts", {}, 1, "text1", "not a string"),
        (
            [{"text": "x", "label": 0}, {"text": "y", "label": 3}],
            "classification",
            {"labels": (0, 1, 2)},
            2,
            "label",
            "not in the label set",
        ),
        (
            [{"text": "x", "label": "1"}],
            "classification",
            {"labels": (0, 1)},
            1,
            "label",
            "not in the label set",
        ),
        (
            [{"text": "x", "label": 1}, {"text": "y", "label": "pos"}],
            "classification",
            {},
            2,
            "label",
            "changes type",
        ),
        ([{"text": "x", "label": True}], "classification", {}, 1, "label", "not an int or a string"),
        (
            [{"text1": "x", "text2": "y", "label": "maybe"}],
            "pair-classification",
            {"labels": ("entailment", "neutral", "contradiction")},
            1,
            "label",
            "not in the label set",
        ),
        (
            [QA_OK, {**QA_OK, "id": "q2", "answers": {"text": ["Rhein"], "answer_start": [13]}}],
            "qa",
            {},
            2,
            "answers.answer_start[0]",
            "answer text not found",
        ),
        ([{**QA_OK, "answers": {"text": [], "answer_start": []}}], "qa", {}, 1, "answers", "no answer"),
        ([{**QA_OK, "answers": {"text": ["Rhein"]}}], "qa", {}, 1, "answers.answer_start", "missing field"),
        ([QA_OK, QA_OK], "qa", {}, 2, "id", "duplicate id"),
        ([{**QA_OK, "lang": 7}], "qa", {}, 1, "lang", "not a string"),
        ([ALIGN_OK, {**ALIGN_OK, "text2": ""}], "align", {}, 2, "text2", 'field "text2" is empty'),
        ([{**ALIGN_OK, "text1": " \t"}], "align", {}, 1, "text1", "is empty"),
        ([{**ALIGN_OK, "text1": 3}], "align", {}, 1, "text1", "not a string"),
    ],
)
def test_validation_errors_name_record_and_field(
    records: list[Any], task: str, kwargs: dict[str, Any], line: int, field: str, words: str
) -> None:
    err = _errors(records, task, **kwargs)
    assert isinstance(err, InputError)
    assert (err.source, err.line, err.record, err.field) == ("dev.jsonl", line, line, field)
    assert words in err.message
    assert err.render().startswith(f"dev.jsonl:{line}: ")


def test_validation_names_the_schema_a_record_looks_like() -> None:
    err = _errors([{"text": "great film", "label": 1}], "sts")
    assert err.line == 1
    assert "looks like classification data" in err.message and "not sts" in err.message
    assert err.hint is not None and "--task classify (xl eval classify)" in err.hint
    err = _errors([{"text1": "a", "text2": "b", "label": "neutral"}], "sts")
    assert "looks like pair-classification" in err.message
    err = _errors([STS_OK], "qa")
    assert "looks like sts data" in err.message
    # an align pair is what an sts or pair-classification record holds without its score or label
    err = _errors([ALIGN_OK, STS_OK], "align")
    assert err.line == 2 and "looks like sts data" in err.message and "not align" in err.message
    assert err.hint is not None and "--task sts" in err.hint
    err = _errors([{**ALIGN_OK, "label": 1}], "align")
    assert "looks like pair-classification" in err.message and "--task classify" in (err.hint or "")
    err = _errors([ALIGN_OK], "sts")
    assert "looks like align data" in err.message and "--task align if" in (err.hint or "")
    # a text and a text pair are both classify: the hint names the head, not the --task already given
    for records, task, other in (
        ([{"text1": "a", "text2": "b", "label": 0}], "classification", "pair-classification"),
        ([{"text": "a", "label": 0}], "pair-classification", "classification"),
    ):
        err = _errors(records, task)
        assert f"looks like {other} data" in err.message and "pass --task" not in (err.hint or "")
        assert "both --task classify" in (err.hint or "") and f"fine-tuned on {other} data" in (err.hint or "")
    assert detect_schema(ALIGN_OK) == "align" and detect_schema(STS_OK) == "sts"
    assert detect_schema(QA_OK) == "qa"
    assert detect_schema({"text": "x", "label": 0}) == "classification"
    assert detect_schema({"foo": 1}) is None


def test_validation_hints_renamed_fields_and_label_types() -> None:
    err = _errors([{"sentence1": "a", "sentence2": "b", "score": 1.0}], "sts")
    assert err.field == "text1" and err.hint == 'rename field "sentence1" to "text1"'
    err = _errors([{"text": "x", "label": "1"}], "classification", labels=(0, 1))
    assert err.hint is not None and "JSON numbers" in err.hint


def test_validation_rejects_an_empty_set() -> None:
    err = _errors([], "classification")
    assert err.line is None and err.record is None and "no classification records" in err.message


def test_valid_records_pass_through_unchanged_and_in_order() -> None:
    records = [{**STS_OK, "score": float(i) / 2, "lang": "de"} for i in range(11)]
    assert list(validate_records(records, "sts")) == records
    assert list(validate_records([QA_OK], "qa")) == [QA_OK]
    with pytest.raises(UsageError):
        list(validate_records(records, "nli"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- task files


def _squad_doc() -> dict[str, Any]:
    return {
        "version": "1.1",
        "data": [
            {
                "title": "Köln",
                "paragraphs": [
                    {
                        "context": QA_OK["context"],
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Woran?",
                                "answers": [{"text": "Rhein", "answer_start": 14}],
                            },
                            {
                                "id": "q2",
                                "question": "Was?",
                                "answers": [{"text": "Köln", "answer_start": 0}],
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_read_task_file_jsonl_names_line_of_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    rows = [STS_OK, STS_OK, {"text1": "a", "text2": "b", "score": 9}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    reader = read_task_file(path, "sts")
    assert next(reader) == STS_OK  # streams: the good records come before the error
    with pytest.raises(RecordError) as info:
        list(reader)
    assert (info.value.source, info.value.line, info.value.field) == (str(path), 3, "score")


def test_read_task_file_rejects_blank_lines_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps(STS_OK) + "\n\n" + json.dumps(STS_OK) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(read_task_file(path, "sts"))
    assert info.value.line == 2 and "blank line" in info.value.message
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(read_task_file(path, "sts"))
    assert info.value.line == 1 and "invalid JSON" in info.value.message


@pytest.mark.parametrize("indent", [None, 2])
def test_read_task_file_reads_squad_json(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad_doc(), indent=indent, ensure_ascii=False), encoding="utf-8")
    records = list(read_task_file(path, "qa"))
    assert [r["id"] for r in records] == ["q1", "q2"]
    assert records[1]["answers"] == {"text": ["Köln"], "answer_start": [0]}
    with pytest.raises(RecordError) as info:
        list(read_task_file(path, "sts"))
    assert "SQuAD JSON" in info.value.message
    doc = _squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 1
    path.write_text(json.dumps(doc, indent=indent), encoding="utf-8")
    with pytest.raises(RecordError) as info:
        list(read_task_file(path, "qa"))
    assert info.value.record == 2 and info.value.line is None and "question 2" in info.value.message


def test_iter_task_file_sniffs_jsonl_from_a_stream() -> None:
    stream = io.BytesIO(b"".join(json.dumps(QA_OK).encode() + b"\n" for _ in range(1)))
    records, is_squad = iter_task_file(stream, source="<stdin>")
    assert not is_squad and list(records) == [QA_OK]
    records, is_squad = iter_task_file(io.BytesIO(json.dumps(_squad_doc()).encode()), source="<stdin>")
    assert is_squad and len(list(records)) == 2


# ------------------------------------------------------------------------------ converters, synthetic data


def test_stsb_reader_uses_no_quote_character(tmp_path: Path) -> None:
    folder = tmp_path / "stsbenchmark"
    folder.mkdir()
    rows = ['main-news\theadlines\t2014\t0001\t2.500\t"Quoted" start\tend "quote\tsrc1\tsrc2'] * 1379
    (folder / "sts-test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    records = list(convert("stsb", "test", None, tmp_path))
    assert records[0] == {"text1": '"Quoted" start', "text2": 'end "quote', "score": 2.5, "lang": "en"}


def test_convert_checks_row_count_after_the_last_record(tmp_path: Path) -> None:
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "test.tsv").write_text("sentence\tlabel\ngood .\t1\nbad .\t0\n", encoding="utf-8")
    stream = convert("sst2", "test", "en", tmp_path)
    assert [next(stream), next(stream)] == [
        {"text": "good .", "label": 1, "lang": "en"},
        {"text": "bad .", "label": 0, "lang": "en"},
    ]
    with pytest.raises(InputError) as info:
        next(stream)
    assert "has 2 rows" in info.value.message and info.value.expected is not None
    assert len(list(convert("sst2", "test", "en", tmp_path, check_rows=False))) == 2


def test_convert_reports_bad_source_rows(tmp_path: Path) -> None:
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine\t1\nbroken\t7\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(convert("sst2", "dev", "en", tmp_path))
    assert (info.value.source, info.value.line) == (str(folder / "dev.tsv"), 3)
    with pytest.raises(InputError) as info:
        list(convert("sst2", "dev", "en", tmp_path / "missing"))
    assert "data root not found" in info.value.message


def test_resolve_aliases_and_usage_errors() -> None:
    assert resolve("amcd", "dev", "jp")[1:] == ("valid", "ja")
    assert resolve("umsab", "dev", "german")[1:] == ("val", "de")
    assert resolve("sts2017", "test", "track4b")[1:] == ("test", "en-es")
    assert resolve("sts2017", "test", "ar-en")[1:] == ("test", "en-ar")
    assert resolve("squad", "dev", None)[1:] == ("dev", "en")
    for spelling in ("de", "deu", "DEU", "deu_Latn", "en-de", "eng_Latn-deu_Latn"):  # the pair's other side names it
        assert resolve("flores200", "dev", spelling)[1:] == ("dev", "en-de")
    assert resolve("flores200", "devtest", "zul_Latn")[1:] == ("devtest", "en-zu")
    for spelling, pair in (
        ("deu", "en-de"),
        ("cmn", "en-zh"),
        ("nob", "en-nb"),
        ("lvs-eng", "en-lv"),
        ("arz", "en-arz"),
    ):
        assert resolve("tatoeba", "test", spelling)[1:] == ("test", pair)
    for args in [
        ("nope", "dev", None),
        ("xquad", "test", None),
        ("xquad", "train", "de"),
        ("xquad", "test", "ko"),
        ("flores200", "dev", "en"),
        ("flores200", "dev", "sw"),
        ("tatoeba", "test", "en"),
        ("tatoeba", "test", "yue"),
        ("tatoeba", "dev", "de"),
    ]:
        with pytest.raises(UsageError):
            resolve(*args)


def test_registry_lists_every_readme_file() -> None:
    assert set(available()) == set(README_ROWS)
    assert set(LABEL_SETS) == {"sst2", "nsmc", "umsab", "amcd", "xnli-de", "kornli", "pawsx-de"}
    table = datasets_markdown()
    assert all(f"| {name} |" in table for name in DATASETS)
    assert "### Task data: JSONL schemas" in SCHEMA_MARKDOWN


# ---------------------------------------------------------------------------------- converters, real data


@needs_data
@pytest.mark.parametrize(("dataset", "split", "lang", "rows"), README_ROWS, ids=lambda v: str(v))
def test_row_counts_match_readme_and_records_validate(dataset: str, split: str, lang: str, rows: int) -> None:
    records = convert(dataset, split, lang, DATA, check_rows=False)
    checked = validate_records(records, DATASETS[dataset].task, source=dataset, labels=LABEL_SETS.get(dataset))
    n = 0
    for record in checked:
        n += 1
        assert record["lang"] == lang
    assert n == rows


@needs_data
@pytest.mark.parametrize(("dataset", "split", "lang", "counts"), README_LABELS, ids=lambda v: str(v))
def test_label_counts_match_readme(dataset: str, split: str, lang: str, counts: dict[Any, int]) -> None:
    assert Counter(r["label"] for r in convert(dataset, split, lang, DATA)) == counts


def _first(dataset: str, split: str, lang: str | None) -> dict[str, Any]:
    return next(convert(dataset, split, lang, DATA))


@needs_data
def test_first_rows_exact() -> None:
    assert _first("stsb", "train", "en") == {
        "text1": "A plane is taking off.",
        "text2": "An air plane is taking off.",
        "score": 5.0,
        "lang": "en",
    }
    assert _first("stsb-multi-mt", "test", "de")["text1"] == "Ein Mädchen frisiert ihr Haar."
    assert _first("korsts", "dev", "ko")["text2"] == "안전모를 쓴 한 남자가 춤을 추고 있다."
    # track2's file is named ar-en but English comes first; the gold score is on its own file.
    assert _first("sts2017", "test", "en-ar") == {
        "text1": "two men are crying",
        "text2": "رجلان يضحكان.",
        "score": 1.4,
        "lang": "en-ar",
    }
    assert _first("nsmc", "test", "ko") == {"text": "굳 ㅋ", "label": 1, "id": "6270596", "lang": "ko"}
    assert _first("sst2", "test", "en")["text"] == "it 's a charming and often affecting journey . "
    # KorNLI quotes are text, not CSV quoting.
    assert _first("kornli", "dev", "ko")["text1"] == '그리고 그가 말했다, "엄마, 저 왔어요."'
    assert _first("pawsx-de", "dev", "de")["id"] == "4"
    assert _first("xnli-de", "train", "de")["label"] == "contradiction"
    # AMCD is CSV-quoted: one level of quoting is the file format and is removed.
    assert _first("amcd", "test", "en-ext")["text"].startswith('"But oddly enough, the bottoms')
    squad = _first("squad", "dev", "en")
    assert squad["id"] == "56be4db0acb8001400a502ec"
    assert squad["answers"] == {"text": ["Denver Broncos"] * 3, "answer_start": [177] * 3}
    assert _first("mlqa-de", "dev", "de")["answers"] == {
        "answer_start": [1591],
        "text": ["überwiegend antibritisch und prorussisch"],
    }
    assert _first("xquad", "test", "es")["context"].startswith("\ufeffLos Panthers")  # BOM is in the source
    flores = _first("flores200", "dev", "deu_Latn")
    assert flores["text1"].startswith("On Monday, scientists from the Stanford University School of Medicine")
    assert flores["text2"].startswith("Am Montag haben die Wisenschaftler der Stanford University")  # sic
    assert flores["lang"] == "en-de" and set(flores) == {"text1", "text2", "lang"}
    tatoeba = _first("tatoeba", "test", "de")
    assert tatoeba == {"text1": "Mary said she didn't know where Tom was.",
                       "text2": "Maria sagte, sie wisse nicht, wo Tom sei.", "lang": "en-de"}  # fmt: skip


@needs_data
def test_flores200_pairs_are_line_aligned_and_repeat_no_pair_across_languages() -> None:
    """Line i of eng_Latn with line i of the language, for both splits; the 30 languages concatenated (the study's
    training file) hold no duplicate pair, only English sides shared across languages."""
    from xl.tasks.data import pair_repeats

    folder = DATA / "flores200"
    for split in ("dev", "devtest"):
        english = (folder / split / f"eng_Latn.{split}").read_text(encoding="utf-8").splitlines()
        korean = (folder / split / f"kor_Hang.{split}").read_text(encoding="utf-8").splitlines()
        records = list(convert("flores200", split, "ko", DATA))
        assert [(r["text1"], r["text2"]) for r in records] == list(zip(english, korean, strict=True))
    every = [r for lang in DATASETS["flores200"].langs for r in convert("flores200", "dev", lang, DATA)]
    repeats = pair_repeats(every)
    assert len(every) == 30 * 997 and repeats.duplicates == []
    assert repeats.distinct_text1 == 997 and repeats.shared_text1 == len(every)


@needs_data
def test_empty_nsmc_reviews_are_kept() -> None:
    empty = [i for i, r in enumerate(convert("nsmc", "test", "ko", DATA), 2) if r["text"] == ""]
    assert empty == [5748, 7901, 27099]  # file lines (header = line 1)


@needs_data
def test_stsb_multi_mt_en_is_stsb_with_stripped_whitespace() -> None:
    # Two different parsers (tab split vs CSV) must agree on every pair and score.
    for split in ("train", "dev", "test"):
        original = convert("stsb", split, "en", DATA)
        translated_en = convert("stsb-multi-mt", split, "en", DATA)
        for a, b in zip(original, translated_en, strict=True):
            assert (a["text1"].strip(), a["text2"].strip(), a["score"]) == (
                b["text1"],
                b["text2"],
                b["score"],
            )


@needs_data
def test_sts2017_track6_is_withheld_with_reason() -> None:
    with pytest.raises(InputError) as info:
        list(convert("sts2017", "test", "tr-en", DATA))
    assert info.value.hint is not None and "500" in info.value.hint


def _contexts(records: Iterator[dict[str, Any]]) -> set[str]:
    return {r["context"] for r in records}


@needs_data
def test_squad_minus_xquad_leaves_no_xquad_context() -> None:
    xquad_en = list(convert("xquad", "test", "en", DATA))
    remaining = list(squad_minus_xquad(DATA))
    assert _contexts(iter(remaining)).isdisjoint(_contexts(iter(xquad_en)))
    assert {r["id"] for r in remaining}.isdisjoint({r["id"] for r in xquad_en})
    assert len(remaining) == 10570 - 1190 == 9380
    assert len(_contexts(iter(remaining))) == 2067 - 240


def test_seeded_subset_keeps_file_order_and_is_reproducible() -> None:
    from xl.tasks import seeded_subset

    records = [{"i": i} for i in range(100)]
    a, b = seeded_subset(records, 10, seed=3), seeded_subset(records, 10, seed=3)
    assert a == b and len(a) == 10
    assert [r["i"] for r in a] == sorted(r["i"] for r in a)
    assert seeded_subset(records, 10, seed=4) != a
    assert seeded_subset(records, None) == records and seeded_subset(records, 500) == records


def test_a_dataset_without_a_language_says_how_to_name_one() -> None:
    with pytest.raises(UsageError) as caught:
        resolve("xquad", "test", None)
    assert caught.value.hint is not None
    assert "xl data convert xquad test LANG" in caught.value.hint and "xquad:test:LANG" in caught.value.hint
    assert "--lang" not in caught.value.hint  # no command has that option
