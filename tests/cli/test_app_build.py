"""``xl CMD`` builds only CMD: the same help and errors as the full app, and none of the other commands'
modules imported (so a numpy-only command starts without them)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from xl.cli.app import COMMANDS, GROUPS, _selection, build_app

LEAVES = [(name,) for name in COMMANDS] + [(group, sub) for group, (_, subs) in GROUPS.items() for sub in subs]


def _help(app: typer.Typer, path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_a_command_built_alone_has_the_full_apps_help(path: tuple[str, ...]) -> None:
    alone = build_app(path)
    assert _help(alone, path) == _help(build_app(), path)
    # only that command is in it (groups keep their name, with only the one subcommand)
    group = typer.main.get_command(alone)
    assert list(group.commands) == [path[0]]  # type: ignore[attr-defined]
    if len(path) == 2:
        assert list(group.commands[path[0]].commands) == [path[1]]  # type: ignore[attr-defined]


def test_the_selection_follows_the_command_line() -> None:
    assert _selection(["apply-proj", "W.npy", "-"]) == ("apply-proj",)
    assert _selection(["eval", "sts", "x.jsonl"]) == ("eval", "sts")
    assert _selection(["eval", "--task", "qa", "x.jsonl"]) == ("eval", "qa")
    assert _selection(["eval", "--help"]) == ("eval",)
    assert _selection(["tasksim", "embedd"]) == ("tasksim",)  # typer names the typo against the group
    assert _selection(["--version"]) == () and _selection([]) == () and _selection(["emb"]) == ()


def test_a_group_without_its_subcommand_lists_all_of_them() -> None:
    listing = _help(build_app(("tasksim",)), ("tasksim",))
    assert all(sub in listing for sub in GROUPS["tasksim"][1])


def test_a_typo_is_refused_by_the_full_app() -> None:
    result = subprocess.run([sys.executable, "-m", "xl", "emebd"], capture_output=True, check=False)
    assert result.returncode == 2 and result.stdout == b""
    assert b"xl: error: No such command 'emebd'" in result.stderr, result.stderr


def test_a_numpy_command_imports_no_other_command() -> None:
    code = (
        "import sys\nfrom xl.cli.app import main\n"
        "try:\n    main(['apply-proj', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('xl.cli.') or m in ('scipy.linalg', 'pydantic')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.decode().strip().splitlines()[-1] == "['xl.cli._common', 'xl.cli.align', 'xl.cli.app']"
