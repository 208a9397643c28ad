"""``make demo`` (examples/demo.sh): the whole pipeline through xl commands and pipes, on the tiny model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.sh"


def test_the_demo_uses_xl_commands_only() -> None:
    """No inline Python (the demo shows what the commands do); every step an ``xl`` command or a shell tool."""
    text = DEMO.read_text(encoding="utf-8")
    assert not re.search(r"\bpython\d?\b", text), "the demo must not run Python of its own"
    for command in ("xl embed", "xl fit-proj", "xl apply-proj", "xl eval retrieval", "xl finetune", "xl eval sts",
                    "xl tasksim correlate", "| xl apply-proj"):  # fmt: skip
        assert command in text, command


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_prints_its_summary(tmp_path: Path, tiny_model_path: Path,
                                                         data_root: Path) -> None:  # fmt: skip
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "xl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xl "$@"\n', encoding="utf-8")
    (shim / "xl").chmod(0o755)
    out = tmp_path / "demo"
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "XL_DATA": str(data_root),
           "MODEL": str(tiny_model_path), "OUT": str(out), "LANGS": "de ko", "TEST_N": "40",
           "FIT_N": "200"}  # fmt: skip
    result = subprocess.run(["bash", str(DEMO)], cwd=REPO, env=env, capture_output=True, timeout=600)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    summary = result.stdout.decode()
    assert summary == (out / "summary.txt").read_text(encoding="utf-8")
    rows = [line.split() for line in summary.splitlines() if line.startswith(("retrieval", "STS"))]
    assert [(r[0], r[1]) for r in rows] == [("retrieval", "de->en"), ("retrieval", "ko->en")] + [
        ("STS", "Spearman")] * 3  # fmt: skip
    for row in rows:  # each row has a number without and with (the map, the English training)
        without, with_ = (float(x) for x in row[-3:-1])
        assert -100 <= without <= 100 and -100 <= with_ <= 100, row
    assert "TaskEmb similarity vs transfer gain" in summary and "Spearman 0.09" in summary  # the committed study
    for name in ("maps/W.de.npy", "maps/W.ko.npy", "runs/sts/model.safetensors", "results/taskemb-vs-gain.png",
                 "results/sts.finetuned.jsonl", "emb/ko.devtest.mapped.npy"):  # fmt: skip
        assert (out / name).is_file(), name
    # the mapped matrix is the map applied to the piped embedding: 40 rows
    import numpy as np

    assert np.load(out / "emb" / "ko.devtest.mapped.npy").shape[0] == 40
    assert "Traceback" not in stderr
