"""The `harness` command line.

Each command group keeps its parser and handler in its own package's `cli.py` (which imports only argparse at
module level, so `harness --help` stays fast); this file wires them together and turns a `HarnessError` into
one line on stderr and exit code 2 (3 for a tracking server that does not answer, 4 for storage that cannot be
written). Before a command does any work, the files and folders its flags name are checked writable and the
tracking URI known (`harness.storage`); a disk that fills up or turns read-only mid-command is one line too.

The commands that run libraries (``run``, ``eval``, ``import``, ``arena``, ``nightly``, ``sweep``, ``watch``) run
inside a `harness.capture` session: the libraries' own output goes to
``<results>/logs/harness-<command>-<timestamp>.log``, and to the terminal too with ``harness --verbose COMMAND``
(also accepted after the command). An unexpected crash is one line on the terminal naming that log, which holds the
traceback (exit code 1).

Under ``accelerate launch`` every process runs the command: only ``run`` trains across processes (any other is one
line, exit 2), the main process alone prints and records, and every process exits with its exit code
(`harness.distributed.finish`).
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness import distributed, stops
from harness.errors import HarnessError, ServerUnreachable


class _UsageError(Exception):
    """An argument argparse refused, with the command whose --help lists the valid ones."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused argument is one line (``harness: error: ...``, exit code 2) like any bad input,
    instead of the usage text; ``--help`` shows the usage. Subcommands' parsers are of this class too."""

    def error(self, message: str):
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from harness import runner_cli, watch_cli
    from harness.arena import cli as arena_cli
    from harness.evals import cli as evals_cli
    from harness.nightly import cli as nightly_cli
    from harness.ratings import cli as ratings_cli
    from harness.report import cli as report_cli
    from harness.tracking import cli as tracking_cli

    parser = _Parser(
        prog="harness",
        description="Post-training evaluation harness: train, evaluate, rate and track checkpoints.",
    )
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (runner_cli, evals_cli, ratings_cli, arena_cli, nightly_cli, report_cli, tracking_cli, watch_cli):
        module.add_parsers(sub)
    for command in sub.choices.values():  # `harness run --verbose` works too; SUPPRESS keeps a global --verbose
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)
    return parser


_VERBOSE = "also show the libraries' own output (lm-eval, transformers, TRL, MLflow...) on the terminal; it always " \
    "goes to <results>/logs/"
# Commands that run libraries: their output is kept off the terminal (see `harness.capture.session`).
_RECORD_COMMANDS = {"compare", "dashboard", "runs"}  # commands that only read the record: the server is pinged first
_LIBRARY_COMMANDS = {"run", "eval", "import", "arena", "nightly", "sweep", "watch"}


def main(argv: list[str] | None = None, *, capture_fds: bool | None = None) -> int:
    """Run one command; its exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        capture_fds: redirect file descriptors 1 and 2 to the log too (C-level and subprocess output). Default:
            only when `argv` is None, i.e. for the console script and ``python -m harness.cli``; in-process calls
            (tests under pytest's capture) keep their descriptors, and an unexpected exception propagates.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:  # a missing or malformed argument: one line, as all bad input (--help still exits)
        from harness import console

        console.error(str(err))
        return distributed.finish(2)
    if args.command != "run" and distributed.processes() > 1:
        from harness import console

        console.error(f"harness {args.command} runs in one process, and this launch started "
                      f"{distributed.processes()}: only harness run trains across the processes of accelerate launch")
        return distributed.finish(2)
    previous = stops.on_signals()
    try:
        code = _run(args, argv, capture_fds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if (swallowed := stops.swallowed()) is not None and code < 128:  # interrupted, and something swallowed it:
        return _stopped(swallowed)  # the command did not finish as asked
    return distributed.finish(code)


def _run(args: argparse.Namespace, argv: list[str] | None, capture_fds: bool | None) -> int:
    from harness.tracking import store

    if args.command not in _LIBRARY_COMMANDS:
        try:
            _check_storage(args)
            if args.command in _RECORD_COMMANDS:
                _store_ready(args)
            return int(args.func(args) or 0)
        except (HarnessError, KeyboardInterrupt, BrokenPipeError) as err:
            return _stopped(err)
        except Exception as err:
            if (known := _outside_failure(err, args)) is not None:
                return _stopped(known)
            raise
    from harness import capture, console

    fds = argv is None if capture_fds is None else capture_fds
    with capture.session(args.command, verbose=args.verbose, capture_fds=fds):
        try:
            _check_storage(args)  # an unwritable output or results folder, an unknown store: before any model work
            _store_ready(args)  # a dead tracking server fails here, before any model work
            code = int(args.func(args) or 0)
        except (HarnessError, KeyboardInterrupt, BrokenPipeError) as err:
            return _stopped(err)
        except Exception as err:
            if (known := _outside_failure(err, args)) is not None:
                if store.unreachable(err):  # the server went away mid-command: its traceback to the log
                    capture.crash()
                return _stopped(known)
            capture.crash()
            if not fds:
                raise
            return 1
        if capture.log_path() is not None:  # bad input stays one line; a finished command says where its log is
            console.info(f"log: {capture.log_path()}")
        return code


# Where each command's flags write (argparse dest → flag): checked before any work (`harness.storage`).
_OUTPUT_FILES = {"json": "--json file", "output": "--output file", "html": "--html file"}
_OUTPUT_DIRS = {"out": "--out folder", "plots": "--plots folder"}


def _check_storage(args: argparse.Namespace) -> None:
    """Before any work: the files and folders the command's flags name are writable, and so is the results folder
    given with --results when the command writes there; a tracking URI names a store MLflow knows. Each command
    checks the folders its config names (`harness.storage`)."""
    from harness import storage

    for dest, what in _OUTPUT_FILES.items():
        if getattr(args, dest, None):
            storage.output_file(getattr(args, dest), what)
    for dest, what in _OUTPUT_DIRS.items():
        if getattr(args, dest, None):
            storage.output_dir(getattr(args, dest), what)
    logs = getattr(args, "mlflow", False) or (args.command == "compare" and not args.no_log)
    if args.command in _LIBRARY_COMMANDS | _RECORD_COMMANDS or logs:
        storage.check_tracking_uri()
    if getattr(args, "results", None) and (args.command in _LIBRARY_COMMANDS or logs):
        storage.writable_dir(args.results, "results folder", create=False)  # created once the config is checked


def _store_ready(args: argparse.Namespace) -> None:
    """Before a command works on the store: the tracking server must answer (`store.ping`), and runs left RUNNING
    by a process that died (kill -9, OOM, a lost machine) are ended KILLED (`store.reap`), so that nothing waits
    on them or reads them as current."""
    from harness import console
    from harness.tracking import store

    if not distributed.is_main():  # the main process alone works on the store; the others learn how it went
        return
    results = getattr(args, "results", None)
    store.ping(results)
    if getattr(args, "command", None) == "runs":
        return  # `harness runs` shows them first, and reaps only with --reap
    reaped = store.reap(results)
    if reaped:
        console.info(f"harness: ended KILLED {len(reaped)} run(s) left RUNNING by a process that is gone "
                     f"({reaped[0]['orphan']}{'; harness runs lists them' if len(reaped) > 1 else ''})")


def _outside_failure(err: Exception, args: argparse.Namespace) -> HarnessError | None:
    """An unexpected exception that is a known failure outside the harness, as its one-line error: the tracking
    server gone (exit 3, the results kept), a disk full or read-only (4), the server refusing the credentials or
    the permission (2); None for anything else (a bug: its traceback is kept)."""
    from harness import storage
    from harness.tracking import store

    if store.unreachable(err):
        return _unreachable(err, args)
    if (refused := storage.storage_error(err)) is not None:
        return refused
    if store.refused(err):
        return store.credentials_refused(store.tracking_uri(getattr(args, "results", None)), err)
    return None


def _unreachable(err: BaseException, args: argparse.Namespace) -> HarnessError:
    from harness.tracking import store

    chain = [err]  # a line further down that says what was kept (an eval's outbox entry, under a parent run
    while chain[-1] is not None and chain[-1] not in chain[:-1]:  # that could not be ended) is the line to show
        if isinstance(chain[-1], ServerUnreachable):
            return chain[-1]
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    results = getattr(args, "results", None)
    return store.server_unreachable(store.tracking_uri(results), err, results)


def _stopped(err: BaseException) -> int:
    """Bad input or an interrupt as one line on stderr, a closed stdout quietly; the exit code."""
    from harness import console

    if isinstance(err, HarnessError):
        console.error(str(err))
        return err.exit_code
    if isinstance(err, stops.Terminated):
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
