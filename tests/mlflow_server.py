"""A real ``mlflow server`` for tests, on a free 127.0.0.1 port, started and stopped by its pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    """A local port nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# MLflow 3.x servers also start a job runner and several huey consumer processes (GenAI jobs: online scoring, trace
# archival) that harness never uses: on a shared 2-core machine they cost more CPU than the server itself.
_QUIET = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@contextmanager
def mlflow_server(backend_uri: str, log_dir: Path, *args: str, port: int | None = None,
                  env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """``mlflow server --backend-store-uri backend_uri [args]`` until /health answers; yields (process, base URL).
    `env` adds to the server's environment.

    The server is terminated (killed after 30 s) when the block ends, unless the test stopped it already.
    """
    port = port or free_port()
    log = open(log_dir / f"mlflow-server-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, *args,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            env={**os.environ, **_QUIET, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, f"{base}/health", log, "mlflow server", 120)
        yield proc, base
    finally:
        stop(proc)
        log.close()


def wait_healthy(proc: subprocess.Popen, url: str, log, what: str, seconds: float) -> None:
    """Until `url` answers 200; fails the test (with the tail of `log`) if `proc` ends or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up (rc {proc.poll()}): "
                        f"{Path(log.name).read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Terminate `proc` by its pid (killed after 30 s), unless it has ended already."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
