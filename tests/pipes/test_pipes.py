"""Real shell pipelines: xl embed into numpy, into head, and Ctrl-C in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _shell(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, capture_output=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


def _big_file(path: Path, n: int) -> Path:
    path.write_text("".join(f"this is sentence number {i} of a long input\n" for i in range(n)))
    return path


def test_embed_into_python_through_a_pipe(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "en.txt").write_text("one\ntwo\nthree\n")
    reader = "import sys; from xl.io.npy import read_matrix; X = read_matrix(sys.stdin.buffer); print(X.shape)"
    result = _shell(f"xl embed en.txt --model {tiny_model_path} -q | {sys.executable} -c '{reader}'", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "(3, 32)"


def test_stdin_and_redirect_give_a_loadable_file(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "en.txt").write_text("one\ntwo\n")
    result = _shell(f"cat en.txt | xl embed --model {tiny_model_path} -q > en.npy", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert np.load(tmp_path / "en.npy").shape == (2, 32)
    assert (tmp_path / "en.npy.json").is_file()


def test_closed_pipe_exits_quietly(tiny_model_path: Path, tmp_path: Path) -> None:
    _big_file(tmp_path / "big.txt", 20_000)
    result = _shell(f"xl embed big.txt --model {tiny_model_path} --batch-size 8 | head -c 10 > /dev/null",
                    tmp_path)  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr.lower()


def test_ctrl_c_leaves_no_partial_output_and_keeps_the_old_file(tiny_model_path: Path, tmp_path: Path) -> None:
    _big_file(tmp_path / "big.txt", 200_000)
    out = tmp_path / "out.npy"
    np.save(out, np.arange(6, dtype=np.float32).reshape(2, 3))
    before = out.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "xl", "embed", "big.txt", "-o", "out.npy", "--model",
                             str(tiny_model_path), "--batch-size", "4"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a test run started in the background (`make test &`) inherits an ignored SIGINT,
                            # which Python then leaves ignored: give the child the default disposition
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]:
        time.sleep(0.2)
    time.sleep(1.0)  # let it write some rows
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "out.npy"]
