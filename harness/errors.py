"""User-facing errors.

A `HarnessError` is bad input from the user (a config key, a file, a model path): the CLI prints its message as
one line and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class HarnessError(Exception):
    """Bad input: what was wrong, where, and what is valid. Exit code 2."""

    exit_code = 2
