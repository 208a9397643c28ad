"""Usage errors of the commands: one line on stderr, exit 2, nothing on stdout, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl

CASES = [
    (["finetune", "--task", "sts", "--train", "{sts}", "-o", "{out}", "--resume", "--overwrite"], "contradict"),
    (["finetune", "--task", "translate", "--train", "{sts}", "-o", "{out}"], "'translate' is not one of"),
    (["finetune", "--task", "sts", "--train", "{sts}", "-o", "{out}", "--loss", "hinge"], "'hinge' is not one of"),
    (["eval", "sts", "--embeddings1", "{emb}", "{sts}"], "--embeddings2"),
    (
        [
            "eval",
            "sts",
            "--embeddings1",
            "{emb}",
            "--embeddings2",
            "{emb}",
            "{sts}",
            "--proj",
            "{W}",
            "--proj-side",
            "sideways",
        ],
        "--proj-side",
    ),  # fmt: skip
    (["eval", "sts", "--model", "default", "{sts}", "--format", "html"], "--format"),
    (["eval", "sts", "--model", "default"], "no evaluation data"),
    (["eval", "qa", "--model", "default", "{sts}", "--normalize", "nfkc"], "--normalize"),
    (["data", "convert", "no-such-set", "train"], "unknown dataset"),
    (["data", "convert", "stsb", "validation"], "no split"),
    (["tasksim", "embed", "just-a-name", "-o", "{out}"], "NAME=DATA"),
    (["tasksim", "embed", "--method", "fisher", "a={sts}", "-o", "{out}"], "--method"),
    (["tasksim", "similarity", "{emb}", "--method", "euclid", "-o", "{out}"], "'euclid' is not one of"),
    (["tasksim", "correlate", "--sim", "{emb}", "--gains", "{sts}", "--methods", "tau"], "unknown --methods"),
    (["tasksim", "correlate", "--sim", "{emb}", "--gains", "{sts}", "--unit", "language"], "--unit"),
    (["tasksim", "correlate", "--sim", "{emb}", "--gains", "{sts}", "--center", "global"], "--center"),
    (["tasksim", "correlate", "--sim", "{emb}", "--gains", "{sts}", "--resample", "rows"], "--resample"),
    (["tasksim", "correlate", "--sim", "{emb}", "--gains", "{sts}", "--family-test", "anova"], "--family-test"),
    (["tasksim", "decompose", "--gains", "{sts}", "--format", "csv"], "--format"),
    (["tasksim", "predict", "--sim", "{emb}", "--gains", "{sts}", "--format", "csv"], "--format"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(c[0][:3]) + f" ({c[1]})" for c in CASES])
def test_usage_error_is_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    sts = tmp_path / "sts.jsonl"
    sts.write_text(json.dumps({"text1": "a", "text2": "b", "score": 1.0}) + "\n")
    np.save(tmp_path / "emb.npy", np.ones((1, 4), dtype=np.float32))
    np.save(tmp_path / "W.npy", np.eye(4, dtype=np.float32))
    out = tmp_path / "out"
    filled = [a.format(sts=sts, emb=tmp_path / "emb.npy", W=tmp_path / "W.npy", out=out) for a in args]
    result = run_xl(*filled)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b"" and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if ": error:" in line]) == 1, stderr
    assert needle in stderr, stderr
    assert not out.exists()


def test_eval_refuses_an_unknown_data_set_before_it_resolves_the_model(tmp_path: Path) -> None:
    """A misspelt dataset fails first (exit 1, the dataset error), even with a model that does not exist: it is
    checked before the model is looked up or loaded."""
    result = run_xl("eval", "sts", "stbs-multi-mt:test:de", "--model", str(tmp_path / "no-such-model"))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "no such file or dataset" in stderr and "no-such-model" not in stderr, stderr
    assert result.stdout == b"" and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("bad.jsonl", b'{"text1": "a", "text2": "b"}\n', "bad.jsonl:1: record looks like align data"),
        ("bad.csv", b"sentence1,sentence2,label\na,b,3.0\n", "no column for the field 'text1'"),
        ("emb.jsonl", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'", "emb.jsonl:1: an NPY array where JSON Lines"),
    ],
)
def test_eval_refuses_a_bad_data_file_before_it_resolves_the_model(
    tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    """A data file with a bad record or a missing column fails first, even with a model that does not exist: the
    files are read and validated before the model is looked up or loaded."""
    (tmp_path / name).write_bytes(content)
    result = run_xl("eval", "sts", str(tmp_path / name), "--model", str(tmp_path / "no-such-model"))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert needle in stderr and "no-such-model" not in stderr, stderr
    assert result.stdout == b"" and "Traceback" not in stderr
