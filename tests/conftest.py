"""Shared fixtures: the real data root, the default model, a tiny random XLM-R with the real vocabulary."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from xl.config import data_dir

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers that follow from where a test is and what it uses: ``e2e`` for everything under tests/e2e and
    every test of the default model, ``slow`` for everything under tests/pipes (real processes, each importing
    torch), ``data`` for every test that reads the real data (the ``data_root`` fixture). ``make test-fast``
    leaves out ``slow``, ``e2e`` and ``data``."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        folder = Path(str(item.fspath)).parent.name
        if "default_model_path" in fixtures or folder == "e2e":
            item.add_marker(pytest.mark.e2e)
        if folder == "pipes":
            item.add_marker(pytest.mark.slow)
        if "data_root" in fixtures:
            item.add_marker(pytest.mark.data)


def fuzz_settings(max_examples: int = 200) -> Any:
    """The hypothesis settings of every property-based test: derandomized and database-less, so every run
    (and CI) sees the same examples, with no deadline (the machine may be busy)."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set XL_DATA)")
    return root


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The offline default model, built on first use under $XL_HOME (make test installs it first)."""
    from xl.models.registry import build_default_model

    return build_default_model()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 random XLMRobertaModel with the real 250,002-piece tokenizer (~32 MB, seeded)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xl.models.registry import TOKENIZER_SOURCE, fetch_member

    path = tmp_path_factory.mktemp("tiny-xlmr")
    config = XLMRobertaConfig(
        vocab_size=250_002, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1,
    )  # fmt: skip
    torch.manual_seed(0)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(path, safe_serialization=True)
    tokenizer, _ = fetch_member(TOKENIZER_SOURCE)
    (path / "tokenizer.json").write_bytes(tokenizer)
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    return path


class XlResult:
    """What a run of ``xl`` left: the exit code, stdout as bytes, stderr as bytes (the shape of
    ``subprocess.CompletedProcess[bytes]``, so a test reads an in-process run and a real process alike)."""

    def __init__(self, args: list[str], returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr

    @property
    def exit_code(self) -> int:
        return self.returncode

    @property
    def stdout_bytes(self) -> bytes:
        return self.stdout

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"XlResult(args={self.args!r}, returncode={self.returncode}, stderr={self.stderr_text[-2000:]!r})"


#: Environment variables whose hooks end the process itself (``os._exit``): such runs need a real process.
_PROCESS_ONLY_ENV = ("XL_FAULT_AFTER_STEP", "XL_FAULT_IN_CHECKPOINT")


def write_jsonl(path: Path, records: Any) -> Path:
    """Write ``records`` (an iterable of dicts) to ``path`` as UTF-8 JSON lines; returns ``path``."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def subset_records(dataset: str, split: str, lang: str | None, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records of a registered data set drawn without replacement (seeded), in their file order."""
    import numpy as np

    from xl.tasks import convert

    records = list(convert(dataset, split, lang))
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=min(n, len(records)), replace=False))
    return [records[i] for i in keep]


def run_xl(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: IO[bytes] | None = None,
    timeout: float = 300,
    process: bool = False,
) -> XlResult:
    """Run ``xl ARGS`` in this process through ``xl.cli.app.main`` (the console script's entry point) under
    click's ``CliRunner`` isolation: ``stdin`` bytes on a non-terminal stdin, stdout and stderr captured
    separately, ``env`` and ``cwd`` applied for the run only. ``stdout=FILE`` sends stdout to that open file
    instead (a regular-file stdout, as with ``>`` or ``>>``).

    ``sys.argv`` is ``["xl", *ARGS]`` during the run, as in a process (manifests record it as the command). The
    run leaves nothing behind: ``sys.argv``, the environment, the working directory, the signal handlers it installs,
    the logging configuration and the registry of open outputs are put back as they were. An exception that
    escapes the command is rendered on stderr as the interpreter would (a traceback) with exit code 1.

    ``process=True``, or a fault-injection variable in ``env`` (its hook ends the process), runs a real
    ``python -m xl`` subprocess instead (``timeout`` applies there only)."""
    if process or any(key in (env or {}) for key in _PROCESS_ONLY_ENV):
        return run_xl_process(*args, stdin=stdin, env=env, cwd=cwd, stdout=stdout, timeout=timeout)
    return _run_in_process(list(args), stdin, env or {}, cwd, stdout)


def run_xl_process(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    **kwargs: Any,
) -> XlResult:
    """Run ``python -m xl ARGS`` in a real subprocess (separate stdout and stderr): for what only a process
    has (its exit status after a signal or ``os._exit``, real pipes, resource limits, a terminal)."""
    full_env = {**os.environ, **(env or {})}
    # stdout=FILE sends stdout to a file instead (stderr is still captured)
    streams = {"stderr": subprocess.PIPE} if kwargs.get("stdout") is not None else {"capture_output": True}
    if kwargs.get("stdout") is None:
        kwargs.pop("stdout", None)
    done = subprocess.run(
        [sys.executable, "-m", "xl", *args], input=stdin, env=full_env,
        timeout=timeout, check=False, **streams, **kwargs,
    )  # fmt: skip
    return XlResult(list(args), done.returncode, done.stdout or b"", done.stderr or b"")


#: The click command built from each typer app, kept from run to run as one process keeps it: building it costs
#: about 70 ms, and the suite runs the CLI hundreds of times. An app whose commands change is built again.
_COMMANDS: dict[int, tuple[Any, int, Any]] = {}


def _command_of(app: Any, build: Any) -> Any:
    def size(group: Any) -> int:
        return len(group.registered_commands) + sum(size(g.typer_instance) for g in group.registered_groups)

    cached = _COMMANDS.get(id(app))
    if cached is None or cached[0] is not app or cached[1] != size(app):
        cached = _COMMANDS[id(app)] = (app, size(app), build(app))
    return cached[2]


def _run_in_process(
    args: list[str], stdin: bytes | None, env: dict[str, str], cwd: str | Path | None, stdout: IO[bytes] | None
) -> XlResult:
    import logging
    import signal
    import traceback

    import typer.main
    from click.testing import CliRunner

    from xl.cli.app import main
    from xl.io import atomic

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_argv = sys.argv
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    root = logging.getLogger()
    saved_logging = (root.level, list(root.handlers), logging.root.manager.disable)
    file_stdout: io.TextIOWrapper | None = None
    code = 0
    build = typer.main.get_command
    typer.main.get_command = functools.partial(_command_of, build=build)  # type: ignore[assignment]
    try:
        # a buffered reader, as a real process's stdin is (it can peek)
        stdin_stream = io.BufferedReader(io.BytesIO(stdin or b""))  # type: ignore[arg-type]
        with CliRunner().isolation(input=stdin_stream, env=env) as (out, err, _):
            if stdout is not None:
                # a duplicate of the file's descriptor, as a child process gets: what the command does to
                # its stdout (truncate it, point it at /dev/null) does not touch the caller's handle
                file_stdout = io.TextIOWrapper(open(os.dup(stdout.fileno()), "wb"), encoding="utf-8")
                sys.stdout = file_stdout
            if cwd is not None:
                os.chdir(cwd)
            sys.argv = ["xl", *args]  # what a process's manifests record as its command
            try:
                main(args)
            except SystemExit as exc:
                if exc.code is None:
                    code = 0
                elif isinstance(exc.code, int):
                    code = exc.code
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
            except KeyboardInterrupt:
                traceback.print_exc(file=sys.stderr)
                code = 130
            except Exception:
                traceback.print_exc(file=sys.stderr)
                code = 1
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            stdout_bytes, stderr_bytes = out.getvalue(), err.getvalue()
    finally:
        typer.main.get_command = build  # type: ignore[assignment]
        sys.argv = saved_argv
        if file_stdout is not None:
            with contextlib.suppress(Exception):
                file_stdout.close()
        for target in list(atomic._OPEN):  # outputs a process would have left open at exit: closed, kept
            with contextlib.suppress(Exception):
                target.handle.close()
            atomic._OPEN.discard(target)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        root.setLevel(saved_logging[0])
        root.handlers[:] = saved_logging[1]
        logging.disable(saved_logging[2])
    return XlResult(args, code, stdout_bytes, stderr_bytes)
