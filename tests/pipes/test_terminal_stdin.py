"""A terminal as stdin is refused by every command that reads ``-``, with one line and exit 2, before anything
slow (a model load) happens: a command never sits waiting for typing. So is a terminal as the stdout of a
command that would write binary NPY there after loading a model."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# (arguments, what the error names); t.npy is a real matrix, so stdin is all that is wrong.
READERS = [
    (["eval", "sts", "-", "--model", "default"], "task records"),
    (["eval", "classify", "en=-", "--model", "default"], "task records"),
    (["eval", "qa", "-", "--model", "default"], "task records"),
    (["tasksim", "gains", "-"], "JSON lines"),
    (["tasksim", "similarity", "-", "-o", "S.npy"], "task embeddings"),
    (["tasksim", "decompose", "--gains", "-"], "terminal"),
    (["fit-proj", "--src", "-", "--tgt", "t.npy", "-o", "W.npy"], "terminal"),
    (["eval", "retrieval", "--src", "-", "--tgt", "t.npy"], "terminal"),
    (["data", "convert", "stsb", "dev", "-o", "x.jsonl"], None),  # reads no stdin: must not mention one
]


@pytest.mark.parametrize(("args", "needle"), READERS, ids=[" ".join(a[:2]) for a, _ in READERS])
def test_a_terminal_stdin_is_refused(args: list[str], needle: str | None, tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.ones((4, 3), np.float32))
    leader, follower = pty.openpty()
    try:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "xl", *args], stdin=follower, capture_output=True,
                                cwd=tmp_path, timeout=120, check=False)  # fmt: skip
        seconds = time.perf_counter() - started
    finally:
        os.close(leader)
        os.close(follower)
    stderr = result.stderr.decode()
    if needle is None:
        assert "terminal" not in stderr
        return
    assert result.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "from a terminal" in errors[0] and needle in errors[0], stderr
    assert result.stdout == b"" and "Traceback" not in stderr
    assert seconds < 60  # refused at once, not after a model load or a wait


# Commands that load a model and write NPY to stdout; the model does not exist, so an error about the terminal
# shows that stdout was checked first.
WRITERS = [
    ["embed", "in.txt", "--model", "./no-such-model"],
    ["tasksim", "embed", "ko=in.jsonl", "--model", "./no-such-model"],
    ["tasksim", "embed", "ko=./no-such-run", "--method", "taskemb"],
]


@pytest.mark.parametrize("args", WRITERS, ids=[" ".join(a[:2]) + (" taskemb" if "taskemb" in a else "")
                                               for a in WRITERS])  # fmt: skip
def test_a_terminal_stdout_is_refused_before_the_model_loads(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one sentence\n")
    (tmp_path / "in.jsonl").write_text('{"text1": "a", "text2": "b", "score": 1.0}\n')
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "xl", *args], stdout=follower, stderr=subprocess.PIPE,
                                cwd=tmp_path, timeout=120, check=False)  # fmt: skip
    finally:
        os.close(leader)
        os.close(follower)
    stderr = result.stderr.decode()
    errors = [line for line in stderr.splitlines() if ": error:" in line]
    assert result.returncode == 2, stderr
    assert len(errors) == 1 and "binary NPY to a terminal" in errors[0], stderr
    assert "Traceback" not in stderr
