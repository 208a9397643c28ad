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


#: How far a prediction of the same weights may move from the CPU's float32 one, by the dtype of the computation
#: on the GPU (float32: only the order of the sums differs; the half precisions round every activation).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}


def _eval(task: str, run: Path, data: Path, device: str, dtype: str, predictions: Path) -> dict[str, object]:
    scored = run_xl("eval", task, "--model", str(run), str(data), "--device", device, "--dtype", dtype,
                    "--predictions", str(predictions), "--bootstrap", "0", "-q")  # fmt: skip
    assert scored.returncode == 0, scored.stderr.decode()
    line = json.loads(scored.stdout.decode().splitlines()[0])
    assert line["device"].startswith(device), line
    return line


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_finetune_and_eval_on_cuda(dtype: str, tiny_model_path: Path, tmp_path: Path, data_root: Path) -> None:
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
    # The weights trained on the GPU, scored on the CPU in float32 and on the GPU: the same predictions, to the
    # tolerance of the GPU's dtype, and so (nearly) the same correlation.
    lines, scores = {}, {}
    for device, dt in (("cpu", "float32"), ("cuda", "float32"), ("cuda", dtype)):
        folder = tmp_path / f"pred-{device}-{dt}"
        lines[device, dt] = _eval("sts", run, train, device, dt, folder)
        (path,) = folder.iterdir()
        scores[device, dt] = np.loadtxt(path)
    reference = scores["cpu", "float32"]
    assert reference.shape == (160,) and np.ptp(reference) > 0.01  # predictions that differ from row to row
    for key in (("cuda", "float32"), ("cuda", dtype)):
        np.testing.assert_allclose(scores[key], reference, atol=TOLERANCE[key[1]], err_msg=str(key))
    spearman = lines["cpu", "float32"]["spearman"]  # in percent
    assert lines["cuda", "float32"]["spearman"] == pytest.approx(spearman, abs=0.1)
    assert lines["cuda", dtype]["spearman"] == pytest.approx(spearman, abs=2.0)


def _answers_agree(a: dict[str, str], b: dict[str, str], at_most_different: int) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if a[key] != b[key]]
    assert len(different) <= at_most_different, {key: (a[key], b[key]) for key in different}


def test_classify_and_qa_heads_on_cuda(tiny_model_path: Path, tmp_path: Path, data_root: Path) -> None:
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
    # The same weights on the CPU (float32) and on the GPU (float32): the same answers (a span whose two best
    # scores tie to within float32 rounding may flip), and the same scores to within that one answer.
    answers, lines = {}, {}
    for device in ("cpu", "cuda"):
        folder = tmp_path / f"qa-{device}"
        lines[device] = _eval("qa", run, qa, device, "float32", folder)
        (path,) = folder.iterdir()
        answers[device] = json.loads(path.read_text())
    assert len(answers["cpu"]) == 24
    _answers_agree(answers["cuda"], answers["cpu"], at_most_different=1)
    assert lines["cuda"]["f1"] == pytest.approx(lines["cpu"]["f1"], abs=100 / 24 + 1e-6)
    # A classification head trained on the GPU: its labels on the GPU are those of the CPU.
    sst2 = tmp_path / "sst2.jsonl"
    sst2.write_text("".join(json.dumps(r) + "\n" for r in list(convert("sst2", "train", "en"))[:64]), "utf-8")
    head = tmp_path / "classify-run"
    result = run_xl("finetune", "--task", "classify", "--model", str(tiny_model_path), "--train", str(sst2), "-o",
                    str(head), "--max-steps", "4", "--lr", "1e-3", "--device", "cuda")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    labels = {}
    for device in ("cpu", "cuda"):
        folder = tmp_path / f"classify-{device}"
        _eval("classify", head, sst2, device, "float32", folder)
        (path,) = folder.iterdir()
        labels[device] = dict(enumerate(path.read_text().splitlines()))
    assert len(labels["cpu"]) == 64
    _answers_agree(labels["cuda"], labels["cpu"], at_most_different=1)
