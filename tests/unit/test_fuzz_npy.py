"""Property-based tests of the NPY stream reader over generated, often malformed, streams.

Every stream is either read correctly (the rows of its complete arrays, as float32) or refused with an
``XlError``: no other exception, no hang, and no memory allocated for a declared shape before the header is
checked against the bytes available. Each case runs through four readers: an in-memory buffer, a regular
file, a regular file memory-mapped (``mapped=True``) and a pipe (no size, no seeking).
Derandomized and database-less, so every run (and CI) sees the same examples.
"""

from __future__ import annotations

import ast
import io
import pickle
import struct
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import fuzz_settings
from xl.errors import ShapeError, XlError
from xl.io.npy import iter_matrix_chunks, read_matrix

FUZZ = fuzz_settings()

MODES = ("bytesio", "file", "mapped", "pipe")
FLOAT_DESCRS = ("<f2", "<f4", "<f8", ">f4", ">f8", "<f16" if np.dtype(np.longdouble).itemsize == 16 else "<f8")


class _Pipe(io.RawIOBase):
    """A read end without a size, a file number or seeking, like stdin on a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_npy")


def _source(data: bytes, mode: str, folder: Path) -> Any:
    if mode == "bytesio":
        return io.BytesIO(data)
    if mode == "pipe":
        return io.BufferedReader(_Pipe(data))
    path = folder / "m.npy"
    path.write_bytes(data)
    return path


def _read(data: bytes, mode: str, folder: Path, **kwargs: Any) -> np.ndarray | None:
    """All rows of the stream as one float32 array (None for a stream of no arrays), or an exception."""
    chunks = [np.array(c) for c in iter_matrix_chunks(_source(data, mode, folder), mapped=mode == "mapped", **kwargs)]
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 2 and chunk.flags.c_contiguous
    return np.concatenate(chunks) if chunks else None


def _npy(X: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, X, version=version, allow_pickle=False)
    return buffer.getvalue()


def _raw(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0), length: int | None = None) -> bytes:
    """An NPY stream with any header text (padded as numpy pads it) and any length field."""
    text = header.encode("latin1")
    fmt = "<H" if version[0] == 1 else "<I"
    size = len(text) if length is None else length
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, size) + text + data


def _header(descr: object, fortran: bool, shape: tuple[int, ...]) -> str:
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    return text + " " * (-(len(text) + 11) % 64) + "\n"


def _as_rows(X: np.ndarray) -> np.ndarray:
    return (X.reshape(1, -1) if X.ndim == 1 else X).astype(np.float32)


def _refused(read: Callable[[], object]) -> XlError:
    with pytest.raises(XlError) as info:
        read()
    info.value.render()
    return info.value


# ------------------------------------------------------------------------------------------ truncation


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("version", "fortran", "descr"), [((1, 0), False, "<f4"), ((2, 0), False, "<f8"), ((1, 0), True, "<f4")]
)
@pytest.mark.slow
def test_every_prefix_of_a_small_npy_is_refused(
    folder: Path, mode: str, version: tuple[int, int], fortran: bool, descr: str
) -> None:
    X = np.arange(12, dtype=descr).reshape(3, 4)
    data = _npy(np.asfortranarray(X) if fortran else X, version)
    np.testing.assert_array_equal(_read(data, mode, folder), X.astype(np.float32))
    assert _read(b"", mode, folder) is None  # no arrays at all: a valid empty stream ...
    _refused(lambda: read_matrix(io.BytesIO(b"")))  # ... that read_matrix refuses (it needs one array)
    for cut in range(1, len(data)):
        _refused(lambda cut=cut: _read(data[:cut], mode, folder))  # type: ignore[misc]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.slow
def test_a_prefix_at_an_array_boundary_is_a_shorter_stream(folder: Path, mode: str) -> None:
    arrays = [np.arange(6, dtype="<f4").reshape(2, 3), np.zeros((0, 3), "<f4"), np.ones((3, 3), "<f8")]
    parts = [_npy(A) for A in arrays]
    data = b"".join(parts)
    ends = {sum(len(p) for p in parts[: i + 1]): i + 1 for i in range(len(parts))}
    for cut in range(1, len(data) + 1):
        if cut in ends:
            got = _read(data[:cut], mode, folder)
            np.testing.assert_array_equal(got, np.concatenate(arrays[: ends[cut]]).astype(np.float32))
        else:
            _refused(lambda cut=cut: _read(data[:cut], mode, folder))  # type: ignore[misc]


_widths = st.integers(1, 5)


@st.composite
def _stream(draw: st.DrawFn) -> tuple[list[np.ndarray], list[bytes]]:
    """1-3 arrays of one width, each of its own float dtype, order and format version."""
    d = draw(_widths)
    arrays, parts = [], []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 5))
        descr = draw(st.sampled_from(FLOAT_DESCRS))
        values = draw(st.lists(st.integers(-1000, 1000), min_size=n * d, max_size=n * d))
        A = np.array(values, dtype=descr).reshape(n, d)
        if draw(st.booleans()):
            A = np.asfortranarray(A)
        arrays.append(A)
        parts.append(_npy(A, draw(st.sampled_from([(1, 0), (2, 0)]))))
    return arrays, parts


@FUZZ
@given(stream=_stream(), fraction=st.floats(0, 1), mode=st.sampled_from(MODES), chunk_rows=st.integers(1, 4))
@pytest.mark.slow
def test_cut_streams_are_their_complete_arrays_or_refused(
    folder: Path, stream: tuple[list[np.ndarray], list[bytes]], fraction: float, mode: str, chunk_rows: int
) -> None:
    arrays, parts = stream
    data = b"".join(parts)
    cut = round(fraction * len(data))
    ends = [sum(len(p) for p in parts[: i + 1]) for i in range(len(parts))]
    try:
        got = _read(data[:cut], mode, folder, chunk_rows=chunk_rows)
    except XlError:
        assert cut not in ends and cut > 0
        return
    assert cut in ends or cut == 0
    complete = arrays[: ends.index(cut) + 1] if cut else []
    if complete:
        np.testing.assert_array_equal(got, np.concatenate(complete).astype(np.float32))
    else:
        assert got is None


# ------------------------------------------------------------------------------------ magic, versions


@FUZZ
@given(position=st.integers(0, 7), value=st.integers(0, 255), mode=st.sampled_from(MODES))
@pytest.mark.slow
def test_a_damaged_magic_or_version_is_refused(folder: Path, position: int, value: int, mode: str) -> None:
    X = np.arange(8, dtype="<f4").reshape(2, 4)
    data = bytearray(_npy(X))
    if data[position] == value:
        return
    data[position] = value
    _refused(lambda: _read(bytes(data), mode, folder))


@pytest.mark.parametrize("version", [(0, 0), (1, 1), (3, 0), (4, 0), (255, 255)])
def test_unsupported_versions_are_refused(folder: Path, version: tuple[int, int]) -> None:
    data = _raw(_header("<f4", False, (1, 1)), b"\0" * 4, version=version)
    err = _refused(lambda: _read(data, "bytesio", folder))
    assert "version" in err.message


@FUZZ
@given(junk=st.binary(min_size=1, max_size=40), mode=st.sampled_from(MODES))
def test_random_bytes_are_refused(folder: Path, junk: bytes, mode: str) -> None:
    _refused(lambda: _read(junk, mode, folder))


# -------------------------------------------------------------------------------------------- headers

_DESCRS = [
    *FLOAT_DESCRS, "|b1", "|i1", "<i4", ">i8", "|u1", "<u2", "<c8", "<c16", "<M8[s]", "<m8[ns]", "|S3", "<U2",
    "|V4", "|O", [("a", "<f4")], [("a", "<f4"), ("b", "<f4")], ("<f4", (2,)), "garbage", 7, None,
]  # fmt: skip


@FUZZ
@given(
    descr=st.sampled_from(_DESCRS),
    fortran=st.booleans(),
    shape=st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**40, 10**12])), max_size=3).map(tuple),
    extra=st.integers(-40, 40),
    mode=st.sampled_from(MODES),
)
@pytest.mark.slow
def test_any_header_is_read_as_declared_or_refused(
    folder: Path, descr: object, fortran: bool, shape: tuple[int, ...], extra: int, mode: str
) -> None:
    try:
        dtype: np.dtype[Any] | None = np.lib.format.descr_to_dtype(descr)
    except (TypeError, ValueError):
        dtype = None
    count = int(np.prod(shape, dtype=object)) if shape else 1
    itemsize = dtype.itemsize if dtype is not None else 4
    size = max(0, min(count * itemsize, 4096) + extra)
    payload = bytes(np.random.default_rng(size).integers(0, 64, size, dtype=np.uint8))  # small values, finite
    data = _raw(_header(descr, fortran, shape), payload)
    started = time.perf_counter()
    try:
        got = _read(data, mode, folder)
    except XlError:
        assert time.perf_counter() - started < 2.0
        return
    # Read: then it was a real float matrix with exactly its bytes behind the header, nothing more.
    assert dtype is not None and dtype.kind == "f" and dtype.names is None and dtype.subdtype is None
    assert len(shape) in (1, 2) and count * itemsize == len(payload)
    expected = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    np.testing.assert_array_equal(got, _as_rows(expected))


@FUZZ
@given(
    text=st.text(st.sampled_from(list("{}()[]'\":,. -+0123456789abcdefnorstuFTx\\\n")), max_size=80),
    mode=st.sampled_from(["bytesio", "pipe"]),
)
def test_garbage_header_text_is_refused(folder: Path, text: str, mode: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in the generated text
            parsed = ast.literal_eval(text)
        if isinstance(parsed, dict) and set(parsed) == {"descr", "fortran_order", "shape"}:
            return  # a real header now and then: the header test covers those
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        _read(_raw(text + "\n", b"\0" * 16), mode, folder)
    except XlError as err:
        err.render()
        return
    raise AssertionError(f"a garbage header was read: {text!r}")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)",
            id="unbalanced-brace",
        ),
        pytest.param(
            "{'descr': '<f4",
            id="unterminated-string",
        ),
        pytest.param(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "-" * 3000 + "1, 2)}",
            id="deep-unary-minus",
        ),
        pytest.param("{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 150 + ")" * 150 + "}", id="parens"),
        pytest.param("{'descr': '<f4', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ", 2)}", id="long-int"),
        pytest.param("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), 'x': 1}", id="extra-key"),
        pytest.param("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 2)}", id="fortran-int"),
        pytest.param("{'descr': '<f4', 'fortran_order': False, 'shape': [1, 2]}", id="shape-list"),
        pytest.param("{'descr': '<f4', 'fortran_order': False, 'shape': (1.0, 2)}", id="shape-float"),
        pytest.param("__import__('os').system('false')", id="code"),
        pytest.param("\x00" * 30, id="nul"),
        pytest.param("{'é': 1}", id="latin1"),
    ],
)
def test_malformed_header_texts_are_refused(folder: Path, header: str) -> None:
    for mode in MODES:
        _refused(lambda mode=mode: _read(_raw(header + "\n", b"\0" * 8), mode, folder))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        pytest.param((-1, 4), b"", id="negative-rows-no-data"),
        pytest.param((-1, 4), b"\0" * 16, id="negative-rows-with-data"),
        pytest.param((0, -4), b"", id="negative-width-zero-rows"),
        pytest.param((2, -4), b"\0" * 32, id="negative-width"),
        pytest.param((-3,), b"", id="negative-1d"),
        pytest.param((0, 2**63), b"", id="zero-rows-width-2**63"),
        pytest.param((True, 2), b"\0" * 8, id="bool-rows"),
    ],
)
def test_impossible_dimensions_are_refused(folder: Path, shape: tuple[int, ...], data: bytes) -> None:
    """A dimension is a non-negative int (numpy's own header check lets negative and bool ones through)."""
    for mode in MODES:
        _refused(lambda mode=mode: _read(_raw(_header("<f4", False, shape), data), mode, folder))  # type: ignore[misc]


# ------------------------------------------------------------------------------- lying headers, memory

_LIES = [
    ("<f4", False, (10**12, 4)),
    ("<f4", True, (10**12, 4)),
    ("<f8", False, (10**12, 4)),
    ("<f4", False, (1, 10**9)),
    ("<f4", True, (1, 10**9)),
    ("<f4", False, (10**9,)),
    ("<f4", False, (2**40, 2**40)),
]

#: On a pipe nothing says how many bytes will come: the reader may fill one buffer of this size blind.
PIPE_BLIND_BYTES = 64 << 20


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("descr", "fortran", "shape"), _LIES, ids=lambda v: str(v))
def test_lying_headers_are_refused_quickly_in_small_memory(
    folder: Path, mode: str, descr: str, fortran: bool, shape: tuple[int, ...]
) -> None:
    data = _raw(_header(descr, fortran, shape), b"\0" * 10)
    source = _source(data, mode, folder)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(XlError, match="truncated|impossibly large"):
            list(iter_matrix_chunks(source, mapped=mode == "mapped"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    # A file's size is known: nothing is allocated for the declared shape. A pipe's is not: one blind buffer.
    assert peak < (PIPE_BLIND_BYTES + (8 << 20) if mode == "pipe" else 4 << 20), f"{peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "mode",
    [
        "bytesio",
        "file",
        "mapped",
        "pipe",
    ],
)  # fmt: skip
def test_a_huge_header_length_is_refused_in_small_memory(folder: Path, mode: str) -> None:
    # 256 MiB, not the 4 GiB a version-2 length can say: the allocation must succeed for the test to measure it.
    data = _raw("{}", version=(2, 0), length=2**28)
    source = _source(data, mode, folder)
    tracemalloc.start()
    try:
        with pytest.raises(XlError):
            list(iter_matrix_chunks(source, mapped=mode == "mapped"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB allocated for a header of {len(data)} bytes"


# ------------------------------------------------------------------------------------ dtypes and shapes


class _Trap:
    sprung = False

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return (_spring, ())


def _spring() -> None:
    _Trap.sprung = True


_ALL_DTYPES = sorted({np.dtype(c).str for c in np.typecodes["All"] if c not in "O"} | {">f4", ">f8", "<U3", "|S3"})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("descr", _ALL_DTYPES)
def test_every_dtype_is_read_as_float32_or_refused(folder: Path, mode: str, descr: str) -> None:
    X = np.arange(6).reshape(2, 3).astype(descr)
    data = _npy(X)
    if np.dtype(descr).kind == "f":
        np.testing.assert_array_equal(_read(data, mode, folder), X.astype(np.float32))
    else:
        err = _refused(lambda: _read(data, mode, folder))
        assert "dtype" in err.message


@pytest.mark.parametrize("mode", MODES)
def test_object_arrays_are_refused_without_unpickling(folder: Path, mode: str) -> None:
    payload = pickle.dumps(np.array([[_Trap()]], dtype=object), protocol=3)
    for descr in ("|O", [("a", "|O")], [("a", "<f4"), ("b", "|O")]):
        data = _raw(_header(descr, False, (1, 1)), payload)
        err = _refused(lambda data=data: _read(data, mode, folder))  # type: ignore[misc]
        assert "dtype" in err.message and not _Trap.sprung


@FUZZ
@given(
    n=st.integers(0, 7),
    d=st.integers(1, 5),
    fortran=st.booleans(),
    descr=st.sampled_from(FLOAT_DESCRS),
    mode=st.sampled_from(MODES),
    chunk_rows=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_valid_matrices_round_trip(
    folder: Path, n: int, d: int, fortran: bool, descr: str, mode: str, chunk_rows: int, seed: int
) -> None:
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(descr)
    data = _npy(np.asfortranarray(X) if fortran else X)
    got = _read(data, mode, folder, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(got, X.astype(np.float32))
    sizes = [len(c) for c in iter_matrix_chunks(io.BytesIO(data), chunk_rows=chunk_rows)]
    assert all(size <= chunk_rows for size in sizes) and sum(sizes) == n


@pytest.mark.parametrize("mode", MODES)
def test_0d_1d_3d_arrays(folder: Path, mode: str) -> None:
    _refused(lambda: _read(_npy(np.array(1.5, dtype="<f4")), mode, folder))
    for shape in [(1, 1, 1), (2, 3, 4), (0, 3, 4), (3, 0, 2)]:
        err = _refused(lambda shape=shape: _read(_npy(np.zeros(shape, "<f4")), mode, folder))  # type: ignore[misc]
        assert isinstance(err, ShapeError)
    v = np.arange(5, dtype="<f4")
    np.testing.assert_array_equal(_read(_npy(v), mode, folder), v[None, :])  # a 1-D array is one row


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(0, 0), (3, 0), (0,)])
def test_width_zero_is_read_as_such_or_refused(folder: Path, mode: str, shape: tuple[int, ...]) -> None:
    data = _npy(np.zeros(shape, "<f4"))
    try:
        got = _read(data, mode, folder)
    except XlError:
        return
    assert got is not None and got.shape == (shape[0] if len(shape) == 2 else 1, 0)


@pytest.mark.parametrize("mode", MODES)
def test_arrays_of_different_widths_are_refused(folder: Path, mode: str) -> None:
    data = _npy(np.zeros((2, 3), "<f4")) + _npy(np.zeros((2, 4), "<f4"))
    err = _refused(lambda: _read(data, mode, folder))
    assert isinstance(err, ShapeError) and "width" in err.message


@pytest.mark.parametrize("mode", MODES)
def test_arrays_of_different_float_dtypes_are_one_matrix_or_refused(folder: Path, mode: str) -> None:
    A, B = np.ones((2, 3), "<f8"), np.full((1, 3), 2, "<f2")
    try:
        got = _read(_npy(A) + _npy(B), mode, folder)
    except XlError:
        return
    np.testing.assert_array_equal(got, np.concatenate([A, B]).astype(np.float32))


# ----------------------------------------------------------------------------------------- NaN and Inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reader's warnings: see the test below
@FUZZ
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    d=st.integers(1, 4),
    bad=st.lists(st.tuples(st.integers(0, 17), st.integers(0, 3), st.sampled_from([np.nan, np.inf, -np.inf, 1e300])),
                 max_size=3),
    descr=st.sampled_from(["<f4", "<f8", "<f2"]),
    mode=st.sampled_from(MODES),
    chunk_rows=st.integers(1, 5),
)  # fmt: skip
@pytest.mark.slow
def test_nan_and_inf_are_refused_naming_the_first_bad_row(
    folder: Path,
    sizes: list[int],
    d: int,
    bad: list[tuple[int, int, float]],
    descr: str,
    mode: str,
    chunk_rows: int,
) -> None:
    total = sum(sizes)
    X = np.arange(total * d, dtype=np.float64).reshape(total, d)
    for row, col, value in bad:
        if row < total:
            X[row, col % d] = value
    with np.errstate(over="ignore"):
        X = X.astype(descr)  # 1e300 is Inf in float16 and float32 but finite in float64
        as32 = X.astype(np.float32)
    arrays = np.split(X, np.cumsum(sizes)[:-1])
    data = b"".join(_npy(A) for A in arrays)
    bad_rows = np.flatnonzero(~np.isfinite(as32).all(axis=1))
    if bad_rows.size:
        err = _refused(lambda: _read(data, mode, folder, chunk_rows=chunk_rows))
        assert f"row {bad_rows[0]} " in err.message, err.message
    else:
        got = _read(data, mode, folder, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got, as32)
    unchecked = _read(data, mode, folder, chunk_rows=chunk_rows, check_values=False)
    np.testing.assert_array_equal(unchecked, as32)


@pytest.mark.parametrize(
    ("values", "descr"),
    [
        pytest.param(
            [[np.inf, -np.inf]],
            "<f4",
            id="inf-minus-inf",
        ),
        pytest.param(
            [[1e300, 0.0]],
            "<f8",
            id="float64-overflow",
        ),
        pytest.param([[np.nan, 1.0]], "<f4", id="nan"),
        pytest.param([[np.inf, 1.0]], "<f4", id="inf"),
    ],
)
def test_refusing_nan_and_inf_prints_no_warning(folder: Path, values: list[list[float]], descr: str) -> None:
    """A numpy RuntimeWarning would reach stderr beside the one-line error."""
    data = _npy(np.array(values, dtype=descr))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in MODES:
            err = _refused(lambda mode=mode: _read(data, mode, folder))  # type: ignore[misc]
            assert "row 0 holds NaN or Inf" in err.message
