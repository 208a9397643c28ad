"""How the ``xl`` process ends (:func:`xl.cli.app.exit_process`): once a model stack is loaded it skips the
interpreter's teardown (about 2 s of freeing torch and transformers) but keeps everything a normal exit does
that a command's results depend on, and it falls back to the normal exit wherever the shortcut could lose
something. Each case is a small real process; a stand-in ``torch`` module marks "a model stack is loaded" so
that the cases cost no torch import (the real thing runs in every test that starts ``xl embed``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Block-buffered stdout, as a user's shell gives it (this machine sets PYTHONUNBUFFERED)
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

_SCRIPT = """
import atexit, sys, threading, time, types
from pathlib import Path
marks = Path(sys.argv[1])
class Teardown:  # collected only by the interpreter's teardown
    def __del__(self):
        (marks / "teardown").write_text("ran")
kept = Teardown()
atexit.register(lambda: (marks / "atexit").write_text("ran"))
if "torch" in sys.argv:
    sys.modules["torch"] = types.ModuleType("torch")
if "ddp" in sys.argv:  # a torch.distributed process group still open
    sys.modules["torch"].distributed = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True)
if "thread" in sys.argv:
    def late():
        time.sleep(0.5)
        (marks / "thread").write_text("ran")
    threading.Thread(target=late).start()
sys.stdout.write("x" * 1_000)  # below the buffer (4 KiB on a pipe): still buffered when the process ends
sys.stderr.write("said\\n")
from xl.cli.app import exit_process
exit_process(sys.argv[2] if sys.argv[2] == "text" else int(sys.argv[2]))
"""


def _end(tmp_path: Path, code: str, *flags: str) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    marks = tmp_path / "marks"
    marks.mkdir()
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(marks), code, *flags], cwd=REPO,
                          capture_output=True, timeout=60, check=False, env=_ENV)  # fmt: skip
    return done, {p.name for p in marks.iterdir()}


@pytest.mark.parametrize("code", ["0", "3"])
def test_with_a_model_stack_the_teardown_is_skipped_and_nothing_else(tmp_path: Path, code: str) -> None:
    done, marks = _end(tmp_path, code, "torch")
    assert done.returncode == int(code)
    assert done.stdout == b"x" * 1_000 and done.stderr == b"said\n"  # every buffered byte flushed
    assert marks == {"atexit"}  # atexit callbacks ran; the teardown did not


@pytest.mark.parametrize(
    ("flags", "code", "expected"),
    [((), "0", 0), (("torch", "thread"), "0", 0), (("torch", "ddp"), "0", 0), (("torch",), "text", 1)],
    ids=["numpy-only", "a-thread-still-running", "a-process-group-open", "a-message-not-a-code"],
)
def test_where_the_shortcut_could_lose_something_the_exit_is_the_normal_one(
    tmp_path: Path, flags: tuple[str, ...], code: str, expected: int
) -> None:
    done, marks = _end(tmp_path, code, *flags)
    assert done.returncode == expected and done.stdout == b"x" * 1_000
    assert {"atexit", "teardown"} <= marks
    if "thread" in flags:
        assert "thread" in marks  # waited for, as the interpreter does
    if code == "text":
        assert done.stderr == b"said\ntext\n"


def test_a_flush_that_fails_otherwise_is_reported_as_the_interpreter_reports_it(tmp_path: Path) -> None:
    """stdout on a full disk (/dev/full): the normal exit, whose final flush fails loudly with exit 120."""
    marks = tmp_path / "marks"
    marks.mkdir()
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, str(marks), "0", "torch"], cwd=REPO, stdout=full,
                              stderr=subprocess.PIPE, timeout=60, check=False, env=_ENV)  # fmt: skip
    assert done.returncode == 120 and b"No space left on device" in done.stderr
    assert {"atexit", "teardown"} <= {p.name for p in marks.iterdir()}


def test_a_reader_that_left_before_the_last_flush_is_a_quiet_exit(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    process = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(marks), "0", "torch"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ENV)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader leaves at once: the final flush meets a closed pipe
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == b"said\n"  # no "Exception ignored … BrokenPipeError"


def test_the_console_script_and_python_m_xl_end_through_it() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"xl": "xl.cli.app:run"}
    assert "from xl.cli.app import run" in (REPO / "xl" / "__main__.py").read_text()
