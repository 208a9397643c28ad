"""``xl embed`` through a real subprocess on a tiny random XLM-R with the real vocabulary."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import run_xl
from xl.io.npy import read_matrix


def _sentences(n: int) -> list[str]:
    words = ["Hallo", "Welt", "안녕하세요", "世界", "bonjour", "le", "monde", "привет", "мир", "ok"]
    rng = np.random.default_rng(n)
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 12)))) for _ in range(n)]


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(_sentences(40)) + "\n\nlast line\n", encoding="utf-8")
    return path


def _assert_one_line_error(
    result: subprocess.CompletedProcess[bytes], code: int, *needles: str, command: str = "embed"
) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f"xl {command}: error:")]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


@pytest.mark.slow
def test_file_output_manifest_and_row_alignment(tiny_model_path: Path, text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    result = run_xl("embed", str(text_file), "-o", str(out), "--model", str(tiny_model_path), "--dtype", "float32")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
    X = np.load(out)
    assert X.shape == (42, 32) and X.dtype == np.float32 and np.isfinite(X).all()
    manifest = json.loads((tmp_path / "out.npy.json").read_text())
    assert manifest["rows"] == 42 and manifest["layer"] == 2 and manifest["prefix"] == ""
    assert manifest["dtype_compute"] == "float32" and manifest["truncated"] == 0
    import hashlib

    weights = hashlib.sha256((tiny_model_path / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["model_fingerprint"] == f"sha256:{weights}"  # of the weights, not of config and sizes

    assert manifest["input_sha256"] == hashlib.sha256(text_file.read_bytes()).hexdigest()
    # Row i is line i: the blank line (row 40) embeds "" and equals a lone empty input.
    single = tmp_path / "blank.txt"
    single.write_text("\n")
    one = run_xl("embed", str(single), "--model", str(tiny_model_path), "--dtype", "float32", "-q")
    blank = read_matrix(__import__("io").BytesIO(one.stdout))
    np.testing.assert_allclose(X[40], blank[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_jsonl_output_carries_records_and_same_vectors(tiny_model_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "sentence": s}) + "\n" for i, s in enumerate(_sentences(9))))
    args = ("--model", str(tiny_model_path), "--dtype", "float32", "--field", "sentence", "-q")
    as_jsonl = run_xl("embed", str(src), "--format", "jsonl", *args)
    as_npy = run_xl("embed", str(src), *args)
    assert as_jsonl.returncode == 0 and as_npy.returncode == 0
    rows = [orjson.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(9)) and all(len(r["embedding"]) == 32 for r in rows)
    X = read_matrix(__import__("io").BytesIO(as_npy.stdout))
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), X, rtol=1e-6)


@pytest.mark.slow
def test_several_layers_in_one_pass(tiny_model_path: Path, text_file: Path, tmp_path: Path) -> None:
    args = ("--model", str(tiny_model_path), "--dtype", "float32", "-q")
    result = run_xl("embed", str(text_file), "--layer", "0,1,-1", "-o", str(tmp_path / "l{layer}.npy"), *args)
    assert result.returncode == 0, result.stderr.decode()
    last = run_xl("embed", str(text_file), "-o", str(tmp_path / "last.npy"), *args)
    assert last.returncode == 0
    layers = {k: np.load(tmp_path / f"l{k}.npy") for k in (0, 1, 2)}
    np.testing.assert_allclose(layers[2], np.load(tmp_path / "last.npy"), rtol=1e-5, atol=1e-6)
    assert not np.allclose(layers[0], layers[2])
    assert json.loads((tmp_path / "l1.npy.json").read_text())["layer"] == 1


@pytest.mark.slow
def test_unknown_layer_and_missing_template_are_usage_errors(tiny_model_path: Path, text_file: Path) -> None:
    bad = run_xl("embed", str(text_file), "--model", str(tiny_model_path), "--layer", "5")
    _assert_one_line_error(bad, 2, "layers 0..2")
    several = run_xl("embed", str(text_file), "--model", str(tiny_model_path), "--layer", "1,2", "-o", "x.npy")
    _assert_one_line_error(several, 2, "{layer}")


@pytest.mark.slow
def test_empty_input_gives_an_empty_matrix(tiny_model_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = run_xl("embed", str(empty), "--model", str(tiny_model_path), "-o", str(tmp_path / "e.npy"))
    assert result.returncode == 0, result.stderr.decode()
    assert np.load(tmp_path / "e.npy").shape == (0, 32)
    piped = run_xl("embed", "--model", str(tiny_model_path), stdin=b"")
    assert piped.returncode == 0 and read_matrix(__import__("io").BytesIO(piped.stdout)).shape == (0, 32)


@pytest.mark.parametrize(
    ("content", "name", "needles"),
    [
        (b"ok\nfine\nbad \xff\xfe here\n", "bad.txt", ("bad.txt:3", "UTF-8", "--errors replace")),
        (b"ok\n\x00\x01\x02binary\n", "nul.txt", ("nul.txt:2", "NUL")),
        (b'{"text": "a"}\n[1, 2]\n', "list.jsonl", ("list.jsonl:2", "not an object")),
        (b'{"text": "a"}\n{"sentence": "b"}\n', "field.jsonl", ("field.jsonl:2", "--field")),
    ],
)
@pytest.mark.slow
def test_bad_records_give_one_line_and_exit_1(
    tiny_model_path: Path, tmp_path: Path, content: bytes, name: str, needles: tuple[str, ...]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out.npy"
    result = run_xl("embed", str(path), "--model", str(tiny_model_path), "-o", str(out))
    _assert_one_line_error(result, 1, *needles)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.slow
def test_errors_replace_goes_on(tiny_model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\nbad \xff here\n")
    result = run_xl("embed", str(path), "--model", str(tiny_model_path), "--errors", "replace", "-q")
    assert result.returncode == 0 and read_matrix(__import__("io").BytesIO(result.stdout)).shape == (2, 32)


@pytest.mark.slow
def test_a_one_megabyte_line_is_truncated_and_counted(tiny_model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("short\n" + "word " * 200_000 + "\nshort again\n")
    out = tmp_path / "long.npy"
    result = run_xl("embed", str(path), "--model", str(tiny_model_path), "-o", str(out), "--max-length", "128")
    assert result.returncode == 0, result.stderr.decode()
    assert "1 of 3 inputs" in result.stderr.decode() and "truncated" in result.stderr.decode()
    assert np.load(out).shape == (3, 32)
    assert json.loads((tmp_path / "long.npy.json").read_text())["truncated"] == 1


def test_missing_file_and_non_model_directory(tiny_model_path: Path, tmp_path: Path, text_file: Path) -> None:
    _assert_one_line_error(run_xl("embed", str(tmp_path / "nope.txt"), "--model", str(tiny_model_path)), 1,
                           "no such file")  # fmt: skip
    not_model = tmp_path / "not-a-model"
    not_model.mkdir()
    (not_model / "README.md").write_text("hello")
    _assert_one_line_error(run_xl("embed", str(text_file), "--model", str(not_model)), 1, "not a model directory")
    half = tmp_path / "half-model"
    half.mkdir()
    (half / "config.json").write_text((tiny_model_path / "config.json").read_text())
    (half / "tokenizer.json").write_text("{}")
    _assert_one_line_error(run_xl("embed", str(text_file), "--model", str(half)), 1, "model.safetensors")


@pytest.mark.slow
def test_error_midway_keeps_the_previous_output(tiny_model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    lines = [f"sentence number {i}" for i in range(5000)]
    path.write_bytes(("\n".join(lines[:4500]) + "\nbroken \xff\n").encode("utf-8", "surrogateescape")
                     .replace("broken \xff".encode(), b"broken \xff"))  # fmt: skip
    out = tmp_path / "out.npy"
    np.save(out, np.ones((3, 3), dtype=np.float32))
    before = out.read_bytes()
    # on stdin the bad line is met midway, after 4,500 rows have been embedded and written to the temporary file
    result = run_xl("embed", "-", "--model", str(tiny_model_path), "-o", str(out), stdin=path.read_bytes())
    _assert_one_line_error(result, 1, ":4501")
    assert "xl embed: model" in result.stderr_text  # the model had loaded: the failure came midway
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "out.npy"]


def test_a_bad_line_of_a_file_is_found_before_the_model_loads(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"".join(b"sentence %d\n" % i for i in range(5000)) + b"broken \xff\n")
    # the model does not exist: an input error (not a model error) shows that the file was read to its end first
    result = run_xl("embed", str(path), "--model", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "o.npy"))
    _assert_one_line_error(result, 1, "big.txt:5001")
    assert "no-such-model" not in result.stderr_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
    # --errors replace reads the same file through: the check then fails on the model, not the line
    replaced = run_xl("embed", str(path), "--errors", "replace", "--model", str(tmp_path / "no-such-model"))
    assert replaced.returncode == 1 and "no-such-model" in replaced.stderr_text


@pytest.mark.slow
def test_terminal_stdin_and_stdout_are_refused(tiny_model_path: Path, text_file: Path) -> None:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "xl", "embed", "--model", str(tiny_model_path)],
                                stdin=follower, capture_output=True, timeout=120, check=False)  # fmt: skip
        _assert_one_line_error(result, 2, "terminal")
        to_tty = subprocess.run([sys.executable, "-m", "xl", "embed", str(text_file), "--model",
                                 str(tiny_model_path)], stdout=follower, stderr=subprocess.PIPE,
                                timeout=120, check=False)  # fmt: skip
        assert to_tty.returncode == 2 and "terminal" in to_tty.stderr.decode()
        # refused before the model loads (its "model …" line), not seconds later
        for stderr in (result.stderr, to_tty.stderr):
            assert b"xl embed: model" not in stderr and b"torch" not in stderr, stderr
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.slow
def test_shards_concatenate_to_the_whole(tiny_model_path: Path, text_file: Path, tmp_path: Path) -> None:
    args = ("--model", str(tiny_model_path), "--dtype", "float32", "-q")
    whole = run_xl("embed", str(text_file), "-o", str(tmp_path / "all.npy"), *args)
    assert whole.returncode == 0
    for k in (1, 2, 3):
        part = run_xl("embed", str(text_file), "--shard", f"{k}/3", "-o", str(tmp_path / f"s{k}.npy"), *args)
        assert part.returncode == 0, part.stderr.decode()
    parts = [np.load(tmp_path / f"s{k}.npy") for k in (1, 2, 3)]
    assert [len(p) for p in parts] == [14, 14, 14]
    np.testing.assert_allclose(np.concatenate(parts), np.load(tmp_path / "all.npy"), rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "s2.npy.json").read_text())["row_offset"] == 14
    bad = run_xl("embed", str(text_file), "--shard", "0/3", *args)
    _assert_one_line_error(bad, 2, "K/N")


def test_merged_shards_equal_the_whole_run_and_bad_shards_are_refused(
    tiny_model_path: Path, text_file: Path, tmp_path: Path
) -> None:
    args = ("--model", str(tiny_model_path), "--dtype", "float32", "-q")
    assert run_xl("embed", str(text_file), "-o", str(tmp_path / "all.npy"), *args).returncode == 0
    for k in (1, 2, 3):
        part = run_xl("embed", str(text_file), "--shard", f"{k}/3", "-o", str(tmp_path / f"s{k}.npy"), *args)
        assert part.returncode == 0, part.stderr.decode()
    whole = np.load(tmp_path / "all.npy")
    shards = [str(tmp_path / f"s{k}.npy") for k in (3, 1, 2)]  # any order: the manifests say which rows
    merged = run_xl("merge", *shards, "-o", str(tmp_path / "merged.npy"))
    assert merged.returncode == 0, merged.stderr.decode()
    parts = np.concatenate([np.load(tmp_path / f"s{k}.npy") for k in (1, 2, 3)])
    np.testing.assert_array_equal(np.load(tmp_path / "merged.npy"), parts)  # the shards' bytes, in shard order
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)  # batches differ: float rounding only
    manifest = json.loads((tmp_path / "merged.npy.json").read_text())
    assert manifest["shard"] is None and manifest["rows"] == len(whole) and len(manifest["merged_shards"]) == 3
    assert manifest["model_fingerprint"] == json.loads((tmp_path / "all.npy.json").read_text())["model_fingerprint"]
    # concatenated shard files read as one stream by every NPY reader (cat shard-*.npy | xl …)
    cat = b"".join((tmp_path / f"s{k}.npy").read_bytes() for k in (1, 2, 3))
    np.testing.assert_array_equal(read_matrix(io.BytesIO(cat)), parts)

    def refused(*paths: str, needle: str) -> None:
        (tmp_path / "out.npy").write_bytes(b"previous")
        result = run_xl("merge", *paths, "-o", str(tmp_path / "out.npy"))
        _assert_one_line_error(result, 1, needle, command="merge")
        assert (tmp_path / "out.npy").read_bytes() == b"previous"

    s1, s2, s3 = (str(tmp_path / f"s{k}.npy") for k in (1, 2, 3))
    refused(s1, s3, needle="shard 2/3 missing")
    refused(s1, s2, s2, s3, needle="given twice")
    for key, value in (("layer", 1), ("dtype", "bfloat16"), ("model_fingerprint", "other"), ("row_offset", 13)):
        edited = tmp_path / f"edited-{key}.npy"
        edited.write_bytes((tmp_path / "s2.npy").read_bytes())
        info = json.loads((tmp_path / "s2.npy.json").read_text())
        (tmp_path / f"edited-{key}.npy.json").write_text(json.dumps(info | {key: value}))
        refused(s1, str(edited), s3, needle="a gap or an overlap" if key == "row_offset" else f"{key} is")
    refused(s1, str(tmp_path / "all.npy"), s3, needle="not a shard")  # an unsharded run's matrix
    other = tmp_path / "other-split.npy"
    other.write_bytes((tmp_path / "s2.npy").read_bytes())
    info = json.loads((tmp_path / "s2.npy.json").read_text())
    (tmp_path / "other-split.npy.json").write_text(json.dumps(info | {"shard": "2/4"}))
    refused(s1, str(other), s3, needle="of another split")
    bare = tmp_path / "bare.npy"
    np.save(bare, whole[:3])
    refused(s1, str(bare), s3, needle="no manifest")
    usage = run_xl("merge", "-", "-o", str(tmp_path / "x.npy"))
    _assert_one_line_error(usage, 2, "reads shard files", command="merge")


def test_shards_of_two_checkpoints_of_one_architecture_are_not_merged(
    tiny_model_path: Path, text_file: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_path, other)
    tensors = load_file(str(other / "model.safetensors"))
    shifted = {k: v + np.float32(0.01) for k, v in tensors.items()}
    save_file(shifted, str(other / "model.safetensors"), metadata={"format": "pt"})
    assert (other / "model.safetensors").stat().st_size == (tiny_model_path / "model.safetensors").stat().st_size
    for k, model in ((1, tiny_model_path), (2, other)):
        out = str(tmp_path / f"s{k}.npy")
        part = run_xl("embed", str(text_file), "--shard", f"{k}/2", "-o", out, "--model", str(model), "-q")
        assert part.returncode == 0, part.stderr.decode()
    result = run_xl("merge", str(tmp_path / "s1.npy"), str(tmp_path / "s2.npy"), "-o", str(tmp_path / "all.npy"))
    _assert_one_line_error(result, 1, "model_fingerprint is", command="merge")
    assert not (tmp_path / "all.npy").exists()


def test_shard_auto_reads_the_launcher(
    tiny_model_path: Path, text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"):
        monkeypatch.delenv(name, raising=False)
    args = ("--model", str(tiny_model_path), "--dtype", "float32")
    explicit = run_xl("embed", str(text_file), "--shard", "2/3", "-o", str(tmp_path / "k.npy"), "-q", *args)
    assert explicit.returncode == 0, explicit.stderr.decode()
    slurm = {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "7"}
    auto = run_xl("embed", str(text_file), "--shard", "auto", "-o", str(tmp_path / "a.npy"), *args, env=slurm)
    assert auto.returncode == 0, auto.stderr.decode()
    assert "shard 2/3 (from the Slurm array environment)" in auto.stderr.decode()
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "k.npy").read_bytes()
    assert json.loads((tmp_path / "a.npy.json").read_text())["shard"] == "2/3"
    torchrun = run_xl("embed", str(text_file), "--shard", "auto", *args, env={"RANK": "1", "WORLD_SIZE": "3"})
    assert torchrun.returncode == 0, torchrun.stderr.decode()
    np.testing.assert_array_equal(read_matrix(io.BytesIO(torchrun.stdout)), np.load(tmp_path / "k.npy"))
    none = run_xl("embed", str(text_file), "--shard", "auto", "-o", str(tmp_path / "none.npy"), *args)
    _assert_one_line_error(none, 2, "--shard auto found no launcher", "RANK")
    assert not (tmp_path / "none.npy").exists()


@pytest.mark.slow
def test_cuda_out_of_memory_halves_the_batch(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Correct by construction without a GPU: a forward that runs out of memory above 4 rows."""
    import torch

    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model

    encoder = Encoder(resolve_model(str(tiny_model_path)), dtype="float32")
    ids = encoder.tokenize(_sentences(13)).ids
    expected = encoder.embed_ids(ids)[2]
    real_forward = encoder._forward
    calls: list[int] = []

    def forward(input_ids, mask, pooling, normalize):  # type: ignore[no-untyped-def]
        calls.append(len(input_ids))
        if len(input_ids) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(input_ids, mask, pooling, normalize)

    monkeypatch.setattr(encoder, "_forward", forward)
    got = encoder.embed_ids(ids)[2]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert calls[0] == 13 and sum(c for c in calls if c <= 4) == 13  # halved until every part fits


@pytest.mark.slow
def test_several_inputs_share_one_model_load(tiny_model_path: Path, tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"{name} one\n{name} two\n")
    model = ("--model", str(tiny_model_path), "--dtype", "float32", "-q")
    result = run_xl("embed", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-o", str(tmp_path / "{stem}.npy"),
                    *model)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    alone = run_xl("embed", str(tmp_path / "b.txt"), *model)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), read_matrix(__import__("io").BytesIO(alone.stdout)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert json.loads((tmp_path / "a.npy.json").read_text())["input"].endswith("a.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x\n")
    clash = run_xl("embed", str(tmp_path / "a.txt"), str(tmp_path / "sub" / "a.txt"), "-o",
                   str(tmp_path / "{stem}.npy"), *model)  # fmt: skip
    _assert_one_line_error(clash, 2, "same output")
    missing = run_xl("embed", str(tmp_path / "a.txt"), str(tmp_path / "nope.txt"), "-o", str(tmp_path / "{name}.npy"),
                     *model)  # fmt: skip
    _assert_one_line_error(missing, 1, "nope.txt", "no such file")
    assert not (tmp_path / "a.txt.npy").exists()  # nothing written before all inputs were checked


@pytest.mark.slow
def test_cuda_length_padding_to_a_multiple_of_8_leaves_embeddings_unchanged(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA path pads every batch to a multiple of 8 tokens; checked here on the CPU through the same code."""
    import xl.models.inference as encoder_module
    from xl.models.inference import Encoder
    from xl.models.registry import resolve_model

    encoder = Encoder(resolve_model(str(tiny_model_path)), dtype="float32")
    ids = encoder.tokenize(_sentences(9)).ids
    assert len({len(row) for row in ids}) > 1 and max(len(row) for row in ids) % 8 != 0
    exact = encoder.embed_ids(ids)[2]
    shapes: list[tuple[int, ...]] = []
    real_pad = encoder_module.pad_batch

    def pad_as_on_cuda(rows, pad_id, device, *, multiple=1):  # type: ignore[no-untyped-def]
        input_ids, mask = real_pad(rows, pad_id, device, multiple=8)
        shapes.append(tuple(input_ids.shape))
        return input_ids, mask

    monkeypatch.setattr(encoder_module, "pad_batch", pad_as_on_cuda)
    padded = encoder.embed_ids(ids)[2]
    assert shapes and all(length % 8 == 0 for _, length in shapes)
    np.testing.assert_allclose(padded, exact, rtol=1e-5, atol=1e-6)
