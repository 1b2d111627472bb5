"""Stopping signals: SIGTERM (what `timeout`, CI cancellation and systemd send) and SIGHUP stop a command as Ctrl-C
does, so that every open MLflow run ends KILLED (`harness.tracking.store.run`) and the command exits with ``128 +
signal`` (130 for Ctrl-C); and each one that arrives is remembered, so that a stop a library swallows (a thread
pool's callback catching everything) still ends the command as interrupted (`harness.cli.main` asks `swallowed`;
a command that would go on, such as ``harness watch``, calls `raise_if_stopped` between its steps)."""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, CI cancellation and systemd send) or SIGHUP, raised like Ctrl-C so that every open
    MLflow run ends KILLED (`harness.tracking.store.run`) and the command stops with ``128 + signal``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the stopping signals that arrived during the command, Ctrl-C's SIGINT included


def _raise_terminated(signum: int, frame) -> None:
    _received.append(signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut short the runs' KILLED endings
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _raise_interrupt(signum: int, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def on_signals() -> dict:
    """SIGTERM and SIGHUP stop a command as Ctrl-C does (main thread only: signals are delivered there), and every
    stopping signal is remembered, so that one a library swallows (a thread pool's callback catching everything)
    still ends the command as interrupted; the handlers they replace, to restore."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    _received.clear()
    previous = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupt)
    return previous


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for, if one came and something swallowed it: for a command that would go on
    (`harness watch` polls until stopped)."""
    if (stop := swallowed()) is not None:
        raise stop


def swallowed() -> KeyboardInterrupt | None:
    """The stop that the first stopping signal of the command asked for, if one came; None if none did."""
    if not _received:
        return None
    return KeyboardInterrupt() if _received[0] == signal.SIGINT else Terminated(_received[0])
