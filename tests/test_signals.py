"""SIGTERM and SIGHUP stop a command like Ctrl-C: every open MLflow run ends KILLED, exit code 128 + signal."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _statuses(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return dict(con.execute("select name, status from runs").fetchall())
    except sqlite3.Error:  # the schema is still being created
        return {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_training_ends_the_open_runs_killed(tmp_path, sig):
    results = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--quick", "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while _statuses(results / "mlflow.db").get("train-base") != "RUNNING":
            assert proc.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert f"terminated by {signal.Signals(sig).name}" in err.strip().splitlines()[-1]
    statuses = _statuses(results / "mlflow.db")
    assert statuses["embedded"] == "KILLED" and statuses["train-base"] == "KILLED"
    assert "RUNNING" not in statuses.values()
    assert not list((results / "checkpoints").rglob("*.partial"))  # no half-written checkpoint
