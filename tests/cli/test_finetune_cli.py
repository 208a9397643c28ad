"""``xl finetune`` and ``xl eval sts|classify|qa`` on real data with the tiny random XLM-R (and the default
model where learning has to be real): training lowers the loss, resume equals an uninterrupted run, DDP
equals one process, ``--init`` drops the head, every bad input is one line; ``--task align`` on FLORES-200 pairs
raises the retrieval accuracy of held-back pairs, gathers its in-batch negatives under DDP, and gives TaskEmb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import run_xl, subset_records, write_jsonl
from xl.tasks import convert


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # the fixture skips when the real data are missing
    folder = tmp_path_factory.mktemp("task-data")
    return {
        "sts-train": write_jsonl(folder / "sts-train.jsonl", subset_records("stsb", "train", "en", 240)),
        "sts-dev": write_jsonl(folder / "sts-dev.jsonl", subset_records("stsb", "dev", "en", 120)),
        "sst2-train": write_jsonl(folder / "sst2-train.jsonl", subset_records("sst2", "train", None, 320)),
        "sst2-dev": write_jsonl(folder / "sst2-dev.jsonl", subset_records("sst2", "dev", None, 200)),
        "qa-train": write_jsonl(folder / "qa-train.jsonl", subset_records("xquad", "test", "en", 40)),
        "qa-de": write_jsonl(folder / "qa-de.jsonl", subset_records("xquad", "test", "de", 30)),
        "korsts": write_jsonl(folder / "korsts.jsonl", subset_records("korsts", "test", "ko", 60)),
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


def _kill_at_step_5_and_resume(common: list[str], whole: Path, broken: Path) -> None:
    """Kill a run of ``common`` (checkpoints every 3 steps) after step 5, resume it, and compare it with the
    uninterrupted run in ``whole``: the same weights and the same logged losses."""
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
def test_resume_after_a_kill_equals_an_uninterrupted_run(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
              "--max-steps", "8", "--save-steps", "3", "--batch-size", "8", "--lr", "1e-3"]  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    _ok(_finetune(*common, "-o", str(whole)))
    _kill_at_step_5_and_resume(common, whole, broken)


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


def _one_and_two_processes(common: list[str], single: Path, ddp: Path) -> subprocess.CompletedProcess[bytes]:
    """Fine-tune once in one process (to ``single``) and once under torchrun with two (to ``ddp``)."""
    _ok(run_xl("finetune", *common, "-o", str(single)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "xl",
         "finetune", *common, "-o", str(ddp)],
        capture_output=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result


def _assert_same_weights(single: Path, ddp: Path) -> None:
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-5, worst  # float32, no dropout: only the order of the gradient sums differs


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "sts", "--model", str(tiny_model_path), "--train", str(task_files["sts-train"]),
              "--dev", str(task_files["sts-dev"]), "--eval-steps", "2", "--max-steps", "4", "--batch-size", "8",
              "--lr", "1e-4", "--dropout", "0", "--dtype", "float32", "--device", "cpu",
              "--log-every", "1"]  # fmt: skip
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    stderr = _one_and_two_processes(common, single, ddp).stderr.decode()
    manifest = json.loads((ddp / "xl-finetune.json").read_text())
    assert manifest["processes"] == 2 and manifest["examples_seen"] == 32
    # the starting model is scored, and the run announced, once (by rank 0), not once per process
    assert stderr.count("dev at step 0 (the starting model)") == 1 and stderr.count("training examples") == 1
    one = json.loads((single / "xl-finetune.json").read_text())
    assert [e["step"] for e in manifest["evaluations"]] == [e["step"] for e in one["evaluations"]] == [0, 2, 4]
    assert [e["dev"]["spearman"] for e in manifest["evaluations"]] == pytest.approx(
        [e["dev"]["spearman"] for e in one["evaluations"]], abs=1e-4)  # fmt: skip
    assert manifest["chosen"]["step"] == one["chosen"]["step"]
    _assert_same_weights(single, ddp)
    losses = [[r["loss"] for r in _log(run) if "loss" in r] for run in (single, ddp)]
    assert len(losses[0]) == 4 and losses[0] == pytest.approx(losses[1], rel=1e-4)


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


def test_a_balanced_class_weight_run_records_its_weights(tiny_model_path: Path, tmp_path: Path) -> None:
    # 9 of label 0, 3 of label 1: balanced weights 12 / (2 × 9) and 12 / (2 × 3)
    train = write_jsonl(tmp_path / "imbalanced.jsonl", [{"text": f"a film, take {i}", "label": int(i >= 9)}
                                                   for i in range(12)])  # fmt: skip
    base = ["--task", "classify", "--model", str(tiny_model_path), "--train", str(train), "--max-steps", "2",
            "--batch-size", "12", "--lr", "1e-3", "--dtype", "float32"]  # fmt: skip
    weighted, plain = tmp_path / "weighted", tmp_path / "plain"
    _ok(_finetune(*base, "--class-weight", "balanced", "-o", str(weighted)))
    _ok(_finetune(*base, "-o", str(plain)))
    manifest = json.loads((weighted / "xl-finetune.json").read_text())
    assert manifest["options"]["class_weight"] == "balanced"
    recorded = manifest["class_weights"]
    assert recorded["mode"] == "balanced" and recorded["labels"] == [0, 1] and recorded["counts"] == [9, 3]
    assert recorded["weights"] == pytest.approx([2 / 3, 2.0])
    assert json.loads((plain / "xl-finetune.json").read_text())["class_weights"] is None
    # the same first batch (seed, data, initial model): only the weighting differs
    assert _log(weighted)[0]["loss"] != pytest.approx(_log(plain)[0]["loss"], rel=1e-3)
    _error(_finetune("--task", "sts", "--train", str(train), "-o", str(tmp_path / "x"), "--class-weight", "balanced"),
           2, "--class-weight has no effect with --task sts")  # fmt: skip


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


def test_eval_classify_checks_the_heads_labels_before_the_weights_load(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xl.models.task_model import TaskInference

    run = tmp_path / "cls"
    _ok(_finetune("--task", "classify", "--model", str(tiny_model_path), "--train", str(task_files["sst2-train"]),
                  "-o", str(run), "--max-steps", "1"))  # fmt: skip

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the weights were loaded before the data was checked against the head")

    monkeypatch.setattr(TaskInference, "load", never)
    seven = write_jsonl(tmp_path / "seven.jsonl", [{"text": "fine", "label": 1}, {"text": "odd", "label": 7}])
    _error(run_xl("eval", "classify", "--model", str(run), str(seven)), 1, "seven.jsonl:2", "label set", "0, 1")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text1": "a", "text2": "b", "label": 1}])
    _error(run_xl("eval", "classify", "--model", str(run), str(pairs)), 1, "pairs.jsonl:1", "text")


# --------------------------------------------------------------------------------------------- bad input


def test_bad_training_data_is_one_line_naming_record_and_field(
    task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_path), "-o", str(out), "--max-steps", "1"]
    missing = write_jsonl(
        tmp_path / "missing.jsonl", [{"text1": "a", "text2": "b", "score": 1}, {"text1": "a", "score": 2}]
    )
    _error(_finetune("--task", "sts", "--train", str(missing), *base), 1, "missing.jsonl:2", "text2")
    high = write_jsonl(tmp_path / "high.jsonl", [{"text1": "a", "text2": "b", "score": 5.5}])
    _error(_finetune("--task", "sts", "--train", str(high), *base), 1, "high.jsonl:1", "score")
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    _error(_finetune("--task", "sts", "--train", str(empty), *base), 1, "empty.jsonl", "empty input")
    bad_label = write_jsonl(tmp_path / "dev.jsonl", [{"text": "fine", "label": 1}, {"text": "odd", "label": 7}])
    _error(_finetune("--task", "classify", "--train", str(task_files["sst2-train"]), "--dev", str(bad_label), *base),
           1, "dev.jsonl:2", "label")  # fmt: skip
    _error(_finetune("--task", "sts", "--train", str(task_files["sts-train"]), "--dev", str(task_files["sst2-dev"]),
                     *base), 1, "sst2-dev.jsonl:1", "classification")  # fmt: skip
    qa = json.loads(task_files["qa-train"].read_text().splitlines()[0])
    qa["answers"] = {"text": ["not in the context at all"], "answer_start": [3]}
    moved = write_jsonl(tmp_path / "qa.jsonl", [qa])
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


# --------------------------------------------------------------------------------------------- align


@pytest.fixture(scope="module")
def align_files(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # the fixture skips when the real data are missing
    folder = tmp_path_factory.mktemp("align-data")
    converted = run_xl("data", "convert", "flores200", "dev", "deu_Latn", "-o", str(folder / "de.jsonl"))
    assert converted.returncode == 0, converted.stderr.decode()
    de = [json.loads(line) for line in (folder / "de.jsonl").read_text(encoding="utf-8").splitlines()]
    fr = list(convert("flores200", "dev", "fr"))
    return {
        # FLORES dev en-de without every fifth line, and those 199 lines held back: an article's sentences are
        # consecutive, so held-back pairs share words with pairs trained on, and none of them is trained on
        "train": write_jsonl(folder / "align-train.jsonl", [r for i, r in enumerate(de) if i % 5 != 2]),
        "held": write_jsonl(folder / "align-held.jsonl", [r for i, r in enumerate(de) if i % 5 == 2]),
        # two languages in one file, as the study trains: 8 of 9 English sentences twice (shared English sides).
        # 17 pairs make micro-batches of 8, 8 and 1: under two processes one holds no pair of the last
        "mixed": write_jsonl(folder / "align-mixed.jsonl", de[:9] + fr[:8]),
    }


@pytest.mark.slow
def test_align_training_lowers_the_loss_and_raises_held_back_retrieval(
    align_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    run = tmp_path / "align"
    stderr = _ok(_finetune("--task", "align", "--model", str(tiny_model_path), "--train", str(align_files["train"]),
                           "--dev", str(align_files["held"]), "-o", str(run), "--max-steps", "20", "--eval-steps", "10",
                           "--lr", "1e-2", "--batch-size", "32", "--max-length", "64", "--dtype", "float32",
                           "--log-every", "2"))  # fmt: skip
    assert "share their English side" not in stderr  # one language: no English side twice
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2, losses
    manifest = json.loads((run / "xl-finetune.json").read_text())
    dev = {e["step"]: e["dev"] for e in manifest["evaluations"]}
    assert sorted(dev) == [0, 10, 20] and dev[0]["n"] == 199 and dev[0]["selection_name"] == "accuracy"
    kept = dev[manifest["chosen"]["step"]]
    # the starting model (step 0) is the baseline: training on other pairs must beat it on the held-back ones
    assert manifest["chosen"]["step"] > 0 and kept["accuracy"] >= dev[0]["accuracy"] + 5, dev
    assert kept["accuracy"] == pytest.approx((kept["en2xx_accuracy"] + kept["xx2en_accuracy"]) / 2)
    assert manifest["head"]["task"] == "align" and manifest["head"]["loss"] == "translation-ranking"
    assert not (run / "xl-head.safetensors").exists()  # no head: the encoder is the model
    # The dev score is `xl eval retrieval` (nn, both directions) on `xl embed` outputs of the kept model.
    held = [json.loads(line) for line in align_files["held"].read_text(encoding="utf-8").splitlines()]
    for side in ("text1", "text2"):
        (tmp_path / f"{side}.txt").write_text("".join(r[side] + "\n" for r in held), encoding="utf-8")
        _ok(run_xl("embed", str(tmp_path / f"{side}.txt"), "--model", str(run), "--dtype", "float32",
                   "-o", str(tmp_path / f"{side}.npy")))  # fmt: skip
    line = _lines(run_xl("eval", "retrieval", "--src", str(tmp_path / "text1.npy"), "--tgt",
                         str(tmp_path / "text2.npy"), "--bootstrap", "0"))[0]  # fmt: skip
    assert 100 * line["src2tgt"]["accuracy"] == pytest.approx(kept["en2xx_accuracy"], abs=1e-9)
    assert 100 * line["tgt2src"]["accuracy"] == pytest.approx(kept["xx2en_accuracy"], abs=1e-9)
    # and `xl eval retrieval DATA --model RUN` is the dev computation itself, on the kept model
    lines = _lines(run_xl("eval", "retrieval", "--model", str(run), str(align_files["held"]), "--bootstrap", "0",
                          "--dtype", "float32"))  # fmt: skip
    assert len(lines) == 1 and lines[0]["task"] == "retrieval" and lines[0]["lang"] == "de"
    for name in ("n", "accuracy", "en2xx_accuracy", "xx2en_accuracy"):
        assert lines[0][name] == pytest.approx(kept[name], abs=1e-9), name


@pytest.mark.slow
def test_align_resume_after_a_kill_equals_an_uninterrupted_run(
    align_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "align", "--model", str(tiny_model_path), "--train", str(align_files["mixed"]),
              "--max-steps", "8", "--save-steps", "3", "--batch-size", "8", "--lr", "1e-3"]  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    stderr = _ok(_finetune(*common, "-o", str(whole)))
    assert "note: 16 of 17 pairs share their English side with another pair (9 distinct English texts)" in stderr
    _kill_at_step_5_and_resume(common, whole, broken)


@pytest.mark.slow
def test_align_two_process_ddp_gathers_the_batch_and_matches_one_process(
    align_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    common = ["--task", "align", "--model", str(tiny_model_path), "--train", str(align_files["mixed"]),
              "--max-steps", "4", "--batch-size", "8", "--lr", "1e-4", "--dropout", "0", "--dtype", "float32",
              "--device", "cpu", "--log-every", "1"]  # fmt: skip
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    result = _one_and_two_processes(common, single, ddp)
    assert b"Warning" not in result.stderr, result.stderr.decode()[-3000:]
    manifest = json.loads((ddp / "xl-finetune.json").read_text())
    single_manifest = json.loads((single / "xl-finetune.json").read_text())
    assert manifest["processes"] == 2 and manifest["examples_seen"] == single_manifest["examples_seen"]
    # Each process's negatives are the whole batch: its loss is the one-process loss (without the gather, each
    # half would rank among its own 4 pairs and the losses would differ)
    losses = [r["loss"] for r in _log(ddp)]
    assert losses == pytest.approx([r["loss"] for r in _log(single)], rel=1e-4)
    assert 0.0 in losses  # the batch of one pair (nothing to rank it against), which one process held no pair of
    _assert_same_weights(single, ddp)


def test_bad_align_data_is_one_line_and_writes_nothing(
    align_files: dict[str, Path], task_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = ["--task", "align", "--model", str(tiny_model_path), "-o", str(out), "--max-steps", "1"]
    pairs = [json.loads(line) for line in align_files["mixed"].read_text(encoding="utf-8").splitlines()]
    twice = write_jsonl(tmp_path / "twice.jsonl", [*pairs[:5], pairs[1], pairs[3], pairs[1]])
    stderr = _error(_finetune(*base, "--train", str(twice)), 1, "twice.jsonl:6: 3 duplicate pairs",
                    "line 6 repeats line 2, line 7 repeats line 4, line 8 repeats line 2",
                    "hint: in-batch negatives")  # fmt: skip
    assert "share their English side" not in stderr  # refused before any note
    empty = write_jsonl(tmp_path / "empty.jsonl", [pairs[0], {**pairs[1], "text2": "  "}])
    _error(_finetune(*base, "--train", str(empty)), 1, 'empty.jsonl:2: field "text2" is empty')
    _error(_finetune(*base, "--train", str(task_files["sts-train"])), 1, "sts-train.jsonl:1", "looks like sts data",
           "--task sts")  # fmt: skip
    nli = write_jsonl(tmp_path / "nli.jsonl", [{"text1": "a", "text2": "b", "label": "neutral"}])
    _error(_finetune(*base, "--train", str(nli)), 1, "nli.jsonl:1", "pair-classification", "--task classify")
    _error(_finetune(*base, "--train", str(align_files["mixed"]), "--dev", str(empty)), 1, "empty.jsonl:2")
    _error(_finetune(*base, "--train", str(align_files["mixed"]), "--loss", "cosent"), 2, "--loss")
    assert not out.exists()
    # and the other way: align pairs given to sts are named as such
    _error(_finetune("--task", "sts", "--model", str(tiny_model_path), "-o", str(out), "--train",
                     str(align_files["mixed"])), 1, "looks like align data", "--task align")  # fmt: skip
    assert not out.exists()


@pytest.mark.slow
def test_taskemb_of_an_align_run_is_a_finite_fisher_vector(
    align_files: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    _ok(_finetune("--task", "align", "--model", str(tiny_model_path), "--train", str(align_files["mixed"]),
                  "-o", str(run), "--max-steps", "2", "--batch-size", "8"))  # fmt: skip
    target = tmp_path / "taskemb.npy"
    _ok(run_xl("tasksim", "embed", "--method", "taskemb", f"align={run}", "--sample", "17", "-o", str(target)))
    vector = np.load(target)
    assert vector.shape[0] == 1 and vector.shape[1] > 1000 and np.isfinite(vector).all()
    # a pair alone has no negative and no gradient: ranked within its group, most components are non-zero
    assert (vector > 0).mean() > 0.5, (vector > 0).mean()
    described = json.loads(target.with_name("taskemb.npy.json").read_text())["tasks"][0]
    assert described["task"] == "align" and described["examples"] == 17
