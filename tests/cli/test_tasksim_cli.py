"""``xl tasksim embed | similarity | correlate`` through real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl


def _error(result, code: int, *needles: str) -> None:  # type: ignore[no-untyped-def]
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert result.stdout == b"" and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if ": error:" in line]) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr


@pytest.mark.slow
def test_textemb_is_the_mean_of_xl_embed(tiny_model_path: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"Satz {i} über Seoul.\n" for i in range(30)), encoding="utf-8")
    b.write_text("".join(f"Review number {i}: great film!\n" for i in range(20)), encoding="utf-8")
    out = tmp_path / "tasks.npy"
    result = run_xl("tasksim", "embed", f"alpha={a}", f"beta={b}", "--model", str(tiny_model_path), "--dtype",
                    "float32", "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    E = np.load(out)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["labels"] == ["alpha", "beta"] and E.shape[0] == 2
    for row, path in zip(E, (a, b), strict=True):
        embedded = tmp_path / "e.npy"
        assert run_xl("embed", str(path), "--model", str(tiny_model_path), "--dtype", "float32", "-o",
                      str(embedded)).returncode == 0  # fmt: skip
        np.testing.assert_allclose(row, np.load(embedded).astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_jsonl_task_embeddings_carry_task_lang_method_vector(tiny_model_path: Path, tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("".join(f"Satz {i} über Seoul.\n" for i in range(12)), encoding="utf-8")
    common = ["--model", str(tiny_model_path), "--dtype", "float32"]
    npy, jsonl = tmp_path / "t.npy", tmp_path / "t.jsonl"
    assert run_xl("tasksim", "embed", f"nli={a}", f"nli@de={a}", *common, "-o", str(npy)).returncode == 0
    result = run_xl("tasksim", "embed", f"nli={a}", f"nli@de={a}", *common, "-o", str(jsonl))
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["task"], r["lang"], r["method"]) for r in rows] == [("nli", None, "textemb"), ("nli", "de", "textemb")]
    np.testing.assert_allclose(np.array([r["vector"] for r in rows]), np.load(npy), rtol=1e-6)
    assert json.loads(Path(f"{jsonl}.json").read_text())["rows"] == 2
    # similarity reads either form, from a file or from stdin, with the same labels
    from_npy = run_xl("tasksim", "similarity", str(npy), "-o", str(tmp_path / "S1.npy"))
    from_jsonl = run_xl("tasksim", "similarity", "-", "-o", str(tmp_path / "S2.npy"), stdin=jsonl.read_bytes())
    assert from_npy.returncode == 0 and from_jsonl.returncode == 0, from_jsonl.stderr.decode()
    np.testing.assert_allclose(np.load(tmp_path / "S1.npy"), np.load(tmp_path / "S2.npy"), rtol=1e-6)
    assert json.loads((tmp_path / "S2.npy.json").read_text())["labels"] == ["nli", "nli@de"]
    bad = run_xl("tasksim", "embed", f"nli={a}", *common, "--format", "csv", "-o", str(tmp_path / "x"))
    _error(bad, 2, "--format")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_similarity_then_correlate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = ["s0", "s1", "s2", "s3", "t0", "t1"]
    np.save(tmp_path / "E.npy", rng.standard_normal((6, 12)).astype(np.float32))
    (tmp_path / "E.npy.json").write_text(json.dumps({"labels": labels}))
    result = run_xl("tasksim", "similarity", str(tmp_path / "E.npy"), "-o", str(tmp_path / "S.npy"), "--plot",
                    str(tmp_path / "S.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    S = np.load(tmp_path / "S.npy")
    assert S.shape == (6, 6) and json.loads((tmp_path / "S.npy.json").read_text())["labels"] == labels
    assert (tmp_path / "S.png").read_bytes()[:4] == b"\x89PNG"
    gains = [{"source": s, "target": t, "lang": lang, "gain": float(5 * S[labels.index(s), labels.index(t)])}
             for s in labels[:4] for t in labels[4:] for lang in ("de", "ko", "th")]  # fmt: skip
    (tmp_path / "g.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gains))
    sim, gain_file, scatter = str(tmp_path / "S.npy"), str(tmp_path / "g.jsonl"), str(tmp_path / "scatter.png")
    result = run_xl("tasksim", "correlate", "--sim", sim, "--gains", gain_file, "--permutations", "2000",
                    "--bootstrap", "200", "--plot", scatter)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    overall = [line for line in lines if line["kind"] == "correlation" and line["scope"] == "overall"]
    assert {line["method"] for line in overall} == {"pearson", "spearman", "kendall"}
    # 8 (source, target) pairs at the unit of analysis; the 24 rows only in the naive lines
    assert all(line["value"] == pytest.approx(1.0) for line in overall)
    assert sorted({(line["unit"], line["n"]) for line in overall}) == [("naive", 24), ("pair", 8)]
    families = {line["family"] for line in lines if line.get("scope") == "family"}
    assert families == {"Indo-European", "Korean", "Kra-Dai"}
    assert (tmp_path / "scatter.png").is_file()
    md = run_xl("tasksim", "correlate", "--sim", str(tmp_path / "S.npy"), "--gains", str(tmp_path / "g.jsonl"),
                "--permutations", "0", "--bootstrap", "0", "--format", "md")  # fmt: skip
    assert b"| scope | unit | method | n |" in md.stdout and b"best_rank" in md.stdout


def test_correlate_bad_input(tmp_path: Path) -> None:
    labels = ["s0", "t0"]
    np.save(tmp_path / "S.npy", np.eye(2, dtype=np.float32))
    (tmp_path / "S.npy.json").write_text(json.dumps({"labels": labels}))

    def gains(*rows: dict) -> str:  # type: ignore[type-arg]
        path = tmp_path / "g.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    def run(path: str, sim: str = str(tmp_path / "S.npy")):  # type: ignore[no-untyped-def]
        return run_xl("tasksim", "correlate", "--sim", sim, "--gains", path, "--permutations", "0")

    ok = {"source": "s0", "target": "t0", "lang": "de", "gain": 1.0}
    _error(run(gains(ok, {**ok, "source": "s5", "target": "t9"})), 1, "missing from the similarity matrix: s5, t9")
    _error(run(gains(ok, {**ok, "lang": "xx"})), 1, "unknown language", "'xx'", "override")
    _error(run(gains(ok, {**ok, "lang": "fr", "gain": None})), 1, "g.jsonl:2", "NaN or not a number")
    _error(run(gains(ok, ok)), 1, "duplicate")
    np.save(tmp_path / "R.npy", np.zeros((2, 3), dtype=np.float32))
    (tmp_path / "R.npy.json").write_text(json.dumps({"labels": labels}))
    _error(run(gains(ok), str(tmp_path / "R.npy")), 1, "not square")
    (tmp_path / "S.npy.json").write_text(json.dumps({"labels": ["s0", "t0", "x"]}))
    _error(run(gains(ok)), 1, "3 labels")


@pytest.mark.slow
def test_taskemb_is_the_pooled_empirical_fisher(tiny_model_path: Path, tmp_path: Path, data_root: Path) -> None:
    import torch

    from xl.tasks import convert

    records = list(convert("sst2", "dev", None))[:12]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = tmp_path / "run"
    result = run_xl("finetune", "--task", "classify", "--model", str(tiny_model_path), "--train", str(train), "-o",
                    str(run), "--max-steps", "3", "--lr", "1e-3", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    out = tmp_path / "fisher.npy"
    result = run_xl("tasksim", "embed", "--method", "taskemb", f"cls={run}", f"again={run}", "--sample", "100",
                    "-o", str(out), "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    F = np.load(out)
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert F.shape[0] == 2 and (F >= 0).all() and np.isfinite(F).all()
    np.testing.assert_array_equal(F[0], F[1])  # deterministic
    layout = manifest["tasks"][0]["layout"]
    assert manifest["tasks"][0]["examples"] == 12 and not any(name.startswith("head.") for name, _ in layout)
    # The library with the head appended: the CLI's vector is its encoder part, and the head-bias entries
    # match the closed form. For cross-entropy, d loss / d bias = softmax(logits) − onehot(gold): the head-bias
    # entries of the Fisher are the mean of its square over the examples.
    from xl.models.inference import pad_batch, tokenize_texts
    from xl.models.registry import resolve_model
    from xl.models.task_model import TaskInference
    from xl.tasks.objects import CLASSIFY
    from xl.tasksim import task_fisher

    with_head, info = task_fisher(resolve_model(str(run)), sample=100, device="cpu", include_head=True)
    assert info["layout"][-1] == ["head.bias", 2] and info["layout"][-2] == ["head.weight", 2]
    np.testing.assert_allclose(with_head[: F.shape[1]], F[0], rtol=1e-6)
    assert with_head.size == F.shape[1] + 4
    runner = TaskInference.load(resolve_model(str(run)), CLASSIFY, device="cpu", dtype="float32")
    ids = tokenize_texts(runner.tokenizer, [r["text"] for r in records], prefix="", max_length=128).ids
    with torch.no_grad():
        logits = torch.cat([runner.model(*pad_batch([row], runner.pad_id, "cpu")) for row in ids]).numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(2)[[r["label"] for r in records]]
    np.testing.assert_allclose(with_head[-2:], ((p - onehot) ** 2).mean(0), rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_taskemb_compares_tasks_with_different_heads(tiny_model_path: Path, tmp_path: Path) -> None:
    """A two-label, a three-label and an STS run (no head) give vectors of one length."""
    rows = {
        "two": [{"text": f"good film {i}", "label": i % 2} for i in range(8)],
        "three": [{"text": f"tweet number {i}", "label": i % 3} for i in range(9)],
        "sts": [{"text1": f"a man sings {i}", "text2": f"he sings {i}", "score": i % 5} for i in range(8)],
    }
    # fmt: skip
    specs = []
    for name, records in rows.items():
        train = tmp_path / f"{name}.jsonl"
        train.write_text("".join(json.dumps(r) + "\n" for r in records))
        task = "sts" if name == "sts" else "classify"
        result = run_xl("finetune", "--task", task, "--model", str(tiny_model_path), "--train", str(train), "-o",
                        str(tmp_path / name), "--max-steps", "1", "-q")  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        specs.append(f"{name}={tmp_path / name}")
    out = tmp_path / "F.npy"
    result = run_xl("tasksim", "embed", "--method", "taskemb", *specs, "--sample", "4", "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    F = np.load(out)
    assert F.shape[0] == 3 and (F > 0).any(axis=1).all()


def test_similarity_refuses_jsonl_that_is_not_task_embeddings(tmp_path: Path) -> None:
    for body, needle in ((b'{"text": "hello"}\n', "not a task embedding"),
                         (b'{"task": "a", "vector": [1, 2]}\n{"task": "b", "vector": [1]}\n', "different lengths"),
                         (b'{"task": "a", "vector": [1, "x"]}\n', "other than numbers")):  # fmt: skip
        path = tmp_path / "bad.jsonl"
        path.write_bytes(body)
        _error(run_xl("tasksim", "similarity", str(path), "-o", str(tmp_path / "S.npy")), 1, needle)
        assert not (tmp_path / "S.npy").exists()
