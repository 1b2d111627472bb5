"""CLI commands of this package (placeholder until the package lands)."""


def add_parsers(sub) -> None:
    """Register this package's subcommands on `sub` (argparse subparsers)."""
