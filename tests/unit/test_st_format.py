"""Reading and writing sentence-transformers module files without torch (:mod:`xl.models.st_format`): what xl
writes reads back as written, both layouts of the Pooling config (the flags of sentence-transformers 2-5 and
v6's ``pooling_mode``) are understood, v6's length in ``tokenizer_config.json`` is found, and every pipeline xl
cannot run as sentence-transformers would is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xl.errors import ModelError
from xl.models.st_format import read_st_settings, write_st_files


def _dir(tmp_path: Path, **settings: object) -> Path:
    defaults: dict[str, object] = {"hidden": 32, "pooling": "mean", "normalize": False, "max_length": 128,
                                   "prefix": ""}  # fmt: skip
    write_st_files(tmp_path, **{**defaults, **settings})
    return tmp_path


ROUND_TRIPS = [("mean", False, "", 128), ("cls", True, "query: ", 64), ("max", False, "passage: ", 7)]


@pytest.mark.parametrize(("pooling", "normalize", "prefix", "max_length"), ROUND_TRIPS)
def test_what_xl_writes_reads_back(tmp_path: Path, pooling: str, normalize: bool, prefix: str, max_length: int) -> None:
    folder = _dir(tmp_path, pooling=pooling, normalize=normalize, prefix=prefix, max_length=max_length)
    settings = read_st_settings(folder, 32)
    assert settings is not None
    read = (settings.pooling, settings.normalize, settings.prefix, settings.max_length)
    assert read == (pooling, normalize, prefix, max_length)
    assert (folder / "2_Normalize").is_dir() == normalize


def test_a_directory_without_modules_json_has_no_settings(tmp_path: Path) -> None:
    assert read_st_settings(tmp_path) is None


def test_the_v6_layout_pooling_mode_and_the_tokenizer_length(tmp_path: Path) -> None:
    folder = _dir(tmp_path, pooling="mean")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": 32, "pooling_mode": "cls", "include_prompt": True}))  # fmt: skip
    (folder / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "feature-extraction"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 96}))
    (folder / "config_sentence_transformers.json").unlink()  # no prompts: the model's other defaults apply
    settings = read_st_settings(folder, 32)
    assert settings is not None and (settings.pooling, settings.max_length, settings.prefix) == ("cls", 96, None)


@pytest.mark.parametrize(("file", "content", "needle"), [
    ("1_Pooling/config.json", {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True,
                               "pooling_mode_cls_token": True}, "cls + mean"),
    ("1_Pooling/config.json", {"word_embedding_dimension": 32, "pooling_mode_lasttoken": True}, "'lasttoken'"),
    ("1_Pooling/config.json", {"word_embedding_dimension": 16, "pooling_mode_mean_tokens": True}, "16-dimensional"),
    ("sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": True}, "lower-cases"),
    ("config_sentence_transformers.json", {"prompts": {"query": "q: "}, "default_prompt_name": "doc"}, "'doc'"),
    ("modules.json", [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                      {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                      {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
     "'sentence_transformers.models.Dense'"),
    ("modules.json", [{"idx": 0, "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
                      {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
     "'0_Transformer'"),
    ("modules.json", [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"}], "Transformer →"),
    ("modules.json", {"not": "a list"}, "not a list"),
])  # fmt: skip
def test_what_xl_cannot_honour_is_refused_by_name(tmp_path: Path, file: str, content: object, needle: str) -> None:
    folder = _dir(tmp_path)
    (folder / file).write_text(json.dumps(content))
    with pytest.raises(ModelError) as caught:
        read_st_settings(folder, 32)
    assert needle in caught.value.message, caught.value.message


def test_reading_imports_no_torch(tmp_path: Path) -> None:
    folder = _dir(tmp_path, pooling="cls", normalize=True)
    code = (f"import sys; from xl.models.st_format import read_st_settings; read_st_settings(__import__('pathlib')"
            f".Path({str(folder)!r})); assert 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
