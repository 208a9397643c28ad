"""Run a command in its own process and measure it: wall seconds, CPU seconds and its own peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: Forks, execs and waits for one command; writes {"seconds", "cpu_seconds", "status", "peak_rss_mb"} to argv[1].
LAUNCHER = r"""
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "status": status,
               "peak_rss_mb": usage.ru_maxrss / 1024}, out)
"""


def run_measured(args: list[str], tmp: Path) -> dict[str, Any]:
    """Run a command; return its wall-clock ``seconds``, ``cpu_seconds`` (user + system, all threads) and
    ``peak_rss_mb`` (of that command alone).

    Linux carries the high-water RSS of a process over ``exec`` into its ``ru_maxrss``, so a child forked
    by this (large) process would report at least this process's peak. A bare Python launcher (a few MB,
    no imports beyond the standard library) therefore forks the command and reads its rusage with
    ``os.wait4``; it also times it. ``stdout`` holds what the command printed.
    """
    result_path, out_path, err_path = tmp / "child.json", tmp / "child.out", tmp / "child.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(result_path), *args], stdout=out, stderr=err,
                       cwd=REPO, check=False)  # fmt: skip
    result = json.loads(result_path.read_text()) if result_path.is_file() else {"status": -1}
    result_path.unlink(missing_ok=True)
    if result["status"] != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err_path.read_text(errors='replace')[-3000:]}")
    measured: dict[str, Any] = {key: float(result[key]) for key in ("seconds", "cpu_seconds", "peak_rss_mb")}
    measured["stdout"] = out_path.read_text(errors="replace")
    return measured


def write_readme_section(name: str, table: str) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md, if present."""
    readme = REPO / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")
