"""User-facing errors.

A `HarnessError` is bad input from the user (a config key, a file, a model path): the CLI prints its message as
one line and exits with code 2, without a traceback. `ServerUnreachable` is an MLflow tracking server that does not
answer: one line, exit code 3 (distinct from a nightly's regression, 1). `StorageError` is a place the command
must write that refuses it (read-only, no permission, a file in the way of a folder, no space left on the device):
one line naming what could not be written, where and why, exit code 4 (`harness.storage`). Anything else is a bug
and keeps its traceback.

Exit codes of `harness`: 0 success (a nightly: pass), 1 a nightly's regression (or an unexpected crash), 2 bad input
or a nightly that cannot compare, 3 the tracking server unreachable, 4 storage that cannot be written (checked
before any model work; a disk that fills up mid-command ends its MLflow run FAILED), 128 + N stopped by signal N
(130: Ctrl-C).
"""


class HarnessError(Exception):
    """Bad input: what was wrong, where, and what is valid. Exit code 2."""

    exit_code = 2


class ServerUnreachable(HarnessError):
    """The MLflow tracking server did not answer (refused, timed out, gone mid-command). Exit code 3."""

    exit_code = 3


class StorageError(HarnessError):
    """A folder or file the command must write that cannot be written: read-only, no permission, a file in the way
    of a folder, no space left on the device. Exit code 4."""

    exit_code = 4


def not_utf8(what: str, path, err: UnicodeDecodeError) -> HarnessError:
    """The one line for a file that is not UTF-8 text: `what` (``"suite file"``) and `path`, the first bad byte and
    its offset, and the fix."""
    byte = err.object[err.start:err.start + 1]
    shown = f"byte 0x{byte[0]:02x}" if byte else "a truncated character"
    return HarnessError(f"{what} {str(path)!r} is not UTF-8 text ({shown} at offset {err.start}); save it as UTF-8")


def first_line(err: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error; `default` (else the exception's type name)
    when the message is empty."""
    text = str(err).strip()
    if text:
        return text.splitlines()[0]
    return type(err).__name__ if default is None else default
