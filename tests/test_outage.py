"""A tracking server that does not answer: one line and exit code 3 within seconds, whether it is dead before the
command or goes away in the middle of it. What was computed is kept in the outbox (recorded by `harness sync`,
tests/test_sync.py) and in the eval cache: the same command run again once the server is back records it without
model work, and a sync after that does not record it a second time."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.cli import main
from harness.evals import backends
from harness.evals import run as eval_run
from harness.tracking import store
from mlflow_server import free_port, mlflow_server

pytestmark = pytest.mark.slow


@contextmanager
def _mlflow_server(folder: Path, port: int):
    """The test's server: a sqlite backend with proxied artifacts, always on the same port (a restart is the same
    server)."""
    with mlflow_server(f"sqlite:///{folder / 'server.db'}", folder, "--artifacts-destination",
                       str(folder / "artifacts"), "--serve-artifacts", port=port) as (proc, _):
        yield proc


def _eval(tiny_checkpoint, results: Path) -> list[str]:
    return ["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3", "--results", str(results)]


def test_dead_server_is_one_line_exit_3_before_any_model_work(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setattr(backends, "create", lambda *a, **k: pytest.fail("the model must not load"))
    start = time.monotonic()
    assert main(_eval(tiny_checkpoint, tmp_path / "results")) == 3
    assert time.monotonic() - start < 60
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not answer" in err[0] and "127.0.0.1" in err[0]
    assert "outbox" not in err[0] and not (tmp_path / "results" / "outbox").exists()  # nothing was computed


def test_a_server_that_accepts_but_never_answers_is_exit_3_within_a_minute(tiny_checkpoint, tmp_path, monkeypatch,
                                                                            capsys):
    """A hung server (the connection is accepted by the kernel, no reply ever comes) costs the bounded timeouts
    and retries, not MLflow's default minutes per request."""
    import socket

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # never accepted: connects complete in the backlog, requests are never read
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{hung.getsockname()[1]}")
        monkeypatch.setattr(backends, "create", lambda *a, **k: pytest.fail("the model must not load"))
        store._client_cache.clear()
        start = time.monotonic()
        assert main(_eval(tiny_checkpoint, tmp_path / "results")) == 3
        took = time.monotonic() - start
    assert 5 < took < 60, took  # it did wait on the server, boundedly
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not answer" in err[0]


def test_server_gone_mid_eval_keeps_the_work_and_a_rerun_records_it(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    port, results = free_port(), tmp_path / "results"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    store._client_cache.clear()
    real_record = eval_run.record
    with _mlflow_server(tmp_path, port) as server:
        def record_after_outage(*args, **kwargs):
            server.terminate()  # the server goes away after the compute, before the record
            server.wait(timeout=30)
            return real_record(*args, **kwargs)

        monkeypatch.setattr(eval_run, "record", record_after_outage)
        start = time.monotonic()
        assert main(_eval(tiny_checkpoint, results)) == 3
        assert time.monotonic() - start < 90
    err = capsys.readouterr().err.strip().splitlines()
    [entry] = [p for p in (results / "outbox").iterdir() if p.is_dir()]
    assert "does not answer" in err[-1] and f"outbox {entry}" in err[-1] and f"harness sync --results {results}" \
        in err[-1]
    assert len(list((results / "eval_cache").glob("*.json"))) == 7  # every task's output kept locally

    monkeypatch.setattr(eval_run, "record", real_record)
    monkeypatch.setattr(backends, "create", lambda *a, **k: pytest.fail("finished work must not be redone"))
    store._client_cache.clear()
    with _mlflow_server(tmp_path, port):
        assert main(_eval(tiny_checkpoint, results)) == 0
        runs = store.search_runs(store.tracking_uri(results), "harness")
        evals = runs[runs["tags.harness.kind"] == "eval"]
        assert list(evals["status"]) == ["FINISHED"]
        assert "metrics.overall/score" in evals
        assert main(["sync", "--results", str(results)]) == 0  # the rerun recorded what the outbox held
        out = capsys.readouterr().out
        assert f"already recorded: eval eval-base-tiny is run {evals.run_id.iloc[0]}" in out
        runs = store.search_runs(store.tracking_uri(results), "harness")
        assert list(runs[runs["tags.harness.kind"] == "eval"]["status"]) == ["FINISHED"]
        assert not [p for p in (results / "outbox").iterdir() if p.is_dir()]
    store._client_cache.clear()
