"""``xl eval … --predictions DIR --layout xtreme|xtreme-r``: the benchmarks' submission folders, on small real
data with the tiny random XLM-R (fine-tuned for a step or two where a head is needed): folder and file names,
a line per input row in input order, QA keys = the input ids, labels as the data spell them, files of other
languages kept, all files or none, and every refusal one line before the model loads."""

from __future__ import annotations

import contextlib
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_xl, subset_records, write_jsonl


def _ok(result: Any) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr_text[-3000:]
    return [json.loads(line) for line in result.stdout_text.splitlines()]


def _refused(result: Any, code: int, *needles: str) -> str:
    """Exit ``code``, nothing on stdout, one ``xl eval …: error:`` line, at most a hint after it, no traceback."""
    lines = result.stderr_text.splitlines()
    assert result.returncode == code, result.stderr_text
    assert result.stdout == b"" and "Traceback" not in result.stderr_text, result.stderr_text
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("xl eval "), result.stderr_text
    after = lines[lines.index(errors[0]) + 1 :]
    assert len(after) <= 1 and all(line.startswith("  hint: ") for line in after), result.stderr_text
    for needle in needles:
        assert needle in result.stderr_text, result.stderr_text
    return result.stderr_text


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # skips when the real data are missing
    folder = tmp_path_factory.mktemp("layout-data")
    xnli = subset_records("xnli-de", "test", "de", 30)
    pairs = subset_records("tatoeba", "test", "de", 40)
    return {
        "xnli-de": write_jsonl(folder / "xnli-de.jsonl", xnli),
        "xnli-de-reversed": write_jsonl(folder / "xnli-de-reversed.jsonl", xnli[::-1]),
        "kornli": write_jsonl(folder / "kornli.jsonl", subset_records("kornli", "test", "ko", 12)),
        "pawsx-train": write_jsonl(folder / "pawsx-train.jsonl", subset_records("pawsx-de", "dev", "de", 16)),
        "pawsx-de": write_jsonl(folder / "pawsx-de.jsonl", subset_records("pawsx-de", "test", "de", 20)),
        "qa-train": write_jsonl(folder / "qa-train.jsonl", subset_records("xquad", "test", "en", 12)),
        "qa-de": write_jsonl(folder / "qa-de.jsonl", subset_records("xquad", "test", "de", 10)),
        "qa-zh": write_jsonl(folder / "qa-zh.jsonl", subset_records("xquad", "test", "zh", 8, seed=1)),
        "pairs-de": write_jsonl(folder / "pairs-de.jsonl", pairs),
        "pairs-de-reversed": write_jsonl(folder / "pairs-de-reversed.jsonl", pairs[::-1]),
    }


def _finetune(task: str, model: Path, train: Path, out: Path, *extra: str, steps: int = 2, lr: str = "1e-3") -> Path:
    result = run_xl("finetune", "--task", task, "--model", str(model), "--train", str(train), "-o", str(out),
                    "--max-steps", str(steps), "--lr", lr, "--batch-size", "8", "--dtype", "float32", *extra,
                    timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr_text[-3000:]
    return out


@pytest.fixture(scope="module")
def xnli_model(tiny_model_path: Path, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier that has learnt the 30 German test records by heart (a few steps barely move the tiny model,
    which then predicts one label for every record, and an order check could not fail)."""
    return _finetune("classify", tiny_model_path, data["xnli-de"], tmp_path_factory.mktemp("m") / "xnli", steps=40,
                     lr="3e-3")  # fmt: skip


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------- classify


def test_xtreme_r_classify_writes_xnli_test_files_in_input_order(
    xnli_model: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "submission"
    common = ["--model", str(xnli_model), "--dtype", "float32", "--bootstrap", "0"]
    result = run_xl("eval", "classify", *common, f"deu={data['xnli-de']}", f"ko={data['kornli']}",
                    "--predictions", str(out), "--layout", "xtreme-r", "--xtreme-task", "xnli")  # fmt: skip
    lines = _ok(result)
    assert sorted(_files(out)) == ["xnli/test-de.tsv", "xnli/test-ko.tsv"]  # deu: XTREME's spelling, de
    # kornli is not XTREME-R's XNLI (no ko): written as asked, with a note that the benchmark does not score it
    assert "reads no xnli language ko" in result.stderr_text
    de = (out / "xnli/test-de.tsv").read_text().splitlines()
    gold = [r["label"] for r in _records(data["xnli-de"])]
    assert len(de) == len(gold) == 30 and len((out / "xnli/test-ko.tsv").read_text().splitlines()) == 12
    assert set(de) <= {"entailment", "neutral", "contradiction"}  # the labels as XNLI spells them
    assert len(set(de)) > 1  # else the order checks below could not fail
    # row i is record i: the accuracy of the file against the gold labels in input order is the result line's
    assert 100 * np.mean([p == g for p, g in zip(de, gold, strict=True)]) == pytest.approx(lines[0]["accuracy"])
    # and the same records reversed give the same file reversed
    again = tmp_path / "reversed"
    _ok(run_xl("eval", "classify", *common, f"de={data['xnli-de-reversed']}", "--predictions", str(again),
               "--layout", "xtreme-r", "--xtreme-task", "xnli"))  # fmt: skip
    assert (again / "xnli/test-de.tsv").read_text().splitlines() == de[::-1]
    # the same predictions as xl's own layout writes
    own = tmp_path / "own"
    _ok(run_xl("eval", "classify", *common, f"de={data['xnli-de']}", "--predictions", str(own)))
    assert (own / "xnli-de.de.txt").read_text().splitlines() == de


def test_a_pawsx_head_writes_xtreme_and_is_refused_for_xnli(
    tiny_model_path: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    model = _finetune("classify", tiny_model_path, data["pawsx-train"], tmp_path / "pawsx")
    out = tmp_path / "submission"
    _ok(run_xl("eval", "classify", "--model", str(model), f"de={data['pawsx-de']}", "--predictions", str(out),
               "--layout", "xtreme", "--xtreme-task", "pawsx", "--bootstrap", "0"))  # fmt: skip
    lines = (out / "pawsx/test-de.tsv").read_text().splitlines()
    assert len(lines) == 20 and set(lines) <= {"0", "1"}
    # a head that predicts 0/1 cannot write XNLI's file: refused before the weights load, nothing written
    before = _files(out)
    with _weights_never_load():
        refused = run_xl("eval", "classify", "--model", str(model), f"de={data['pawsx-de']}", "--predictions",
                         str(out), "--layout", "xtreme-r", "--xtreme-task", "xnli")  # fmt: skip
    _refused(refused, 1, "xnli does not spell", "entailment")
    assert _files(out) == before


# --------------------------------------------------------------------------------------------- qa


def test_xtreme_r_qa_writes_id_answer_json_keyed_by_the_input_ids(
    tiny_model_path: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    model = _finetune("qa", tiny_model_path, data["qa-train"], tmp_path / "qa", "--max-length", "192",
                      "--doc-stride", "64")  # fmt: skip
    out = tmp_path / "submission"
    lines = _ok(run_xl("eval", "qa", "--model", str(model), f"de={data['qa-de']}", f"zh-Hans={data['qa-zh']}",
                       "--predictions", str(out), "--layout", "xtreme-r", "--xtreme-task", "xquad",
                       "--bootstrap", "0"))  # fmt: skip
    assert sorted(_files(out)) == ["xquad/test-de.json", "xquad/test-zh.json"]
    for lang, key, line in (("de", "qa-de", lines[0]), ("zh", "qa-zh", lines[1])):
        records = _records(data[key])
        saved = json.loads((out / f"xquad/test-{lang}.json").read_text(encoding="utf-8"))
        assert list(saved) == [r["id"] for r in records]  # every id, in input order
        assert all(
            isinstance(answer, str) and answer in r["context"]
            for r, answer in zip(records, saved.values(), strict=True)
        )
        from xl.core.metrics import qa_scores

        assert qa_scores(saved, [(r["id"], r["answers"]["text"]) for r in records])["f1"] == pytest.approx(line["f1"])


# --------------------------------------------------------------------------------------------- retrieval


def test_xtreme_r_retrieval_writes_tatoeba_rows_and_keeps_other_files(
    tiny_model_path: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "submission"
    (out / "tatoeba").mkdir(parents=True)
    (out / "tatoeba/test-fr.tsv").write_text("kept\n")
    (out / "xnli").mkdir()
    (out / "xnli/test-de.tsv").write_text("entailment\n")
    common = ["--model", str(tiny_model_path), "--dtype", "float32", "--bootstrap", "0"]
    result = run_xl("eval", "retrieval", *common, "tatoeba:test:ta", f"deu={data['pairs-de']}", "--predictions",
                    str(out), "--layout", "xtreme-r", "--xtreme-task", "tatoeba")  # fmt: skip
    lines = _ok(result)
    files = _files(out)
    assert sorted(files) == ["tatoeba/test-de.tsv", "tatoeba/test-fr.tsv", "tatoeba/test-ta.tsv", "xnli/test-de.tsv"]
    assert files["tatoeba/test-fr.tsv"] == "kept\n" and files["xnli/test-de.tsv"] == "entailment\n"
    ta = [int(v) for v in files["tatoeba/test-ta.tsv"].splitlines()]
    assert len(ta) == 307 == lines[0]["n"] and all(0 <= k < 307 for k in ta)
    de = [int(v) for v in files["tatoeba/test-de.tsv"].splitlines()]
    assert len(de) == 40
    # line i: the English row retrieved for the German text of row i (xx -> en, as XTREME's Tatoeba scores it)
    english = [r["text1"] for r in _records(data["pairs-de"])]
    correct = [english[k] == english[i] for i, k in enumerate(de)]
    assert 100 * np.mean(correct) == pytest.approx(lines[1]["xx2en_accuracy"])
    assert len(set(de)) > 1
    again = tmp_path / "reversed"
    _ok(run_xl("eval", "retrieval", *common, f"de={data['pairs-de-reversed']}", "--predictions", str(again),
               "--layout", "xtreme-r", "--xtreme-task", "tatoeba"))  # fmt: skip
    reversed_rows = [int(v) for v in (again / "tatoeba/test-de.tsv").read_text().splitlines()]
    assert reversed_rows == [39 - k for k in de[::-1]]


@contextlib.contextmanager
def _weights_never_load() -> Iterator[None]:
    """Make the in-process run fail loudly if it gets as far as loading the model's weights."""
    from xl.models.task_model import TaskInference

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the weights were loaded before the layout was checked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskInference, "load", never)
        yield


def _submission_with_a_german_file(tmp_path: Path) -> Path:
    """A submission folder that already holds ``tatoeba/test-de.tsv`` (``old``), which a refused run must keep."""
    out = tmp_path / "submission"
    (out / "tatoeba").mkdir(parents=True)
    (out / "tatoeba/test-de.tsv").write_text("old\n")
    return out


def test_two_sets_of_one_file_are_refused_before_the_weights_load(
    tiny_model_path: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = _submission_with_a_german_file(tmp_path)
    common = ["--predictions", str(out), "--layout", "xtreme-r", "--xtreme-task", "tatoeba", "--bootstrap", "0"]
    # the third set is German too (a file's LANG= prefix, another spelling), or a dataset's language is a file's
    # (the file's language from its records): refused before the model loads, no result line, no file
    for sets in (["tatoeba:test:ta", f"de={data['pairs-de']}", f"deu={data['pairs-de-reversed']}"],
                 [str(data["pairs-de"]), "tatoeba:test:ta,deu"]):  # fmt: skip
        with _weights_never_load():
            result = run_xl("eval", "retrieval", "--model", str(tiny_model_path), *sets, *common)
        _refused(result, 2, "would both be written as tatoeba/test-de.tsv")
        assert _files(out) == {"tatoeba/test-de.tsv": "old\n"}


def test_a_set_found_twice_only_when_read_fails_late_and_writes_no_file(
    tiny_model_path: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = _submission_with_a_german_file(tmp_path)
    # stdin's language is known once it is read: the clash is found when it comes up, after the first set was
    # scored and its result line printed (then ended as unreadable, as every failed xl eval ends them); no
    # prediction file is written
    result = run_xl("eval", "retrieval", "--model", str(tiny_model_path), f"de={data['pairs-de']}", "-",
                    "--predictions", str(out), "--layout", "xtreme-r", "--xtreme-task", "tatoeba", "--bootstrap", "0",
                    stdin=data["pairs-de-reversed"].read_bytes())  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr_text, result.stderr_text
    errors = [line for line in result.stderr_text.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "would both be written as tatoeba/test-de.tsv" in errors[0], result.stderr_text
    assert _files(out) == {"tatoeba/test-de.tsv": "old\n"}


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("args", "needles"), [
    (["sts", "stsb:test:en", "--layout", "xtreme-r"], ["STS is not an XTREME-R task", "xnli"]),
    (["classify", "d.jsonl", "--layout", "xtreme-r", "--xtreme-task", "udpos"], ["--xtreme-task", "'xnli', 'pawsx'"]),
    (["qa", "d.jsonl", "--layout", "xtreme-r", "--xtreme-task", "xnli"], ["--xtreme-task", "'xquad', 'mlqa'"]),
    (["classify", "d.jsonl", "--layout", "xtreme-r", "--xtreme-task", "pawsx"],
     ["pawsx is an XTREME task, not XTREME-R", "hint: xl eval classify writes the XTREME-R task folders: xnli"]),
    (["classify", "d.jsonl", "--layout", "xtreme-r"], ["needs --xtreme-task", "--xtreme-task xnli"]),
    (["classify", "pawsx-de:test:de", "--layout", "xtreme-r"], ["pawsx-de is pawsx data", "--layout xtreme"]),
    (["classify", "kornli:test:ko", "--layout", "xtreme-r"], ["kornli is not data of an XTREME-R task", "xnli-de"]),
    (["retrieval", "flores200:devtest:de", "--layout", "xtreme"], ["flores200 is not data", "tatoeba"]),
    (["classify", "xnli-de:test:de", "--layout", "xtreme-r", "--xtreme-task", "xnli"],
     ["--xtreme-task has no effect", "registry dataset"]),
    (["classify", "xnli-de:test:de", "--layout", "xtreme-r", "--limit", "5"], ["--limit", "every record"]),
    (["classify", "d.jsonl", "--layout", "xtreme-r", "--xtreme-task", "xnli", "--limit", "5"], ["--limit"]),
    (["classify", "d.jsonl", "--layout", "tsv"], ["--layout", "'xl', 'xtreme', 'xtreme-r'"]),
])  # fmt: skip
def test_a_layout_that_cannot_hold_the_predictions_is_refused_before_the_model_loads(
    args: list[str], needles: list[str], tmp_path: Path
) -> None:
    (tmp_path / "d.jsonl").write_text('{"text1": "a", "text2": "b", "label": "neutral"}\n')
    out = tmp_path / "out"
    # --model names no model: a refusal after the load would be a model error instead
    _refused(run_xl("eval", *args, "--model", str(tmp_path / "no-model"), "--predictions", str(out), cwd=tmp_path),
             2, *needles)  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["classify", "d.jsonl", "--layout", "xtreme-r"], ["--layout has no effect without --predictions"]),
    (["sts", "d.jsonl", "--layout", "xtreme-r"], ["--layout has no effect without --predictions"]),
    (["qa", "d.jsonl", "--predictions", "p", "--xtreme-task", "xquad"], ["--xtreme-task", "with --layout xl"]),
    (["retrieval", "--src", "a.npy", "--tgt", "b.npy", "--layout", "xtreme-r"], ["--layout", "with --src/--tgt"]),
    (["retrieval", "--src", "a.npy", "--tgt", "b.npy", "--xtreme-task", "tatoeba"], ["--xtreme-task"]),
])  # fmt: skip
def test_layout_options_that_have_no_effect_are_refused(args: list[str], needles: list[str], tmp_path: Path) -> None:
    _refused(run_xl("eval", *args, cwd=tmp_path), 2, *needles)
    assert not (tmp_path / "p").exists()


def test_the_cli_choices_are_the_layout_modules() -> None:
    """--layout and each command's --xtreme-task are declared in the CLI (no import at start-up); they are the
    library's: every layout, and every task folder the command writes in some benchmark."""
    from xl.cli import eval as cli
    from xl.tasks import xtreme

    assert typing.get_args(cli.Layout) == xtreme.LAYOUTS
    for task, choices in (("classify", cli.ClassifyXtremeTask), ("qa", cli.QaXtremeTask),
                          ("retrieval", cli.RetrievalXtremeTask)):  # fmt: skip
        folders = {name for layout in xtreme.LAYOUTS for name in xtreme.names_for(layout, task)}
        assert set(typing.get_args(choices)) == folders, task
    assert xtreme.names_for("xtreme-r", "sts") == () and xtreme.names_for("xtreme", "sts") == ()


def test_a_dev_split_is_named_as_xtreme_names_its_dev_files() -> None:
    from xl.errors import UsageError
    from xl.tasks.xtreme import TASKS, layout_file

    mlqa = TASKS["xtreme-r"]["mlqa"]
    assert layout_file(mlqa, "dev", "deu_Latn", "mlqa-de:dev:de").path == "mlqa/dev-de.json"
    assert layout_file(mlqa, None, "DE", "de.jsonl").path == "mlqa/test-de.json"  # a file: the test set
    with pytest.raises(UsageError, match="train split"):
        layout_file(mlqa, "train", "de", "x:train:de")
    with pytest.raises(UsageError, match="named by language"):
        layout_file(mlqa, None, None, "x.jsonl")


def test_the_layout_module_is_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, xl.tasks.xtreme; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
