"""Every command's --help renders, and renders what was written: rich's Markdown mode replaces emoji codes,
so an example such as ``sst2:train:en`` once printed as ``sst2🚋en``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer.main
from rich._emoji_codes import EMOJI
from typer.testing import CliRunner

from xl.cli.app import app

EMOJI_CHARS = {ch for code in EMOJI.values() for ch in code if ord(ch) > 0x2000}


def _commands() -> Iterator[list[str]]:
    root = typer.main.get_command(app)

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


@pytest.mark.parametrize("path", list(_commands()), ids=lambda p: " ".join(p) or "xl")
def test_help_renders_without_emoji(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    found = sorted({ch for ch in result.output if ch in EMOJI_CHARS})
    assert not found, f"emoji in the help of {' '.join(path)!r}: {found}"
