"""examples/scale: the GNU parallel (or xargs) recipe and the Slurm array script, run on two local shards with
the tiny model; the merged matrix equals one unsharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl

REPO = Path(__file__).resolve().parents[2]
SCALE = REPO / "examples" / "scale"


@pytest.fixture()
def shim_env(tmp_path: Path, tiny_model_path: Path) -> dict[str, str]:
    """An environment whose `xl` on PATH is this checkout's, with the tiny model as MODEL and no launcher."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "xl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xl "$@"\n', encoding="utf-8")
    (shim / "xl").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in ("RANK", "WORLD_SIZE")}
    return env | {"PATH": f"{shim}:{env['PATH']}", "PYTHONPATH": str(REPO), "MODEL": str(tiny_model_path),
                  "XL_EMBED_ARGS": "--dtype float32"}  # fmt: skip


@pytest.fixture()
def sentences(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(f"sentence number {i} of the scale test\n" for i in range(37)), encoding="utf-8")
    return path


def _single_run(sentences: Path, tiny_model_path: Path, tmp_path: Path) -> np.ndarray:
    whole = run_xl("embed", str(sentences), "--model", str(tiny_model_path), "--dtype", "float32", "-q",
                   "-o", str(tmp_path / "whole.npy"))  # fmt: skip
    assert whole.returncode == 0, whole.stderr_text
    return np.load(tmp_path / "whole.npy")


@pytest.mark.parametrize("runner", ["gnu-parallel", "xargs"])
def test_the_parallel_recipe_merges_two_shards_into_the_single_run(
    runner: str, shim_env: dict[str, str], sentences: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    env = dict(shim_env)
    if runner == "xargs":
        env["XL_NO_GNU_PARALLEL"] = "1"
    elif subprocess.run(["sh", "-c", "command -v parallel"], capture_output=True).returncode != 0:
        pytest.skip("GNU parallel is not installed (the xargs case runs the same recipe)")
    out = tmp_path / "merged.npy"
    done = subprocess.run(["bash", str(SCALE / "parallel.sh"), str(sentences), str(out), "2"], env=env,
                          capture_output=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    merged = np.load(out)
    np.testing.assert_allclose(merged, _single_run(sentences, tiny_model_path, tmp_path), rtol=1e-5, atol=1e-6)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["rows"] == 37 and manifest["shard"] is None and len(manifest["merged_shards"]) == 2
    assert not list(tmp_path.glob("merged.npy.shards.*")), "the shard folder is removed after the merge"


def test_the_slurm_array_script_shards_by_array_index(
    shim_env: dict[str, str], sentences: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "emb" / "big"
    prefix.parent.mkdir()
    for task in (5, 6):  # sbatch --array=5-6: indices need not start at 1
        env = shim_env | {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "5",
                          "SLURM_ARRAY_TASK_MAX": "6", "SLURM_CPUS_PER_TASK": "1"}  # fmt: skip
        done = subprocess.run(["bash", str(SCALE / "embed.sbatch"), str(sentences), str(prefix)], env=env,
                              capture_output=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
    shards = sorted(str(p) for p in prefix.parent.glob("big.shard-*.npy"))
    assert [json.loads(Path(f"{p}.json").read_text())["shard"] for p in shards] == ["1/2", "2/2"]
    merged = run_xl("merge", *shards, "-o", str(tmp_path / "big.npy"))
    assert merged.returncode == 0, merged.stderr_text
    np.testing.assert_allclose(np.load(tmp_path / "big.npy"), _single_run(sentences, tiny_model_path, tmp_path),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
