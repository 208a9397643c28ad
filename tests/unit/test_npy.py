"""The NPY stream layer: pipes, back-to-back arrays, header patching, atomic outputs, refusals."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from xl.errors import InputError, ShapeError
from xl.io.manifest import read_manifest
from xl.io.npy import MatrixWriter, iter_matrix_chunks, read_matrix, write_matrix


def _random(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_file_output_is_one_array_with_patched_header_and_manifest(tmp_path: Path) -> None:
    target = tmp_path / "out.npy"
    X = _random(10)
    with MatrixWriter(target, 8, {"kind": "test"}) as writer:
        writer.write(X[:3])
        writer.write(X[3:3])
        writer.write(X[3:])
    loaded = np.load(target)
    assert loaded.shape == (10, 8) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, X)
    manifest = read_manifest(target)
    assert manifest is not None and manifest["rows"] == 10 and manifest["dims"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_empty_output_is_a_valid_zero_row_matrix(tmp_path: Path) -> None:
    target = tmp_path / "empty.npy"
    with MatrixWriter(target, 384):
        pass
    assert np.load(target).shape == (0, 384)


def test_back_to_back_arrays_through_a_real_pipe() -> None:
    read_fd, write_fd = os.pipe()
    chunks = [_random(5, seed=1), _random(0), _random(7, seed=2)]

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for chunk in chunks:
                buffer = io.BytesIO()  # np.save cannot write to a pipe itself (it asks for the position)
                np.save(buffer, chunk)
                w.write(buffer.getvalue())

    thread = threading.Thread(target=produce)
    thread.start()
    with os.fdopen(read_fd, "rb") as r:
        got = read_matrix(r)
    thread.join()
    np.testing.assert_array_equal(got, np.concatenate(chunks))


def test_reader_hands_out_bounded_chunks(tmp_path: Path) -> None:
    X = _random(1000)
    np.save(tmp_path / "x.npy", X)
    sizes = [len(c) for c in iter_matrix_chunks(tmp_path / "x.npy", chunk_rows=300)]
    assert sizes == [300, 300, 300, 100]


def test_stream_writer_to_a_pipe_is_read_back_in_order() -> None:
    code = (
        "import numpy as np, sys\n"
        "from xl.io.npy import MatrixWriter\n"
        "X = np.arange(60, dtype=np.float32).reshape(12, 5)\n"
        "with MatrixWriter('-', 5) as w:\n"
        "    w.write(X[:4]); w.write(X[4:])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert out.count(b"\x93NUMPY") == 4  # streamed: one array per write, between the two frames
    np.testing.assert_array_equal(read_matrix(io.BytesIO(out)), np.arange(60, dtype=np.float32).reshape(12, 5))


def test_stdout_redirected_to_a_file_gets_one_array_and_a_manifest(tmp_path: Path) -> None:
    code = (
        "import numpy as np\n"
        "from xl.io.npy import MatrixWriter\n"
        "with MatrixWriter('-', 3, {'kind': 't'}) as w:\n"
        "    w.write(np.ones((2, 3))); w.write(np.zeros((4, 3)))\n"
    )
    target = tmp_path / "redirected.npy"
    with open(target, "wb") as handle:
        subprocess.run([sys.executable, "-c", code], stdout=handle, check=True)
    loaded = np.load(target)
    assert loaded.shape == (6, 3) and loaded[:2].sum() == 6
    manifest = read_manifest(target)
    assert manifest is not None and manifest["rows"] == 6


def test_abort_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.npy"
    np.save(target, np.full((2, 4), 7, dtype=np.float32))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), MatrixWriter(target, 4) as writer:
        writer.write(np.zeros((3, 4)))
        raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]


def test_writer_refuses_a_chunk_of_the_wrong_width(tmp_path: Path) -> None:
    with pytest.raises(ShapeError), MatrixWriter(tmp_path / "w.npy", 4) as writer:
        writer.write(np.zeros((2, 5)))
    assert not (tmp_path / "w.npy").exists()


def test_reader_refuses_object_arrays(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)  # written by someone else
    with pytest.raises(InputError, match="dtype"):
        read_matrix(path)


def test_reader_names_the_row_with_nan(tmp_path: Path) -> None:
    X = _random(50)
    X[37, 2] = np.inf
    np.save(tmp_path / "nan.npy", X)
    with pytest.raises(InputError, match="row 37"):
        read_matrix(tmp_path / "nan.npy")
    chunks = list(iter_matrix_chunks(tmp_path / "nan.npy", check_values=False))
    assert sum(len(c) for c in chunks) == 50


def test_reader_refuses_truncated_streams() -> None:
    buffer = io.BytesIO()
    np.save(buffer, _random(10))
    data = buffer.getvalue()
    with pytest.raises(InputError, match="truncated"):
        read_matrix(io.BytesIO(data[:-7]))
    with pytest.raises(InputError, match="truncated"):
        read_matrix(io.BytesIO(data + data[:4]))


def test_reader_refuses_mixed_widths_and_non_npy() -> None:
    buffer = io.BytesIO()
    np.save(buffer, _random(2, d=4))
    np.save(buffer, _random(2, d=5))
    with pytest.raises(ShapeError, match="width"):
        read_matrix(io.BytesIO(buffer.getvalue()))
    with pytest.raises(InputError, match="not an NPY"):
        read_matrix(io.BytesIO(b"hello world\n"))


def test_fortran_and_float64_inputs_are_read_as_c_float32(tmp_path: Path) -> None:
    X = np.asfortranarray(_random(6).astype(np.float64))
    np.save(tmp_path / "f.npy", X)
    got = read_matrix(tmp_path / "f.npy")
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, X, rtol=1e-6)


def test_write_matrix_then_read(tmp_path: Path) -> None:
    X = _random(33)
    write_matrix(tmp_path / "m.npy", X, {"kind": "m"})
    np.testing.assert_array_equal(read_matrix(tmp_path / "m.npy"), X)


def test_mapped_reading_equals_copied_reading_and_hands_out_read_only_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((1000, 7), dtype=np.float32), rng.standard_normal((13, 7), dtype=np.float32)
    path = tmp_path / "two.npy"
    with path.open("wb") as handle:  # two arrays back to back, as `cat a.npy b.npy > two.npy` makes
        np.save(handle, a)
        np.save(handle, b)
    copied = list(iter_matrix_chunks(path, chunk_rows=64))
    mapped = list(iter_matrix_chunks(path, chunk_rows=64, mapped=True))
    assert [len(c) for c in mapped] == [len(c) for c in copied]
    np.testing.assert_array_equal(np.concatenate(mapped), np.concatenate([a, b]))
    assert not mapped[0].flags.writeable  # a view of the file, not a copy
    # a view kept past later chunks (whose pages were released) still reads the right rows
    np.testing.assert_array_equal(mapped[0], a[:64])


def test_mapped_reading_still_names_bad_rows_and_truncation(tmp_path: Path) -> None:
    X = np.ones((500, 4), dtype=np.float32)
    X[321, 2] = np.inf
    np.save(tmp_path / "inf.npy", X)
    with pytest.raises(InputError, match="row 321"):
        list(iter_matrix_chunks(tmp_path / "inf.npy", chunk_rows=100, mapped=True))
    np.save(tmp_path / "cut.npy", np.ones((500, 4), dtype=np.float32))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-40])
    with pytest.raises(InputError, match="truncated"):
        list(iter_matrix_chunks(tmp_path / "cut.npy", mapped=True))
