"""Runs left RUNNING by a dead process: every run holds a heartbeat; the next command on the store ends the orphans
KILLED (saying why), `harness runs` lists RUNNING runs and `harness runs --reap` ends the orphans; live runs, runs of
live processes elsewhere and runs nobody can judge are left alone. A checkpoint recorded twice is one model version."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import liveness, schema, store
from harness.tracking.schema import RunTags

_VICTIM = """
import os, signal, sys
from harness.tracking import schema, store
cm = store.run("victim", schema.Kind.EVAL, results_dir=sys.argv[1])
run = cm.__enter__()
print(run.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_run(results: Path) -> str:
    """The id of a run whose process was killed -9 while it was open."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-c", _VICTIM, str(results)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr
    return proc.stdout.strip()


def _status(results: Path, run_id: str) -> tuple[str, dict]:
    r = store.client(store.tracking_uri(results)).get_run(run_id)
    return r.info.status, dict(r.data.tags)


def test_orphan_rules():
    now = time.time()
    here = liveness.host()
    mine = RunTags(host=here, pid=str(os.getpid()), heartbeat=str(now))
    assert liveness.orphaned(mine, started=now, now=now) is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = RunTags(host=here, pid=str(gone.pid), heartbeat=str(now))
    assert "is gone" in liveness.orphaned(dead, started=now - 5, now=now)
    # pid 1 started long before now: alive; a run that started before it did cannot be its own
    init = RunTags(host=here, pid="1", heartbeat=str(now))
    assert liveness.orphaned(init, started=now, now=now) is None
    assert "is gone" in liveness.orphaned(init, started=0.0, now=now)
    # elsewhere: only the heartbeat tells
    far = RunTags(host="another-machine", pid=str(gone.pid), heartbeat=str(now - 60))
    assert liveness.orphaned(far, started=now - 60, now=now) is None
    stale = RunTags(host="another-machine", pid="7", heartbeat=str(now - liveness.stale_after() - 1))
    assert "no heartbeat" in liveness.orphaned(stale, started=0.0, now=now)
    assert liveness.orphaned(RunTags(), started=0.0, now=now) is None  # not ours to judge
    assert liveness.orphaned(RunTags(host=here, pid="x", heartbeat="y"), started=0.0, now=now) is None


def test_an_open_run_beats(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HEARTBEAT_S", "0.3")
    results = tmp_path / "results"
    with store.run("beating", schema.Kind.EVAL, results_dir=results) as run:
        first = float(_status(results, run.run_id)[1][schema.tag_key("heartbeat")])
        tags = _status(results, run.run_id)[1]
        assert tags[schema.tag_key("pid")] == str(os.getpid()) and tags[schema.tag_key("host")] == liveness.host()
        deadline = time.monotonic() + 10
        while float(_status(results, run.run_id)[1][schema.tag_key("heartbeat")]) <= first:
            assert time.monotonic() < deadline, "the heartbeat never moved"
            time.sleep(0.2)
        assert store.reap(results) == []  # alive: left alone
    assert _status(results, run.run_id)[0] == "FINISHED"


@pytest.mark.slow
def test_the_next_command_ends_a_killed_processes_runs_killed(tmp_path, capsys):
    results = tmp_path / "results"
    victim = _killed_run(results)
    assert _status(results, victim)[0] == "RUNNING"

    assert main(["runs", "--results", str(results)]) == 0  # listing does not reap
    out = capsys.readouterr().out
    assert victim in out and "is gone" in out
    assert _status(results, victim)[0] == "RUNNING"

    # any command on the store reaps first, even one that then fails on bad input
    assert main(["eval", "--model", str(tmp_path / "nope"), "--suite", "tiny", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "ended KILLED 1 run(s)" in err
    status, tags = _status(results, victim)
    assert status == "KILLED" and "is gone" in tags[schema.tag_key("reaped")]


@pytest.mark.slow
def test_runs_reap_ends_orphans_and_leaves_the_rest(tmp_path, capsys):
    results = tmp_path / "results"
    victim = _killed_run(results)
    c = store.client(store.tracking_uri(results))
    exp = c.get_experiment_by_name("harness").experiment_id
    now = time.time()
    far_stale = c.create_run(exp, tags=schema.tags(host="another-machine", pid="7",
                                                   heartbeat=f"{now - liveness.stale_after() - 60:.0f}")).info.run_id
    far_live = c.create_run(exp, tags=schema.tags(host="another-machine", pid="7", heartbeat=f"{now:.0f}")
                            ).info.run_id
    foreign = c.create_run(exp).info.run_id  # no heartbeat: written by another tool

    assert main(["runs", "--reap", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert victim in out and far_stale in out
    assert _status(results, victim)[0] == "KILLED"
    assert _status(results, far_stale)[0] == "KILLED"
    assert "no heartbeat" in _status(results, far_stale)[1][schema.tag_key("reaped")]
    assert _status(results, far_live)[0] == "RUNNING"
    assert _status(results, foreign)[0] == "RUNNING"
    assert {r["run_id"] for r in store.running(results)} == {far_live, foreign}


def test_reaping_a_missing_store_creates_nothing(tmp_path):
    assert store.reap(tmp_path / "absent") == [] and not (tmp_path / "absent").exists()


def test_a_checkpoint_recorded_again_is_the_same_model_version(tiny_checkpoint, tmp_path):
    """A rerun after a kill (or a deterministic retrain) records the same bytes: one LoggedModel, one version; a
    LoggedModel cut short mid-upload is completed, not duplicated."""
    from harness.models.load import content_hash

    results = tmp_path / "results"
    digest = content_hash(str(tiny_checkpoint))
    with store.run("train-a", schema.Kind.TRAIN, results_dir=results) as run:
        first = store.log_checkpoint(run, tiny_checkpoint, "dedupe", {"stage": "sft"}, model_hash=digest, name="sft")
    with store.run("train-b", schema.Kind.TRAIN, results_dir=results) as run:
        again = store.log_checkpoint(run, tiny_checkpoint, "dedupe", {"stage": "sft"}, model_hash=digest, name="sft")
    assert again == first
    assert [v["version"] for v in store.model_versions("dedupe", results)] == [first.version]
    assert RunTags.from_tags(_status(results, run.run_id)[1]).model_version == first.version

    # a process killed between creating the LoggedModel and finishing it left it PENDING, unregistered
    c = store.client(store.tracking_uri(results))
    exp = c.get_experiment_by_name("harness").experiment_id
    other = "0" * 16
    pending = c.create_logged_model(exp, name="sft", params={"model_hash": other},
                                    tags=schema.tags(model_hash=other))
    with store.run("train-c", schema.Kind.TRAIN, results_dir=results) as run:
        done = store.log_checkpoint(run, tiny_checkpoint, "dedupe", {"stage": "sft"}, model_hash=other, name="sft")
    assert done.model_id == pending.model_id
    assert str(c.get_logged_model(pending.model_id).status) == "READY"
    assert [v["version"] for v in store.model_versions("dedupe", results)] == [done.version, first.version]
