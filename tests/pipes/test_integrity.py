"""Nothing lost, nothing faked: full disks, bad input, killed producers, signals, races and provenance on pipes.

Each test runs real processes (bash pipelines, FIFOs, resource limits, signals) and checks that a run either
leaves a complete, correct result or nothing that a reader would take for one — and that what existed before
is still there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_xl
from xl.io.npy import read_matrix

ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def _shell(command: str, cwd: Path, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, capture_output=True,
                          timeout=timeout, env=ENV, check=False, **kwargs)  # type: ignore[call-overload]  # fmt: skip


def _one_error_line(stderr: bytes, command: str) -> str:
    lines = [line for line in stderr.decode().splitlines() if line.startswith(f"xl {command}: error:")]
    assert len(lines) == 1, stderr.decode()
    assert "Traceback" not in stderr.decode()
    return lines[0]


def _no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".partial" in p.name]
    assert not left, left


def _sentences(path: Path, n: int) -> Path:
    path.write_text("".join(f"sentence number {i} of a test input\n" for i in range(n)))
    return path


def _fsize_limit(kib: int) -> object:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return limit


# --------------------------------------------------------------------------------------------- checked writes


def test_file_size_limit_on_a_redirected_stdout_is_an_error_and_leaves_no_matrix(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    _sentences(tmp_path / "in.txt", 3000)  # 3000 x 32 float32 = 384 KB > 100 KB
    with open(tmp_path / "out.npy", "wb") as out:
        result = subprocess.run([sys.executable, "-m", "xl", "embed", "in.txt", "--model", str(tiny_model_path)],
                                cwd=tmp_path, stdout=out, stderr=subprocess.PIPE, env=ENV,
                                preexec_fn=_fsize_limit(100), check=False)  # fmt: skip
    assert result.returncode == 1
    line = _one_error_line(result.stderr, "embed")
    assert "out.npy" in line and "File too large" in line, line
    assert "ulimit" in result.stderr.decode()
    assert (tmp_path / "out.npy").stat().st_size == 0  # truncated back to where the run started
    assert not (tmp_path / "out.npy.json").exists()


def test_file_size_limit_on_o_keeps_the_previous_file(tiny_model_path: Path, tmp_path: Path) -> None:
    _sentences(tmp_path / "in.txt", 3000)
    (tmp_path / "out.npy").write_bytes(b"previous")
    result = subprocess.run([sys.executable, "-m", "xl", "embed", "in.txt", "--model", str(tiny_model_path),
                             "-o", "out.npy"], cwd=tmp_path, capture_output=True, env=ENV,
                            preexec_fn=_fsize_limit(100), check=False)  # fmt: skip
    assert result.returncode == 1
    line = _one_error_line(result.stderr, "embed")
    assert "out.npy" in line and ".tmp" not in line, line
    assert (tmp_path / "out.npy").read_bytes() == b"previous"
    _no_temp_files(tmp_path)


def test_dev_full_is_an_error(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((3000, 16), np.float32))
    W = np.eye(16, dtype=np.float32)
    np.save(tmp_path / "W.npy", W)
    result = _shell("xl apply-proj W.npy x.npy --force > /dev/full", tmp_path, timeout=60)
    assert result.returncode == 1
    assert "No space left" in _one_error_line(result.stderr, "apply-proj")


def test_data_convert_on_a_file_size_limit_leaves_no_temporary_file(data_root: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "xl", "data", "convert", "stsb", "train", "en", "-o",
                             "train.jsonl"], cwd=tmp_path, capture_output=True, env=ENV,
                            preexec_fn=_fsize_limit(64), check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr.decode()
    assert "train.jsonl" in _one_error_line(result.stderr, "data convert")
    assert not (tmp_path / "train.jsonl").exists()
    _no_temp_files(tmp_path)


def test_unwritable_output_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((4, 16), np.float32))
    np.save(tmp_path / "W.npy", np.eye(16, dtype=np.float32))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root writes into a mode-500 folder anyway; /sys refuses everybody
    target = "locked/out.npy" if not os.access(locked, os.W_OK) else "/sys/xl-out.npy"
    try:
        result = run_xl("apply-proj", "W.npy", "x.npy", "--force", "-o", target, cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert result.returncode == 1
    line = _one_error_line(result.stderr, "apply-proj")
    assert target in line and "Permission denied" in line and "choose another folder" in result.stderr.decode()


def test_missing_output_folder_names_it(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((4, 16), np.float32))
    np.save(tmp_path / "W.npy", np.eye(16, dtype=np.float32))
    result = run_xl("apply-proj", "W.npy", "x.npy", "--force", "-o", "nowhere/out.npy", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere" in result.stderr.decode() and "mkdir -p" in result.stderr.decode()


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content", "extra"),
    [
        (b"good line\n\xff\xfe bad utf-8\nthird\n", []),
        (b'{"text": "a"}\n{"other": "b"}\n', ["--input-format", "jsonl"]),
        (b'{"text": "a"}\nnot json\n', ["--input-format", "jsonl"]),
        (b"a line\nnul \x00 byte\n", []),
    ],
    ids=["utf8", "missing-field", "not-json", "nul"],
)
def test_bad_input_leaves_no_valid_looking_matrix_on_a_redirected_stdout(
    content: bytes, extra: list[str], tiny_model_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "bad.txt").write_bytes(content)
    (tmp_path / "out.npy.json").write_text('{"rows": 300}')  # a stale manifest from an earlier run
    result = _shell(f"xl embed bad.txt --model {tiny_model_path} {' '.join(extra)} > out.npy", tmp_path)
    assert result.returncode == 1
    _one_error_line(result.stderr, "embed")
    assert (tmp_path / "out.npy").stat().st_size == 0
    with pytest.raises(EOFError):
        np.load(tmp_path / "out.npy")
    assert not (tmp_path / "out.npy.json").exists()


def test_bad_input_on_a_jsonl_output_and_an_appended_results_file(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"good\n\xff bad\n")
    result = _shell(f"xl embed bad.txt --model {tiny_model_path} --format jsonl > out.jsonl", tmp_path)
    assert result.returncode == 1 and (tmp_path / "out.jsonl").read_bytes() == b""
    # >> results.jsonl: a failed eval leaves the lines of earlier runs exactly as they were
    (tmp_path / "results.jsonl").write_bytes(b'{"earlier": 1}\n')
    (tmp_path / "sts.jsonl").write_text(json.dumps({"text1": "a", "text2": "b", "score": 1.0}) + "\nnot json\n")
    result = _shell(f"xl eval sts --model {tiny_model_path} sts.jsonl --bootstrap 0 -q >> results.jsonl", tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "results.jsonl").read_bytes() == b'{"earlier": 1}\n'


def test_nan_in_the_last_row_leaves_no_matrix(tmp_path: Path) -> None:
    X = np.ones((5, 16), np.float32)
    X[-1, 3] = np.nan
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "W.npy", np.eye(16, dtype=np.float32))
    result = _shell("xl apply-proj W.npy x.npy --force > out.npy", tmp_path, timeout=60)
    assert result.returncode == 1
    assert "row 4" in _one_error_line(result.stderr, "apply-proj")
    assert (tmp_path / "out.npy").stat().st_size == 0


def test_a_csv_without_the_text_column_is_refused_before_the_model_loads(tiny_model_path: Path,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2,score\na,b,1.0\n")
    result = run_xl("embed", "pairs.csv", "--model", str(tmp_path / "no-model"), "-o", "out.npy", cwd=tmp_path)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "no column 'text'" in stderr and "sentence1, sentence2, score" in stderr and "--field" in stderr
    assert "no-model" not in stderr and not (tmp_path / "out.npy").exists()


# --------------------------------------------------------------------------------------------- pipes


def _stream(tmp_path: Path, model: Path, *args: str) -> bytes:
    """``xl embed ARGS --model MODEL -q`` with stdout on a stream, run in this process (no torch import of its
    own): the bytes that ``xl embed … |`` sends down a pipe, for the consumer at the other end to be a real
    process reading a real pipe."""
    result = run_xl("embed", *args, "--model", str(model), "-q", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(b"\x93NUMPY"), result.stderr_text
    return result.stdout


def _fit_map(tmp_path: Path, model: Path, extra: str = "", piped: bool = True) -> None:
    """W.npy fitted on en.txt against xx.npy (embedded in this process); with ``piped``, en.txt is embedded by a
    real process through a real pipe (xl embed | xl fit-proj --src -). Procrustes: mean-pooled LayerNorm outputs
    of the tiny random model are nearly collinear (their columns sum to about 0), which least squares rightly
    refuses on some CPUs' arithmetic."""
    _sentences(tmp_path / "en.txt", 40)
    _sentences(tmp_path / "xx.txt", 40)
    flags = extra.split()
    made = run_xl("embed", "xx.txt", "--model", str(model), "-q", *flags, "-o", "xx.npy", cwd=tmp_path)
    assert made.returncode == 0, made.stderr_text
    fit = "xl fit-proj --src - --tgt xx.npy -o W.npy -q --method procrustes"
    if piped:
        result = _shell(f"xl embed en.txt --model {model} -q {extra} | {fit}", tmp_path)
    else:
        result = _shell(fit, tmp_path, input=_stream(tmp_path, model, "en.txt", *flags))
    assert result.returncode == 0, result.stderr.decode()


def test_provenance_travels_through_the_pipe(tiny_model_path: Path, tmp_path: Path) -> None:
    _fit_map(tmp_path, tiny_model_path)
    manifest = json.loads((tmp_path / "W.npy.json").read_text())
    src = manifest["src_embeddings"]
    assert src["model_fingerprint"] and src["layer"] == 2 and src["input"].endswith("en.txt")
    assert Path(manifest["tgt"]).is_absolute()
    # what `xl embed en.txt |` sends down a pipe, at the map's layer and at another one
    same_layer = _stream(tmp_path, tiny_model_path, "en.txt")
    other_layer = _stream(tmp_path, tiny_model_path, "en.txt", "--layer", "1")
    # the same model and layer through a pipe: applied, and the output on a pipe carries its provenance
    ok = _shell("xl apply-proj W.npy -q > mapped.npy", tmp_path, input=same_layer)
    assert ok.returncode == 0, ok.stderr.decode()
    mapped = json.loads((tmp_path / "mapped.npy.json").read_text())
    assert mapped["projected_with"] == str(tmp_path / "W.npy") and mapped["model_fingerprint"]
    assert np.load(tmp_path / "mapped.npy").shape == (40, 32)
    # what the producer learns only at its end (the input's sha256) comes in its closing frame, and is kept,
    # also through a second pipe
    en_sha256 = hashlib.sha256((tmp_path / "en.txt").read_bytes()).hexdigest()
    assert mapped["input_sha256"] == en_sha256 and mapped["truncated"] == 0
    twice = _shell("xl apply-proj W.npy -q | xl apply-proj W.npy --force -q > twice.npy", tmp_path, input=same_layer)
    assert twice.returncode == 0, twice.stderr.decode()
    assert json.loads((tmp_path / "twice.npy.json").read_text())["input_sha256"] == en_sha256
    # another layer through a pipe: refused with a hint; --force applies it
    bad = _shell("xl apply-proj W.npy -q > o.npy", tmp_path, input=other_layer)
    assert bad.returncode == 1
    assert "layer" in _one_error_line(bad.stderr, "apply-proj") and "--force" in bad.stderr.decode()
    forced = _shell("xl apply-proj W.npy --force -q > o.npy", tmp_path, input=other_layer)
    assert forced.returncode == 0, forced.stderr.decode()
    # applying a map twice is refused: the input's provenance says it is mapped already
    twice = _shell("xl apply-proj W.npy mapped.npy -o twice.npy", tmp_path)
    assert twice.returncode == 1 and "already mapped" in _one_error_line(twice.stderr, "apply-proj")
    piped_twice = _shell("xl apply-proj W.npy | xl apply-proj W.npy > t.npy", tmp_path, input=same_layer)
    assert piped_twice.returncode == 1 and "already mapped" in piped_twice.stderr.decode()


def test_a_map_without_its_manifest_is_refused(tiny_model_path: Path, tmp_path: Path) -> None:
    _fit_map(tmp_path, tiny_model_path, "--normalize", piped=False)
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "W.npy", tmp_path / "bare" / "map.npy")
    result = _shell("xl apply-proj bare/map.npy xx.npy -o out.npy", tmp_path)
    assert result.returncode == 1
    assert "no manifest (map.npy.json)" in _one_error_line(result.stderr, "apply-proj"), result.stderr.decode()
    assert "--force" in result.stderr.decode()
    assert _shell("xl apply-proj bare/map.npy xx.npy -o out.npy --force -q", tmp_path).returncode == 0
    retrieval = _shell("xl eval retrieval --src xx.npy --tgt xx.npy --proj bare/map.npy", tmp_path)
    assert retrieval.returncode == 1 and "manifest" in retrieval.stderr.decode()


def test_eval_retrieval_records_what_it_compared_and_warns_across_models(tiny_model_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_path, other)
    from safetensors.numpy import load_file, save_file

    # another checkpoint of the same architecture and size: only the weights tell them apart
    tensors = {k: v * np.float32(1.01) for k, v in load_file(str(other / "model.safetensors")).items()}
    save_file(tensors, str(other / "model.safetensors"), metadata={"format": "pt"})
    _sentences(tmp_path / "en.txt", 30)
    for model, name in ((tiny_model_path, "a.npy"), (other, "b.npy")):
        made = run_xl("embed", "en.txt", "--model", str(model), "-q", "-o", name, cwd=tmp_path)
        assert made.returncode == 0, made.stderr_text
    same = _shell("xl eval retrieval --src - --tgt a.npy --bootstrap 10", tmp_path,
                  input=_stream(tmp_path, tiny_model_path, "en.txt"))  # fmt: skip
    assert same.returncode == 0, same.stderr.decode()
    result = json.loads(same.stdout)
    assert result["src_embeddings"]["model_fingerprint"] == result["tgt_embeddings"]["model_fingerprint"]
    assert result["src_embeddings"]["input"] == str(tmp_path / "en.txt") and "warning" not in same.stderr.decode()
    mixed = _shell("xl eval retrieval --src a.npy --tgt b.npy --bootstrap 10", tmp_path)
    assert mixed.returncode == 0 and "different models" in mixed.stderr.decode()


def test_a_failing_producer_fails_the_consumer(tiny_model_path: Path, tmp_path: Path) -> None:
    # 70 good lines, then invalid UTF-8: with --window 16 the producer has streamed 64 rows when it fails.
    (tmp_path / "in.txt").write_bytes(b"".join(b"line %d\n" % i for i in range(70)) + b"\xff\n")
    np.save(tmp_path / "W.npy", np.eye(32, dtype=np.float32))
    # read from a pipe: a file is checked to its last line before the model loads, a stream as it comes
    result = _shell(f"cat in.txt | xl embed - --model {tiny_model_path} --window 16 -q | xl apply-proj W.npy --force"
                    " > out.npy", tmp_path)  # fmt: skip
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "xl embed: error:" in stderr and "xl apply-proj: error:" in stderr and "producer" in stderr
    assert (tmp_path / "out.npy").stat().st_size == 0
    # what a foreign reader of the stream sees: it ends in an array whose data never comes
    raw = run_xl("embed", "-", "--model", str(tiny_model_path), "--window", "16", "-q",
                 stdin=(tmp_path / "in.txt").read_bytes()).stdout  # fmt: skip
    arrays, stream = [], io.BytesIO(raw)
    with pytest.raises((ValueError, EOFError)):
        while True:
            arrays.append(np.load(stream))
    assert sum(len(a) for a in arrays if a.dtype == np.float32) == 64


def test_a_killed_producer_is_noticed(tmp_path: Path) -> None:
    # the first half of an xl stream, as a SIGKILL would leave it: complete arrays, no closing frame
    code = ("import numpy as np, os, signal\nfrom xl.io.npy import MatrixWriter\n"
            "w = MatrixWriter('-', 4, {'model': 'm'})\nw.write(np.ones((3, 4), np.float32))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    raw = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).stdout
    assert raw.count(b"\x93NUMPY") == 2
    from xl.errors import InputError

    with pytest.raises(InputError, match="ended before its producer finished"):
        read_matrix(io.BytesIO(raw))


def test_a_plain_numpy_stream_still_reads(tmp_path: Path) -> None:
    X = np.arange(48, dtype=np.float32).reshape(3, 16)
    buffer = io.BytesIO()
    np.save(buffer, X[:2])
    np.save(buffer, X[2:])
    np.save(tmp_path / "W.npy", np.eye(16, dtype=np.float32))
    result = run_xl("apply-proj", str(tmp_path / "W.npy"), "--force", "-o", str(tmp_path / "o.npy"),
                    stdin=buffer.getvalue())  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), X)


# --------------------------------------------------------------------------------------------- read once


def test_fifo_and_process_substitution_inputs(tiny_model_path: Path, tmp_path: Path) -> None:
    _sentences(tmp_path / "in.txt", 20)
    reference = run_xl("embed", "in.txt", "--model", str(tiny_model_path), "-q", "-o", "ref.npy", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr_text
    os.mkfifo(tmp_path / "fifo")
    result = _shell(f"(cat in.txt > fifo &); xl embed fifo --model {tiny_model_path} -q -o f.npy", tmp_path,
                    timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), np.load(tmp_path / "ref.npy"))
    sharded = _shell(f"xl embed <(cat in.txt) --model {tiny_model_path} -q --shard 2/2 -o s.npy", tmp_path)
    assert sharded.returncode == 0, sharded.stderr.decode()
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.load(tmp_path / "ref.npy")[10:])
    fitted = _shell("xl fit-proj --src <(cat ref.npy) --tgt <(cat ref.npy) --method procrustes -o W.npy -q", tmp_path)
    assert fitted.returncode == 0, fitted.stderr.decode()
    retrieval = _shell("xl eval retrieval --src <(cat ref.npy) --tgt ref.npy --bootstrap 10", tmp_path)
    assert retrieval.returncode == 0 and json.loads(retrieval.stdout)["n"] == 20, retrieval.stderr.decode()


def test_eval_reads_a_process_substitution_once(tiny_model_path: Path, tmp_path: Path) -> None:
    # eval checks a regular file before the model loads and reads it again to score it; a pipe's bytes can be
    # read once, so they are checked as they are scored: the same scores as the file, not an empty input
    rows = [{"text1": f"sentence {i} of a test", "text2": f"another sentence {i * 7 % 11}", "score": float(i % 5)}
            for i in range(12)]  # fmt: skip
    (tmp_path / "sts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = f"--model {tiny_model_path} --dtype float32 --bootstrap 0 --no-summary"
    from_file = run_xl("eval", "sts", "sts.jsonl", *common.split(), cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr_text
    piped = _shell(f"xl eval sts <(cat sts.jsonl) en=<(cat sts.jsonl) {common}", tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()
    expected = json.loads(from_file.stdout_text)
    lines = piped.stdout.decode().splitlines()
    assert len(lines) == 2, piped.stderr.decode()
    for line in lines:
        result = json.loads(line)
        assert result["n"] == 12 and result["spearman"] == pytest.approx(expected["spearman"], abs=1e-9)
        # named as a pipe, not by the number of its file descriptor
        assert result["data"].startswith("pipe-fd") and result["data"].removeprefix("pipe-fd").isdigit()


# --------------------------------------------------------------------------------------------- faults


def _start_slow_embed(tmp_path: Path, model: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """xl embed reading a FIFO that is fed 200 lines and then held open: the run is mid-way until the FIFO
    closes. Returns the process and the writer's fd (close it to end the input)."""
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    # SIGHUP back to its default in the child: under `nohup make test` it arrives ignored, and xl keeps a
    # signal that was ignored at start ignored (as it must), so the test would wait for nothing
    process = subprocess.Popen([sys.executable, "-m", "xl", "embed", str(fifo), "--model", str(model),
                                "--window", "64", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=ENV,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # fmt: skip
    fd = os.open(fifo, os.O_WRONLY)
    os.write(fd, b"".join(b"sentence %d\n" % i for i in range(200)))
    return process, fd


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_and_sighup_remove_temporary_files(sig: int, tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "out.npy").write_bytes(b"previous")
    process, fd = _start_slow_embed(tmp_path, tiny_model_path, ["-o", "out.npy"])
    try:
        _wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size > 128 for p in tmp_path.iterdir()))
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(fd)
    assert process.returncode == 128 + sig, stderr.decode()
    assert f"terminated by {signal.Signals(sig).name}" in stderr.decode() and b"Traceback" not in stderr
    assert (tmp_path / "out.npy").read_bytes() == b"previous"
    _no_temp_files(tmp_path)


def test_two_runs_writing_one_output_leave_one_complete_output(tmp_path: Path) -> None:
    np.save(tmp_path / "W.npy", np.eye(16, dtype=np.float32))
    for k in range(2):
        np.save(tmp_path / f"x{k}.npy", np.full((20_000 + k, 16), k, np.float32))
    for _ in range(3):
        runs = [subprocess.Popen([sys.executable, "-m", "xl", "apply-proj", "W.npy", f"x{k}.npy", "--force", "-q",
                                  "-o", "out.npy"], cwd=tmp_path, env=ENV) for k in range(2)]  # fmt: skip
        assert [run.wait(timeout=120) for run in runs] == [0, 0]
        X = np.load(tmp_path / "out.npy")
        manifest = json.loads((tmp_path / "out.npy.json").read_text())
        k = int(X[0, 0])
        assert len(X) == 20_000 + k and (X == k).all()
        assert manifest["rows"] == len(X) and manifest["projected_input"] == str(tmp_path / f"x{k}.npy")
        _no_temp_files(tmp_path)


def test_a_model_directory_deleted_while_in_use(tiny_model_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    process, fd = _start_slow_embed(tmp_path, model, ["-o", "out.npy"])
    try:
        _wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size > 128 for p in tmp_path.iterdir()))
        shutil.rmtree(model)
    finally:
        os.close(fd)
    _, stderr = process.communicate(timeout=120)
    # The weights were read at start: the run completes with the model it loaded (and says which).
    assert process.returncode == 0, stderr.decode()
    assert np.load(tmp_path / "out.npy").shape == (200, 32)
    gone = run_xl("embed", "-", "--model", str(model), "-o", str(tmp_path / "g.npy"), stdin=b"a\n")
    assert gone.returncode == 1 and b"Traceback" not in gone.stderr


# --------------------------------------------------------------------------------------------- resume


def test_resume_continues_after_a_kill_with_identical_bytes(tiny_model_path: Path, tmp_path: Path) -> None:
    # long enough (a window of 50 rows at a time, each recorded) that the run is still going when it is killed
    _sentences(tmp_path / "big.txt", 12_000)
    common = ["embed", "big.txt", "--model", str(tiny_model_path), "--window", "50", "--dtype", "float32", "-q"]
    assert run_xl(*common, "-o", "ref.npy", cwd=tmp_path).returncode == 0
    assert run_xl(*common, "--shard", "2/3", "-o", "ref2.npy", cwd=tmp_path).returncode == 0
    for target, extra in (("out.npy", []), ("out2.npy", ["--shard", "2/3"])):
        process = subprocess.Popen([sys.executable, "-m", "xl", *common, *extra, "-o", target, "--resume"],
                                   cwd=tmp_path, env=ENV, stderr=subprocess.PIPE)  # fmt: skip
        progress = tmp_path / f".{target}.partial.json"
        _wait_for(lambda progress=progress, process=process: process.poll() is not None or (
            progress.exists() and json.loads(progress.read_text())["rows"] >= 100))  # fmt: skip
        assert process.poll() is None, "the run ended before it could be killed"
        process.kill()  # SIGKILL: no clean-up at all
        process.wait()
        done = json.loads(progress.read_text())["rows"]
        assert 100 <= done < (12_000 if not extra else 4_000), done
        assert not (tmp_path / target).exists()
        resumed = run_xl(*common[:-1], *extra, "-o", target, "--resume", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr.decode()
        assert f"resuming after {done} rows" in resumed.stderr.decode()
        reference = "ref.npy" if not extra else "ref2.npy"
        assert (tmp_path / target).read_bytes() == (tmp_path / reference).read_bytes()
        assert json.loads((tmp_path / f"{target}.json").read_text())["rows"] == len(np.load(tmp_path / reference))
        _no_temp_files(tmp_path)


def test_resume_removes_what_a_kill_left_of_a_progress_record(tiny_model_path: Path, tmp_path: Path) -> None:
    """A kill while the progress record was being replaced leaves its temporary file (seen once in the
    test above, by the timing of the kill); the resumed run removes it, and finishes with the full matrix."""
    from xl.embed import EmbedOptions, embed_files

    _sentences(tmp_path / "in.txt", 60)
    options = EmbedOptions(model=str(tiny_model_path), window=20, dtype="float32")
    out = str(tmp_path / "out.npy")
    seen = [0]

    def stop_after_30(n: int) -> None:
        seen[0] += n
        if seen[0] > 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_files([tmp_path / "in.txt"], out, options, resume=True, progress=stop_after_30)  # type: ignore[arg-type]
    assert (tmp_path / ".out.npy.partial.json").is_file()
    stale = tmp_path / "..out.npy.partial.json.k1ll3d.tmp"
    stale.write_text('{"rows": 4')  # what a kill mid-write leaves: a cut temporary record
    embed_files([tmp_path / "in.txt"], out, options, resume=True)
    assert not stale.exists() and np.load(out).shape[0] == 60
    _no_temp_files(tmp_path)


def test_resume_refuses_to_continue_from_another_input_or_options(tiny_model_path: Path, tmp_path: Path) -> None:
    from xl.embed import EmbedOptions, embed_files

    _sentences(tmp_path / "in.txt", 120)
    options = EmbedOptions(model=str(tiny_model_path), window=20, dtype="float32")
    out = str(tmp_path / "out.npy")

    def stop_after(rows: int) -> object:
        seen = [0]

        def progress(n: int) -> None:
            seen[0] += n
            if seen[0] > rows:
                raise KeyboardInterrupt

        return progress

    with pytest.raises(KeyboardInterrupt):
        embed_files([tmp_path / "in.txt"], out, options, resume=True, progress=stop_after(50))  # type: ignore[arg-type]
    assert (tmp_path / ".out.npy.partial").exists()
    messages: list[str] = []
    changed = EmbedOptions(model=str(tiny_model_path), window=20, dtype="float32", pooling="cls")
    embed_files([tmp_path / "in.txt"], out, changed, resume=True, log=messages.append)
    assert any("another input or with other options" in m for m in messages), messages
    embed_files([tmp_path / "in.txt"], str(tmp_path / "cls.npy"), changed)
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "cls.npy"))
    # an edited input is not continued either
    with pytest.raises(KeyboardInterrupt):
        embed_files([tmp_path / "in.txt"], out, options, resume=True, progress=stop_after(50))  # type: ignore[arg-type]
    _sentences(tmp_path / "in.txt", 121)
    messages.clear()
    embed_files([tmp_path / "in.txt"], out, options, resume=True, log=messages.append)
    assert any("another input" in m for m in messages) and len(np.load(out)) == 121


def test_resume_needs_a_file_output_and_input(tiny_model_path: Path, tmp_path: Path) -> None:
    result = run_xl("embed", "-", "--model", str(tiny_model_path), "--resume", stdin=b"a\n")
    assert result.returncode == 2 and "--resume" in result.stderr.decode()
    result = run_xl("embed", "-", "--model", str(tiny_model_path), "--resume", "-o", str(tmp_path / "o.npy"),
                    stdin=b"a\n")  # fmt: skip
    assert result.returncode == 2 and "input file" in result.stderr.decode()


# --------------------------------------------------------------------------------------------- safety


def test_output_templates_cannot_leave_their_folder(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "emb").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("one\n")
    (tmp_path / "y.txt").write_text("two\n")
    result = run_xl("embed", "a/..", "y.txt", "--model", str(tiny_model_path), "-o", "emb/{name}/z.npy", cwd=tmp_path)
    assert result.returncode != 0
    assert not (tmp_path / "z.npy").exists()


def test_task_labels_travel_through_a_pipe(tmp_path: Path) -> None:
    labels = "{'labels': ['sst2', 'stsb', 'qa']}"
    producer = ("import numpy as np\nfrom xl.io.npy import write_matrix\n"
                f"write_matrix('-', np.eye(3, 8) + 0.1, {labels})\n")  # fmt: skip
    result = _shell(f'{sys.executable} -c "{producer}" | xl tasksim similarity - -o S.npy', tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((tmp_path / "S.npy.json").read_text())["labels"] == ["sst2", "stsb", "qa"]


def test_a_log_that_holds_stdout_and_stderr_is_not_truncated(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"good\n\xff bad\n")
    (tmp_path / "run.log").write_text("earlier lines\n")
    result = _shell(f"cat bad.txt | xl embed - --model {tiny_model_path} --format jsonl > run.log 2>&1", tmp_path)
    assert result.returncode == 1
    log = (tmp_path / "run.log").read_text()
    # the model line printed before the failure survives: the file is a log, not a data product
    assert "xl embed: model" in log and "xl embed: error:" in log, log
