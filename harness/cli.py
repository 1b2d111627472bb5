"""The `harness` command line.

Each command group keeps its parser and handler in its own package's `cli.py` (which imports only argparse at
module level, so `harness --help` stays fast); this file wires them together and turns a `HarnessError` into
one line on stderr and exit code 2.

The commands that run libraries (``run``, ``eval``, ``import``, ``arena``, ``nightly``) run inside a
`harness.capture` session: the libraries' own output goes to ``<results>/logs/harness-<command>-<timestamp>.log``,
and to the terminal too with ``harness --verbose COMMAND`` (also accepted after the command). An unexpected crash
is one line on the terminal naming that log, which holds the traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness.errors import HarnessError


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, CI cancellation and systemd send) or SIGHUP, raised like Ctrl-C so that every open
    MLflow run ends KILLED (`harness.tracking.store.run`) and the command stops with ``128 + signal``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut short the runs' KILLED endings
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _on_signals() -> dict:
    """SIGTERM and SIGHUP stop a command as Ctrl-C does (main thread only: signals are delivered there); the
    handlers they replace, to restore."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}


def build_parser() -> argparse.ArgumentParser:
    from harness import runner_cli
    from harness.arena import cli as arena_cli
    from harness.evals import cli as evals_cli
    from harness.nightly import cli as nightly_cli
    from harness.ratings import cli as ratings_cli
    from harness.report import cli as report_cli

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Post-training evaluation harness: train, evaluate, rate and track checkpoints.",
    )
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (runner_cli, evals_cli, ratings_cli, arena_cli, nightly_cli, report_cli):
        module.add_parsers(sub)
    for command in sub.choices.values():  # `harness run --verbose` works too; SUPPRESS keeps a global --verbose
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)
    return parser


_VERBOSE = "also show the libraries' own output (lm-eval, transformers, TRL, MLflow...) on the terminal; it always " \
    "goes to <results>/logs/"
# Commands that run libraries: their output is kept off the terminal (see `harness.capture.session`).
_RECORD_COMMANDS = {"compare", "dashboard"}  # commands that only read the record: the server is pinged first
_LIBRARY_COMMANDS = {"run", "eval", "import", "arena", "nightly"}


def main(argv: list[str] | None = None, *, capture_fds: bool | None = None) -> int:
    """Run one command; its exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        capture_fds: redirect file descriptors 1 and 2 to the log too (C-level and subprocess output). Default:
            only when `argv` is None, i.e. for the console script and ``python -m harness.cli``; in-process calls
            (tests under pytest's capture) keep their descriptors, and an unexpected exception propagates.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _on_signals()
    try:
        return _run(args, argv, capture_fds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace, argv: list[str] | None, capture_fds: bool | None) -> int:
    from harness.tracking import store

    if args.command not in _LIBRARY_COMMANDS:
        try:
            if args.command in _RECORD_COMMANDS:
                store.ping(getattr(args, "results", None))
            return int(args.func(args) or 0)
        except (HarnessError, KeyboardInterrupt, BrokenPipeError) as err:
            return _stopped(err)
        except Exception as err:
            if store.unreachable(err):
                return _stopped(_unreachable(err, args))
            raise
    from harness import capture, console

    fds = argv is None if capture_fds is None else capture_fds
    with capture.session(args.command, verbose=args.verbose, capture_fds=fds):
        try:
            store.ping(getattr(args, "results", None))  # a dead tracking server fails here, before any model work
            code = int(args.func(args) or 0)
        except (HarnessError, KeyboardInterrupt, BrokenPipeError) as err:
            return _stopped(err)
        except Exception as err:
            if store.unreachable(err):  # the server went away mid-command: one line, exit 3, the caches kept
                capture.crash()
                return _stopped(_unreachable(err, args))
            capture.crash()
            if not fds:
                raise
            return 1
        if capture.log_path() is not None:  # bad input stays one line; a finished command says where its log is
            console.info(f"log: {capture.log_path()}")
        return code


def _unreachable(err: BaseException, args: argparse.Namespace) -> HarnessError:
    from harness.tracking import store

    results = getattr(args, "results", None)
    return store.server_unreachable(store.tracking_uri(results), err, results)


def _stopped(err: BaseException) -> int:
    """Bad input or an interrupt as one line on stderr, a closed stdout quietly; the exit code."""
    from harness import console

    if isinstance(err, HarnessError):
        console.error(str(err))
        return err.exit_code
    if isinstance(err, Terminated):
        console.info(f"harness: terminated by {err}; open MLflow runs end KILLED")
        return 128 + err.signum
    if isinstance(err, KeyboardInterrupt):
        console.info("harness: interrupted")
        return 130
    # The reader went away (`harness rate ... | head`): stop quietly, as other Unix tools do.
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
