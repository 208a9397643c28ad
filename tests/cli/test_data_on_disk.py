"""``xl data list`` and ``xl data convert`` follow the files on disk under ``$XL_DATA``, not a fixed table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_xl


@pytest.fixture()
def own_root(tmp_path: Path, data_root: Path) -> Path:
    """A data root as a user may hold it: STSb-multi-MT with a Polish test file the registry does not list
    (a copy of the German one), German's train file missing, and one Tatoeba pair plus a new language."""
    root = tmp_path / "data"
    sts = root / "stsb-multi-mt"
    sts.mkdir(parents=True)
    shutil.copy(data_root / "stsb-multi-mt" / "stsb-de-test.csv", sts / "stsb-pl-test.csv")
    shutil.copy(data_root / "stsb-multi-mt" / "stsb-de-test.csv", sts / "stsb-de-test.csv")
    tatoeba = root / "tatoeba"
    tatoeba.mkdir()
    for name in ("tatoeba.deu-eng.eng", "tatoeba.deu-eng.deu"):
        shutil.copy(data_root / "tatoeba" / name, tatoeba / name)
    (tatoeba / "tatoeba.sme-eng.eng").write_text("Good morning.\nThank you.\n", encoding="utf-8")
    (tatoeba / "tatoeba.sme-eng.sme").write_text("Buorre iđit.\nGiitu.\n", encoding="utf-8")
    (tatoeba / "tatoeba.xho-eng.eng").write_text("a lone side\n", encoding="utf-8")  # no partner: not a pair
    return root


def _listed(root: Path) -> list[dict[str, object]]:
    result = run_xl("data", "list", env={"XL_DATA": str(root)})
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_data_list_shows_what_is_on_disk(own_root: Path) -> None:
    rows = {(r["dataset"], r["split"], r["lang"]): r["rows"] for r in _listed(own_root)}
    assert rows == {
        ("stsb-multi-mt", "test", "de"): 1379,  # the registry's count, checked on conversion
        ("stsb-multi-mt", "test", "pl"): None,  # on disk, not in the registry: listed, rows unknown
        ("tatoeba", "test", "en-de"): 1000,
        ("tatoeba", "test", "en-sme"): None,  # a code outside the language table stays as it is
    }


def test_a_language_on_disk_converts_under_any_spelling(own_root: Path) -> None:
    env = {"XL_DATA": str(own_root)}
    outputs = [run_xl("data", "convert", "stsb-multi-mt", "test", code, env=env) for code in ("pl", "pol", "PL")]
    for result in outputs:
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == outputs[0].stdout
    records = [json.loads(line) for line in outputs[0].stdout.splitlines()]
    assert len(records) == 1379 and records[0]["lang"] == "pl" and set(records[0]) == {"text1", "text2", "score",
                                                                                       "lang"}  # fmt: skip
    sami = run_xl("data", "convert", "tatoeba", "test", "sme", env=env)
    assert sami.returncode == 0, sami.stderr.decode()
    assert [json.loads(line)["text2"] for line in sami.stdout.splitlines()] == ["Buorre iđit.", "Giitu."]


def test_a_language_nowhere_is_refused_naming_what_is_there(own_root: Path) -> None:
    result = run_xl("data", "convert", "stsb-multi-mt", "test", "cs", env={"XL_DATA": str(own_root)})
    stderr = result.stderr.decode()
    assert result.returncode == 2 and result.stdout == b""
    assert "no language 'cs'" in stderr and "pl" in stderr and "xl data list" in stderr and "Traceback" not in stderr


def test_data_list_without_a_data_root_is_an_error(tmp_path: Path) -> None:
    result = run_xl("data", "list", env={"XL_DATA": str(tmp_path / "nonexistent")})
    stderr = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""
    assert stderr.startswith("xl data list: error:") and "data root not found" in stderr and "XL_DATA" in stderr


def test_the_data_root_holds_exactly_the_registry(data_root: Path) -> None:
    """On the shipped data, what is found on disk is the registry (every FLORES and Tatoeba file named by a
    code the registry maps), each with the README's row count."""
    from xl.tasks.convert import DATASETS

    listed = {(r["dataset"], r["split"], r["lang"]): r["rows"] for r in _listed(data_root)}
    registry = {(spec.name, split, lang): rows for spec in DATASETS.values()
                for (split, lang), rows in spec.rows.items() if (split, lang) not in spec.withheld}  # fmt: skip
    assert listed == registry
