"""Models that other tools load: an ``xl finetune`` run directory is a sentence-transformers model whose
``encode`` equals ``xl embed --model DIR`` (pooling, prompt, normalisation, max length), a directory saved by
``SentenceTransformer.save`` is an ``xl embed`` / ``xl eval`` model with its own settings (explicit options win),
and the run's model card is Hugging Face front matter generated from the manifest. On the tiny random XLM-R and
real STSb data."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import run_xl, write_jsonl
from xl.tasks import convert

TEXTS = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "",
         "A rather long sentence that goes on and on, " * 6 + "and is cut at the model's length."]  # fmt: skip


@pytest.fixture(scope="module")
def sts_files(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    del data_root  # skips without the real data
    folder = tmp_path_factory.mktemp("st-sts")
    return {"train": write_jsonl(folder / "stsb-train.jsonl", list(convert("stsb", "train", "en"))[:48]),
            "dev": write_jsonl(folder / "stsb-dev.jsonl", list(convert("stsb", "dev", "en"))[:40])}  # fmt: skip


@pytest.fixture()
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def _st_dir(tiny_model_path: Path, target: Path, *, pooling: str, normalize: bool, prompt: str | None,
            max_seq_length: int) -> Path:  # fmt: skip
    """A directory saved by sentence-transformers itself around the tiny model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(tiny_model_path), max_seq_length=max_seq_length)
    modules = [transformer, Pooling(32, pooling_mode=pooling), *([Normalize()] if normalize else [])]
    prompts = {"query": prompt} if prompt else None
    model = SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name="query" if prompt else None,
                                device="cpu")  # fmt: skip
    model.save(str(target))
    return target


def _st_encode(directory: Path, texts: list[str]) -> np.ndarray:
    """``SentenceTransformer(DIR).encode(texts)`` on the CPU, with nothing added by hand."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device="cpu")
    return np.asarray(model.encode(texts, convert_to_numpy=True), dtype=np.float32)


def _st_pipeline(directory: Path, pooling: str, normalize: bool, max_seq_length: int, prompt: str | None) -> np.ndarray:
    """What sentence-transformers computes with the directory's Transformer and the given pooling settings."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = [Transformer(str(directory), max_seq_length=max_seq_length), Pooling(32, pooling_mode=pooling),
               *([Normalize()] if normalize else [])]  # fmt: skip
    model = SentenceTransformer(modules=modules, device="cpu")
    return np.asarray(model.encode(TEXTS, prompt=prompt or "", convert_to_numpy=True), dtype=np.float32)


def _xl_embed(directory: Path, texts: Path, out: Path, *extra: str) -> np.ndarray:
    result = run_xl("embed", str(texts), "--model", str(directory), "--dtype", "float32", "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr_text
    return np.load(out)


def _finetune(base: Path, files: dict[str, Path], out: Path, *extra: str) -> dict[str, Any]:
    result = run_xl("finetune", "--task", "sts", "--model", str(base), "--train", str(files["train"]),
                    "--dev", str(files["dev"]), "-o", str(out), "--max-steps", "3", "--batch-size", "8",
                    "--lr", "1e-3", "--dtype", "float32", "--device", "cpu", *extra, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr_text[-3000:]
    return json.loads((out / "xl-finetune.json").read_text())  # type: ignore[no-any-return]


def _front_matter(card: Path) -> dict[str, Any]:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    assert isinstance(meta, dict)
    return meta


# --------------------------------------------------------------------------------------------- run → ST


def test_a_finetune_run_loads_in_sentence_transformers_as_xl_embeds_it(
    tiny_model_path: Path, sts_files: dict[str, Path], texts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = tmp_path / "run"
    manifest = _finetune(tiny_model_path, sts_files, run, "--max-length", "24")
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling", "config_sentence_transformers.json",
                 "README.md"):  # fmt: skip
        assert name in manifest["files"] and (run / name).exists(), name
    assert not (run / "2_Normalize").exists()  # xl finetune does not normalise this model

    from sentence_transformers import SentenceTransformer

    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        model = SentenceTransformer(str(run), device="cpu")
    said = caplog.text + "".join(capfd.readouterr())
    assert "pooler" not in said.lower(), said  # no randomly initialised pooler, no warning about one
    assert model.max_seq_length == 24 == manifest["head"]["max_length"]
    ours = _xl_embed(run, texts, tmp_path / "xl.npy")
    theirs = np.asarray(model.encode(TEXTS, convert_to_numpy=True), dtype=np.float32)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert json.loads((tmp_path / "xl.npy.json").read_text())["truncated"] == 1  # the long text, at 24 tokens

    # An older run directory (no module files, no card) still loads in xl, with the same embeddings.
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "README.md"):
        (old / name).unlink()
    shutil.rmtree(old / "1_Pooling")
    np.testing.assert_allclose(_xl_embed(old, texts, tmp_path / "old.npy"), ours, atol=1e-6)


def test_the_model_card_is_front_matter_from_the_manifest(
    tiny_model_path: Path, sts_files: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    manifest = _finetune(tiny_model_path, sts_files, run)
    meta = _front_matter(run / "README.md")
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert "sentence-transformers" in meta["tags"] and "xl-sts" in meta["tags"]
    assert meta["base_model"] == Path(manifest["base_model"]["path"]).name  # a directory: its name, not a path
    assert meta["language"] == ["en"]
    assert meta["datasets"] == ["stsb-train.jsonl", "stsb-dev.jsonl"]
    for split in ("train", "dev"):
        assert meta["xl_data"][split]["sha256"] == hashlib.sha256(sts_files[split].read_bytes()).hexdigest()
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "semantic-similarity" and result["dataset"]["split"] == "dev"
    spearman = next(m["value"] for m in result["metrics"] if m["type"] == "spearman")
    assert spearman == pytest.approx(manifest["chosen"]["metric"], abs=1e-12)
    body = (run / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    assert f"--train {sts_files['train']}" in body and "--max-steps 3" in body and "--lr 0.001" in body
    assert f"SentenceTransformer({str(run)!r})" in body and f"xl embed sentences.txt --model {run}" in body
    # huggingface_hub reads it as a model card (its own YAML parser and schema)
    from huggingface_hub import ModelCard

    card = ModelCard.load(run / "README.md")
    assert card.data.library_name == "sentence-transformers"
    assert card.data.eval_results and card.data.eval_results[0].metric_type == "spearman"


def test_a_run_from_a_prompting_normalising_st_model_keeps_its_settings(
    tiny_model_path: Path, sts_files: dict[str, Path], texts: Path, tmp_path: Path
) -> None:
    base = _st_dir(tiny_model_path, tmp_path / "st-base", pooling="cls", normalize=True, prompt="query: ",
                   max_seq_length=20)  # fmt: skip
    run = tmp_path / "run"
    manifest = _finetune(base, sts_files, run)
    assert manifest["head"]["pooling"] == "cls" and manifest["head"]["normalize"] is True
    assert manifest["head"]["max_length"] == 20  # the base's max_seq_length
    assert json.loads((run / "config_sentence_transformers.json").read_text())["default_prompt_name"] == "query"
    assert (run / "2_Normalize").is_dir()
    ours = _xl_embed(run, texts, tmp_path / "xl.npy")
    np.testing.assert_allclose(_st_encode(run, TEXTS), ours, atol=1e-5)  # the prompt comes from the directory
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    stated = json.loads((tmp_path / "xl.npy.json").read_text())
    assert (stated["prefix"], stated["pooling"], stated["normalize"], stated["max_length"]) == ("query: ", "cls",
                                                                                              True, 20)  # fmt: skip


# --------------------------------------------------------------------------------------------- ST → xl


def test_xl_embed_and_eval_honour_a_sentence_transformers_directory(
    tiny_model_path: Path, sts_files: dict[str, Path], texts: Path, tmp_path: Path
) -> None:
    st = _st_dir(tiny_model_path, tmp_path / "st", pooling="cls", normalize=True, prompt="query: ", max_seq_length=16)
    ours = _xl_embed(st, texts, tmp_path / "xl.npy")
    np.testing.assert_allclose(_st_encode(st, TEXTS), ours, atol=1e-5)
    assert json.loads((tmp_path / "xl.npy.json").read_text())["truncated"] == 1  # at its max_seq_length 16

    # Options given on the command line win over the directory's files: each equals the pipeline ST runs with
    # that setting changed (on the directory's own tokenizer, which transformers re-serialised when it saved).
    mean = _xl_embed(st, texts, tmp_path / "mean.npy", "--pooling", "mean")
    np.testing.assert_allclose(mean, _st_pipeline(st, "mean", True, 16, "query: "), atol=1e-5)
    assert np.abs(mean - ours).max() > 1e-3  # cls and mean differ: the override did something
    raw = _xl_embed(st, texts, tmp_path / "raw.npy", "--no-normalize", "--prefix", "", "--max-length", "512")
    np.testing.assert_allclose(raw, _st_pipeline(st, "cls", False, 512, None), atol=1e-5)
    assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 1e-3

    # `xl eval sts` runs the same settings: its similarities are sentence-transformers' cosines. (Not compared
    # through Spearman: the random tiny model's cosines lie within 1e-6 of each other, and ties flip the ranks.)
    records = [json.loads(line) for line in sts_files["dev"].read_text().splitlines()]
    a = _st_encode(st, [r["text1"] for r in records])
    b = _st_encode(st, [r["text2"] for r in records])
    result = run_xl("eval", "sts", f"en={sts_files['dev']}", "--model", str(st), "--dtype", "float32",
                    "--bootstrap", "0", "--predictions", str(tmp_path / "predictions"))  # fmt: skip
    assert result.returncode == 0, result.stderr_text
    line = json.loads(result.stdout_text.splitlines()[0])
    assert line["max_length"] == 16
    predicted = np.loadtxt(tmp_path / "predictions" / "stsb-dev.en.txt")
    np.testing.assert_allclose(predicted, np.sum(a * b, axis=1), atol=1e-5)


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda d: d.joinpath("modules.json").write_text(json.dumps(
        [*json.loads(d.joinpath("modules.json").read_text()),
         {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}])),
     "sentence_transformers.models.Dense"),
    (lambda d: d.joinpath("1_Pooling", "config.json").write_text(json.dumps(
        {"embedding_dimension": 32, "pooling_mode": "weightedmean", "include_prompt": True})), "weightedmean"),
    (lambda d: d.joinpath("1_Pooling", "config.json").write_text(json.dumps(
        {"embedding_dimension": 32, "pooling_mode": "mean", "include_prompt": False})), "include_prompt"),
], ids=["dense-module", "weighted-mean", "prompt-excluded"])  # fmt: skip
def test_a_module_xl_cannot_honour_is_refused_naming_it(
    tiny_model_path: Path, texts: Path, tmp_path: Path, edit: Any, needle: str
) -> None:
    st = _st_dir(tiny_model_path, tmp_path / "st", pooling="mean", normalize=True, prompt=None, max_seq_length=32)
    edit(st)
    out = tmp_path / "out.npy"
    out.write_bytes(b"what was there before")
    result = run_xl("embed", str(texts), "--model", str(st), "-o", str(out))
    assert result.returncode == 1, result.stderr_text
    errors = [line for line in result.stderr_text.splitlines() if line.startswith("xl embed: error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr_text
    assert "hint:" in result.stderr_text and "Traceback" not in result.stderr_text
    assert result.stdout == b"" and out.read_bytes() == b"what was there before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "st", "texts.txt"]  # nothing written
