"""Options declared once, in process (typer's CliRunner, stdout and stderr apart): every choice option of every
command rejects an invalid value with exit 2 and one line; the same option has the same default everywhere;
renamed options keep their old spelling, hidden from --help; options a mode ignores are refused; ``-o`` whose
suffix contradicts ``--format`` is refused; and ``xl eval retrieval`` has the option set of every ``xl eval``."""

from __future__ import annotations

import inspect
import json
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import typer
from typer.testing import CliRunner, Result

from xl.cli.app import app

ROOT = typer.main.get_command(app)


def _leaves(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    commands = getattr(group, "commands", None)
    if not commands:
        return [(prefix, group)]
    return [leaf for name, sub in commands.items() for leaf in _leaves(sub, (*prefix, name))]


COMMANDS = dict(_leaves(ROOT))


def _annotation(command: Any, param: Any) -> Any:
    """The declared type of a parameter, read from the command function's signature (not typer's internals,
    which differ between its releases)."""
    function = inspect.unwrap(command.callback)
    hints = typing.get_type_hints(function, include_extras=True)
    annotation = hints[param.name]
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _choices(command: Any, param: Any) -> tuple[str, ...] | None:
    """The fixed values of an option declared as a typed choice (Literal or Enum, optional or not), else None."""
    annotation = _annotation(command, param)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(v) for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(m.value) for m in annotation)
    return None


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


CHOICE_OPTIONS = [
    (path, param.opts[0], choices)
    for path, command in COMMANDS.items()
    for param in _options(command)
    if (choices := _choices(command, param)) is not None
]


def invoke(*args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(app, list(args), **kwargs)


def _refused(result: Result, *needles: str) -> str:
    """Exit 2, nothing on stdout, one ``xl CMD: error:`` line (then at most a hint); the error line returned."""
    lines = result.stderr.splitlines()
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert len(lines) in (1, 2) and ": error: " in lines[0] and lines[0].startswith("xl "), result.stderr
    assert len(lines) == 1 or lines[1].startswith("  hint: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return lines[0]


def test_every_command_has_choice_options_found() -> None:
    """The walk sees the commands and their typed choices (a broken walk would make the next test vacuous)."""
    assert len(COMMANDS) >= 20
    found = {(path, opt) for path, opt, _ in CHOICE_OPTIONS}
    expected = [(("embed",), "--format"), (("eval", "retrieval"), "--scoring"), (("finetune",), "--task"),
                (("tasksim", "correlate"), "--family-test"), (("eval", "qa"), "--answer-normalization")]  # fmt: skip
    assert set(expected) <= found


# Options with a fixed set of values: wherever one of these names appears (and is shown), it is a typed choice.
FIXED_VALUES = {"--format", "--dtype", "--pooling", "--input-format", "--errors", "--method", "--side", "--task",
                "--loss", "--class-weight", "--proj-side", "--answer-normalization", "--scoring", "--unit", "--center",
                "--resample", "--family-test", "--regressor", "--layout", "--xtreme-task"}  # fmt: skip


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_options_with_fixed_values_are_typed_choices(path: tuple[str, ...]) -> None:
    for param in _options(COMMANDS[path]):
        if param.hidden or param.opts[0] not in FIXED_VALUES:
            continue
        declared = _choices(COMMANDS[path], param)
        assert declared is not None, f"xl {' '.join(path)} {param.opts[0]} is not declared as a typed choice"


@pytest.mark.parametrize(("path", "option", "choices"), CHOICE_OPTIONS,
                         ids=[f"{' '.join(p)} {o}" for p, o, _ in CHOICE_OPTIONS])  # fmt: skip
def test_an_invalid_choice_is_one_line_and_exit_2(path: tuple[str, ...], option: str, choices: tuple[str, ...]) -> None:
    # the bad value comes first, so it is checked before any missing required option
    line = _refused(invoke(*path, option, "no-such-choice"), "no-such-choice")
    assert line.startswith(f"xl {' '.join(path)}: error: ") and option in line
    assert all(repr(choice) in line for choice in choices), line  # the error names the valid values


@pytest.mark.parametrize(("path", "option", "choices"), CHOICE_OPTIONS,
                         ids=[f"{' '.join(p)} {o}" for p, o, _ in CHOICE_OPTIONS])  # fmt: skip
def test_help_lists_the_choices(path: tuple[str, ...], option: str, choices: tuple[str, ...]) -> None:
    param = next(p for p in _options(COMMANDS[path]) if p.opts[0] == option)
    result = invoke(*path, "--help", env={"COLUMNS": "250"})
    assert result.exit_code == 0
    if param.hidden:
        assert option not in result.stdout
    else:
        assert "|".join(choices) in result.stdout, f"--help of xl {' '.join(path)} does not list {option}'s choices"


def test_choices_agree_with_the_library() -> None:
    """The CLI declares its choices without importing the maths at start-up; they are the library's."""
    from xl.cli import tasksim as cli
    from xl.core.inference import BOOTSTRAPS
    from xl.core.retrieval import SCORINGS
    from xl.core.tasksim import CENTERINGS, FAMILY_TESTS, SIMILARITY_METHODS

    assert set(typing.get_args(cli.SimilarityMethod)) == set(SIMILARITY_METHODS)
    assert set(typing.get_args(cli.Centering)) == set(CENTERINGS)
    assert set(typing.get_args(cli.Resampling)) == set(BOOTSTRAPS)
    assert set(typing.get_args(cli.FamilyTest)) == set(FAMILY_TESTS)
    scoring = next(p for p in _options(COMMANDS["eval", "retrieval"]) if p.name == "scoring")
    assert set(_choices(COMMANDS["eval", "retrieval"], scoring) or ()) == set(SCORINGS)


SHARED_DEFAULTS = {"--bootstrap": 1000, "--dtype": "auto", "--device": "auto", "--model": "default", "--seed": 0,
                   "--quiet": False}  # fmt: skip


def test_the_same_option_has_the_same_default_everywhere() -> None:
    seen: dict[str, set[tuple[str, ...]]] = {}
    for path, command in COMMANDS.items():
        for param in _options(command):
            name = param.opts[0]
            if name in SHARED_DEFAULTS:
                assert param.default == SHARED_DEFAULTS[name], (
                    f"xl {' '.join(path)} {name} defaults to {param.default!r}"
                )
                seen.setdefault(name, set()).add(path)
    assert len(seen["--bootstrap"]) == 6  # eval sts, classify, qa, retrieval; tasksim correlate, predict


@pytest.mark.parametrize("path", [p for p in COMMANDS if p[0] == "eval"], ids=" ".join)
def test_every_eval_command_has_the_shared_options(path: tuple[str, ...]) -> None:
    names = {opt for param in _options(COMMANDS[path]) for opt in param.opts}
    assert {"--bootstrap", "--seed", "--limit", "--format", "--tag", "-q"} <= names


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_help_is_readable_at_80_columns(path: tuple[str, ...]) -> None:
    """No option name or help word is cut with an ellipsis in an 80-column terminal."""
    result = invoke(*path, "--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    cut = [line for line in result.stdout.splitlines() if "…" in line.replace("{…}", "").replace("LANG…", "")]
    assert not cut, "\n".join(cut)


# --------------------------------------------------------------------------------------------- renames


def _help(*path: str) -> str:
    return invoke(*path, "--help", env={"COLUMNS": "250"}).stdout


@pytest.mark.parametrize(("path", "new", "old"), [
    (("eval", "qa"), "--answer-normalization", "--normalize"),
    (("fit-proj",), "--preprocess", "--normalize"),
    (("fit-proj",), "--preprocess-src", "--normalize-src"),
    (("fit-proj",), "--preprocess-tgt", "--normalize-tgt"),
    (("fit-proj",), "--affine", "--center"),
    (("model", "install"), "--overwrite", "--force"),
])  # fmt: skip
def test_a_renamed_option_is_hidden_under_its_old_name(path: tuple[str, ...], new: str, old: str) -> None:
    text = _help(*path)
    assert new in text
    assert f"{old} " not in text and f"{old}\n" not in text and f"{old}," not in text


def _pairs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 6)).astype(np.float32)
    Y = (X @ np.linalg.qr(rng.standard_normal((6, 6)))[0]).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y + 0.01 * rng.standard_normal(Y.shape).astype(np.float32))
    return tmp_path / "x.npy", tmp_path / "y.npy"


def test_fit_proj_old_spellings_give_the_same_map(tmp_path: Path) -> None:
    x, y = _pairs(tmp_path)
    base = ["fit-proj", "--src", str(x), "--tgt", str(y)]
    new = invoke(*base, "-o", str(tmp_path / "new.npy"), "--preprocess", "unit,center", "--preprocess-tgt", "unit",
                 "--affine", "-q")  # fmt: skip
    old = invoke(*base, "-o", str(tmp_path / "old.npy"), "--normalize", "unit,center", "--normalize-tgt", "unit",
                 "--center")  # fmt: skip
    assert new.exit_code == 0 and old.exit_code == 0, new.stderr + old.stderr
    assert np.array_equal(np.load(tmp_path / "new.npy"), np.load(tmp_path / "old.npy"))
    manifest = json.loads((tmp_path / "old.npy.json").read_text())["projection"]
    assert json.dumps(manifest) == json.dumps(json.loads((tmp_path / "new.npy.json").read_text())["projection"])
    assert "xl fit-proj: warning: --normalize is deprecated; use --preprocess" in old.stderr
    assert "--center is deprecated; use --affine" in old.stderr and "deprecated" not in new.stderr
    both = invoke(*base, "-o", str(tmp_path / "W.npy"), "--preprocess", "unit", "--normalize", "center")
    _refused(both, "--normalize is the old name of --preprocess")


def test_eval_qa_normalize_is_the_old_name_of_answer_normalization(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr("xl.evaluate.evaluate", lambda options, emit, log, **_: seen.append(options))
    for args in (["--answer-normalization", "mlqa"], ["--normalize", "mlqa"], []):
        result = invoke("eval", "qa", "data.jsonl", *args)
        assert result.exit_code == 0, result.stderr
    assert [options.normalization for options in seen] == ["mlqa", "mlqa", "squad"]
    warned = invoke("eval", "qa", "d", "--normalize", "mlqa").stderr
    assert "xl eval qa: warning: --normalize is deprecated; use --answer-normalization" in warned
    _refused(invoke("eval", "qa", "d", "--normalize", "nfkc"), "--normalize", "'squad', 'mlqa'")


def test_model_install_force_is_the_old_name_of_overwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr("xl.models.registry.build_default_model",
                        lambda force, log: seen.append(force) or Path("/models/default"))  # fmt: skip
    for args in (["--overwrite"], ["--force"], []):
        assert invoke("model", "install", "-q", *args).exit_code == 0
    assert seen == [True, True, False]


def test_flags_whose_default_is_on_are_shown_as_their_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--no-group-by-length`` / ``--no-naive`` are what --help shows; the default spelling still parses."""
    seen: list[Any] = []
    monkeypatch.setattr("xl.finetune.finetune", lambda options, log, **_: seen.append(options))
    base = ["finetune", "--task", "sts", "--train", "t.jsonl", "-o", "run"]
    for args in (["--no-group-by-length"], ["--group-by-length"], []):
        assert invoke(*base, *args).exit_code == 0
    assert [o.group_by_length for o in seen] == [False, True, True]
    _refused(invoke(*base, "--group-by-length", "--no-group-by-length"), "contradict")
    assert "--no-group-by-length" in _help("finetune") and "--group-by-length " not in _help("finetune")
    assert "--no-naive" in _help("tasksim", "correlate") and "--include-english" in _help("tasksim", "gains")


# --------------------------------------------------------------------------------------------- ignored options


@pytest.mark.parametrize(("args", "needles"), [
    (["tasksim", "embed", "--method", "taskemb", "a=runs/a", "--dtype", "bfloat16"], ["--dtype", "taskemb"]),
    (["tasksim", "embed", "--method", "taskemb", "a=runs/a", "--model", "m"], ["--model", "taskemb"]),
    (["eval", "sts", "--embeddings1", "a.npy", "--embeddings2", "b.npy", "d.jsonl", "--limit", "5"],
     ["--limit", "precomputed embeddings"]),
    (["eval", "sts", "--embeddings1", "a.npy", "--embeddings2", "b.npy", "d.jsonl", "--dtype", "float32"], ["--dtype"]),
    (["eval", "sts", "d.jsonl", "--proj-side", "text1"], ["--proj-side", "without --proj"]),
    (["eval", "sts", "d.jsonl", "--force"], ["--force", "without --proj"]),
    (["eval", "retrieval", "--src", "a.npy", "--tgt", "b.npy", "--csls-k", "5"], ["--csls-k", "--scoring nn"]),
    (["eval", "retrieval", "--src", "a.npy", "--tgt", "b.npy", "--force"], ["--force", "without --proj"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--epochs", "3"], ["--epochs", "--method lstsq"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--method", "sgd", "--ridge", "0.1"], ["--ridge", "sgd"]),
    (["finetune", "--task", "classify", "--train", "t", "-o", "o", "--loss", "cosent"], ["--loss", "classify"]),
    (["finetune", "--task", "sts", "--train", "t", "-o", "o", "--doc-stride", "64"], ["--doc-stride"]),
    (["finetune", "--task", "sts", "--train", "t", "-o", "o", "--eval-steps", "9"], ["--eval-steps", "without --dev"]),
    (["finetune", "--task", "align", "--train", "t", "-o", "o", "--loss", "cosent"], ["--loss", "align"]),
    (["finetune", "--task", "align", "--train", "t", "-o", "o", "--doc-stride", "64"], ["--doc-stride", "align"]),
    (["finetune", "--task", "sts", "--train", "t", "-o", "o", "--class-weight", "balanced"], ["--class-weight", "sts"]),
    (["finetune", "--task", "align", "--train", "t", "-o", "o", "--class-weight", "none"], ["--class-weight"]),
    (["tasksim", "predict", "--sim", "s.npy", "--gains", "g", "--regressor", "gbm", "--alpha", "2"], ["--alpha"]),
    (["tasksim", "covariates", "de", "ko", "--model", "m"], ["--model", "without --english"]),
    (["embed", "in.txt", "--input-format", "text", "--field", "sentence"], ["--field", "--input-format text"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--dev-frac", "0", "--dev-max", "9"],
     ["--dev-max", "--dev-frac 0"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--dev-frac", "0", "--seed", "1"], ["--seed", "--dev-frac 0"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--method", "sgd", "--dev-frac", "0", "--patience", "2"],
     ["--patience", "no dev pairs"]),
    (["tasksim", "correlate", "--sim", "s.npy", "--gains", "g", "--bootstrap", "0", "--resample", "two-way"],
     ["--resample", "--bootstrap 0"]),
    (["tasksim", "correlate", "--sim", "s.npy", "--gains", "g", "--bootstrap", "0", "--permutations", "0",
      "--seed", "3"], ["--seed", "nothing is drawn"]),
    (["eval", "sts", "d.jsonl", "--bootstrap", "0", "--seed", "3"], ["--seed", "no --limit"]),
    (["eval", "classify", "d.jsonl", "--bootstrap", "0", "--seed", "3"], ["--seed", "no --limit"]),
    (["eval", "qa", "d.jsonl", "--bootstrap", "0", "--seed", "3"], ["--seed", "no --limit"]),
    (["eval", "retrieval", "--src", "a.npy", "--tgt", "b.npy", "--bootstrap", "0", "--seed", "3"], ["--seed"]),
    (["eval", "retrieval", "tatoeba:test:de", "--bootstrap", "0", "--seed", "3"], ["--seed", "no --limit"]),
])  # fmt: skip
def test_an_option_that_the_mode_ignores_is_refused(args: list[str], needles: list[str], tmp_path: Path) -> None:
    _refused(invoke(*args), "has no effect", *needles)


@pytest.mark.parametrize("args", [
    ["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "--method", "sgd", "--dev-frac", "0", "--seed", "1"],
    ["tasksim", "correlate", "--sim", "s.npy", "--gains", "g", "--bootstrap", "0", "--seed", "3"],
    ["tasksim", "correlate", "--sim", "s.npy", "--gains", "g", "--permutations", "0", "--seed", "3"],
    ["eval", "sts", "d.jsonl", "--bootstrap", "0", "--limit", "5", "--seed", "3"],
    ["eval", "retrieval", "--src", "a.npy", "--tgt", "b.npy", "--seed", "3"],
])  # fmt: skip
def test_an_option_that_the_mode_uses_is_not_refused(args: list[str]) -> None:
    result = invoke(*args)  # the inputs do not exist: refused for that, not for an option
    assert result.exit_code == 1 and "no effect" not in result.stderr and "no such" in result.stderr, result.stderr


@pytest.mark.parametrize(("args", "needles"), [
    (["embed", "in.txt", "--format", "jsonl", "-o", "x.npy"], ["x.npy", "--format is jsonl"]),
    (["embed", "in.txt", "--format", "npy", "-o", "x.jsonl"], ["--format is npy"]),
    (["tasksim", "embed", "a=a.jsonl", "--format", "npy", "-o", "t.jsonl"], ["--format is npy"]),
    (["fit-proj", "--src", "a.npy", "--tgt", "b.npy", "-o", "W.jsonl"], ["W.jsonl"]),
    (["apply-proj", "W.npy", "x.npy", "-o", "out.jsonl"], ["out.jsonl"]),
    (["tasksim", "similarity", "t.npy", "-o", "sim.json"], ["sim.json"]),
    (["tasksim", "gains", "r.jsonl", "-o", "gains.npy"], ["gains.npy"]),
    (["tasksim", "covariates", "de", "-o", "c.npy"], ["c.npy"]),
    (["data", "convert", "stsb", "train", "en", "-o", "stsb.npy"], ["stsb.npy"]),
])  # fmt: skip
def test_an_output_whose_suffix_contradicts_the_format_is_refused(args: list[str], needles: list[str]) -> None:
    _refused(invoke(*args), *needles)


# --------------------------------------------------------------------------------------------- eval retrieval


def test_eval_retrieval_bootstrap_0_limit_quiet_and_tags(tmp_path: Path) -> None:
    x, y = _pairs(tmp_path)
    base = ["eval", "retrieval", "--src", str(x), "--tgt", str(y)]
    none = invoke(*base, "--bootstrap", "0")
    assert none.exit_code == 0, none.stderr
    row = orjson.loads(none.stdout)
    assert row["src2tgt"]["accuracy_ci"] is None and row["tgt2src"]["accuracy_ci"] is None
    assert row["bootstrap"]["n_resamples"] == 0 and row["n"] == 60
    assert b"| src2tgt |" in invoke(*base, "--bootstrap", "0", "--format", "md").stdout_bytes

    default = orjson.loads(invoke(*base).stdout)
    assert default["bootstrap"]["n_resamples"] == 1000 and len(default["src2tgt"]["accuracy_ci"]) == 2

    limited = [orjson.loads(invoke(*base, "--limit", "20", "--seed", str(seed)).stdout) for seed in (0, 0, 1)]
    assert [r["n"] for r in limited] == [20, 20, 20]
    assert limited[0] == limited[1]  # seeded: the same rows every time
    assert orjson.loads(invoke(*base, "--limit", "1000").stdout)["n"] == 60  # more than there are: all of them

    np.save(tmp_path / "other.npy", np.load(y))
    (tmp_path / "x.npy.json").write_text(json.dumps({"model": "a", "model_fingerprint": "a"}))
    (tmp_path / "other.npy.json").write_text(json.dumps({"model": "b", "model_fingerprint": "b"}))
    across = ["eval", "retrieval", "--src", str(x), "--tgt", str(tmp_path / "other.npy"), "--bootstrap", "0"]
    assert "different models" in invoke(*across).stderr
    quiet = invoke(*across, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""

    tagged = orjson.loads(invoke(*base, "--tag", "lang=ko", "--tag", "method=lstsq", "--bootstrap", "0").stdout)
    assert tagged["lang"] == "ko" and tagged["method"] == "lstsq"
    for field in ("n", "task", "src2tgt", "scoring"):
        _refused(invoke(*base, "--tag", f"{field}=x"), f"--tag {field}=", "result field")


def test_eval_sts_refuses_a_tag_that_clashes_with_a_result_field_before_any_work() -> None:
    for command in ("sts", "classify", "qa"):
        _refused(invoke("eval", command, "no-such-data.jsonl", "--tag", "lang=ko"), "--tag lang=", "result field")
    # a metric's interval (--bootstrap) and its mean on the summary line are fields too
    for field in ("spearman_ci", "mean_spearman", "f1_ci", "mean_accuracy"):
        _refused(invoke("eval", "sts", "no-such-data.jsonl", "--tag", f"{field}=1"), f"--tag {field}=", "result field")


def test_a_tag_hint_that_works_and_a_key_given_twice() -> None:
    import shlex

    from xl.evaluate import RESERVED_FIELDS

    for command in ("sts", "classify", "qa"):
        line = _refused(invoke("eval", command, "no-such-data.jsonl", "--tag", "lang"), "not KEY=VALUE")
        hint = invoke("eval", command, "no-such-data.jsonl", "--tag", "lang").stderr.split("hint: e.g. ")[1]
        keys = [word.split("=")[0] for word in shlex.split(hint) if "=" in word]
        assert keys and not set(keys) & RESERVED_FIELDS, line  # the example is a tag the command takes
        _refused(invoke("eval", command, "d.jsonl", "--tag", "seed=1", "--tag", "seed=2"), "seed= given twice")
    _refused(invoke("eval", "retrieval", "--src", "a.npy", "--tgt", "b.npy", "--tag", "k=a", "--tag", "k=b"),
             "k= given twice")  # fmt: skip
    same = invoke("eval", "sts", "d.jsonl", "--tag", "seed=1", "--tag", "seed=1")  # said twice, one meaning
    assert same.exit_code == 1 and "given twice" not in same.stderr


@pytest.mark.parametrize("args", [
    ["eval", "sts", "-", "-"], ["eval", "classify", "de=-", "ko=-"], ["eval", "qa", "-", "x=-"],
    ["eval", "sts", "--embeddings1", "-", "--embeddings2", "-", "d.jsonl"],
    ["eval", "retrieval", "--src", "-", "--tgt", "-"], ["fit-proj", "--src", "-", "--tgt", "-"],
    ["apply-proj", "-", "-"], ["tasksim", "correlate", "--sim", "-", "--gains", "-"],
    ["tasksim", "predict", "--sim", "s.npy", "--gains", "-", "--covariates", "-"], ["tasksim", "gains", "-", "-"],
])  # fmt: skip
def test_stdin_given_twice_is_a_usage_error(args: list[str]) -> None:
    _refused(invoke(*args, input=""), "stdin")  # not "empty input" from the second reader
