"""The in-process runner of the CLI tests (tests.conftest.run_xl): what a test reads equals what a real process
gives, and a run leaves nothing behind for the next test."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl, run_xl_process
from xl.io import atomic
from xl.io.npy import read_matrix


def _matrix(tmp_path: Path) -> Path:
    np.save(tmp_path / "W.npy", np.eye(4, dtype=np.float32))
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    return tmp_path


@pytest.mark.slow
def test_binary_stdout_stdin_and_exit_codes_match_a_real_process(tmp_path: Path) -> None:
    _matrix(tmp_path)
    args = ("apply-proj", "W.npy", "-", "--force", "-q")
    stdin = (tmp_path / "x.npy").read_bytes()
    here, there = run_xl(*args, stdin=stdin, cwd=tmp_path), run_xl_process(*args, stdin=stdin, cwd=tmp_path)
    assert here.exit_code == there.exit_code == 0 and here.stderr == there.stderr == b""
    # the same stream, its provenance frame (the command included) differing only in the time it was made
    assert here.stdout_bytes.count(b"\x93NUMPY") == there.stdout_bytes.count(b"\x93NUMPY") >= 1
    created = re.compile(rb'"created": ?"[^"]*"')
    assert b'"command":"xl apply-proj W.npy - --force -q"' in here.stdout
    assert created.sub(b"", here.stdout) == created.sub(b"", there.stdout)
    for stream in (here.stdout, there.stdout):
        np.testing.assert_array_equal(read_matrix(io.BytesIO(stream)), np.load(tmp_path / "x.npy"))
    for bad in (("apply-proj", "W.npy", "missing.npy"), ("apply-proj", "--no-such-option")):
        here, there = run_xl(*bad, cwd=tmp_path), run_xl_process(*bad, cwd=tmp_path)
        assert here.returncode == there.returncode != 0
        assert here.stdout == there.stdout == b"" and here.stderr_text == there.stderr.decode()


def test_a_run_leaves_environment_directory_signals_and_open_outputs_as_they_were(tmp_path: Path) -> None:
    _matrix(tmp_path)
    before = (dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP),
              list(sys.argv))  # fmt: skip
    result = run_xl("apply-proj", "W.npy", "x.npy", "--force", "-o", "out.npy", cwd=tmp_path,
                    env={"XL_DEBUG": "0", "XL_SOMETHING": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr_text
    assert (tmp_path / "out.npy").is_file()
    after = (dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP),
             list(sys.argv))  # fmt: skip
    assert after == before and not list(atomic._OPEN)


def test_stdout_to_a_file_is_a_regular_file_stdout(tmp_path: Path) -> None:
    _matrix(tmp_path)
    results = tmp_path / "results.jsonl"
    results.write_bytes(b'{"earlier": 1}\n')
    with open(results, "ab") as handle:
        ok = run_xl("eval", "retrieval", "--src", "x.npy", "--tgt", "x.npy", "--bootstrap", "0", cwd=tmp_path,
                    stdout=handle)  # fmt: skip
        failed = run_xl("eval", "retrieval", "--src", "x.npy", "--tgt", "W.npy", cwd=tmp_path, stdout=handle)
        handle.write(b"still the caller's\n")  # the command's clean-up did not touch this handle
    assert ok.returncode == 0 and ok.stdout == b"" and failed.returncode == 1
    lines = results.read_bytes().splitlines()
    assert lines[0] == b'{"earlier": 1}' and b'"task":"retrieval"' in lines[1] and lines[2:] == [b"still the caller's"]


def test_an_exception_that_escapes_is_a_traceback_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    _matrix(tmp_path)
    monkeypatch.setattr(atomic.OutputTarget, "write", broken)
    result = run_xl("apply-proj", "W.npy", "x.npy", "--force", "-o", "out.npy", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr_text and "RuntimeError: a bug" in result.stderr_text
    assert not (tmp_path / "out.npy").exists()
