"""``xl finetune`` and ``xl eval sts|classify|qa`` on real data with the tiny random XLM-R (and the default
model where learning has to be real): training lowers the loss, resume equals an uninterrupted run, DDP
equals one process, ``--init`` drops the head, every bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import run_xl
from xl.tasks import convert


def _write(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _subset(dataset: str, split: str, lang: str | None, n: int, seed: int = 0) -> list[dict[str, Any]]:
    records = list(convert(dataset, split, lang))
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=min(n, len(records)), replace=False))
    return [records[i] for i in keep]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # the fixture skips when the real data are missing
    folder = tmp_path_factory.mktemp("task-data")
    return {
        "sts-train": _write(folder / "sts-train.jsonl", _subset("stsb", "train", "en", 240)),
        "sts-dev": _write(folder / "sts-dev.jsonl", _subset("stsb", "dev", "en", 120)),
        "sst2-train": _write(folder / "sst2-train.jsonl", _subset("sst2", "train", None, 320)),
        "sst2-dev": _write(folder / "sst2-dev.jsonl", _subset("sst2", "dev", None, 200)),
        "qa-train": _write(folder / "qa-train.jsonl", _subset("xquad", "test", "en", 40)),
        "qa-de": _write(folder / "qa-de.jsonl", _subset("xquad", "test", "de", 30)),
        "korsts": _write(folder / "korsts.jsonl", _subset("korsts", "test", "ko", 60)),
    }


def _finetune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_xl("finetune", "--log-every", "1", *args, env=env, timeout=600)


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stderr.decode()


def _error(result: subprocess.CompletedProcess[bytes], code: int, *needles: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert result.stdout == b"" and "Traceback" not in stderr, stderr
    assert len([line for line in stderr.splitlines() if ": error:" in line]) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


def _lines(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    _ok(result)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def _log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_sts_training_lowers_the_loss_keeps_the_best_dev_step_and_is_a_model_dir(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    run = tmp_path / "sts"
    _ok(_finetune("--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
                  "--dev", str(task_files["sts-dev"]), "-o", str(run), "--max-steps", "30", "--eval-steps", "10",
                  "--lr", "1e-3", "--batch-size", "8", "--dtype", "float32"))  # fmt: skip
    rows = _log(run)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    manifest = json.loads((run / "xl-finetune.json").read_text())
    evaluations = [e["dev"]["spearman"] for e in manifest["evaluations"]]
    assert [e["step"] for e in manifest["evaluations"]] == [0, 10, 20, 30]  # step 0: the starting model
    assert manifest["chosen"]["metric"] == max(evaluations)
    assert manifest["chosen"]["by"].startswith("best on the English dev set")
    # a plain transformers directory that xl embed and xl eval load
    for name in ("config.json", "model.safetensors", "tokenizer.json", "xl-model.json"):
        assert (run / name).is_file()
    assert not (run / "checkpoints").exists() and not (run / "best").exists()
    texts = tmp_path / "texts.txt"
    texts.write_text("ein Satz\nanother sentence\n", encoding="utf-8")
    embedded = run_xl("embed", str(texts), "--model", str(run), "-o", str(tmp_path / "e.npy"))
    assert embedded.returncode == 0, embedded.stderr.decode()
    assert np.load(tmp_path / "e.npy").shape == (2, 32)
    # The dev score of the kept model and `xl eval sts` of it are one computation (the same task object, stack,
    # max length and batches): equal to float tolerance on the same device and dtype.
    line = _lines(run_xl("eval", "sts", "--model", str(run), f"en={task_files['sts-dev']}", "--dtype", "float32"))[0]
    assert line["spearman"] == pytest.approx(manifest["chosen"]["metric"], abs=1e-6)
    assert line["max_length"] == manifest["head"]["max_length"] == 128
    # (that training beats the untrained model on dev is asserted with the default model in tests/e2e/)


@pytest.mark.slow
def test_resume_after_a_kill_equals_an_uninterrupted_run(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
              "--max-steps", "8", "--save-steps", "3", "--batch-size", "8", "--lr", "1e-3"]  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    _ok(_finetune(*common, "-o", str(whole)))
    killed = _finetune(*common, "-o", str(broken), env={"XL_FAULT_AFTER_STEP": "5"})
    assert killed.returncode == 137
    assert json.loads((broken / "checkpoints" / "latest.json").read_text()) == {"step": 3}
    _error(_finetune(*common, "-o", str(broken)), 2, "--resume")  # an unfinished run is not silently redone
    _ok(_finetune(*common, "-o", str(broken), "--resume"))
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(broken / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=name)
    assert [r["loss"] for r in _log(whole)] == pytest.approx([r["loss"] for r in _log(broken)], abs=1e-6)


@pytest.mark.slow
def test_a_kill_while_writing_a_checkpoint_never_leaves_it_as_latest(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    common = ["--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
              "--max-steps", "4", "--save-steps", "2", "--batch-size", "8", "-o", str(run)]  # fmt: skip
    killed = _finetune(*common, env={"XL_FAULT_IN_CHECKPOINT": "1"})
    assert killed.returncode == 137
    assert not (run / "checkpoints" / "latest.json").exists()
    assert not (run / "checkpoints" / "step-2").exists()
    _ok(_finetune(*common, "--resume"))  # starts again from step 0 and finishes
    assert json.loads((run / "xl-finetune.json").read_text())["steps"] == 4
    assert not list(run.glob("**/.*.tmp"))


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
              "--max-steps", "4", "--batch-size", "8", "--lr", "1e-4", "--dropout", "0", "--dtype", "float32",
              "--device", "cpu", "--log-every", "1"]  # fmt: skip
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _ok(run_xl("finetune", *common, "-o", str(single)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "xl",
         "finetune", *common, "-o", str(ddp)],
        capture_output=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    manifest = json.loads((ddp / "xl-finetune.json").read_text())
    assert manifest["processes"] == 2 and manifest["examples_seen"] == 32
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-5, worst  # float32, no dropout: only the order of the gradient sums differs
    assert [r["loss"] for r in _log(single)] == pytest.approx([r["loss"] for r in _log(ddp)], rel=1e-4)


@pytest.mark.slow
def test_init_drops_the_head_and_model_continues_it(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    _ok(_finetune("--task", "classify", "--model", str(tiny_model_path), "--train", str(task_files["sst2-train"]),
                  "-o", str(first), "--max-steps", "6", "--lr", "1e-3"))  # fmt: skip
    head = load_file(str(first / "xl-head.safetensors"))
    still = ["--train", str(task_files["sst2-train"]), "--max-steps", "1", "--lr", "1e-12", "--task", "classify"]
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    _ok(_finetune(*still, "--init", str(first), "-o", str(fresh), "--seed", "1"))
    _ok(_finetune(*still, "--model", str(first), "-o", str(kept)))
    fresh_head = load_file(str(fresh / "xl-head.safetensors"))
    kept_head = load_file(str(kept / "xl-head.safetensors"))
    assert np.abs(fresh_head["weight"] - head["weight"]).max() > 1e-2  # a new head
    np.testing.assert_allclose(kept_head["weight"], head["weight"], atol=1e-6)  # the same head, continued
    encoder_first = load_file(str(first / "model.safetensors"))
    encoder_fresh = load_file(str(fresh / "model.safetensors"))
    for name in encoder_first:  # the encoder is carried over
        np.testing.assert_allclose(encoder_fresh[name], encoder_first[name], atol=1e-5, err_msg=name)
    info = json.loads((fresh / "xl-model.json").read_text())
    assert info["head"]["labels"] == [0, 1] and info["base_model"]["spec"] == str(first)


def test_qa_trains_and_evaluates_with_predictions(task_files: dict[str, Path], tiny_model_path: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    from xl.core.metrics import qa_scores

    run = tmp_path / "qa"
    _ok(_finetune("--task", "qa", "--model", str(tiny_model_path), "--train", str(task_files["qa-train"]),
                  "--dev", str(task_files["qa-train"]), "-o", str(run), "--max-steps", "6", "--lr", "1e-3",
                  "--max-length", "192", "--doc-stride", "64"))  # fmt: skip
    rows = _log(run)
    assert [r for r in rows if "dev" in r][-1]["dev"]["selection_name"] == "f1"
    predictions = tmp_path / "preds"
    lines = _lines(run_xl("eval", "qa", "--model", str(run), f"de={task_files['qa-de']}", str(task_files["qa-train"]),
                          "--predictions", str(predictions), "--bootstrap", "100"))  # fmt: skip
    assert len(lines) == 3 and lines[-1]["summary"] and lines[0]["lang"] == "de"
    saved = json.loads((predictions / "qa-de.de.json").read_text())
    records = [json.loads(line) for line in task_files["qa-de"].read_text().splitlines()]
    again = qa_scores(saved, [(r["id"], r["answers"]["text"]) for r in records])
    assert lines[0]["f1"] == pytest.approx(again["f1"]) and lines[0]["exact_match"] == pytest.approx(
        again["exact_match"]
    )
    assert lines[0]["f1_ci"][0] <= lines[0]["f1"] <= lines[0]["f1_ci"][1]
    assert all(answer in {r["context"] for r in records if r["id"] == qid}.pop() for qid, answer in saved.items())


# --------------------------------------------------------------------------------------------- evaluation


def test_eval_sts_equals_cosines_of_xl_embed_and_scipy(task_files: dict[str, Path], tiny_model_path: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    import scipy.stats

    records = [json.loads(line) for line in task_files["korsts"].read_text().splitlines()]
    for side in ("text1", "text2"):
        (tmp_path / f"{side}.txt").write_text("".join(r[side] + "\n" for r in records), encoding="utf-8")
        _ok(run_xl("embed", str(tmp_path / f"{side}.txt"), "--model", str(tiny_model_path), "--dtype", "float32",
                   "-o", str(tmp_path / f"{side}.npy")))  # fmt: skip
    A, B = np.load(tmp_path / "text1.npy").astype(np.float64), np.load(tmp_path / "text2.npy").astype(np.float64)
    cosine = (A * B).sum(1) / np.linalg.norm(A, axis=1) / np.linalg.norm(B, axis=1)
    gold = [r["score"] for r in records]
    expected = 100 * scipy.stats.spearmanr(cosine, gold).statistic
    line = _lines(run_xl("eval", "--task", "sts", "--model", str(tiny_model_path), str(task_files["korsts"]),
                         "--dtype", "float32"))[0]  # fmt: skip
    assert line["spearman"] == pytest.approx(expected, abs=1e-6) and line["lang"] == "ko" and line["n"] == 60
    assert line["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(cosine, gold).statistic, abs=1e-6)
    line2 = _lines(run_xl("eval", "sts", "--embeddings1", str(tmp_path / "text1.npy"), "--embeddings2",
                          str(tmp_path / "text2.npy"), str(task_files["korsts"]), "--bootstrap", "200"))[0]  # fmt: skip
    assert line2["spearman"] == pytest.approx(expected, abs=1e-6)
    assert line2["spearman_ci"][0] < expected < line2["spearman_ci"][1]
    # a projection is applied to both sides: a rotation leaves cosines unchanged, a scaling of one axis does not
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((A.shape[1], A.shape[1])))
    np.save(tmp_path / "R.npy", q.astype(np.float32))
    rotated = _lines(
        run_xl(
            "eval",
            "sts",
            "--embeddings1",
            str(tmp_path / "text1.npy"),
            "--embeddings2",
            str(tmp_path / "text2.npy"),
            str(task_files["korsts"]),
            "--proj",
            str(tmp_path / "R.npy"),
            "--force",  # a bare NPY map has no manifest: applied as a plain linear map
        )
    )
    assert rotated[0]["spearman"] == pytest.approx(expected, abs=1e-3)
    _error(run_xl("eval", "sts", "--embeddings1", str(tmp_path / "text1.npy"), "--embeddings2",
                  str(tmp_path / "text1.npy"), str(task_files["sts-dev"])), 1, "rows", "records")  # fmt: skip


@pytest.mark.slow
def test_eval_classify_matches_its_predictions(task_files: dict[str, Path], tiny_model_path: Path,
                                               tmp_path: Path) -> None:  # fmt: skip
    run = tmp_path / "cls"
    _ok(_finetune("--task", "classify", "--model", str(tiny_model_path), "--train", str(task_files["sst2-train"]),
                  "-o", str(run), "--max-steps", "4", "--lr", "1e-3"))  # fmt: skip
    predictions = tmp_path / "preds"
    line = _lines(run_xl("eval", "classify", "--model", str(run), str(task_files["sst2-dev"]), "--predictions",
                         str(predictions), "--bootstrap", "100", "--format", "jsonl"))[0]  # fmt: skip
    predicted = [int(v) for v in (predictions / "sst2-dev.en.txt").read_text().split()]
    gold = [json.loads(r)["label"] for r in task_files["sst2-dev"].read_text().splitlines()]
    assert line["accuracy"] == pytest.approx(100 * np.mean(np.array(predicted) == np.array(gold)))
    assert line["accuracy_ci"][0] <= line["accuracy"] <= line["accuracy_ci"][1]
    table = run_xl("eval", "classify", "--model", str(run), str(task_files["sst2-dev"]), "--format", "md")
    assert b"| accuracy | macro_f1 |" in table.stdout


# --------------------------------------------------------------------------------------------- bad input


def test_bad_training_data_is_one_line_naming_record_and_field(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_path), "-o", str(out), "--max-steps", "1"]
    missing = _write(tmp_path / "missing.jsonl", [{"text1": "a", "text2": "b", "score": 1}, {"text1": "a", "score": 2}])
    _error(_finetune("--task", "sts", "--train", str(missing), *base), 1, "missing.jsonl:2", "text2")
    high = _write(tmp_path / "high.jsonl", [{"text1": "a", "text2": "b", "score": 5.5}])
    _error(_finetune("--task", "sts", "--train", str(high), *base), 1, "high.jsonl:1", "score")
    empty = _write(tmp_path / "empty.jsonl", [])
    _error(_finetune("--task", "sts", "--train", str(empty), *base), 1, "empty.jsonl", "empty input")
    bad_label = _write(tmp_path / "dev.jsonl", [{"text": "fine", "label": 1}, {"text": "odd", "label": 7}])
    _error(_finetune("--task", "classify", "--train", str(task_files["sst2-train"]), "--dev", str(bad_label), *base),
           1, "dev.jsonl:2", "label")  # fmt: skip
    _error(_finetune("--task", "sts", "--train", str(task_files["sts-train"]), "--dev", str(task_files["sst2-dev"]),
                     *base), 1, "sst2-dev.jsonl:1", "classification")  # fmt: skip
    qa = json.loads(task_files["qa-train"].read_text().splitlines()[0])
    qa["answers"] = {"text": ["not in the context at all"], "answer_start": [3]}
    moved = _write(tmp_path / "qa.jsonl", [qa])
    _error(_finetune("--task", "qa", "--train", str(moved), *base), 1, "qa.jsonl:1", "answer")
    assert not out.exists()


@pytest.mark.slow
def test_output_directory_and_head_mismatches_are_refused(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    base = ["--model", str(tiny_model_path), "--train", str(task_files["sst2-train"]), "--max-steps", "2"]
    _ok(_finetune("--task", "classify", *base, "-o", str(run)))
    before = (run / "model.safetensors").read_bytes()
    _error(_finetune("--task", "classify", *base, "-o", str(run), "--lr", "1e-3"), 2, "different run", "--overwrite")
    _error(_finetune("--task", "classify", *base, "-o", str(run)), 2, "already holds")
    assert (run / "model.safetensors").read_bytes() == before  # nothing lost
    _error(_finetune("--task", "qa", "--model", str(run), "--train", str(task_files["qa-train"]), "-o",
                     str(tmp_path / "qa")), 1, "classify", "--init")  # fmt: skip
    _error(run_xl("eval", "qa", "--model", str(run), str(task_files["qa-de"])), 1, "classify")
    _error(
        run_xl("eval", "classify", "--model", str(tiny_model_path), str(task_files["sst2-dev"])),
        1,
        "no classify head",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # not an xl run: refused, and the hint never offers --overwrite
        stderr = _error(_finetune("--task", "classify", *base, "-o", str(other), *extra), 2, "holds no xl finetune run")
        assert "--overwrite" not in stderr.split("hint:")[1], stderr
    assert (other / "notes.txt").read_text() == "mine"
    _ok(_finetune("--task", "classify", *base, "-o", str(run), "--lr", "1e-3", "--overwrite"))


def test_a_tag_may_not_overwrite_a_result_field(task_files: dict[str, Path]) -> None:
    _error(run_xl("eval", "sts", "--model", "default", str(task_files["korsts"]), "--tag", "proj=none"), 2,
           "--tag proj", "run=")  # fmt: skip
