"""User-facing errors.

A `HarnessError` is bad input from the user (a config key, a file, a model path): the CLI prints its message as
one line and exits with code 2, without a traceback. `ServerUnreachable` is an MLflow tracking server that does not
answer: one line, exit code 3 (distinct from a nightly's regression, 1). Anything else is a bug and keeps its
traceback.

Exit codes of `harness`: 0 success (a nightly: pass), 1 a nightly's regression (or an unexpected crash), 2 bad input
or a nightly that cannot compare, 3 the tracking server unreachable, 128 + N stopped by signal N (130: Ctrl-C).
"""


class HarnessError(Exception):
    """Bad input: what was wrong, where, and what is valid. Exit code 2."""

    exit_code = 2


class ServerUnreachable(HarnessError):
    """The MLflow tracking server did not answer (refused, timed out, gone mid-command). Exit code 3."""

    exit_code = 3


def first_line(err: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error; `default` (else the exception's type name)
    when the message is empty."""
    text = str(err).strip()
    if text:
        return text.splitlines()[0]
    return type(err).__name__ if default is None else default
