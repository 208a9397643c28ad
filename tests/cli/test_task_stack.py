"""One inference stack: finetune's dev score of the kept model is what ``xl eval`` reports on it, and run
directories written under a task's old name still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_xl


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def classify_run(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("stack")
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    train = _write(folder / "train.jsonl", [{"text": f"a {words[i % 6]} film number {i}", "label": i % 2}
                                            for i in range(48)])  # fmt: skip
    dev = _write(folder / "dev.jsonl", [{"text": f"the {words[(i * 5) % 6]} movie, take {i}", "label": (i * 5) % 2}
                                        for i in range(40)])  # fmt: skip
    run = folder / "run"
    result = run_xl("finetune", "--task", "classify", "--model", str(tiny_model_path), "--train", str(train),
                    "--dev", str(dev), "-o", str(run), "--max-steps", "6", "--eval-steps", "3", "--lr", "1e-3",
                    "--dtype", "float32", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return run, dev


def test_eval_classify_of_the_kept_model_equals_its_dev_score(classify_run: tuple[Path, Path]) -> None:
    run, dev = classify_run
    manifest = json.loads((run / "xl-finetune.json").read_text())
    result = run_xl("eval", "classify", "--model", str(run), f"en={dev}", "--dtype", "float32")
    assert result.returncode == 0, result.stderr.decode()
    line = json.loads(result.stdout.decode().splitlines()[0])
    kept = next(e["dev"] for e in manifest["evaluations"] if e["step"] == manifest["chosen"]["step"])
    assert line["accuracy"] == pytest.approx(kept["accuracy"], abs=1e-9)
    assert line["macro_f1"] == pytest.approx(kept["macro_f1"], abs=1e-9)
    assert line["max_length"] == manifest["head"]["max_length"] and manifest["head"]["task"] == "classify"


def test_a_run_written_under_the_old_task_name_still_loads(classify_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, dev = classify_run
    old = tmp_path / "old-run"
    old.mkdir()
    st_files = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
    for path in run.iterdir():  # a run from before the sentence-transformers files: xl's own files only
        if path.is_file() and path.name not in st_files:
            (old / path.name).write_bytes(path.read_bytes())
    info = json.loads((old / "xl-model.json").read_text())
    info["head"]["task"] = "classification"  # how heads named the task before it had one name
    (old / "xl-model.json").write_text(json.dumps(info))
    fresh = run_xl("eval", "classify", "--model", str(run), f"en={dev}", "--dtype", "float32")
    again = run_xl("eval", "classify", "--model", str(old), f"en={dev}", "--dtype", "float32")
    assert again.returncode == 0, again.stderr.decode()
    assert (
        json.loads(again.stdout.decode().splitlines()[0])["accuracy"]
        == json.loads(fresh.stdout.decode().splitlines()[0])["accuracy"]
    )
    qa = tmp_path / "qa.jsonl"  # QA records, so that the data pass and the refusal is the model's task
    qa.write_text(json.dumps({"id": "q1", "context": "Paris is in France.", "question": "Where is Paris?",
                              "answers": {"text": ["France"], "answer_start": [12]}}) + "\n")  # fmt: skip
    wrong = run_xl("eval", "qa", "--model", str(old), f"en={qa}")
    assert wrong.returncode == 1 and "trained for classify, not qa" in wrong.stderr.decode()


@pytest.mark.parametrize(
    ("name", "message"),
    [("no-such-model", "no-such-model: no such model"), ("./no/such/dir", "no such model directory")],
)
def test_model_info_of_a_missing_model_is_one_line(name: str, message: str, tmp_path: Path) -> None:
    result = run_xl("model", "info", name, env={"XL_HOME": str(tmp_path)})
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1 and result.stdout == b"" and "Traceback" not in result.stderr.decode()
    assert lines[0].startswith("xl model info: error: ") and message in lines[0], lines


def test_model_info_of_a_finetune_output_describes_the_run(classify_run: tuple[Path, Path]) -> None:
    run, dev = classify_run
    result = run_xl("model", "info", str(run))
    assert result.returncode == 0, result.stderr.decode()
    info = json.loads(result.stdout.decode())
    manifest = json.loads((run / "xl-finetune.json").read_text())
    assert info["status"] == "ok" and "fine-tuned by xl finetune for classify (2 labels)" in info["description"]
    assert info["head"]["task"] == "classify" and info["head"]["labels"] == [0, 1]
    assert info["base_model"]["fingerprint"] == manifest["base_model"]["fingerprint"]
    assert info["finetune"]["steps"] == 6 and info["finetune"]["kept_step"] == manifest["chosen"]["step"]
    assert info["finetune"]["dev"] == str(dev.resolve())
    assert "fidelity" not in info and "sources" not in info  # the base model's, not the run's


def test_result_lines_name_the_model_and_the_language_one_way(tiny_model_path: Path, tmp_path: Path) -> None:
    rows = [{"text1": f"a man plays {i}", "text2": f"someone plays {i % 3}", "score": i % 6} for i in range(12)]
    data = _write(tmp_path / "sts.jsonl", rows)
    args = ("eval", "sts", "--model", str(tiny_model_path), f"DEU={data}", f"pol_Latn={data}", "--bootstrap", "0")
    result = run_xl(*args)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["lang"] for line in lines[:2]] == ["de", "pl"] and lines[2]["summary"] is True
    assert all(line["summary"] is False for line in lines[:2])
    assert lines[0]["model_path"] == str(tiny_model_path.resolve()) and len(lines[0]["model_fingerprint"]) >= 12
    assert lines[2]["model_fingerprint"] == lines[0]["model_fingerprint"]
    quiet = run_xl(*args, "--no-summary")
    assert [json.loads(line).get("summary") for line in quiet.stdout.decode().splitlines()] == [False, False]
