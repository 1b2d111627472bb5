"""The user's terminal: messages, a result, and one progress line per phase.

Everything `harness` shows while it works comes through here: `info`, `warn` and `error` lines, a command's
`result` (the summary table, a report: stdout), and a `progress` line per phase (a stage's training, an eval's
requests, arena answers, arena judgements). On a terminal the progress line rewrites itself (``\\r``) and ends as a
one-line summary; elsewhere (a pipe, a file, or ``--verbose``, where library lines would cut into it) only the
summary is printed, plus a line a minute while a long phase runs. Messages and summaries go to stderr.

Outside a `harness.capture` session this writes to `sys.stdout` and `sys.stderr` as they are at call time; inside
one (`routed`) to the real terminal, with a copy in the session's log. Under ``accelerate launch`` only the main
process writes to the terminal (`harness.distributed`); the others' lines go to their log alone, but `alert`.
Only the standard library is imported here, so `harness --help` stays fast.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

MINUTE = 60.0  # without a terminal, a running phase prints a line at most this often (seconds)
_REDRAW = 0.1  # on a terminal, the progress line is redrawn at most this often (seconds)
_lock = threading.RLock()


class _State:
    """Where the terminal is while a session runs (outside one: `sys.stderr` at call time)."""

    def __init__(self):
        self.out: TextIO | None = None
        self.err: TextIO | None = None
        self.rewrite: bool | None = None  # None: ask the stream whether it is a terminal
        self.log = None  # the session's log (anything with write), if one is open
        self.bars: list[Progress] = []  # open phases, innermost last


_state = _State()


class _Nowhere(io.TextIOBase):
    """The terminal of a process other than the main one under ``accelerate launch``: one process prints."""

    def write(self, text: str) -> int:
        return len(text)


def _terminal() -> TextIO:
    from harness import distributed

    return (_state.err or sys.stderr) if distributed.is_main() else _Nowhere()


def _rewrites() -> bool:
    if _state.rewrite is not None:
        return _state.rewrite
    try:
        return _terminal().isatty()
    except (AttributeError, ValueError):
        return False


def _width() -> int:
    try:
        return max(20, os.get_terminal_size(_terminal().fileno()).columns - 1)
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 99


def _emit(text: str) -> None:
    """Write `text` to the terminal (and the log) without tearing a progress line that is being rewritten."""
    with _lock:
        shown = _state.bars[-1] if _state.bars and _rewrites() else None
        if shown is not None:
            shown.erase()
        stream = _terminal()
        stream.write(text)
        stream.flush()
        if _state.log is not None:
            _state.log.write(text)
        if shown is not None:
            shown.draw()


def info(message: str) -> None:
    """Print one message (it may span lines) to the terminal, above any progress line."""
    _emit(f"{message}\n")


def alert(message: str) -> None:
    """Print one line on this process's terminal even when it is not the main one (an unexpected crash there)."""
    with _lock:
        stream = _state.err or sys.stderr
        stream.write(f"{message}\n")
        stream.flush()
        if _state.log is not None:
            _state.log.write(f"{message}\n")


def note(message: str) -> None:
    """Write one line to the session's log only (detail the terminal does not need)."""
    if _state.log is not None:
        _state.log.write(f"{message}\n")


def warn(message: str) -> None:
    """Print ``harness: warning: <message>``."""
    info(f"harness: warning: {message}")


def error(message: str) -> None:
    """Print ``harness: error: <message>``: bad input, reported as one line."""
    info(f"harness: error: {message}")


def result(text: str) -> None:
    """Print a command's result (a table, a report) to stdout."""
    stream = result_stream()
    stream.write(f"{text}\n")
    stream.flush()
    if _state.log is not None:
        _state.log.write(f"{text}\n")


def result_stream() -> TextIO:
    """Where results go: the real stdout (`sys.stdout` outside a session; nowhere but on the main process)."""
    from harness import distributed

    return (_state.out or sys.stdout) if distributed.is_main() else _Nowhere()


class _Stream(io.TextIOBase):
    """`info` as a text stream, for code that prints to a stream it is given (whole lines at a time)."""

    def __init__(self):
        super().__init__()
        self._partial = ""

    def write(self, text: str) -> int:
        lines, newline, self._partial = (self._partial + text).rpartition("\n")
        if newline:
            _emit(lines + newline)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            _emit(self._partial + "\n")
            self._partial = ""

    def isatty(self) -> bool:
        return _rewrites()


def stream() -> TextIO:
    """The terminal as a text stream (what `info` writes to), for functions that take an ``out`` stream."""
    return _Stream()


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """One phase's progress: a count out of a total, a few named values, and the elapsed time.

    Attributes:
        phase: what the phase is (``train sft``, ``eval base``, ``arena answers``).
        total: how many units the phase has, None while unknown (`add` grows it as work is discovered).
        unit: what is counted (``steps``, ``requests``, ``answers``).
        count: units done so far.
    """

    def __init__(self, phase: str, total: int | None, unit: str):
        self.phase, self.total, self.unit, self.count = phase, total, unit, 0
        self.values: dict[str, object] = {}
        self.start = self._drawn_at = self._printed_at = time.perf_counter()
        self._shown = 0  # characters of this line on the terminal now

    def update(self, n: int = 1, **values) -> None:
        """Count `n` more units done and set `values` (shown as ``name=value``)."""
        with _lock:
            self.count += n
            self.values.update(values)
            self._tick()

    def set(self, **values) -> None:
        """Set named values without counting units (``loss=1.23``, ``cached=4``)."""
        self.update(0, **values)

    def add(self, n: int) -> None:
        """Grow the total by `n` units (work discovered while the phase runs)."""
        with _lock:
            self.total = (self.total or 0) + n
            self._tick()

    def line(self, finished: bool = False, failed: bool = False) -> str:
        """The phase as one line: running, finished (a summary) or stopped by an error."""
        if self.total and (not finished or failed or self.count < self.total):
            counted = f"{min(self.count, self.total)}/{self.total}"
        else:
            counted = f"{self.count}"
        text = f"{self.phase}: " + ("stopped at " if failed else "") + (f"{counted} {self.unit}".strip())
        text += "".join(f", {k}={_value(v)}" for k, v in self.values.items())
        elapsed = _seconds(time.perf_counter() - self.start)
        return f"{text} (in {elapsed})" if finished and not failed else f"{text} ({elapsed})"

    def _tick(self) -> None:
        now = time.perf_counter()
        if _rewrites():
            if now - self._drawn_at >= _REDRAW and _state.bars and _state.bars[-1] is self:
                self.draw()
        elif now - self._printed_at >= MINUTE:
            self._printed_at = now
            _emit(self.line() + "\n")

    def draw(self) -> None:
        """Rewrite this line in place (terminal only)."""
        self._drawn_at = time.perf_counter()
        text = self.line()[: _width()]
        stream = _terminal()
        stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        stream.flush()
        self._shown = len(text)

    def erase(self) -> None:
        """Blank this line so that a message can be printed in its place (terminal only)."""
        if self._shown:
            stream = _terminal()
            stream.write("\r" + " " * self._shown + "\r")
            stream.flush()
            self._shown = 0


@contextmanager
def progress(phase: str, total: int | None = None, unit: str = "") -> Iterator[Progress]:
    """Show a phase's progress while the block runs, then its one-line summary (when the block raises, the line
    is erased, so that the error is the last line, and where the phase stopped goes to the log).

    Args:
        phase: what runs (``train sft``, ``eval base``, ``arena answers``).
        total: the units to do, if known (else grow it with `Progress.add`).
        unit: what is counted (``steps``, ``requests``).

    Yields:
        The `Progress` handle: `update` it as units finish.
    """
    bar = Progress(phase, total, unit)
    with _lock:
        if _state.bars and _rewrites():
            _state.bars[-1].erase()
        _state.bars.append(bar)
        if _rewrites():
            bar.draw()
    try:
        yield bar
    except BaseException:
        with _lock:  # the error that follows is the one line the user needs; where the phase stopped is logged
            bar.erase()
            _state.bars.remove(bar)
            note(bar.line(finished=True, failed=True))
        raise
    with _lock:
        bar.erase()
        _state.bars.remove(bar)
        _emit(bar.line(finished=True) + "\n")


@contextmanager
def routed(out: TextIO, err: TextIO, log, *, rewrite: bool | None) -> Iterator[None]:
    """Write results to `out` and everything else to `err`, with a copy to `log`, while the block runs.

    Args:
        out: the real stdout.
        err: the real stderr (the terminal).
        log: anything with ``write(text)``: the session's log.
        rewrite: rewrite progress lines in place; None asks `err` whether it is a terminal.
    """
    previous = (_state.out, _state.err, _state.rewrite, _state.log)
    _state.out, _state.err, _state.rewrite, _state.log = out, err, rewrite, log
    try:
        yield
    finally:
        _state.out, _state.err, _state.rewrite, _state.log = previous
