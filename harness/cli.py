"""The `harness` command line.

Each command group keeps its parser and handler in its own package's `cli.py` (which imports only argparse at
module level, so `harness --help` stays fast); this file wires them together and turns a `HarnessError` into
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError


def build_parser() -> argparse.ArgumentParser:
    from harness import runner_cli
    from harness.arena import cli as arena_cli
    from harness.evals import cli as evals_cli
    from harness.nightly import cli as nightly_cli
    from harness.ratings import cli as ratings_cli

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Post-training evaluation harness: train, evaluate, rate and track checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (runner_cli, evals_cli, ratings_cli, arena_cli, nightly_cli):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`harness rate ... | head`): stop quietly, as other Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
