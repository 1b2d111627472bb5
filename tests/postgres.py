"""A real PostgreSQL 15 for tests (Debian's package) and the team tracking server of the README's "Team setup" on
it: ``mlflow server --backend-store-uri postgresql://... --artifacts-destination ... --serve-artifacts --app-name
basic-auth``.

`postgres_bin` finds PostgreSQL's server programs, installing Debian's ``postgresql`` with apt-get when they are
missing (the test skips only if that fails). `postgres_cluster` initialises a throwaway cluster in a temporary
folder and runs ``postgres`` itself (not ``pg_ctl``, which would detach it) as the ``postgres`` user when the tests
run as root, listening on a free 127.0.0.1 port with its unix socket in that folder; it is stopped by its pid
(SIGINT: PostgreSQL's fast shutdown, SIGKILL after 30 s) and the folder removed, whatever the test did.
`team_server` starts ``mlflow server`` on new databases of it (through ``tests/mlflow_server.py``), stopped the same
way, and creates the user the tests work as. The fixtures ``postgres`` and ``team_server`` (conftest.py) wrap them,
one of each per test session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from mlflow_server import free_port, mlflow_server

VERSION = "15"
BIN = Path(f"/usr/lib/postgresql/{VERSION}/bin")
PG_USER = "harness"  # the cluster's superuser; it connects over TCP with PG_PASSWORD (scram-sha-256)
PG_PASSWORD = "pg-secret-3f9c"  # only ever in the server's environment: the tests check that it reaches no run


def postgres_bin() -> Path:
    """PostgreSQL's server programs folder, installed with apt-get when missing (the test skips if that fails)."""
    if (BIN / "postgres").exists():
        return BIN
    if shutil.which("apt-get") is None:
        pytest.skip(f"PostgreSQL {VERSION} is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200)
    if done.returncode != 0:  # a stale package index: refresh it once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=1200)
    if not (BIN / "postgres").exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"PostgreSQL {VERSION} could not be installed with apt-get: {last}")
    return BIN


@dataclass
class Cluster:
    """A running PostgreSQL cluster: its port and folder; `database` creates databases on it."""

    port: int
    root: Path
    process: subprocess.Popen

    def uri(self, database: str, *, password: bool = True) -> str:
        """The plain ``postgresql://`` URI of one database (SQLAlchemy 2 reaches it through psycopg 3); without
        `password`, libpq takes it from ``PGPASSWORD``, as the README's server does."""
        secret = f":{PG_PASSWORD}" if password else ""
        return f"postgresql://{PG_USER}{secret}@127.0.0.1:{self.port}/{database}"

    def database(self, name: str) -> str:
        """Create the database `name`; its URI without the password."""
        import psycopg

        with psycopg.connect(self.uri("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name, password=False)

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.uri(database)) as con:
            return con.execute(sql).fetchall()


def _as_postgres() -> dict:
    """Popen arguments that run a program as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A fresh PostgreSQL cluster on a free 127.0.0.1 port until the block ends (see the module docstring)."""
    binaries = postgres_bin()
    # Under /tmp itself rather than pytest's tmp folder: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    proc = None
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        (root / "pwfile").write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(root / "pwfile", "postgres", "postgres")
        init = subprocess.run([str(binaries / "initdb"), "-D", str(root / "data"), "-U", PG_USER, "-E", "UTF8",
                               "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                               f"--pwfile={root / 'pwfile'}"], capture_output=True, text=True, timeout=300,
                              **_as_postgres())
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
        port = free_port()
        log = open(root / "postgres.log", "wb")  # noqa: SIM115 - closed below
        # fsync off: a throwaway cluster; max_connections covers 8 concurrent clients and two servers
        proc = subprocess.Popen([str(binaries / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                                 "-c", "fsync=off", "-c", "max_connections=100"],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, **_as_postgres())
        log.close()
        cluster = Cluster(port, root, proc)
        _wait_ready(cluster)
        yield cluster
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: clients disconnected, no waiting on them
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(cluster: Cluster, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.uri("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError as err:
            if cluster.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not come up ({err}): "
                            f"{(cluster.root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)


@dataclass
class TeamServer:
    """A running team tracking server: its URL, the user the tests work as, and where its record lives."""

    url: str
    user: str
    password: str
    cluster: Cluster
    database: str  # the PostgreSQL database of runs, metrics, params, tags and the model registry
    artifacts: Path  # --artifacts-destination

    def env(self) -> dict[str, str]:
        """What a client of the server sets (README "Team setup")."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.user,
                "MLFLOW_TRACKING_PASSWORD": self.password}


ADMIN = ("admin", "admin-secret-6d1e0b")  # the server's first user, created from MLFLOW_AUTH_ADMIN_* at start
USER = ("ci-bot", "ci-bot-secret-51a7f2")  # the user the tests work as, created by the admin


@contextmanager
def team_server(cluster: Cluster, database: str, folder: Path) -> Iterator[TeamServer]:
    """The README's team server on a new database of `cluster`: ``mlflow server --backend-store-uri postgresql://...
    --artifacts-destination folder/artifacts --serve-artifacts --app-name basic-auth``, its users in another new
    database, the database password from ``PGPASSWORD`` (not in the URIs), every user able to edit
    (``default_permission = EDIT``), the admin created at first start from ``MLFLOW_AUTH_ADMIN_*`` (the server's
    environment only) and the user `USER` created by the admin as the README says, through
    ``mlflow.server.get_app_client``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = EDIT\ndatabase_uri = {cluster.database(database + '_auth')}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   "auth_cache_ttl_seconds = 60\n")  # else every request re-hashes the password (PBKDF2)
    # every secret through the environment: the database password (libpq's PGPASSWORD), the first admin's, the key
    env = {"PGPASSWORD": PG_PASSWORD, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    args = ["--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts", "--app-name", "basic-auth"]
    with mlflow_server(cluster.database(database), folder, *args, env=env) as (_, url):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
            from mlflow.server import get_app_client

            get_app_client("basic-auth", tracking_uri=url).create_user(username=USER[0], password=USER[1])
        yield TeamServer(url, USER[0], USER[1], cluster, database, folder / "artifacts")
