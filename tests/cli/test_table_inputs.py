"""``xl finetune`` and ``xl eval`` read CSV, TSV, Parquet and datasets folders as they read task JSONL (the tiny
random XLM-R on real STSb data): the same records give the same training losses and the same scores, the column
mapping is recorded in the run's manifest, and a table that does not fit is one line, exit 1, nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_xl
from xl.tasks import convert

MAPPING = "text1=sentence1,text2=sentence2,score=similarity"


@pytest.fixture(scope="module")
def sts_tables(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    """The first 48 English STSb training pairs as JSONL and as CSV, Parquet and a datasets folder with the
    column names of STSb's own files (sentence1, sentence2, similarity)."""
    del data_root
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    folder = tmp_path_factory.mktemp("tables")
    records = [r for _, r in zip(range(48), convert("stsb", "train", "en"), strict=False)]
    paths = {"jsonl": folder / "s.jsonl", "csv": folder / "s.csv", "parquet": folder / "s.parquet", "hf": folder / "hf"}
    paths["jsonl"].write_text("".join(json.dumps({k: r[k] for k in ("text1", "text2", "score")}) + "\n"
                                      for r in records), encoding="utf-8")  # fmt: skip
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "similarity"])
        writer.writerows([r["text1"], r["text2"], repr(float(r["score"]))] for r in records)
    columns = {"sentence1": [r["text1"] for r in records], "sentence2": [r["text2"] for r in records],
               "similarity": [float(r["score"]) for r in records]}  # fmt: skip
    pq.write_table(pa.table(columns), paths["parquet"])
    datasets.Dataset.from_dict(columns).save_to_disk(str(paths["hf"]))
    return paths


def _losses(run: Path) -> list[float]:
    return [row["loss"] for row in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in row]


def _finetune(model: Path, train: Path, out: Path, *extra: str) -> Any:
    return run_xl("finetune", "--task", "sts", "--model", str(model), "--train", str(train), "-o", str(out),
                  "--max-steps", "3", "--batch-size", "8", "--log-every", "1", "-q", *extra, timeout=600)  # fmt: skip


def test_a_table_trains_as_its_jsonl_does_and_the_mapping_is_recorded(
    sts_tables: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    reference = _finetune(tiny_model_path, sts_tables["jsonl"], tmp_path / "jsonl")
    assert reference.returncode == 0, reference.stderr.decode()
    expected = _losses(tmp_path / "jsonl")
    assert len(expected) == 3
    for kind in ("csv", "parquet", "hf"):
        result = _finetune(tiny_model_path, sts_tables[kind], tmp_path / kind, "--columns", MAPPING)
        assert result.returncode == 0, result.stderr.decode()
        assert _losses(tmp_path / kind) == pytest.approx(expected, rel=1e-6), kind
        manifest = json.loads((tmp_path / kind / "xl-finetune.json").read_text())
        assert manifest["options"]["columns"] == {"text1": "sentence1", "text2": "sentence2", "score": "similarity"}


def test_eval_scores_a_table_as_its_jsonl(sts_tables: dict[str, Path], tiny_model_path: Path) -> None:
    def score(*data: str) -> list[float]:
        result = run_xl("eval", "sts", "--model", str(tiny_model_path), *data, "--bootstrap", "0", "--no-summary")
        assert result.returncode == 0, result.stderr.decode()
        return [json.loads(line)["spearman"] for line in result.stdout.decode().splitlines()]

    expected = score(str(sts_tables["jsonl"]))
    tables = [str(sts_tables[k]) for k in ("csv", "parquet", "hf")]
    assert score(*tables, "--columns", MAPPING) == pytest.approx(expected * 3, abs=1e-9)


def test_a_table_that_does_not_fit_is_one_line_and_nothing_is_written(
    sts_tables: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cases = [
        (["--columns", "text1=sentence1,text2=sentence2,score=label"], 1, ["no column 'label'", "similarity"]),
        ([], 1, ["no column for the field 'text1'", "--columns text1=COLUMN"]),
        (["--columns", "text1=sentence1,txet2=sentence2"], 2, ["'txet2' is not a field"]),
    ]
    for extra, code, needles in cases:
        result = _finetune(tiny_model_path, sts_tables["csv"], out, *extra)
        stderr = result.stderr.decode()
        assert result.returncode == code, stderr
        assert "Traceback" not in stderr and len([x for x in stderr.splitlines() if ": error:" in x]) == 1, stderr
        assert all(needle in stderr for needle in needles), stderr
        assert not out.exists()
    refused = run_xl("eval", "sts", "korsts:test:ko", "--model", str(tiny_model_path), "--columns", MAPPING)
    assert refused.returncode == 2 and "no data set here is a file" in refused.stderr.decode()


def test_embed_reads_a_table_column_as_it_reads_the_same_lines(
    sts_tables: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    """--field names the column; a CSV, a Parquet file and a datasets folder give the matrix of the text file of
    that column, row for row (and a shard of the table, the rows of that shard)."""
    import numpy as np

    lines = [json.loads(line)["text1"] for line in sts_tables["jsonl"].read_text(encoding="utf-8").splitlines()]
    (tmp_path / "text1.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    def embed(source: Path, *extra: str) -> np.ndarray:
        out = tmp_path / f"{source.name}.{len(extra)}.npy"
        result = run_xl("embed", str(source), "--model", str(tiny_model_path), "-o", str(out), "-q", *extra)
        assert result.returncode == 0, result.stderr.decode()
        return np.load(out)

    expected = embed(tmp_path / "text1.txt")
    assert expected.shape[0] == 48
    for kind in ("csv", "parquet", "hf"):
        np.testing.assert_array_equal(embed(sts_tables[kind], "--field", "sentence1"), expected)
    shard = embed(tmp_path / "text1.txt", "--shard", "2/3")  # its own batches: compared with the same batches
    assert shard.shape[0] == 16
    np.testing.assert_array_equal(embed(sts_tables["parquet"], "--field", "sentence1", "--shard", "2/3"), shard)
    manifest = json.loads((tmp_path / "hf.2.npy.json").read_text())
    assert manifest["input_format"] == "hf-dataset" and manifest["field"] == "sentence1"
