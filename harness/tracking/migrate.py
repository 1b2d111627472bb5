"""A local sqlite MLflow store, created and migrated once, safely, however many processes open it at once.

MLflow builds a missing sqlite store's schema (68 alembic migrations in MLflow 3.17) the first time a client
touches it, with no lock: four processes starting on a fresh store at once crash ("table experiments already
exists"), and a first migration cut short (a full disk, a kill) leaves a half-built file that every later command
refuses ("table _alembic_tmp_endpoints already exists"). `ensure(uri)`, called by `harness.tracking.store.client`
for sqlite URIs:

1. unless the store is there and complete (then nothing is locked: a read-only results folder still reads),
   takes an exclusive lock on ``<db>.lock`` (`fcntl.flock`, released by the kernel even on kill -9); the other
   processes wait on it and then find the store ready;
2. if the store is missing (or empty), has MLflow build it — MLflow's own `SqlAlchemyStore` runs its own
   migrations — in a temporary file beside it, renamed into place only once complete: a build that fails leaves no
   store behind, only one line (`StorageError`, exit code 4);
3. a store left half-built before (its schema short of MLflow's head revision, and no run in it) is moved aside
   to ``<db>.broken-<time>`` and rebuilt, with a warning; a store that holds runs is never moved.

Other URIs (a tracking server, a PostgreSQL database) are left to MLflow: a server migrates its own database once
at start.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

from harness.errors import StorageError, first_line

_BUILDING = ".building"  # suffix of the temporary file a store is built in


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for an in-memory database or another scheme)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    return None if path in ("", ":memory:") else Path(path).absolute()


def ensure(uri: str) -> None:
    """Make the sqlite store at `uri` exist at MLflow's current schema (see the module docstring).

    Raises:
        StorageError: the store could not be built (a full disk, a read-only folder; exit code 4); nothing is left
            behind.
    """
    db = sqlite_path(uri)
    if db is None or state(db) == "ready":  # no lock needed: a store appears only complete (renamed into place)
        return
    with _locked(db):
        found = state(db)  # again: another process may have built it while this one waited
        if found == "ready":
            return
        if found == "half-built":
            aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(db, aside)
            from harness import console

            console.warn(f"the MLflow store {db} was left half-built (its creation was cut short; it held no "
                         f"runs): moved aside to {aside.name} and created again")
        _build(db)


@contextmanager
def _locked(db: Path) -> Iterator[None]:
    """Hold the exclusive lock ``<db>.lock`` (blocking)."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise StorageError(f"cannot open the MLflow store {db}: {err.strerror or first_line(err)} "
                           f"({db.parent})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def state(db: Path) -> str:
    """The state of the sqlite store `db`: ``missing`` (no file, or an empty one), ``half-built`` (short of MLflow's
    head revision or holding alembic's leftovers, and no run in it) or ``ready`` (a store with runs counts as ready
    whatever its schema: MLflow itself then says whether it needs ``mlflow db upgrade``)."""
    if not db.exists() or db.stat().st_size == 0:
        return "missing"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            version = row[0] if row else None
        has_runs = "runs" in tables and con.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:
        return "ready"  # not ours to judge (not a database, or locked for 30 s): MLflow says what is wrong
    finally:
        con.close()
    from mlflow.store.db.utils import _get_latest_schema_revision

    leftovers = any(t.startswith("_alembic_tmp_") for t in tables)
    if (leftovers or version != _get_latest_schema_revision()) and not has_runs:
        return "half-built"
    return "ready"


def _build(db: Path) -> None:
    """Have MLflow create the store in a temporary file beside `db`, then rename it into place."""
    for stale in db.parent.glob(f"{db.name}.*{_BUILDING}"):  # from a build killed before (we hold the lock)
        stale.unlink(missing_ok=True)
    tmp = db.with_name(f"{db.name}.{os.getpid()}{_BUILDING}")
    tmp_uri = f"sqlite:///{tmp}"
    try:
        from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        built = SqlAlchemyStore(tmp_uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)  # as MlflowClient would build it
        built._dispose_engine()
        SqlAlchemyStore._engine_map.pop(tmp_uri, None)  # MLflow caches one engine per URI
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
    except Exception as err:  # noqa: BLE001 - sqlite, SQLAlchemy and MLflow raise many types; the user needs a line
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)
        raise StorageError(f"cannot create the MLflow store {db}: {_reason(err)}; nothing was left behind") from None


def _reason(err: BaseException) -> str:
    """The innermost cause's first line (sqlite's own words: ``database or disk is full``, ``disk I/O error``)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return first_line(err)
