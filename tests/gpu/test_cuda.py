"""CUDA paths: run where a GPU is present (skipped elsewhere). Device moves, dtypes and the fp16 scaler on a
real GPU, against the CPU results of the same code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _sts_file(path: Path) -> Path:
    from xl.tasks import convert

    records = list(convert("stsb", "train", "en"))[:160]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_embed_on_cuda_matches_cpu(tiny_model_path: Path, tmp_path: Path) -> None:
    text = tmp_path / "in.txt"
    text.write_text("".join(f"Satz Nummer {i} über Seoul und 서울.\n" for i in range(300)), encoding="utf-8")
    outputs = {}
    for device, dtype in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "bfloat16"), ("cuda", "float16")):
        out = tmp_path / f"{device}-{dtype}.npy"
        result = run_xl("embed", str(text), "--model", str(tiny_model_path), "--device", device, "--dtype", dtype,
                        "-o", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        manifest = json.loads(Path(str(out) + ".json").read_text())
        assert manifest["device"].startswith(device)
        outputs[(device, dtype)] = np.load(out)
    reference = outputs[("cpu", "float32")]
    for key, X in outputs.items():
        cosine = (X * reference).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(reference, axis=1)
        assert cosine.min() > (0.99999 if key[1] == "float32" else 0.99), (key, cosine.min())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_finetune_and_eval_on_cuda(dtype: str, tiny_model_path: Path, tmp_path: Path) -> None:
    train = _sts_file(tmp_path / "train.jsonl")
    run = tmp_path / "run"
    result = run_xl("finetune", "--task", "sts", "--model", str(tiny_model_path), "--train", str(train), "--dev",
                    str(train), "-o", str(run), "--max-steps", "20", "--lr", "1e-3", "--batch-size", "8",
                    "--device", "cuda", "--dtype", dtype, "--log-every", "1", "--save-steps", "10")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    manifest = json.loads((run / "xl-finetune.json").read_text())
    assert manifest["device"].startswith("cuda") and manifest["dtype"] == dtype
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    scored = run_xl("eval", "sts", "--model", str(run), str(train), "--device", "cuda")
    assert scored.returncode == 0, scored.stderr.decode()
    line = json.loads(scored.stdout.decode().splitlines()[0])
    assert line["device"].startswith("cuda") and line["spearman"] > 0


def test_classify_and_qa_heads_on_cuda(tiny_model_path: Path, tmp_path: Path) -> None:
    from xl.tasks import convert

    records = list(convert("xquad", "test", "en"))[:24]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    run = tmp_path / "qa-run"
    result = run_xl("finetune", "--task", "qa", "--model", str(tiny_model_path), "--train", str(qa), "-o", str(run),
                    "--max-steps", "4", "--device", "cuda", "--max-length", "192", "--doc-stride", "64")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    scored = run_xl("eval", "qa", "--model", str(run), str(qa), "--device", "cuda")
    assert scored.returncode == 0, scored.stderr.decode()
    assert json.loads(scored.stdout.decode())["n"] == 24
