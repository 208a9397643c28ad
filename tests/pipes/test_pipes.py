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
    """The input never ends (`yes`), so the run can only end by noticing that `head` has closed its stdout; windows
    of 64 rows, so the first rows reach the pipe after 64 sentences. xl's own exit status is read (PIPESTATUS):
    `yes` itself ends by SIGPIPE once xl has gone."""
    result = _shell(f"yes 'this is a sentence of an endless input' | xl embed - --model {tiny_model_path} "
                    "--batch-size 8 --window 64 | head -c 10 > /dev/null; echo \"xl exit ${PIPESTATUS[1]}\"",
                    tmp_path, timeout=120)  # fmt: skip
    stderr = result.stderr.decode()
    assert result.stdout.decode().strip() == "xl exit 0", stderr
    assert "Traceback" not in stderr and "error" not in stderr.lower()


def test_ctrl_c_leaves_no_partial_output_and_keeps_the_old_file(tiny_model_path: Path, tmp_path: Path) -> None:
    """Ctrl-C in the middle of writing: the input is a FIFO fed 200 lines and then held open, so the run has
    written the rows of those lines into its temporary file and waits for more; SIGINT arrives then, never
    before the first rows nor after the last."""
    out = tmp_path / "out.npy"
    np.save(out, np.arange(6, dtype=np.float32).reshape(2, 3))
    before = out.read_bytes()
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "xl", "embed", str(fifo), "-o", "out.npy", "--model",
                             str(tiny_model_path), "--window", "64", "--dtype", "float32"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a test run started in the background (`make test &`) inherits an ignored SIGINT,
                            # which Python then leaves ignored: give the child the default disposition
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    feed = os.open(fifo, os.O_WRONLY)
    try:
        os.write(feed, b"".join(b"sentence %d of the input\n" % i for i in range(200)))
        window = 64 * 32 * 4  # bytes of a window of 64 rows: float32, hidden size 32
        deadline = time.time() + 120
        temps: list[Path] = []
        while time.time() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p.stat().st_size > 128 + window]
            if temps:
                break
            time.sleep(0.05)
        assert temps, "the run wrote no rows into a temporary file"
        assert proc.poll() is None, "the run ended before it was interrupted"  # it is waiting for more input
        partial = temps[0].stat().st_size
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        os.close(feed)
    assert partial < 200 * 32 * 4  # interrupted with rows still to write
    assert proc.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode() and "Traceback" not in stderr.decode()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed", "out.npy"]
