"""NPY matrix streams: a pipe-safe reader and a writer that streams or patches its header.

On a pipe, a matrix stream is one or more complete NPY arrays written back to back (same width and
dtype), so a producer can stream without knowing the number of rows. A regular file gets exactly one
array: the writer reserves the header, writes rows as they come, and patches the row count at the end, so
``np.load("out.npy")`` works. ``np.load`` cannot read stdin (it seeks); the reader here reads the magic
and header with ``numpy.lib.format`` helpers and then exactly the data bytes. Nothing is ever pickled.
"""

from __future__ import annotations

import fcntl
import io
import mmap
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from xl.errors import InputError, ShapeError, UsageError
from xl.io.atomic import OutputTarget, open_input
from xl.io.manifest import write_manifest

FloatMatrix = NDArray[np.float32]

#: Rows handed out per chunk by the reader: 16,384 × 384 float32 is 24 MiB.
DEFAULT_CHUNK_ROWS = 16_384

_FLOAT_KINDS = ("f",)


# --------------------------------------------------------------------------------------------- reading


def _read_exactly(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return how many bytes arrived (fewer only at end of stream)."""
    got = 0
    while got < len(buffer):
        n = stream.readinto(buffer[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _read_header(stream: BinaryIO, source: str) -> tuple[tuple[int, ...], np.dtype[Any], bool] | None:
    """Read one NPY header; None at a clean end of stream."""
    first = stream.read(1)
    if not first:
        return None
    rest = stream.read(npy_format.MAGIC_LEN - 1)
    prefix = first + rest
    if len(prefix) < npy_format.MAGIC_LEN:
        raise InputError("truncated NPY stream (incomplete magic string)", source=source)
    if not prefix.startswith(npy_format.MAGIC_PREFIX):
        raise InputError(
            "not an NPY matrix stream",
            source=source,
            expected="NPY magic \\x93NUMPY",
            found=repr(prefix[:6]),
            hint="xl reads matrices written by numpy.save or by xl commands; text goes to `xl embed`",
        )
    version = (prefix[-2], prefix[-1])
    try:
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise InputError(f"unsupported NPY format version {version}", source=source)
    except ValueError as exc:
        raise InputError(f"malformed NPY header ({exc})", source=source) from None
    return tuple(shape), dtype, bool(fortran)


def _check_dtype(dtype: np.dtype[Any], source: str) -> None:
    if dtype.hasobject or dtype.kind not in _FLOAT_KINDS:
        raise InputError(
            "matrix has an unsupported dtype",
            source=source,
            expected="a float dtype (float32, float64 or float16)",
            found=str(dtype),
            hint="object arrays are refused (no pickle); convert with X.astype('float32')",
        )


def check_finite(chunk: NDArray[Any], source: str, first_row: int) -> None:
    """Raise naming the first row (0-based, global) that holds NaN or Inf."""
    finite = np.isfinite(chunk)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=1))[0]) if chunk.ndim == 2 else 0
        raise InputError(
            f"row {first_row + bad} holds NaN or Inf",
            source=source,
            hint="drop or fix that row before passing the matrix to xl",
        )


def open_binary_input(path: str | Path) -> tuple[BinaryIO, str]:
    """Open a matrix stream (``-`` is stdin); see :func:`xl.io.atomic.open_input`."""
    stream, name = open_input(path, "a matrix", "pass a file, or pipe one in: xl embed en.txt | xl …")
    return stream, name  # type: ignore[return-value]


def iter_matrix_chunks(
    path: str | Path | BinaryIO,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    source: str | None = None,
    check_values: bool = True,
    mapped: bool = False,
) -> Iterator[FloatMatrix]:
    """Yield (k, d) float32 row chunks of one or more back-to-back NPY arrays, in order.

    Memory is bounded by ``chunk_rows`` whatever the size of the input. Every array must be 2-D (a 1-D
    array is read as one row) with the same width; object dtypes, NaN/Inf rows (named) and truncated
    streams are refused with :class:`~xl.errors.InputError`.

    ``mapped=True`` maps C-order float32 arrays of regular files into memory (``numpy.memmap``) and hands
    out read-only views of the page cache instead of copying every chunk into a fresh buffer: for a caller
    that only reads each chunk once (the streamed fits), this removes a copy of the whole file. Pipes and
    other dtypes are read as usual.
    """
    if isinstance(path, (str, Path)):
        stream, name = open_binary_input(path)
        owned = stream is not sys.stdin.buffer
    else:
        stream, name, owned = path, source or "<stream>", False
    try:
        width: int | None = None
        row = 0
        while True:
            header = _read_header(stream, name)
            if header is None:
                break
            shape, dtype, fortran = header
            _check_dtype(dtype, name)
            if len(shape) == 1:
                shape = (1, shape[0])
            if len(shape) != 2:
                raise ShapeError("matrix is not 2-D", source=name, expected="shape (n, d)", found=f"shape {shape}")
            n, d = shape
            if width is not None and d != width:
                raise ShapeError(
                    f"arrays in one stream differ in width ({width} then {d})",
                    source=name,
                    hint="concatenate matrices of the same width only",
                )
            width = d
            if fortran:
                # Fortran order needs the whole array before rows can be handed out.
                data = bytearray(n * d * dtype.itemsize)
                if _read_exactly(stream, memoryview(data)) < len(data):
                    raise InputError(f"truncated NPY stream: array of {n} rows ends early", source=name)
                whole = np.frombuffer(data, dtype=dtype).reshape((n, d), order="F")
                chunks: Iterator[NDArray[Any]] = (whole[i : i + chunk_rows] for i in range(0, n, max(1, chunk_rows)))
            else:
                mapped_chunks = _map_rows(stream, n, d, dtype, chunk_rows) if mapped else None
                chunks = mapped_chunks or _iter_c_rows(stream, name, n, d, dtype, chunk_rows, row)
            for chunk in chunks:
                out = np.ascontiguousarray(chunk, dtype=np.float32)
                # A finite float32 sum (one pass, no temporary) proves every value finite; only a chunk
                # whose sum is not (NaN, Inf, or an overflow of large values) is checked value by value.
                if check_values and not np.isfinite(np.add.reduce(out, axis=None)):
                    check_finite(out, name, row)
                row += len(out)
                yield out
            if n == 0:
                yield np.zeros((0, d), dtype=np.float32)
    finally:
        if owned:
            stream.close()


def _map_rows(stream: BinaryIO, n: int, d: int, dtype: np.dtype[Any], chunk_rows: int) -> Iterator[NDArray[Any]] | None:
    """Row chunks of the (n, d) float32 C-order array starting at the stream's position, as read-only views
    of its regular file mapped into memory, with the stream moved past it; None where that is not possible
    (a pipe, another dtype, a truncated file: the copying reader then handles it, errors included).

    Pages of chunks already handed out are released (``MADV_DONTNEED``) when the next chunk is asked for,
    so the resident set stays about one chunk whatever the file size; a view still held after that stays
    valid (the kernel reads the pages back from the page cache)."""
    if dtype != np.dtype(np.float32) or n == 0:
        return None
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    offset = stream.tell()
    end = offset + n * d * dtype.itemsize
    if end > info.st_size:
        return None
    array = np.memmap(stream, dtype=dtype, mode="r", offset=offset, shape=(n, d), order="C")
    stream.seek(end)
    return _release_as_read(array, chunk_rows)


def _release_as_read(array: np.memmap[Any, Any], chunk_rows: int) -> Iterator[NDArray[Any]]:
    mapping = getattr(array, "_mmap", None)
    # np.memmap maps from the offset rounded down to the allocation granularity.
    lead = array.offset - array.offset // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    row_bytes = array.shape[1] * array.itemsize
    step = max(1, chunk_rows)
    released = 0
    for start in range(0, array.shape[0], step):
        if start and mapping is not None and hasattr(mapping, "madvise"):
            done = (lead + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
            mapping.madvise(mmap.MADV_DONTNEED, released, done - released)
            released = done
        yield np.asarray(array[start : start + step])


def _iter_c_rows(
    stream: BinaryIO, name: str, n: int, d: int, dtype: np.dtype[Any], chunk_rows: int, first_row: int
) -> Iterator[NDArray[Any]]:
    row_bytes = d * dtype.itemsize
    step = max(1, chunk_rows)
    done = 0
    while done < n:
        k = min(step, n - done)
        buffer = bytearray(k * row_bytes)
        got = _read_exactly(stream, memoryview(buffer))
        if got < len(buffer):
            raise InputError(
                f"truncated NPY stream: array of {n} rows ends after {done + got // max(row_bytes, 1)}",
                source=name,
                hint="the producer was interrupted; rerun it",
            )
        yield np.frombuffer(buffer, dtype=dtype).reshape(k, d)
        done += k


def read_matrix(path: str | Path | BinaryIO, *, check_values: bool = True) -> FloatMatrix:
    """Read a whole matrix stream into one (n, d) float32 array."""
    chunks = list(iter_matrix_chunks(path, check_values=check_values))
    if not chunks:
        raise InputError("empty input: no NPY array in the stream", source=str(path))
    return np.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]


# --------------------------------------------------------------------------------------------- writing


def _header(rows: int, width: int, dtype: np.dtype[Any]) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, width)}
    )
    return buffer.getvalue()


def _stdout_target() -> tuple[int | None, Path | None, bool]:
    """(fd or None, path of the regular file behind stdout or None, may_patch_header)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None, None, False  # an in-memory stdout (tests, notebooks): stream mode
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return fd, None, False
    appending = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
    try:
        path: Path | None = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        path = None
    return fd, path, not appending


class MatrixWriter:
    """Write (k, d) float32 row chunks as NPY to a file (atomic) or to stdout.

    - ``target`` a path: rows go to a temporary file beside it; :meth:`close` patches the header to one
      (n, d) array, renames the file into place and writes the manifest beside it. :meth:`abort` (or an
      exception inside ``with``) removes the temporary file and leaves any previous file untouched.
    - ``target`` ``-`` with stdout a regular file (``> out.npy``): one array, header patched in place,
      manifest beside the file.
    - ``target`` ``-`` with stdout a pipe: every :meth:`write` emits a complete NPY array (back-to-back
      stream); an empty input still emits one (0, d) array.
    A terminal on stdout is refused.
    """

    def __init__(self, target: str | Path, width: int, manifest: dict[str, Any] | None = None) -> None:
        self.width = width
        self.dtype = np.dtype("<f4")
        self.rows = 0
        self.manifest = manifest
        self._wrote_any = False
        self._closed = False
        if str(target) == "-" and sys.stdout.isatty():
            raise UsageError(
                "refusing to write binary NPY to a terminal",
                hint="redirect it (> out.npy), pipe it on (| xl apply-proj …) or pass -o FILE",
            )
        self._out = OutputTarget(target)
        self._handle = self._out.handle
        self._final = self._out.final
        if str(target) == "-":
            self._fd, self._final, self._single = _stdout_target()
            self._start = os.lseek(self._fd, 0, os.SEEK_CUR) if self._single and self._fd is not None else 0
        else:
            self._fd, self._single, self._start = self._handle.fileno(), True, 0
        if self._single:
            self._write_bytes(_header(0, width, self.dtype))

    @property
    def path(self) -> Path | None:
        """The file the matrix ends up in, when there is one."""
        return self._final

    def _write_bytes(self, data: bytes | memoryview) -> None:
        self._handle.write(data)

    def write(self, rows: NDArray[Any]) -> None:
        """Append a (k, width) chunk (converted to C-ordered float32)."""
        chunk = np.ascontiguousarray(rows, dtype=self.dtype)
        if chunk.ndim != 2 or chunk.shape[1] != self.width:
            raise ShapeError("chunk does not fit the output", expected=f"(k, {self.width})", found=str(chunk.shape))
        if len(chunk) == 0:
            return
        if not self._single:
            self._write_bytes(_header(len(chunk), self.width, self.dtype))
        self._write_bytes(chunk.data.cast("B"))
        self.rows += len(chunk)
        self._wrote_any = True

    def close(self, manifest_extra: dict[str, Any] | None = None) -> None:
        """Finish the matrix: patch the header or end the stream, rename into place, write the manifest."""
        if self._closed:
            return
        self._closed = True
        if not self._single and not self._wrote_any:
            self._write_bytes(_header(0, self.width, self.dtype))
        self._handle.flush()
        if self._single and self._fd is not None:
            os.pwrite(self._fd, _header(self.rows, self.width, self.dtype), self._start)
        self._out.commit()
        if self._final is not None and self.manifest is not None:
            manifest = dict(self.manifest)
            manifest.update(manifest_extra or {})
            manifest.update({"rows": self.rows, "dims": self.width, "dtype": "float32"})
            write_manifest(self._final, manifest)

    def abort(self) -> None:
        """Drop what was written to a temporary file; the previous file at the path stays as it was."""
        if self._closed:
            return
        self._closed = True
        self._out.abort()

    def __enter__(self) -> MatrixWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_matrix(target: str | Path, X: NDArray[Any], manifest: dict[str, Any] | None = None) -> None:
    """Write one whole (n, d) matrix with :class:`MatrixWriter` (atomic when ``target`` is a path)."""
    if X.ndim != 2:
        raise ShapeError("matrix is not 2-D", found=f"shape {X.shape}")
    with MatrixWriter(target, X.shape[1], manifest) as writer:
        writer.write(X)
