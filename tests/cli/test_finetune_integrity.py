"""``xl finetune`` keeps what is not its own and what it has trained: ``--overwrite`` removes only a run's
files and never an input; a full disk while saving is one line and ``--resume`` finishes the save; every input
is read once (FIFOs, process substitution); a non-English dev set must be asked for; step 0 (the starting
model) is scored and kept when training only makes it worse; recorded paths are absolute and inputs are
checked before anything is loaded or removed. Real subprocesses on real files, with the tiny random XLM-R."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import run_xl, write_jsonl
from xl.tasks import convert

# One error line, exit code, no traceback, nothing on stdout.


def _error(result: subprocess.CompletedProcess[bytes], code: int, *needles: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr[-3000:]
    assert result.stdout == b"" and "Traceback" not in stderr, stderr[-3000:]
    assert len([line for line in stderr.splitlines() if ": error:" in line]) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stderr.decode()


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "xl-finetune.json").read_text())


def _same_weights(a: Path, b: Path) -> None:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # skips when the real data are missing
    folder = tmp_path_factory.mktemp("sts-data")
    train = list(convert("stsb", "train", "en"))
    dev = list(convert("stsb", "dev", "en"))
    pick = np.random.default_rng(0)
    return {
        "train": write_jsonl(folder / "train.jsonl", [train[i] for i in np.sort(pick.choice(len(train), 240, False))]),
        "dev": write_jsonl(folder / "dev.jsonl", [dev[i] for i in np.sort(pick.choice(len(dev), 60, False))]),
    }


def _args(tiny: Path, train: Path | str, *extra: str) -> list[str]:
    return ["finetune", "--task", "sts", "--model", str(tiny), "--train", str(train), "--batch-size", "8",
            "--log-every", "1", *extra]  # fmt: skip


# --------------------------------------------------------------------------------------------- --overwrite


def test_overwrite_never_removes_an_input_or_a_file_that_is_not_the_runs(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    # the case that used to delete the working directory, training file included
    work = tmp_path / "work"
    work.mkdir()
    train = work / "train.jsonl"
    train.write_bytes(sts["train"].read_bytes())
    (work / "notes.txt").write_text("mine")
    stderr = _error(run_xl(*_args(tiny_model_path, "train.jsonl", "-o", ".", "--overwrite", "--max-steps", "1"),
                           cwd=work), 2, "holds the --train input", "train.jsonl")  # fmt: skip
    assert "--overwrite" not in stderr.split("hint:")[1]
    assert train.read_bytes() == sts["train"].read_bytes() and (work / "notes.txt").read_text() == "mine"
    # an input below -o, or -o the model itself, is refused too
    (work / "data").mkdir()
    dev = work / "data" / "dev.jsonl"
    dev.write_bytes(sts["dev"].read_bytes())
    _error(run_xl(*_args(tiny_model_path, sts["train"], "--dev", str(dev), "-o", str(work), "--max-steps", "1")),
           2, "holds the --dev input")  # fmt: skip
    _error(run_xl(*_args(tiny_model_path, sts["train"], "-o", str(tiny_model_path), "--overwrite")), 2,
           "is the --model input")  # fmt: skip
    assert dev.is_file() and (tiny_model_path / "model.safetensors").is_file()

    # a finished run with a file of the user's in it: --overwrite refuses and removes nothing
    run = tmp_path / "run"
    _ok(run_xl(*_args(tiny_model_path, sts["train"], "-o", str(run), "--max-steps", "1")))
    owned = sorted(p.name for p in run.iterdir())
    assert set(_manifest(run)["files"]) == set(owned)  # the manifest lists every file the run wrote
    (run / "notes.txt").write_text("mine")
    before = (run / "model.safetensors").read_bytes()
    stderr = _error(run_xl(*_args(tiny_model_path, sts["train"], "-o", str(run), "--max-steps", "2", "--overwrite")),
                    2, "did not write", "notes.txt")  # fmt: skip
    assert (run / "notes.txt").read_text() == "mine" and (run / "model.safetensors").read_bytes() == before
    stderr = _error(run_xl(*_args(tiny_model_path, sts["train"], "-o", str(run), "--max-steps", "2")), 2,
                    "different run")  # fmt: skip
    assert "--overwrite" not in stderr.split("hint:")[1] and "notes.txt" in stderr
    # without it, --overwrite replaces exactly the run's own files (a leftover temporary file of ours included)
    (run / "notes.txt").unlink()
    (run / ".model.safetensors.k2j3h4.tmp").write_bytes(b"half")
    _ok(run_xl(*_args(tiny_model_path, sts["train"], "-o", str(run), "--max-steps", "2", "--overwrite")))
    assert _manifest(run)["steps"] == 2 and (run / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in run.iterdir()) == owned


# --------------------------------------------------------------------------------------------- disk full

_FULL_DISK_AT_THE_FINAL_SAVE = """
import errno, os, sys
from pathlib import Path
import xl.models.task_model as task_model
def full(model, tokenizer, directory, info, head):
    temp = Path(directory).parent / ".best.k2j3h4.tmp"
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temp / "model.safetensors"))
task_model.save_task_model = full
from xl.cli.app import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def uninterrupted(sts: dict[str, Path], tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("whole") / "run"
    _ok(run_xl(*_args(tiny_model_path, sts["train"], *_RESUMABLE, "-o", str(run))))
    return run


_RESUMABLE = ("--max-steps", "8", "--save-steps", "3", "--lr", "1e-3", "--dtype", "float32")


@pytest.mark.slow
def test_a_full_disk_at_the_final_save_is_one_line_and_resume_finishes_the_save(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path, uninterrupted: Path
) -> None:
    run = tmp_path / "run"
    args = _args(tiny_model_path, sts["train"], *_RESUMABLE, "-o", str(run))
    full = subprocess.run([sys.executable, "-c", _FULL_DISK_AT_THE_FINAL_SAVE, *args], capture_output=True,
                          timeout=600, check=False)  # fmt: skip
    stderr = _error(full, 1, f"{run}:", "No space left on device", "hint:", "free space", "--resume")
    assert ".tmp" not in stderr and "final checkpoint (step 8)" in stderr, stderr
    assert json.loads((run / "checkpoints" / "latest.json").read_text()) == {"step": 8, "final": True}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.json", "step-8"]
    assert not (run / "model.safetensors").exists() and not (run / "xl-finetune.json").exists()
    # after freeing space: --resume saves without training again, the same model as an uninterrupted run
    stderr = _ok(run_xl(*args, "--resume"))
    assert "resuming at step 8 of 8; training is done" in stderr and "step 1/8" not in stderr, stderr
    _same_weights(run / "model.safetensors", uninterrupted / "model.safetensors")
    assert not (run / "checkpoints").exists() and not list(run.glob("**/.*.tmp"))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    whole = [json.loads(line) for line in (uninterrupted / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in whole], abs=1e-7)


def _limit_file_size(size: int) -> Any:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))  # Python ignores SIGXFSZ: writes fail, EFBIG

    return limit


@pytest.mark.slow
def test_an_os_error_names_the_final_target_never_a_temporary_file(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path, uninterrupted: Path
) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "xl", *_args(tiny_model_path, sts["train"], *_RESUMABLE, "-o", str(run))]
    # 20 MB: the run's state and log fit, the first checkpoint's weights (32 MB) do not
    limited = subprocess.run(args, capture_output=True, timeout=600, check=False, preexec_fn=_limit_file_size(20 << 20))
    stderr = _error(limited, 1, f"checkpoint of step 3 to {run / 'checkpoints' / 'step-3'}:", "File too large",
                    "ulimit -f", "--resume")  # fmt: skip
    assert ".tmp" not in stderr, stderr
    assert not list(run.glob("**/.*.tmp"))  # the half-written checkpoint is gone, its space freed
    _ok(run_xl(*args[3:], "--resume"))  # no limit now: the run finishes where it failed
    _same_weights(run / "model.safetensors", uninterrupted / "model.safetensors")
    # a failure before there is a run to resume says to run the command again, not --resume
    small = tmp_path / "small"
    limited = subprocess.run([*args[:-1], str(small)], capture_output=True, timeout=600, check=False,
                             preexec_fn=_limit_file_size(300))  # fmt: skip
    stderr = _error(limited, 1, f"{small / 'run.json'}:", "File too large", "run the command again")
    assert ".tmp" not in stderr and "--resume" not in stderr, stderr


# --------------------------------------------------------------------------------------------- read once


@pytest.mark.slow
def test_every_input_is_read_once_fifo_process_substitution_and_stdin(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    want = _sha256(sts["train"])
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)

    def feed() -> None:  # one writer: a second open of the FIFO would wait for ever (the timeout fails the test)
        with fifo.open("wb") as handle:
            handle.write(sts["train"].read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    _ok(run_xl(*_args(tiny_model_path, fifo, "-o", str(tmp_path / "fifo"), "--max-steps", "1"), timeout=300))
    writer.join(timeout=10)
    assert _manifest(tmp_path / "fifo")["train"]["sha256"] == want

    words = [shlex.quote(a) for a in [sys.executable, "-m", "xl", *_args(tiny_model_path, "-", "--max-steps", "1")]]
    words[words.index("-")] = f"<(cat {shlex.quote(str(sts['train']))})"  # bash gives xl a /dev/fd/N pipe
    words += ["--dev", f"<(cat {shlex.quote(str(sts['dev']))})", "-o", shlex.quote(str(tmp_path / "subst"))]
    command = " ".join(words)
    _ok(subprocess.run(["bash", "-c", command], capture_output=True, timeout=300, check=False))
    manifest = _manifest(tmp_path / "subst")
    assert manifest["train"]["sha256"] == want and manifest["dev"]["sha256"] == _sha256(sts["dev"])
    assert manifest["train"]["path"].startswith("/dev/fd/") and manifest["train"]["examples"] == 240

    # classify from stdin: single text or pair is told from the records already read
    sst2 = list(convert("sst2", "train", None))[:64]
    data = "".join(json.dumps(r) + "\n" for r in sst2).encode()
    _ok(run_xl("finetune", "--task", "classify", "--model", str(tiny_model_path), "--train", "-", "-o",
               str(tmp_path / "stdin"), "--max-steps", "1", stdin=data, timeout=300))  # fmt: skip
    manifest = _manifest(tmp_path / "stdin")
    assert manifest["train"]["sha256"] == hashlib.sha256(data).hexdigest() and manifest["head"]["pair"] is False


# --------------------------------------------------------------------------------------------- the dev set


def test_a_non_english_dev_set_must_be_named_and_is_recorded(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    polish = write_jsonl(tmp_path / "dev-pl.jsonl",
                    [{**json.loads(line), "lang": "pl"} for line in sts["dev"].read_text().splitlines()])  # fmt: skip
    out = tmp_path / "run"
    stderr = _error(run_xl(*_args(tiny_model_path, sts["train"], "--dev", str(polish), "-o", str(out))), 1,
                    "dev-pl.jsonl:1", "not English", "--dev-lang pl")  # fmt: skip
    assert "training examples" not in stderr and not out.exists()  # refused before any model or -o was touched
    _error(run_xl(*_args(tiny_model_path, sts["train"], "--dev", str(polish), "--dev-lang", "de", "-o", str(out))), 1,
           "not the --dev-lang de")  # fmt: skip
    _ok(run_xl(*_args(tiny_model_path, sts["train"], "--dev", str(polish), "--dev-lang", "pl", "-o", str(out),
                      "--max-steps", "1")))  # fmt: skip
    manifest = _manifest(out)
    assert manifest["dev"]["lang"] == "pl" and manifest["chosen"]["dev_lang"] == "pl"
    assert "pl dev set" in manifest["chosen"]["by"] and manifest["chosen"]["dev"] == str(polish)
    # no "lang" counts as English
    records = [json.loads(line) for line in sts["dev"].read_text().splitlines()]
    bare = write_jsonl(tmp_path / "dev-bare.jsonl", [{k: v for k, v in r.items() if k != "lang"} for r in records])
    _ok(run_xl(*_args(tiny_model_path, sts["train"], "--dev", str(bare), "-o", str(tmp_path / "bare"),
                      "--max-steps", "1")))  # fmt: skip
    assert _manifest(tmp_path / "bare")["chosen"]["by"].startswith("best on the English dev set")


@pytest.mark.slow
def test_step_0_is_scored_and_kept_when_training_only_makes_the_model_worse(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    # lr 1e-2 on the tiny random model lowers its Spearman on its own training pairs (35.6 -> 20.7 -> 17.1)
    common = _args(tiny_model_path, sts["train"], "--dev", str(sts["train"]), "--max-steps", "8", "--eval-steps", "4",
                   "--lr", "1e-2", "--dtype", "float32", "--save-steps", "2")  # fmt: skip
    run = tmp_path / "run"
    stderr = _ok(run_xl(*common, "-o", str(run)))
    assert "dev at step 0 (the starting model)" in stderr
    assert "step 0 (the starting model) scored best; kept it" in stderr
    manifest = _manifest(run)
    steps = [e["step"] for e in manifest["evaluations"]]
    scores = [e["dev"]["spearman"] for e in manifest["evaluations"]]
    assert steps == [0, 4, 8] and scores[0] > max(scores[1:]), scores
    assert manifest["chosen"]["step"] == 0 and manifest["chosen"]["starting_model"] is True
    assert manifest["chosen"]["metric"] == scores[0]
    _same_weights(run / "model.safetensors", tiny_model_path / "model.safetensors")  # the starting encoder
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "dev" in r] == [0, 4, 8] and rows[-1]["kept"]["step"] == 0
    # killed after step 6 and resumed from the step-6 checkpoint: step 0's score is restored, not redone
    broken = tmp_path / "broken"
    assert run_xl(*common, "-o", str(broken), env={"XL_FAULT_AFTER_STEP": "6"}, timeout=600).returncode == 137
    stderr = _ok(run_xl(*common, "-o", str(broken), "--resume"))
    assert "resuming at step 6" in stderr and "dev at step 0" not in stderr, stderr
    resumed = _manifest(broken)["evaluations"]
    assert [e["step"] for e in resumed] == steps and resumed[:2] == manifest["evaluations"][:2]
    assert resumed[2]["dev"]["spearman"] == pytest.approx(scores[2], abs=1e-6)
    again = [json.loads(line) for line in (broken / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in again if "dev" in r] == [0, 4, 8]
    _same_weights(broken / "model.safetensors", tiny_model_path / "model.safetensors")


# --------------------------------------------------------------------------------------------- paths


def test_recorded_paths_are_absolute_and_bad_inputs_stop_the_run_before_it_touches_the_output(
    sts: dict[str, Path], tiny_model_path: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "train.jsonl").write_bytes(sts["train"].read_bytes())
    (work / "data" / "dev.jsonl").write_bytes(sts["dev"].read_bytes())
    model = os.path.relpath(tiny_model_path, work)
    args = ["finetune", "--task", "sts", "--model", model, "--train", "data/train.jsonl", "--dev", "data/dev.jsonl",
            "-o", "runs/a", "--max-steps", "1", "--batch-size", "8"]  # fmt: skip
    _ok(run_xl(*args, cwd=work))
    run = work / "runs" / "a"
    manifest = _manifest(run)
    assert manifest["train"]["path"] == str(work / "data" / "train.jsonl")
    assert manifest["dev"]["path"] == manifest["chosen"]["dev"] == str(work / "data" / "dev.jsonl")
    assert manifest["options"]["output"] == str(run)
    assert manifest["options"]["model"] == manifest["base_model"]["spec"] == str(tiny_model_path)
    assert manifest["base_model"]["path"] == str(tiny_model_path)
    assert json.loads((run / "run.json").read_text())["options"]["train"] == str(work / "data" / "train.jsonl")
    # a bad dev record, a missing model or a missing file: refused before anything is loaded or removed
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    (work / "data" / "bad.jsonl").write_text(sts["dev"].read_text().splitlines()[0] + '\n{"text1": "a"}\n')
    bad_dev = [*args[:8], "data/bad.jsonl", *args[9:], "--overwrite", "--lr", "1e-3"]
    stderr = _error(run_xl(*bad_dev, cwd=work), 1, "data/bad.jsonl:2", "text2")
    assert "training examples" not in stderr
    no_model = [*args[:4], "./no-such-model", *args[5:], "--overwrite"]
    _error(run_xl(*no_model, cwd=work), 1, "no-such-model")
    missing = [*args[:6], "data/nope.jsonl", *args[7:], "--overwrite"]
    _error(run_xl(*missing, cwd=work), 1, "data/nope.jsonl", "not found")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
