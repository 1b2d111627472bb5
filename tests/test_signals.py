"""SIGTERM and SIGHUP stop a command like Ctrl-C: every open MLflow run ends KILLED, exit code 128 + signal; during
`harness run --quick` (training), `harness eval` (model work, then its record) and `harness nightly`."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
import stop_at

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
    # the signal arrives right after pretraining's 3rd optimizer step (of 120): mid-stage, wherever the time goes
    stopped = stop_at.run(tmp_path, ["run", "--quick", "--results", str(results)], at="optimizer_step", after=3,
                          signal=signal.Signals(sig).name)
    assert stopped.returncode == 128 + sig, stopped.stderr[-3000:]
    assert f"terminated by {signal.Signals(sig).name}" in stopped.stderr.strip().splitlines()[-1]
    statuses = _statuses(results / "mlflow.db")
    assert statuses["embedded"] == "KILLED" and statuses["train-base"] == "KILLED", statuses
    assert "RUNNING" not in statuses.values()
    assert not list((results / "checkpoints").rglob("*.partial"))  # no half-written checkpoint
    assert not (results / "checkpoints" / "embedded" / "base").exists()  # nor a finished-looking one


def _runs(db: Path) -> list[tuple[str, str]]:
    """``(kind tag, status)`` of every run in the sqlite store, read directly."""
    with sqlite3.connect(db, timeout=5) as con:
        return con.execute("select t.value, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
                           "and t.key = 'harness.kind' order by r.start_time").fetchall()


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A second tiny checkpoint (other initial weights), for a nightly: a checkpoint against itself is refused."""
    from transformers import AutoTokenizer

    from harness.models import tiny

    out = tmp_path_factory.mktemp("tiny_other") / "other"
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, out)
    return out


def _terminated(stopped, sig: str = "SIGTERM") -> None:
    assert stopped.returncode == 128 + signal.Signals[sig], stopped.stderr
    assert f"terminated by {sig}" in stopped.stderr.strip().splitlines()[-1]


def test_sigterm_during_eval_model_work_then_during_its_record(tiny_checkpoint, tmp_path):
    """During the model work no MLflow run is open yet (the record is written once the scores are known): exit 143,
    nothing RUNNING, and the request cache keeps the finished batches. During the record, the eval run ends
    KILLED."""
    results = tmp_path / "results"
    argv = ["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3", "--results", str(results)]
    stopped = stop_at.run(tmp_path, argv, at="loglikelihood", after=5, signal="SIGTERM")
    _terminated(stopped)
    assert not (results / "mlflow.db").exists() or _runs(results / "mlflow.db") == []
    assert list((results / "eval_cache" / "requests").glob("*.db"))  # the generations, kept for the rerun

    stopped = stop_at.run(tmp_path, argv, at="log_artifact", signal="SIGTERM")
    _terminated(stopped)
    assert stopped.computed == {"loglikelihood": 3 * (4 + 2)}  # the generations came from the request cache
    assert _runs(results / "mlflow.db") == [("eval", "KILLED")]


def test_sigterm_during_nightly_ends_the_nightly_run_killed(tiny_checkpoint, other_checkpoint, tmp_path):
    results = tmp_path / "results"
    argv = ["nightly", "--candidate", str(other_checkpoint), "--baseline", str(tiny_checkpoint), "--suite", "tiny",
            "--set", "eval.limit=3", "--results", str(results)]
    stopped = stop_at.run(tmp_path, argv, at="loglikelihood", after=5, signal="SIGTERM")  # the candidate's eval
    _terminated(stopped)
    assert _runs(results / "mlflow.db") == [("nightly", "KILLED")]
