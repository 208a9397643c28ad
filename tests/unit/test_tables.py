"""Tables as task records (xl.io.tables): the same rows read alike from CSV, TSV, Parquet and a datasets folder,
column mappings (by name and, for a file without a header, by number), and every bad input named."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from xl.errors import InputError, UsageError
from xl.io.tables import parse_columns, read_table, table_format


def _stsb_rows(data_root: Path, n: int = 30) -> list[list[str]]:
    """The first ``n`` rows of the real German STSb test CSV (no header: sentence 1, sentence 2, score)."""
    with (data_root / "stsb-multi-mt" / "stsb-de-test.csv").open(newline="", encoding="utf-8") as handle:
        return [row for _, row in zip(range(n), csv.reader(handle), strict=False)]


def _write_all(rows: list[list[str]], folder: Path) -> dict[str, Path]:
    """The rows with a header (sentence1, sentence2, similarity) as CSV, TSV, Parquet and a save_to_disk folder."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    header = ["sentence1", "sentence2", "similarity"]
    paths = {"csv": folder / "s.csv", "tsv": folder / "s.tsv", "parquet": folder / "s.parquet", "hf": folder / "hf"}
    for kind, delimiter in (("csv", ","), ("tsv", "\t")):
        with paths[kind].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(header)
            writer.writerows(rows)
    columns = {"sentence1": [r[0] for r in rows], "sentence2": [r[1] for r in rows],
               "similarity": [float(r[2]) for r in rows]}  # fmt: skip
    pq.write_table(pa.table(columns), paths["parquet"])
    datasets.Dataset.from_dict(columns).save_to_disk(str(paths["hf"]))
    return paths


MAPPING = {"text1": "sentence1", "text2": "sentence2", "score": "similarity"}


def test_one_table_reads_alike_from_csv_tsv_parquet_and_a_datasets_folder(data_root: Path, tmp_path: Path) -> None:
    rows = _stsb_rows(data_root)
    paths = _write_all(rows, tmp_path)
    expected = [{"text1": a, "text2": b, "score": float(s)} for a, b, s in rows]
    digests = set()
    for kind, path in paths.items():
        fmt = table_format(str(path))
        assert fmt == {"hf": "hf-dataset"}.get(kind, kind)
        records, names, digest = read_table(str(path), fmt, MAPPING)
        assert names == ["sentence1", "sentence2", "similarity"]
        assert records == expected, kind
        digests.add(digest)
    assert len(digests) == 4  # each hashes its own bytes


def test_a_file_without_a_header_is_read_by_column_number(data_root: Path) -> None:
    path = data_root / "stsb-multi-mt" / "stsb-de-test.csv"
    records, names, _ = read_table(str(path), "csv", {"text1": "1", "text2": "2", "score": "3"})
    first = _stsb_rows(data_root, 1)[0]
    assert names == ["1", "2", "3"]
    assert records[0] == {"text1": first[0], "text2": first[1], "score": float(first[2])}
    assert len(records) == sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)


def test_text_cells_of_numeric_fields_become_numbers_and_empty_cells_missing(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("text,label,note\nfine,2,\nbad,neutral,x\n", encoding="utf-8")
    records, _, _ = read_table(str(path), "csv")
    assert records == [{"text": "fine", "label": 2}, {"text": "bad", "label": "neutral", "note": "x"}]


def test_a_mapped_column_that_is_not_there_is_named_with_the_columns_present(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("sentence1,sentence2,label\na,b,1\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_table(str(path), "csv", {"text1": "sentence1", "text2": "sentence2", "score": "similarity"})
    assert "'similarity'" in caught.value.message and caught.value.found == "columns sentence1, sentence2, label"


@pytest.mark.parametrize(
    ("name", "content", "fmt", "needle"),
    [
        ("x.parquet", b"text1,text2\n", "parquet", "not a Parquet file"),
        ("x.parquet", b"PAR1 but nothing after", "parquet", "not a readable Parquet file"),
        ("x.csv", b"a,b\n1,2,3\n", "csv", "row 1 has 3 cells, the header 2"),
        ("x.csv", b"a,a\n1,2\n", "csv", "names a column twice"),
        ("x.csv", b"\xff\xfe", "csv", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_its_table_format_is_named(tmp_path: Path, name: str, content: bytes, fmt: str,
                                                      needle: str) -> None:  # fmt: skip
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_table(str(path), fmt)  # type: ignore[arg-type]


def test_a_datasetdict_folder_names_its_split_folders(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    assert table_format(str(tmp_path / "dd")) == "hf-dataset"
    with pytest.raises(InputError, match="DatasetDict") as caught:
        read_table(str(tmp_path / "dd"), "hf-dataset")
    assert str(tmp_path / "dd" / "train") in str(caught.value.hint)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{}")
    with pytest.raises(InputError, match="not a datasets folder"):
        read_table(str(tmp_path / "broken"), "hf-dataset")


def test_table_format_is_by_name_and_a_plain_folder_or_jsonl_is_not_a_table(tmp_path: Path) -> None:
    assert table_format("a.CSV") == "csv" and table_format("a.tsv") == "tsv" and table_format("a.pq") == "parquet"
    assert table_format("a.jsonl") is None and table_format("-") is None and table_format(str(tmp_path)) is None
    assert table_format("tatoeba:test:" + ",".join(["de"] * 200)) is None  # too long to be a file name


def test_column_mappings_are_checked_as_usage() -> None:
    assert parse_columns("text1=a, text2 = b", ("text1", "text2")) == {"text1": "a", "text2": "b"}
    assert parse_columns(None) == {}
    for spec, needle in (("text1", "not FIELD=COLUMN"), ("score=x", "not a field"), ("text1=a,text1=b", "twice")):
        with pytest.raises(UsageError, match=needle):
            parse_columns(spec, ("text1", "text2"))
