"""Opening inputs, checked writes and outputs that are complete or absent.

Inputs: a path or ``-`` for stdin; a terminal on stdin is refused with a usage hint (nothing would ever
arrive), a missing file or a directory is a data error naming the path. Nothing here opens an input twice:
FIFOs, process substitution (``<(…)``) and stdin can be read once only.

Outputs (:class:`OutputTarget`) have three shapes, and each fails safe:

- ``-o PATH``: bytes go to a hidden temporary file beside ``PATH``, renamed onto it at :meth:`OutputTarget.commit`
  (atomic: same file system). A failed or interrupted run removes the temporary file; the previous file at
  ``PATH`` is untouched. The data file and its manifest are renamed together under a lock on the folder, so
  two runs writing one ``-o`` at once leave one complete output with its own manifest, never a mix.
- stdout redirected to a regular file (``> out.npy``, ``>> results.jsonl``): a failed run truncates the file
  back to where the run started, so nothing of a half-done run is left to read.
- stdout a pipe: a failed run that had written something ends the stream with bytes no reader accepts (see
  :mod:`xl.io.npy` for matrices; an unterminated, invalid last line for JSONL); one that had written nothing
  leaves it empty. Either way it exits non-zero.

Every write is checked: a short write or an OS error (disk full, file-size limit, read-only file system) raises
:class:`~xl.errors.OutputError` naming the final target (never the temporary file) with a hint.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import shutil
import stat
import sys
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Literal

from xl.errors import InputError, OutputError, UsageError

OutputKind = Literal["bytes", "jsonl", "npy"]

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere (-o on another disk), then rerun",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere, then rerun",
    errno.EFBIG: "a file-size limit (ulimit -f) stopped the write: raise it or write a smaller output",
    errno.EROFS: "the file system is read-only: write elsewhere (-o PATH on a writable disk)",
    errno.EACCES: "no permission to write there: choose another folder with -o",
    errno.EPERM: "no permission to write there: choose another folder with -o",
    errno.ENOENT: "the output folder is gone (deleted while the run was going?): create it and rerun",
}


def path_exists(path: str) -> bool:
    """Whether ``path`` names something on disk; an argument too long to be a file name (a dataset spec of a hundred
    languages, ``tatoeba:test:af,ang,…``) is not one, rather than an OSError (``File name too long``)."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def output_error(exc: OSError, target: str, doing: str = "cannot write") -> OutputError:
    """An :class:`OutputError` for ``exc`` that names ``target`` (the final path, not a temporary file)."""
    reason = exc.strerror or str(exc)
    return OutputError(f"{doing} {target}: {reason}", hint=_HINTS.get(exc.errno or 0, "check the output path"))


def check_input_path(path: str | Path, what: str) -> None:
    """Fail early on a missing input or a directory, without opening it (a FIFO can be opened only once)."""
    if str(path) == "-":
        return
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", source=str(p), hint="check the path, or use - for stdin")
    if p.is_dir():
        raise InputError(f"is a directory, not a file of {what}", source=str(p))
    if not os.access(p, os.R_OK):
        raise InputError("no permission to read this file", source=str(p))


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (not stdin, a FIFO, a process substitution or a device)."""
    if str(path) == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def refuse_terminal_stdin(what: str, hint: str) -> None:
    """UsageError when stdin is a terminal (or closed): a command reading ``-`` would wait for typing."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"refusing to read {what} from a terminal", hint=hint)


def refuse_stdin_twice(inputs: Mapping[str, str | None], hint: str = "write the others to files first") -> None:
    """UsageError when more than one of ``inputs`` (a name for messages → path) is ``-``: stdin is read once, so
    the second reader would find it empty."""
    named = [name for name, path in inputs.items() if path == "-"]
    if len(named) > 1:
        raise UsageError(f"only one of {' and '.join(named)} can be stdin", hint=hint)


def open_input(path: str | Path, what: str, example: str) -> tuple[IO[bytes], str]:
    """Open ``path`` (``-`` is stdin) for binary reading; return (stream, name for messages).

    ``what`` names the content in messages ("records", "a matrix"); ``example`` is a usage hint.
    """
    if str(path) == "-":
        refuse_terminal_stdin(what, example)
        return sys.stdin.buffer, "<stdin>"
    check_input_path(path, what)
    try:
        return open(Path(path), "rb"), str(path)
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", source=str(path)) from None


def spool(path: str | Path, target: Path, what: str) -> Path:
    """Copy a stream input (stdin, a FIFO, ``<(…)``) to the file ``target`` in one pass (disk, not memory),
    for work that needs to read it twice (count rows, several passes of a fit)."""
    stream, _ = open_input(path, what, "pass a file, or pipe the input in")
    try:
        with open(target, "wb") as handle:
            shutil.copyfileobj(stream, handle, 1 << 22)
    except OSError as exc:
        raise output_error(exc, f"a temporary copy of {path} ({target})") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return target


def absolute(path: str | Path | None) -> str | None:
    """``path`` made absolute for a manifest (``-`` and None stay as they are)."""
    if path is None or str(path) == "-":
        return None if path is None else "-"
    return str(Path(path).absolute())


# --------------------------------------------------------------------------------------------- writing


def write_all(fd: int, data: bytes | bytearray | memoryview, target: str) -> None:
    """Write every byte of ``data`` to ``fd``; a short write that cannot be completed raises OutputError."""
    view = memoryview(data).cast("B")
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None
            raise output_error(exc, target) from None
        if n <= 0:
            raise OutputError(f"cannot write {target}: the write made no progress", hint=_HINTS[errno.ENOSPC])
        view = view[n:]


def temp_path_beside(path: Path) -> Path:
    """Create an empty temporary file next to ``path`` and return its path (hidden, same folder)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(
            "output folder does not exist",
            source=str(path),
            hint=f"create it first: mkdir -p {folder}",
        )
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise output_error(exc, str(path)) from None
    os.close(fd)
    return Path(name)


def temp_dir_beside(path: Path) -> Path:
    """Create an empty hidden temporary directory next to ``path`` (same file system: renames are atomic)."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder))
    except OSError as exc:
        raise output_error(exc, str(path)) from None


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the folder of ``path`` (flock on the directory), held while files are renamed
    into place, so that two runs committing the same output do not interleave their renames."""
    folder = path.parent if str(path.parent) else Path(".")
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def commit(temp: Path, path: Path, *, companions: tuple[tuple[Path, Path], ...] = ()) -> None:
    """Move a finished temporary file onto ``path`` (atomic; keeps the umask's permissions), and each
    (temporary, final) companion file with it, all under one folder lock."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        for source, _ in ((temp, path), *companions):
            os.chmod(source, 0o666 & ~umask)
        with folder_lock(path):
            os.replace(temp, path)
            for source, final in companions:
                os.replace(source, final)
    except OSError as exc:
        raise output_error(exc, str(path)) from None


#: Outputs that are open now; :func:`abort_open_outputs` ends them after a failure the library did not see.
_OPEN: weakref.WeakSet[OutputTarget] = weakref.WeakSet()


class OutputTarget:
    """Where an output goes: a temporary file beside ``target`` (renamed onto it at :meth:`commit`), or
    stdout (``-``): a regular file, a pipe, or an in-memory stream (tests, notebooks).

    :meth:`write` is checked (see :func:`write_all`). :meth:`abort` makes a failed run safe: the temporary
    file is removed, a regular-file stdout is truncated back to where the run started, a pipe gets an ending
    that no reader of ``kind`` accepts. ``kind`` is ``npy`` (the matrix writer ends its own streams), ``jsonl``
    or ``bytes``.
    """

    def __init__(self, target: str | Path, kind: OutputKind = "bytes", *, partial: Path | None = None) -> None:
        self.kind = kind
        self.partial = partial
        self.temp: Path | None = None
        self.final: Path | None = None
        self.name = "stdout" if str(target) == "-" else str(target)
        self.fd: int | None = None
        self.mode: Literal["file", "stdout-file", "pipe", "memory"]
        self.start = 0
        self.appending = False
        self.bytes_written = 0
        self.finished = False
        if str(target) == "-":
            sys.stdout.flush()
            with contextlib.suppress(AttributeError, ValueError):
                sys.stdout.buffer.flush()
            try:
                fd = sys.stdout.fileno()
                info = os.fstat(fd)
            except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
                self.mode = "memory"
                self.handle: IO[bytes] = sys.stdout.buffer
            else:
                self.fd, self.handle = fd, sys.stdout.buffer
                if stat.S_ISREG(info.st_mode):
                    self.mode = "stdout-file"
                    self.appending = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
                    self.start = info.st_size if self.appending else os.lseek(fd, 0, os.SEEK_CUR)
                    self.final = stdout_path(fd)
                    self.name = f"stdout ({self.final})" if self.final else "stdout"
                else:
                    self.mode = "pipe"
        else:
            self.mode = "file"
            self.final = Path(target)
            try:
                if partial is not None:
                    # A resumable run: a fixed hidden name, opened without truncation, kept on failure.
                    self.temp = partial
                    self.handle = open(os.open(partial, os.O_RDWR | os.O_CREAT, 0o600), "r+b", buffering=0)
                else:
                    self.temp = temp_path_beside(self.final)
                    self.handle = open(self.temp, "wb", buffering=0)
            except OSError as exc:
                if partial is None and self.temp is not None:
                    self.temp.unlink(missing_ok=True)
                raise output_error(exc, self.name) from None
            self.fd = self.handle.fileno()
        _OPEN.add(self)

    @property
    def single_file(self) -> bool:
        """True when the bytes land in one regular file that can be patched in place (pwrite)."""
        return self.mode == "file" or (self.mode == "stdout-file" and not self.appending)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` or raise :class:`~xl.errors.OutputError` naming the target."""
        if self.fd is None:
            self.handle.write(data)
        else:
            write_all(self.fd, data, self.name)
        self.bytes_written += len(memoryview(data).cast("B"))

    def pwrite(self, data: bytes, offset: int) -> None:
        """Overwrite bytes at ``offset`` (relative to where this output started) of a single-file output."""
        if self.fd is None:
            raise OutputError("cannot patch an in-memory output")
        try:
            os.pwrite(self.fd, data, self.start + offset)
        except OSError as exc:
            raise output_error(exc, self.name) from None

    def sync(self) -> None:
        """Flush to the disk (fsync): what was written survives a crash of the machine."""
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError as exc:
                raise output_error(exc, self.name) from None

    def commit(self, companions: tuple[tuple[Path, Path], ...] = ()) -> None:
        """Finish: flush, and rename the temporary file (and ``companions``, (temporary, final) pairs such as
        a manifest) into place. A stdout output has no companions: its caller writes them."""
        self.finished = True
        _OPEN.discard(self)
        try:
            self.handle.flush()
        except OSError as exc:
            raise output_error(exc, self.name) from None
        if self.temp is not None and self.final is not None:
            self.handle.close()
            commit(self.temp, self.final, companions=companions)

    def abort(self, reason: str = "the run failed") -> None:
        """Make what was written unreadable as a result (see the class docstring). Idempotent."""
        if self.finished:
            return
        self.finished = True
        _OPEN.discard(self)
        if self.mode == "file" and self.temp is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            if self.partial is None:
                self.temp.unlink(missing_ok=True)
        elif self.mode == "stdout-file" and self.fd is not None:
            discard_stdout_from(self.fd, self.start)
        elif self.mode == "pipe" and self.fd is not None and self.kind == "jsonl" and self.bytes_written:
            # An unterminated object: every JSON-lines reader refuses the stream's last line.
            poison = b'{"xl_error": "' + reason.replace('"', "'").encode("utf-8", "replace") + b' (output incomplete)"'
            with contextlib.suppress(OSError, OutputError):
                with contextlib.suppress(ValueError, AttributeError):
                    sys.stdout.buffer.flush()
                write_all(self.fd, poison, self.name)


def stdout_path(fd: int) -> Path | None:
    """The regular file behind ``fd`` (Linux ``/proc``), or None."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def discard_stdout_from(fd: int, offset: int) -> None:
    """Truncate the regular file behind stdout back to ``offset`` and send whatever Python still buffers for
    stdout to /dev/null, so a failed run leaves the file as it was when the run started.

    Not when stderr goes to the same file (``> run.log 2>&1``): that file is a log, not a data product, and
    truncating it would erase the messages that say what went wrong."""
    with contextlib.suppress(OSError):
        out, err = os.fstat(fd), os.fstat(2)
        if (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino):
            return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def abort_open_outputs(reason: str) -> None:
    """Abort every output still open (the CLI calls this on any failure, Ctrl-C and SIGTERM included)."""
    for target in list(_OPEN):
        with contextlib.suppress(Exception):
            target.abort(reason)


class StdoutGuard:
    """Remembers where a regular-file stdout stood when a command started; :meth:`discard` truncates it back.

    Commands that print result lines straight to stdout (``xl eval``, ``xl tasksim correlate``) get the same
    guarantee as the writers: a failed run leaves ``>> results.jsonl`` as it was before the run."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.start = 0
        try:
            fd = sys.stdout.fileno()
            info = os.fstat(fd)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return
        if stat.S_ISREG(info.st_mode):
            appending = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
            self.fd, self.start = fd, info.st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)

    def discard(self) -> None:
        if self.fd is not None:
            discard_stdout_from(self.fd, self.start)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[CheckedHandle]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success only.

    Writes go through :class:`OutputTarget` (checked; errors name ``path``)."""
    target = OutputTarget(Path(path))
    try:
        yield CheckedHandle(target)
        target.commit()
    except BaseException:
        target.abort()
        raise


class CheckedHandle:
    """A file-like view of an :class:`OutputTarget` (``write`` only), for code that expects a handle."""

    def __init__(self, target: OutputTarget) -> None:
        self._target = target

    def write(self, data: bytes) -> int:
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        pass
