"""NPY matrix streams: a pipe-safe reader and a writer that streams or patches its header.

A regular file gets exactly one array: the writer reserves the header, writes rows as they come and patches
the row count at the end, so ``np.load("out.npy")`` works; the manifest goes beside it (``out.npy.json``).

On a pipe, a matrix stream is one or more complete NPY arrays written back to back (same width and dtype), so
a producer can stream without knowing the number of rows. ``np.load`` cannot read stdin (it seeks): the reader
here reads the magic and header with ``numpy.lib.format`` helpers and then exactly the data bytes. Nothing is
ever pickled.

**Frames: provenance and completeness on pipes.** A pipe has no room for a manifest beside it, and a stream cut
short by a killed producer still ends on an array boundary. So on a pipe (never in a file) xl brackets its
arrays with two *frames*, each a 1-D ``uint8`` NPY array holding one JSON object:

- a leading frame ``{"xl_stream": 1, "manifest": {...}}``: the manifest a file would have beside it;
- a closing frame ``{"xl_stream_end": 1, "rows": n, "manifest": {...}}``: what is known only at the end
  (rows, input hash, truncations); a reader checks ``rows`` against what it read;
- a failing producer writes ``{"xl_stream_error": "..."}`` instead, then the header of an array whose data
  never comes, so that no NPY reader, xl's or another's, takes the stream as complete.

xl's reader takes the manifest from the leading frame, requires the closing one (a stream that ends without it
was cut short), and skips both. A plain NPY stream from another tool (no frames) reads as before. A foreign
reader of xl's pipe output sees two small ``uint8`` arrays around the float32 ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import mmap
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from xl.errors import InputError, ShapeError, UsageError, failure_reason
from xl.io.atomic import OutputTarget, open_input, output_error, stdout_path
from xl.io.manifest import commit_with_manifest, manifest_path, read_manifest

FloatMatrix = NDArray[np.float32]

#: Rows handed out per chunk by the reader: 16,384 × 384 float32 is 24 MiB.
DEFAULT_CHUNK_ROWS = 16_384

#: Most bytes read into one buffer before the data behind a header has been seen (a lying header that
#: declares a huge array costs at most this much memory before the stream ends).
_MAX_BLIND_BYTES = 64 << 20

#: Longest NPY header accepted (numpy writes a few hundred bytes; its own reader stops at 10,000).
_MAX_HEADER_BYTES = 65_535

#: Largest frame (JSON manifest) accepted.
_MAX_FRAME_BYTES = 16 << 20

_FLOAT_KINDS = ("f",)
_FRAME_DTYPE = np.dtype("|u1")


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


def _read_bytes(stream: BinaryIO, nbytes: int) -> bytearray:
    """Up to ``nbytes`` from ``stream`` (fewer at end of stream), never allocating much more than what
    actually arrives: large requests are read in pieces."""
    if nbytes <= _MAX_BLIND_BYTES:
        buffer = bytearray(nbytes)
        got = _read_exactly(stream, memoryview(buffer))
        del buffer[got:]
        return buffer
    out = bytearray()
    while len(out) < nbytes:
        piece = stream.read(min(_MAX_BLIND_BYTES, nbytes - len(out)))
        if not piece:
            break
        out += piece
    return out


def _bytes_left(stream: BinaryIO) -> int | None:
    """Bytes left in a regular-file stream, or None (a pipe, a socket, an in-memory buffer of unknown size)."""
    if isinstance(stream, io.BytesIO):
        return len(stream.getbuffer()) - stream.tell()
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    try:
        return info.st_size - stream.tell()
    except OSError:
        return None


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
    if version not in ((1, 0), (2, 0)):
        raise InputError(f"unsupported NPY format version {version}", source=source)
    # The header's length is checked before it is read (a lying v2 length field must not allocate 4 GiB),
    # then numpy parses it from memory.
    size_bytes = 2 if version == (1, 0) else 4
    length_field = stream.read(size_bytes)
    if len(length_field) < size_bytes:
        raise InputError("truncated NPY stream (incomplete header length)", source=source)
    length = int.from_bytes(length_field, "little")
    if length > _MAX_HEADER_BYTES:
        raise InputError(f"NPY header of {length} bytes (at most {_MAX_HEADER_BYTES} accepted)", source=source)
    text = stream.read(length)
    if len(text) < length:
        raise InputError("truncated NPY stream (incomplete header)", source=source)
    reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    try:
        with warnings.catch_warnings():  # numpy's fallback parser warns about escapes in garbage headers
            warnings.simplefilter("ignore")
            shape, fortran, dtype = reader(io.BytesIO(length_field + text))
    except Exception as exc:  # numpy raises ValueError, and its fallback parser tokenize/recursion errors
        raise InputError(f"malformed NPY header ({type(exc).__name__}: {exc})"[:300], source=source) from None
    if not all(type(k) is int and k >= 0 for k in shape):
        raise InputError("malformed NPY header (a dimension is not a non-negative integer)", source=source,
                         found=f"shape {shape!r}")  # fmt: skip
    if (
        any(k >= 1 << 62 for k in shape)
        or int(np.prod([int(k) for k in shape], dtype=object)) * dtype.itemsize >= 1 << 62
    ):
        raise InputError("NPY header declares an impossibly large array", source=source, found=f"shape {shape}")
    return tuple(shape), dtype, bool(fortran)


def _check_dtype(dtype: np.dtype[Any], source: str) -> None:
    if dtype.hasobject or dtype.kind not in _FLOAT_KINDS or dtype.subdtype is not None or dtype.names:
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


def _frame(stream: BinaryIO, shape: tuple[int, ...], dtype: np.dtype[Any], source: str) -> dict[str, Any] | None:
    """The JSON object of an xl frame whose header was just read, or None if the header is not a frame's."""
    if dtype != _FRAME_DTYPE or len(shape) != 1:
        return None
    if shape[0] > _MAX_FRAME_BYTES:
        raise InputError(f"a uint8 array of {shape[0]} bytes is no xl frame", source=source)
    data = bytes(_read_bytes(stream, shape[0]))
    if len(data) < shape[0]:
        raise InputError("truncated NPY stream (a frame ends early)", source=source,
                         hint="the producer was interrupted; rerun it")  # fmt: skip
    if not data.startswith(b'{"xl_stream'):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InputError("malformed xl stream frame", source=source) from None
    return value if isinstance(value, dict) else None


class MatrixStream:
    """One matrix input (a file, ``-`` for stdin, or an open binary stream) read once, in row chunks.

    :attr:`manifest` is how the matrix was made: the manifest beside a file, else the leading frame of an xl
    stream (read at construction, before any row), else None (a plain NPY from elsewhere). After iteration
    the closing frame's fields (``rows``, ``input_sha256``, …) are merged into it.
    """

    def __init__(self, path: str | Path | BinaryIO, *, source: str | None = None) -> None:
        if isinstance(path, (str, Path)):
            self.stream, self.source = open_binary_input(path)
            self._owned = self.stream is not sys.stdin.buffer
            self.manifest: dict[str, Any] | None = read_manifest(path)
        else:
            self.stream, self.source, self._owned = path, source or "<stream>", False
            self.manifest = None
        self._in_xl_stream = False
        self._stream_rows = 0
        #: What the closing frames said (``input_sha256``, ``truncated``, …): known only once the rows are read.
        self.closing: dict[str, Any] = {}
        self._pending: tuple[tuple[int, ...], np.dtype[Any], bool] | None = None
        try:
            self._pending = self._next_header()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._owned:
            self.stream.close()

    def __enter__(self) -> MatrixStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_header(self) -> tuple[tuple[int, ...], np.dtype[Any], bool] | None:
        """The next data array's header, consuming the frames before it; None at a complete end."""
        while True:
            header = _read_header(self.stream, self.source)
            if header is None:
                if self._in_xl_stream:
                    raise InputError(
                        "the matrix stream ended before its producer finished (it was killed or failed)",
                        source=self.source,
                        hint="see the producer's own error; rerun it (set -o pipefail makes a shell notice)",
                    )
                return None
            shape, dtype, _fortran = header
            frame = _frame(self.stream, shape, dtype, self.source)
            if frame is None:
                return header
            self._take_frame(frame)

    def _take_frame(self, frame: dict[str, Any]) -> None:
        if "xl_stream_error" in frame:
            raise InputError(
                f"the producer of this stream failed: {frame['xl_stream_error']}",
                source=self.source,
                hint="fix what its own error message says and rerun the pipeline",
            )
        if "xl_stream" in frame:
            if self._in_xl_stream:
                raise InputError("a new matrix stream began before the previous one ended", source=self.source)
            self._in_xl_stream, self._stream_rows = True, 0
            if self.manifest is None and isinstance(frame.get("manifest"), dict):
                self.manifest = dict(frame["manifest"])
        elif "xl_stream_end" in frame:
            if not self._in_xl_stream:
                raise InputError("a matrix stream's closing frame without its opening one", source=self.source)
            declared = frame.get("rows")
            if declared != self._stream_rows:
                raise InputError(
                    f"the matrix stream declares {declared} rows but carried {self._stream_rows}",
                    source=self.source,
                    hint="the stream was damaged on its way; rerun the producer",
                )
            self._in_xl_stream = False
            extra = frame.get("manifest")
            if isinstance(extra, dict):
                self.closing.update(extra)
                if self.manifest is not None:
                    self.manifest.update(extra)

    def chunks(
        self, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, check_values: bool = True, mapped: bool = False
    ) -> Iterator[FloatMatrix]:
        """Yield (k, d) float32 row chunks of every array, in order; see :func:`iter_matrix_chunks`."""
        try:
            width: int | None = None
            row = 0
            while self._pending is not None:
                shape, dtype, fortran = self._pending
                self._pending = None
                _check_dtype(dtype, self.source)
                if len(shape) == 1:
                    shape = (1, shape[0])
                if len(shape) != 2:
                    raise ShapeError("matrix is not 2-D", source=self.source, expected="shape (n, d)",
                                     found=f"shape {shape}")  # fmt: skip
                n, d = shape
                if d == 0:
                    raise ShapeError("matrix has no columns", source=self.source, found=f"shape {shape}")
                if width is not None and d != width:
                    raise ShapeError(
                        f"arrays in one stream differ in width ({width} then {d})",
                        source=self.source,
                        hint="concatenate matrices of the same width only",
                    )
                width = d
                left = _bytes_left(self.stream)
                if left is not None and n * d * dtype.itemsize > left:
                    raise InputError(
                        f"truncated NPY data: the header declares {n} rows of {d} but only {left} bytes follow",
                        source=self.source,
                        hint="the file was cut short (an interrupted copy or producer); make it again",
                    )
                if fortran:
                    chunks = self._fortran_rows(n, d, dtype, chunk_rows)
                else:
                    mapped_chunks = _map_rows(self.stream, n, d, dtype, chunk_rows) if mapped else None
                    chunks = mapped_chunks or _iter_c_rows(self.stream, self.source, n, d, dtype, chunk_rows)
                for chunk in chunks:
                    # float64 beyond float32's range becomes Inf (refused below, not warned about).
                    with np.errstate(over="ignore", invalid="ignore"):
                        out = np.ascontiguousarray(chunk, dtype=np.float32)
                        # A finite float32 sum (one pass, no temporary) proves every value finite; only a
                        # chunk whose sum is not (NaN, Inf, or an overflow of large values) is checked value
                        # by value.
                        finite_sum = np.isfinite(np.add.reduce(out, axis=None))
                    if check_values and not finite_sum:
                        check_finite(out, self.source, row)
                    row += len(out)
                    self._stream_rows += len(out)
                    yield out
                if n == 0:
                    yield np.zeros((0, d), dtype=np.float32)
                self._pending = self._next_header()
        finally:
            self.close()

    def _fortran_rows(self, n: int, d: int, dtype: np.dtype[Any], chunk_rows: int) -> Iterator[NDArray[Any]]:
        # Fortran order needs the whole array before rows can be handed out.
        data = _read_bytes(self.stream, n * d * dtype.itemsize)
        if len(data) < n * d * dtype.itemsize:
            raise InputError(f"truncated NPY stream: array of {n} rows ends early", source=self.source)
        whole = np.frombuffer(data, dtype=dtype).reshape((n, d), order="F")
        return (whole[i : i + chunk_rows] for i in range(0, n, max(1, chunk_rows)))


def iter_matrix_chunks(
    path: str | Path | BinaryIO,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    source: str | None = None,
    check_values: bool = True,
    mapped: bool = False,
) -> Iterator[FloatMatrix]:
    """Yield (k, d) float32 row chunks of one or more back-to-back NPY arrays, in order.

    Memory is bounded by ``chunk_rows`` whatever the size of the input, and a header is checked against
    the bytes a regular file holds before anything is allocated for it. Every array must be 2-D (a 1-D
    array is read as one row) with the same width; object dtypes, NaN/Inf rows (named), truncated streams
    and xl streams without their closing frame are refused with :class:`~xl.errors.InputError`.

    ``mapped=True`` maps C-order float32 arrays of regular files into memory (``numpy.memmap``) and hands
    out read-only views of the page cache instead of copying every chunk into a fresh buffer: for a caller
    that only reads each chunk once (the streamed fits), this removes a copy of the whole file. Pipes and
    other dtypes are read as usual.
    """
    stream = MatrixStream(path, source=source)
    yield from stream.chunks(chunk_rows=chunk_rows, check_values=check_values, mapped=mapped)


def matrix_manifest(path: str | Path) -> dict[str, Any] | None:
    """How the matrix file at ``path`` was made: its manifest beside it, else its leading xl frame (a stream
    saved to a file), else None. Reads at most the first frame."""
    if str(path) == "-":
        return None
    with MatrixStream(path) as stream:
        return stream.manifest


def matrix_rows(path: str | Path) -> int | None:
    """The rows of the regular file at ``path`` when it holds exactly one 2-D NPY array (read from its header, in
    microseconds, for a progress total); None otherwise (a pipe, a stream of several arrays or frames, not NPY)."""
    try:
        if not Path(path).is_file():
            return None
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            data_bytes = os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, ValueError):
        return None
    if len(shape) != 2 or data_bytes != shape[0] * shape[1] * dtype.itemsize:
        return None
    return int(shape[0])


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
    stream: BinaryIO, name: str, n: int, d: int, dtype: np.dtype[Any], chunk_rows: int
) -> Iterator[NDArray[Any]]:
    row_bytes = d * dtype.itemsize
    # At most chunk_rows rows, and no more than _MAX_BLIND_BYTES a buffer unless a single row is larger
    # (then _read_bytes grows the buffer only as bytes arrive).
    step = max(1, min(chunk_rows, _MAX_BLIND_BYTES // max(row_bytes, 1)))
    done = 0
    while done < n:
        k = min(step, n - done)
        buffer = _read_bytes(stream, k * row_bytes)
        if len(buffer) < k * row_bytes:
            raise InputError(
                f"truncated NPY stream: array of {n} rows ends after {done + len(buffer) // max(row_bytes, 1)}",
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


def read_matrix_with_manifest(path: str | Path) -> tuple[FloatMatrix, dict[str, Any] | None]:
    """A whole matrix and how it was made (its manifest or its stream's frames; None for a plain NPY)."""
    stream = MatrixStream(path)
    chunks = list(stream.chunks())
    if not chunks:
        raise InputError("empty input: no NPY array in the stream", source=str(path))
    return (np.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]), stream.manifest


# --------------------------------------------------------------------------------------------- writing


def _header(rows: int, width: int, dtype: np.dtype[Any]) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, width)}
    )
    return buffer.getvalue()


def frame_bytes(obj: dict[str, Any]) -> bytes:
    """One xl frame: a 1-D uint8 NPY array holding ``obj`` as JSON (see the module docstring)."""
    data = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return _header_1d(len(data)) + data


def _header_1d(length: int) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (length,)})
    return buffer.getvalue()


def forget_stale_stdout_manifest() -> None:
    """``> out.npy``: the shell emptied the file before the command started, so a manifest that an earlier run
    left beside it describes rows that are gone. A command calls this as it starts, so that a run failing
    before it opens its output (a bad input line found up front) does not leave that pair behind;
    :class:`MatrixWriter` does the same when it opens. ``>>`` (appending) and non-empty files are left alone."""
    try:
        fd = sys.stdout.fileno()
        info = os.fstat(fd)
        appending = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        at_start = os.lseek(fd, 0, os.SEEK_CUR) == 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return
    path = stdout_path(fd) if stat.S_ISREG(info.st_mode) and not appending and at_start else None
    if path is not None and info.st_size == 0:
        manifest_path(path).unlink(missing_ok=True)


def refuse_terminal_stdout(target: str | Path) -> None:
    """UsageError when ``target`` is ``-`` and stdout is a terminal (binary NPY would garble it): what
    :class:`MatrixWriter` checks, for a command to check before it loads a model."""
    if str(target) == "-" and sys.stdout.isatty():
        raise UsageError(
            "refusing to write binary NPY to a terminal",
            hint="redirect it (> out.npy), pipe it on (| xl apply-proj …) or pass -o FILE",
        )


class MatrixWriter:
    """Write (k, d) float32 row chunks as NPY to a file (atomic) or to stdout.

    - ``target`` a path: rows go to a temporary file beside it; :meth:`close` patches the header to one
      (n, d) array, renames the file and its manifest into place together. :meth:`abort` (or an exception
      inside ``with``) removes the temporary file and leaves any previous file untouched.
    - ``target`` ``-`` with stdout a regular file (``> out.npy``): one array, header patched in place,
      manifest beside the file; a failure truncates the file back to where the run started.
    - ``target`` ``-`` with stdout a pipe: a leading frame with the manifest, then a complete NPY array per
      :meth:`write`, then a closing frame with the row count (see the module docstring); an empty input still
      emits one (0, d) array. A failure ends the stream with an error frame and an incomplete array.
    A terminal on stdout is refused. Every write is checked (:class:`~xl.errors.OutputError`).
    """

    def __init__(
        self, target: str | Path, width: int, manifest: dict[str, Any] | None = None, *, partial: Path | None = None
    ) -> None:
        self.width = width
        self.dtype = np.dtype("<f4")
        self.rows = 0
        self.manifest = manifest
        self._wrote_any = False
        self._closed = False
        refuse_terminal_stdout(target)
        if partial is not None and str(target) == "-":
            raise UsageError("a resumable output needs a file", hint="pass -o FILE")
        self._out = OutputTarget(target, kind="npy", partial=partial)
        self._partial = partial
        self._final = self._out.final
        self._single = self._out.single_file
        self._framed = self._out.mode in ("pipe", "memory")
        if self._out.mode == "stdout-file" and self._final is not None and self._out.start == 0:
            # The shell has already emptied the file: a manifest beside it describes rows that are gone.
            manifest_path(self._final).unlink(missing_ok=True)
        if self._single and partial is None:
            self._out.write(_header(0, width, self.dtype))
        # On a stream the leading frame waits for the first rows (or the end): a run that fails before any
        # row leaves its stdout empty.
        self._frame_pending = self._framed

    @property
    def path(self) -> Path | None:
        """The file the matrix ends up in, when there is one."""
        return self._final

    def rows_on_disk(self) -> int:
        """Complete rows in a resumable writer's partial file (0 for a new one)."""
        if self._partial is None or self._out.fd is None:
            return 0
        header = len(_header(0, self.width, self.dtype))
        return max(0, os.fstat(self._out.fd).st_size - header) // (self.width * self.dtype.itemsize)

    def resume(self, rows: int) -> None:
        """Continue a resumable writer's partial file after its first ``rows`` rows (0: start it afresh);
        anything after them is cut off. Must be called once before :meth:`write` on a resumable writer."""
        fd = self._out.fd
        if self._partial is None or fd is None:
            raise UsageError("resume() needs a resumable writer")
        if rows > self.rows_on_disk():
            raise InputError(f"the partial output holds {self.rows_on_disk()} rows, not {rows}",
                             source=str(self._partial))  # fmt: skip
        header = _header(0, self.width, self.dtype)
        keep = len(header) + rows * self.width * self.dtype.itemsize
        try:
            os.ftruncate(fd, keep if rows else 0)
            os.lseek(fd, keep if rows else 0, os.SEEK_SET)
        except OSError as exc:
            raise output_error(exc, str(self._final)) from None
        if not rows:
            self._out.write(header)
        self.rows, self._wrote_any = rows, rows > 0

    def sync(self) -> None:
        """Make the rows written so far durable (fsync), e.g. before recording them as done."""
        self._out.sync()

    def write(self, rows: NDArray[Any]) -> None:
        """Append a (k, width) chunk (converted to C-ordered float32)."""
        chunk = np.ascontiguousarray(rows, dtype=self.dtype)
        if chunk.ndim != 2 or chunk.shape[1] != self.width:
            raise ShapeError("chunk does not fit the output", expected=f"(k, {self.width})", found=str(chunk.shape))
        if len(chunk) == 0:
            return
        self._start_stream()
        if not self._single:
            self._out.write(_header(len(chunk), self.width, self.dtype))
        self._out.write(chunk.data.cast("B"))
        self.rows += len(chunk)
        self._wrote_any = True

    def close(self, manifest_extra: dict[str, Any] | None = None) -> None:
        """Finish the matrix: patch the header or end the stream, rename into place, write the manifest."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish(manifest_extra or {})
        except BaseException:
            self._out.abort("could not finish the output")
            raise

    def _start_stream(self) -> None:
        if self._frame_pending:
            self._frame_pending = False
            self._out.write(frame_bytes({"xl_stream": 1, "manifest": self.manifest or {}}))

    def _finish(self, extra: dict[str, Any]) -> None:
        self._start_stream()
        if not self._single and not self._wrote_any:
            self._out.write(_header(0, self.width, self.dtype))
        if self._single:
            self._out.pwrite(_header(self.rows, self.width, self.dtype), 0)
        fields = {**extra, "rows": self.rows, "dims": self.width, "dtype": "float32"}
        if self._framed:
            self._out.write(frame_bytes({"xl_stream_end": 1, "rows": self.rows, "manifest": fields}))
        manifest = None if self.manifest is None else {**self.manifest, **fields}
        commit_with_manifest(self._out, manifest)

    def abort(self, reason: str = "the run failed") -> None:
        """Drop what was written: see the class docstring. The previous file at a path stays as it was."""
        if self._closed:
            return
        self._closed = True
        if self._framed and not self._out.finished and self._out.bytes_written:
            # An error frame for xl's readers, then the header of an array whose data never comes, for all others.
            ending = frame_bytes({"xl_stream_error": reason}) + _header(1, self.width, self.dtype)
            with contextlib.suppress(Exception):  # the stream may be gone too; the exit code still tells
                self._out.write(ending)
        self._out.abort(reason)

    def __enter__(self) -> MatrixWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(failure_reason(exc))


def write_matrix(target: str | Path, X: NDArray[Any], manifest: dict[str, Any] | None = None) -> None:
    """Write one whole (n, d) matrix with :class:`MatrixWriter` (atomic when ``target`` is a path)."""
    if X.ndim != 2:
        raise ShapeError("matrix is not 2-D", found=f"shape {X.shape}")
    with MatrixWriter(target, X.shape[1], manifest) as writer:
        writer.write(X)
