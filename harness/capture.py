"""Keep the libraries' own output off the terminal: a log file per command, and ``--verbose`` to show it too.

`session` wraps the commands that run libraries (``run``, ``eval``, ``arena``, ``nightly``; see `harness.cli`).
While it runs, `sys.stdout` and `sys.stderr` write to the log, so Python logging (a root handler at INFO), warnings,
tqdm bars and ``print()``s of lm-eval, transformers, datasets, MLflow, TRL, accelerate and nltk land in
``<results>/logs/harness-<command>-<YYYYmmdd-HHMMSS>.log`` (the command names its results folder with `log_to` once
its config is resolved; until then the log waits in memory), and on the terminal's stderr too with ``verbose``.
`harness.console` keeps writing to the real terminal, with a copy in the log.

With ``capture_fds`` (the console script, ``python -m harness.cli``) file descriptors 1 and 2 are pointed at a pipe
whose reader thread writes to the log, so C-level output and subprocesses (lm-eval's ``git`` probe) are caught too;
in-process callers (tests under pytest's capture) leave the descriptors alone. An unexpected exception is `crash`:
its traceback to the log, one line naming the log on the terminal.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from harness import console
from harness.errors import first_line

_current: list[_Log] = []  # the open session's log


class _Log:
    """The session's log file; what is written before its folder is known waits in memory."""

    def __init__(self, command: str):
        self.command = command
        self.path: Path | None = None
        self._file: TextIO | None = None
        self._pending: list[str] = [f"harness {command}: started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"]
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.write(text)
                    self._file.flush()
                except OSError:  # a full disk: the log stops here, the command still ends in one line
                    self._drop()
            elif self._pending is not None:
                self._pending.append(text)

    def open(self, folder: Path) -> Path:
        with self._lock:
            if self.path is not None:
                return self.path
            stamp = time.strftime("%Y%m%d-%H%M%S")
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"harness-{self.command}-{stamp}.log"
                if path.exists():
                    path = path.with_name(f"harness-{self.command}-{stamp}-{os.getpid()}.log")
                self._file = path.open("a", encoding="utf-8", errors="backslashreplace")
            except OSError:  # an unwritable results folder fails later with its own message; keep the log anyway
                fd, name = tempfile.mkstemp(prefix=f"harness-{self.command}-{stamp}-", suffix=".log")
                path, self._file = Path(name), os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
            self.path = path
            try:
                self._file.write("".join(self._pending or ()))
                self._file.flush()
            except OSError:  # a full disk
                self._drop()
            self._pending = None
            return path

    def _drop(self) -> None:
        """Stop logging (the disk is full): close the file, whose unwritten buffer is lost."""
        file, self._file = self._file, None
        try:
            file.close()
        except OSError:
            pass

    def close(self, keep: bool) -> None:
        """Close the file; a log never given a folder is dropped, or kept in the temp folder when `keep`."""
        if self.path is None and keep:
            self.open(Path(tempfile.gettempdir()))
        with self._lock:
            if self._file is not None:
                self._drop()
            self._file, self._pending = None, None


class _LogStream(io.TextIOBase):
    """A text stream into the log (and a copy to `tee`); stands in for `sys.<name>` while a session runs."""

    def __init__(self, name: str, log: _Log, tee: TextIO | None, fd: int | None):
        super().__init__()
        self._name, self._log, self._tee, self._fd, self._open = name, log, tee, fd, True

    def write(self, text: str) -> int:
        if not self._open:  # a handler or thread that outlived the session: write where the stream is now
            now = getattr(sys, self._name)
            return now.write(text) if now is not self else len(text)
        self._log.write(text)
        if self._tee is not None:
            self._tee.write(text)
            self._tee.flush()
        return len(text)

    def flush(self) -> None:
        if self._open and self._tee is not None:
            self._tee.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("fileno")
        return self._fd

    @property
    def encoding(self) -> str:
        return "utf-8"


def log_to(results_dir: str | os.PathLike) -> Path | None:
    """Put this session's log in ``<results_dir>/logs/``; its path (None outside a session). Under ``accelerate
    launch`` the main process's log is the command's one: the others' is written (to the temp folder) only if they
    crash."""
    from harness import distributed

    if not _current or not distributed.is_main():
        return None
    return _current[-1].open(Path(results_dir) / "logs")


def log_path() -> Path | None:
    """The session's log file, once `log_to` has named its folder."""
    return _current[-1].path if _current else None


def crash() -> Path | None:
    """Report the exception being handled: its traceback to the log, one line with the log's path on the terminal."""
    kind, err, _ = sys.exc_info()
    if not _current:
        return None
    log = _current[-1]
    log.write(traceback.format_exc())
    path = log.path or log.open(Path(tempfile.gettempdir()))
    first = first_line(err, "")
    from harness import distributed

    where, say = ("", console.info) if distributed.is_main() else (f" in process {distributed.rank()}",
                                                                    console.alert)  # the others print only this
    say(f"harness: error{where}: unexpected {kind.__name__}" + (f": {first}" if first else "")
        + f" (traceback in {path})")
    return path


class _Descriptors:
    """File descriptors 1 and 2 pointed at a pipe whose reader thread writes to the log (and the terminal)."""

    def __init__(self, log: _Log, verbose: bool):
        self._log, self._verbose = log, verbose
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._reader = threading.Thread(target=self._pump, args=(read,), name="harness-log", daemon=True)
        self._reader.start()
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        self.out = open(self._saved[0], "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)
        self.err = open(self._saved[1], "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)

    def _pump(self, read: int) -> None:
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        while chunk := os.read(read, 65536):
            self._log.write(decode(chunk))
            if self._verbose:
                os.write(self._saved[1], chunk)
        os.close(read)

    def restore(self) -> None:
        for stream in (self.out, self.err, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):  # BrokenPipeError: the reader of stdout went away
                pass
        try:  # C stdio buffers written while redirected belong in the log too
            import ctypes

            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        self._reader.join(timeout=5)  # a subprocess still holding the pipe keeps it open: do not wait for it
        for stream in (self.out, self.err):
            try:
                stream.close()
            except OSError:
                pass
        os.close(self._saved[0])
        os.close(self._saved[1])


@contextmanager
def session(command: str, *, verbose: bool = False, capture_fds: bool = False) -> Iterator[None]:
    """Send the libraries' output to the log file (and the terminal with `verbose`) while the block runs.

    Args:
        command: the command's name, part of the log file's name.
        verbose: copy the libraries' output to the terminal too.
        capture_fds: also redirect file descriptors 1 and 2 (C-level and subprocess output); for the console
            script only, never under a test runner that captures them itself.
    """
    log = _Log(command)
    fds = _Descriptors(log, verbose) if capture_fds else None
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    out, terminal = (fds.out, fds.err) if fds else (saved_stdout, saved_stderr)
    tee = terminal if verbose else None
    stand_in = _LogStream("stderr", log, tee, 2 if fds else _fileno(saved_stderr))
    stdout_stand_in = _LogStream("stdout", log, tee, 1 if fds else _fileno(saved_stdout))
    sys.stdout, sys.stderr = stdout_stand_in, stand_in
    handlers = _redirect_handlers(stand_in)
    root = logging.getLogger()
    ours = logging.StreamHandler(stand_in)
    ours.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(ours)
    root_level = root.level
    if root_level > logging.INFO:  # lm-eval's and accelerate's INFO lines belong in the log
        root.setLevel(logging.INFO)
    _current.append(log)
    failed = True
    try:
        with console.routed(out, terminal, log, rewrite=False if verbose else None):
            yield
        failed = False
    finally:
        _current.remove(log)
        root.removeHandler(ours)
        root.setLevel(root_level)
        for handler, original in handlers:
            handler.stream = original
        stdout_stand_in._open = stand_in._open = False
        sys.stdout, sys.stderr = saved_stdout, saved_stderr
        if fds:
            fds.restore()
        log.close(keep=failed)


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def _redirect_handlers(target: TextIO) -> list[tuple[logging.StreamHandler, object]]:
    """Point the plain stream handlers that libraries installed (transformers, MLflow) at `target`; the originals."""
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    moved = []
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:  # subclasses (pytest's capture, files) are left alone
                moved.append((handler, handler.stream))
                handler.stream = target
    return moved
