"""Progress on stderr where people wait: ``xl finetune``, ``xl eval``, ``xl tasksim embed`` and ``xl fit-proj`` draw a
rich display when stderr is a terminal (real processes under a pseudo-terminal, the tiny random XLM-R, real data),
nothing at all off one or with ``-q``, and never touch stdout; and the protocol of :mod:`xl.progress` itself."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, run_xl, write_jsonl
from xl.progress import Throttled, counter, no_progress
from xl.tasks import convert

#: ANSI control sequences (colour, cursor moves, erase line) that rich writes to a terminal.
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: The manifest's creation time (to the second): the one field of a stdout frame that two runs may differ in.
_CREATED = re.compile(rb'"created": ?"[^"]*"')


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "LINES")}
    return {**env, "TERM": "xterm-256color", "COLUMNS": "160", "PYTHONPATH": str(REPO), "XL_DEBUG": "0"}


def run_on_tty(*args: str, timeout: float = 300) -> tuple[int, bytes, bytes]:
    """``python -m xl ARGS`` with stderr on a pseudo-terminal (160 x 40) and stdout on a pipe, as at a shell
    prompt with ``> file``: (exit code, stdout, everything the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "xl", *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave, env=_env())  # fmt: skip
    os.close(slave)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=timeout)
    finally:
        reader.join(timeout=10)
        os.close(master)
    return process.returncode, stdout, bytes(received)


def run_off_tty(*args: str) -> tuple[int, bytes, bytes]:
    """The same command with stdout and stderr on streams that are not a terminal, as on pipes (run in this
    process: what a terminal changes is tested by :func:`run_on_tty`, which needs the real process)."""
    result = run_xl(*args, env={"TERM": "xterm-256color", "COLUMNS": "160", "XL_DEBUG": "0"})
    return result.returncode, result.stdout, result.stderr


def screen(received: bytes) -> str:
    """What a terminal received, control sequences removed (the text of every frame drawn, in order)."""
    return _ANSI.sub(b"", received).replace(b"\r", b"\n").decode("utf-8", "replace")


def assert_no_display(stderr: bytes) -> None:
    """Off a terminal (or with -q): no bar, no escape sequence, no carriage return."""
    assert b"\r" not in stderr
    assert b"\x1b" not in stderr
    for bar_char in ("━", "╸", "╺"):
        assert bar_char not in stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def sts_files(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # skips without the real data
    folder = tmp_path_factory.mktemp("progress-data")
    return {
        "train": write_jsonl(folder / "train.jsonl", list(convert("stsb", "train", "en"))[:48]),
        "dev": write_jsonl(folder / "dev.jsonl", list(convert("stsb", "dev", "en"))[:24]),
        "ko": write_jsonl(folder / "ko.jsonl", list(convert("korsts", "test", "ko"))[:40]),
        "de": write_jsonl(folder / "de.jsonl", list(convert("stsb-multi-mt", "test", "de"))[:30]),
    }


# --------------------------------------------------------------------------------------------- the commands


def test_finetune_shows_steps_loss_rate_and_dev_scoring_on_a_terminal(tiny_model_path: Path,
                                                                      sts_files: dict[str, Path],
                                                                      tmp_path: Path) -> None:  # fmt: skip
    def args(out: str, *extra: str) -> list[str]:
        return ["finetune", "--task", "sts", "--train", str(sts_files["train"]), "--dev", str(sts_files["dev"]),
                "--model", str(tiny_model_path), "--batch-size", "8", "--max-steps", "6", "--eval-steps", "3",
                "--log-every", "2", "--device", "cpu", "-o", str(tmp_path / out), *extra]  # fmt: skip

    code, stdout, received = run_on_tty(*args("tty"))
    text = screen(received)
    assert code == 0, text[-3000:]
    assert stdout == b""
    # the training line, with its step counter, running loss and rate, is drawn before the run ends
    done_at = text.index("xl finetune: done")
    drawn = re.findall(r"training steps.*?(\d+)/6\s+loss (\d+\.\d{4})\s+([\d.]+) ex/s", text[:done_at])
    assert drawn, text[-3000:]
    assert drawn[-1][0] == "6"
    assert all(float(loss) >= 0 for _, loss, _ in drawn)
    assert re.search(r"dev scoring.*?\d+/48\s+at step 3", text), text[-3000:]  # 24 pairs: 48 rows
    # the log lines are still there, above the display
    assert "xl finetune: step 6/6" in text and "xl finetune: dev at step 3" in text

    code, stdout_off, stderr = run_off_tty(*args("pipe"))
    assert code == 0, stderr.decode()[-3000:]
    assert_no_display(stderr)
    assert "training steps" not in stderr.decode() and "xl finetune: step 6/6" in stderr.decode()
    assert stdout_off == stdout == b""
    # the same run either way
    log_tty = [json.loads(line) for line in (tmp_path / "tty" / "log.jsonl").read_text().splitlines()]
    log_pipe = [json.loads(line) for line in (tmp_path / "pipe" / "log.jsonl").read_text().splitlines()]
    assert [r.get("loss") for r in log_tty] == [r.get("loss") for r in log_pipe]

    code, stdout_quiet, received_quiet = run_on_tty(*args("quiet", "-q"))
    assert code == 0, screen(received_quiet)[-3000:]
    assert_no_display(received_quiet.replace(b"\r\n", b"\n"))  # a terminal turns \n into \r\n itself
    assert "training steps" not in screen(received_quiet) and stdout_quiet == b""


def test_eval_shows_set_by_set_and_leaves_stdout_alone(tiny_model_path: Path, sts_files: dict[str, Path]) -> None:
    args = ["eval", "sts", "--model", str(tiny_model_path), f"ko={sts_files['ko']}", f"de={sts_files['de']}",
            "--bootstrap", "20", "--device", "cpu"]  # fmt: skip
    code, stdout, received = run_on_tty(*args)
    text = screen(received)
    assert code == 0, text[-3000:]
    assert re.search(r"sets .*?0/2\s+ko ko", text), text[-3000:]  # the first set, as it starts
    assert re.search(r"sets .*?2/2", text), text[-3000:]
    assert re.search(r"rows .*?80/80\s+ko ko", text), text[-3000:]  # 40 pairs: 80 rows
    assert re.search(r"rows .*?60/60\s+de de", text), text[-3000:]
    code_off, stdout_off, stderr = run_off_tty(*args)
    assert code_off == 0, stderr.decode()[-3000:]
    assert_no_display(stderr)
    assert stdout == stdout_off  # byte for byte
    assert [json.loads(line).get("lang") for line in stdout.splitlines()] == ["ko", "de", None]
    code_quiet, stdout_quiet, received_quiet = run_on_tty(*args, "-q")
    assert code_quiet == 0 and stdout_quiet == stdout
    assert "sets" not in screen(received_quiet) and b"\x1b" not in received_quiet


def test_tasksim_embed_shows_each_task(tiny_model_path: Path, sts_files: dict[str, Path]) -> None:
    args = ["tasksim", "embed", f"ko={sts_files['ko']}", f"de={sts_files['de']}", "--model", str(tiny_model_path),
            "--device", "cpu"]  # fmt: skip
    code, stdout, received = run_on_tty(*args)
    text = screen(received)
    assert code == 0, text[-3000:]
    assert re.search(r"tasks .*?0/2\s+ko\s+\S+", text), text[-3000:]
    assert re.search(r"tasks .*?2/2\s+de", text), text[-3000:]
    assert re.search(r"rows .*?60/60\s+de", text), text[-3000:]  # text1 and text2 of 30 pairs
    code_off, stdout_off, stderr = run_off_tty(*args)
    assert code_off == 0, stderr.decode()[-3000:]
    assert_no_display(stderr)
    assert _CREATED.sub(b"", stdout) == _CREATED.sub(b"", stdout_off) and len(stdout) == len(stdout_off)
    assert stdout.startswith(b"\x93NUMPY")


def test_fit_proj_shows_passes_fit_and_dev(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    W = rng.standard_normal((16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", X @ W + 0.01 * rng.standard_normal((3000, 16)).astype(np.float32))
    args = ["fit-proj", "--src", str(tmp_path / "x.npy"), "--tgt", str(tmp_path / "y.npy"),
            "--preprocess", "unit,center,unit"]  # fmt: skip
    code, stdout, received = run_on_tty(*args)
    text = screen(received)
    assert code == 0, text[-3000:]
    # the rows read of each pass, out of the file's 3000, known before the first pass from the NPY header
    assert re.search(r"rows read .*?0/3000\s+means, pass 1 of 2", text), text
    assert re.search(r"rows read .*?3000/3000\s+statistics, pass 2 of 2", text), text
    assert re.search(r"fitting .*?1/1\s+lstsq", text), text
    assert re.search(r"dev scoring .*?\b(\d+)/\1\b", text), text  # the held-out pairs (a seeded ~10%)
    code_off, stdout_off, stderr = run_off_tty(*args)
    assert code_off == 0, stderr.decode()
    assert_no_display(stderr)
    assert _CREATED.sub(b"", stdout) == _CREATED.sub(b"", stdout_off) and len(stdout) == len(stdout_off)


# --------------------------------------------------------------------------------------------- the protocol


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int | None, dict[str, Any]]] = []

    def __call__(self, stage: str, done: int, total: int | None, **fields: Any) -> None:
        self.calls.append((stage, done, total, fields))


def test_no_progress_accepts_any_report() -> None:
    assert no_progress("train", 3, 10, loss=0.5) is None
    assert no_progress("read", 5, None) is None


def test_counter_reports_absolute_counts_from_its_start() -> None:
    seen = Recorder()
    advance = counter(seen, "rows", 10, done=4, set="ko")
    advance(3)
    advance(3)
    assert seen.calls == [("rows", 4, 10, {"set": "ko"}), ("rows", 7, 10, {"set": "ko"}),
                          ("rows", 10, 10, {"set": "ko"})]  # fmt: skip


def test_throttled_keeps_first_last_restarts_and_releases_what_it_held() -> None:
    now = [0.0]
    seen = Recorder()
    progress = Throttled(seen, interval=1.0, clock=lambda: now[0])
    for step in range(1, 6):  # five steps within the interval: the first passes, the rest wait
        progress("train", step, 10, loss=1.0 / step)
    assert [c[1] for c in seen.calls] == [1]
    now[0] = 0.5
    progress("dev", 0, 4)  # another stage starts: the held step 5 is shown first, then the new stage
    assert [(c[0], c[1]) for c in seen.calls] == [("train", 1), ("train", 5), ("dev", 0)]
    assert seen.calls[1][3] == {"loss": 0.2}
    progress("dev", 4, 4)  # a last report always passes
    now[0] = 0.6
    progress("dev", 0, 4)  # and so does a restart (the next round)
    now[0] = 2.0
    progress("train", 6, 10)  # the interval is over
    progress("train", 7, 10)
    progress("train", 7, 12)  # a new total passes at once
    assert [(c[0], c[1], c[2]) for c in seen.calls[3:]] == [("dev", 4, 4), ("dev", 0, 4), ("train", 6, 10),
                                                             ("train", 7, 12)]  # fmt: skip


def test_the_library_imports_no_rich_and_no_torch() -> None:
    code = "import sys, xl.progress; assert 'rich' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def test_stage_display_draws_a_line_per_stage_and_drops_finished_ones() -> None:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TextColumn

    from xl.cli._common import StageDisplay, format_fields

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RichProgress(TextColumn("{task.description} {task.completed}/{task.total} {task.fields[info]}"),
                      console=console, auto_refresh=False) as bar:  # fmt: skip
        display = StageDisplay(bar)
        display("train", 1, 6, loss=0.51234, examples_per_s=12.34)
        display("dev", 0, 48, step=3)
        assert [t.description for t in bar.tasks] == ["training steps", "dev scoring"]
        display("dev", 48, 48, step=3)
        assert [t.description for t in bar.tasks] == ["training steps"]
        display("rows", 10, 10)
        display("rows", 0, 8)  # the next round of a stage that had finished
        display("rows", 5, 8)
        assert [(t.description, t.completed) for t in bar.tasks] == [("training steps", 1), ("rows", 5)]
    drawn = out.getvalue()
    assert "training steps 1/6 loss 0.5123  12.3 ex/s" in drawn
    assert "dev scoring 48/48 at step 3" in drawn
    assert format_fields({"set": "korsts.test ko", "rate": 0.123456, "n": 3, "none": None}) == \
        "korsts.test ko  rate 0.1235  n 3"  # fmt: skip


def test_progress_display_off_a_terminal_is_the_no_op(capsys: pytest.CaptureFixture[str]) -> None:
    from xl.cli._common import progress_display

    with progress_display(True) as progress:
        assert progress is no_progress
        progress("train", 1, 2, loss=0.3)
    assert capsys.readouterr() == ("", "")
