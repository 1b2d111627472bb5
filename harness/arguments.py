"""argparse value types that more than one command uses: a refused value becomes one line naming the valid range
(`harness.cli` turns argparse's errors into one line and exit code 2)."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """A whole number ≥ 0 (bootstrap rounds, seeds, sample counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (valid: >= 0)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: >= 0)")
    return value
