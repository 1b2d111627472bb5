"""Can we write here: every place a command writes, checked before any work, and written so that a failure leaves
nothing half-done.

A command checks where it will write before it loads a model or opens an MLflow run (`harness.cli` checks the flags
the commands share; each command checks the folders its config names):

- `writable_dir(path, what)`: the folder exists or is created, and a probe file is written in it and removed;
- `output_file(path, what)`: a file written at the end (``--json``, ``--output``, ``--html``): not a folder, its
  folder writable. An existing file is allowed (it is overwritten, as other command-line tools do) and is probed
  without being changed: a zero-byte write, which ``/dev/full`` already refuses;
- `output_dir(path, what)`: a folder a command fills (``--out``, ``--plots``): not a file, writable;
- `check_tracking_uri()`: ``MLFLOW_TRACKING_URI`` has a scheme MLflow can keep runs at.

`write_text(path, text, what)` writes through a temporary name beside the file and renames it into place: all or
nothing, so a full disk leaves the old file as it was and no temporary file behind (the temporary file is removed on
any failure, Ctrl-C included). A device or a pipe (``/dev/stdout``, ``/dev/null``) is written in place.

Two kinds of failure, two exit codes:

- a path of the wrong kind (a folder named where a file is expected, a file where a folder is) is bad input:
  `HarnessError`, exit code 2;
- storage that refuses the write (read-only, no permission, a file in the way of a folder to create, no space left)
  is a `StorageError`, exit code 4, naming what could not be written, where and why. `storage_error(err)` turns such
  an `OSError` raised anywhere in a command (or sqlite's "database or disk is full") into one, so that a disk that
  fills up mid-command is one line too.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from harness.errors import HarnessError, StorageError

# errno → why, for the storage failures that a command reports as one line (exit code 4).
_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a file is in the way (not a folder)",
    errno.EEXIST: "a file is in the way (not a folder)",
}
# The errors `storage_error` maps when they escape a command: the disk is full or refuses writes.
_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}
_SQLITE = {"database or disk is full": "no space left on device (database or disk is full)",
           "attempt to write a readonly database": "read-only database"}


def _reason(err: OSError) -> str:
    return _REASONS.get(err.errno) or (err.strerror or type(err).__name__).lower()


def _refused(what: str, path: str | os.PathLike, err: OSError) -> StorageError:
    return StorageError(f"cannot write {what} {str(path)!r}: {_reason(err)}")


def _probe(folder: Path, create: bool) -> None:
    """Write one byte to a temporary file (removed) in `folder`, created first if `create`, else in its nearest
    existing parent when it is missing; OSError if refused."""
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    fd, probe = tempfile.mkstemp(prefix=".harness-probe-", dir=folder)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
        os.unlink(probe)


def writable_dir(path: str | os.PathLike, what: str, *, create: bool = True) -> Path:
    """Check that `path` is a folder the command can write in, creating it if needed.

    Args:
        path: the folder.
        what: what it is, for the message (``"results folder"``, ``"eval cache"``).
        create: create the folder; False checks a missing one without creating it (before a command's config is
            checked, nothing is created): its nearest existing parent must be a folder that can be written in.

    Returns:
        The folder as a `Path`.

    Raises:
        HarnessError: `path` is an existing file (exit code 2).
        StorageError: the folder cannot be created or written in (exit code 4).
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"{what} {str(folder)!r} is a file, not a folder; name a folder")
    try:
        _probe(folder, create)
    except OSError as err:
        raise _refused(what, folder, err) from None
    return folder


def output_dir(path: str | os.PathLike, what: str) -> Path:
    """`writable_dir` for a folder a command fills (``--out``, ``--plots``), not created yet: the command creates
    it when it writes."""
    return writable_dir(path, what, create=False)


def output_file(path: str | os.PathLike, what: str) -> Path:
    """Check that the command will be able to write the file `path` at the end.

    A folder is refused. An existing file will be overwritten; it is probed with a zero-byte write, which changes
    nothing (not even its modification time) but fails on a device that refuses writes (``/dev/full``). A new file
    needs its folder writable (or, if missing, its nearest existing parent: the folder is created when written).

    Args:
        path: the file.
        what: what it is, for the message (``"--json file"``).

    Returns:
        The file as a `Path`.

    Raises:
        HarnessError: `path` is a folder (exit code 2).
        StorageError: the file or its folder cannot be written (exit code 4).
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise HarnessError(f"{what} {str(target)!r} is a folder; name a file")
    try:
        mode = target.stat().st_mode
    except OSError:
        mode = None
    try:
        if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return target  # a pipe: opening it here could block until its reader comes
        if mode is not None:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"")
            finally:
                os.close(fd)
        if mode is None or stat.S_ISREG(mode):  # written through a temporary file beside it
            _probe(target.parent, create=False)
    except OSError as err:
        raise _refused(what, target, err) from None
    return target


def write_text(path: str | os.PathLike, text: str, what: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` all or nothing: through a temporary file in the same folder, renamed into place.

    An existing file keeps its permissions; a symbolic link is followed (the file it names is replaced); a device
    or a pipe is written in place. The temporary file is removed whatever stops the write.

    Args:
        path: the file (its folder is created if missing).
        text: the content.
        what: what it is, for the message (``"--json file"``, ``"eval cache entry"``).
        encoding: the text encoding.

    Returns:
        The file as a `Path`.

    Raises:
        HarnessError: `path` is a folder.
        StorageError: the file cannot be written (no space left, read-only, no permission...).
    """
    target = Path(os.path.realpath(Path(path).expanduser()))
    try:
        mode = target.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise HarnessError(f"{what} {str(path)!r} is a folder; name a file")
    if mode is not None and not stat.S_ISREG(mode):  # /dev/stdout, a pipe: no rename possible
        try:
            with open(target, "w", encoding=encoding) as f:
                f.write(text)
        except OSError as err:
            raise _refused(what, path, err) from None
        return target
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _refused(what, path, err) from None
        raise
    return target


def storage_error(err: BaseException) -> StorageError | None:
    """The `StorageError` for a full or read-only storage anywhere in `err`'s chain (an `OSError` with ENOSPC,
    EDQUOT, EROFS or EACCES, or sqlite's "database or disk is full"); None for anything else.

    The message names the file when the error does (an `OSError` raised by a write to an open file does not).
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _REFUSALS:
            where = err.filename or getattr(err, "filename2", None)
            hint = "; free some space or point --results at another disk" if err.errno == errno.ENOSPC else ""
            if where:
                return StorageError(f"cannot write {str(where)!r}: {_reason(err)}{hint}")
            return StorageError(f"a write failed: {_reason(err)} (in the results folder, the MLflow store or the "
                                f"temporary folder {tempfile.gettempdir()}){hint}")
        text = str(err)
        for needle, why in _SQLITE.items():
            if needle in text:
                return StorageError(f"cannot write the sqlite MLflow store: {why}")
        err = err.__cause__ or err.__context__
    return None


def check_tracking_uri(uri: str | None = None) -> None:
    """Check that the tracking URI (default ``MLFLOW_TRACKING_URI``; unset: the results folder's sqlite store) has a
    scheme MLflow can keep runs at, by MLflow's own registry of stores.

    Raises:
        HarnessError: an unknown scheme, naming the URI and the valid schemes.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") if uri is None else uri
    if not uri:
        return
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry as registry

        schemes = [s for s in registry._registry if s]
    except (ImportError, AttributeError):  # another MLflow layout: MLflow itself will say
        return
    try:
        registry.get_store_builder(uri)
    except MlflowException:
        raise HarnessError(f"MLFLOW_TRACKING_URI {uri!r}: not a tracking store MLflow knows; valid schemes: "
                           f"{', '.join(schemes)} (e.g. sqlite:///results/mlflow.db, http://host:5000, "
                           "postgresql://user@host/db), or a folder path") from None
