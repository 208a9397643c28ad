"""A local model directory's fingerprint is a hash of its weights (computed once, cached by size, mtime and
inode), so two checkpoints of one architecture and size never share it. No torch: the weights are numpy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from xl.models import registry
from xl.models.registry import resolve_model, sha256_file


def _model_dir(path: Path, seed: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "hidden_size": 8}))
    (path / "tokenizer.json").write_text("{}")
    weights = np.random.default_rng(seed).standard_normal((16, 8)).astype(np.float32)
    save_file({"embeddings.weight": weights}, str(path / "model.safetensors"))
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_two_checkpoints_of_one_architecture_differ_and_a_copy_agrees(tmp_path: Path, home: Path) -> None:
    a, b = _model_dir(tmp_path / "a", 0), _model_dir(tmp_path / "b", 1)
    assert (a / "model.safetensors").stat().st_size == (b / "model.safetensors").stat().st_size
    fp_a, fp_b = resolve_model(str(a)).fingerprint, resolve_model(str(b)).fingerprint
    assert fp_a != fp_b
    assert fp_a == f"sha256:{sha256_file(a / 'model.safetensors')}"
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    assert resolve_model(str(copy)).fingerprint == fp_a  # the weights, not the path
    # A stored hash (the default model, finetune outputs) is the same hash: a copy without xl-model.json agrees.
    (b / "xl-model.json").write_text(json.dumps({"weights_sha256": sha256_file(b / "model.safetensors")}))
    assert resolve_model(str(b)).fingerprint == fp_b


def test_the_hash_is_cached_until_the_file_changes(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _model_dir(tmp_path / "a", 0)
    first = resolve_model(str(a)).fingerprint
    assert (home / registry.FINGERPRINT_CACHE).is_file()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"rehashed {path}")

    monkeypatch.setattr(registry, "sha256_file", no_hashing)
    assert resolve_model(str(a)).fingerprint == first  # served from the cache
    monkeypatch.undo()
    monkeypatch.setenv("XL_HOME", str(home))
    # Same size, new bytes and mtime: the cache entry no longer matches and the hash follows the weights.
    stat = (a / "model.safetensors").stat()
    save_file({"embeddings.weight": np.ones((16, 8), np.float32)}, str(a / "model.safetensors"))
    os.utime(a / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert resolve_model(str(a)).fingerprint not in (first, None)
    assert resolve_model(str(a)).fingerprint == f"sha256:{sha256_file(a / 'model.safetensors')}"


def test_an_unwritable_or_corrupt_cache_costs_a_rehash_only(tmp_path: Path, home: Path) -> None:
    a = _model_dir(tmp_path / "a", 0)
    home.mkdir(parents=True)
    (home / registry.FINGERPRINT_CACHE).write_text("not json")
    expected = f"sha256:{sha256_file(a / 'model.safetensors')}"
    assert resolve_model(str(a)).fingerprint == expected
    (home / registry.FINGERPRINT_CACHE).unlink()
    (home / registry.FINGERPRINT_CACHE).mkdir()  # neither readable nor replaceable as a file, even for root
    assert resolve_model(str(a)).fingerprint == expected
    assert not [p for p in home.iterdir() if p.name.startswith(".weights-")]  # no temporary file left behind


def test_sharded_checkpoints_hash_every_shard(tmp_path: Path, home: Path) -> None:
    a = _model_dir(tmp_path / "a", 0)
    (a / "model.safetensors").rename(a / "model-00001-of-00002.safetensors")
    save_file({"x": np.zeros(4, np.float32)}, str(a / "model-00002-of-00002.safetensors"))
    (a / "model.safetensors.index.json").write_text("{}")
    before = resolve_model(str(a)).fingerprint
    save_file({"x": np.ones(4, np.float32)}, str(a / "model-00002-of-00002.safetensors"))
    assert before.startswith("sha256:") and resolve_model(str(a)).fingerprint != before
