"""kill -9 at three points of `harness eval`, then the same command again: the finished work is reused, the record
holds exactly one FINISHED eval run and no RUNNING one, and the results equal an uninterrupted run's, bit for bit.

The suite is the tiny one at ``--limit 6`` and batch size 4 with the default ``eval.group_items``: all seven tasks
share one lm-eval call, so before this call ends nothing is in the eval cache and only the request cache
(`harness.evals.request_cache`) holds the finished work. The kill points (`stop_at`): after the 13th generation
(the batch holding it unfinished), after the 21st log-likelihood (mid-batch; every generation is done), and while
the eval run uploads its artifacts (every task cached, the run RUNNING with its metrics).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import stop_at

from harness.tracking import schema, store

pytestmark = pytest.mark.slow

TASKS = ["tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc", "tiny_knowledge_gen",
         "tiny_safety_mc", "tiny_safety_gen"]


def _argv(checkpoint: Path, results: Path) -> list[str]:
    return ["eval", "--model", str(checkpoint), "--suite", "tiny", "--limit", "6", "--set", "eval.batch_size=4",
            "--results", str(results)]


def _eval_runs(results: Path) -> list[tuple[str, str, str]]:
    """``(run id, status, model tag)`` of every eval run of the tiny suite, read from the sqlite store directly
    (no MLflow client: it must not tidy anything up before the test looks)."""
    with sqlite3.connect(results / "mlflow.db") as con:
        rows = con.execute(
            "select r.run_uuid, r.status, m.value from runs r "
            "join tags k on k.run_uuid = r.run_uuid and k.key = ? and k.value = 'eval' "
            "join tags s on s.run_uuid = r.run_uuid and s.key = ? and s.value = 'tiny' "
            "join tags m on m.run_uuid = r.run_uuid and m.key = ?",
            (schema.tag_key("kind"), schema.tag_key("suite"), schema.tag_key("model"))).fetchall()
    return rows


def _statuses(results: Path) -> list[str]:
    with sqlite3.connect(results / "mlflow.db") as con:
        return [status for (status,) in con.execute("select status from runs")]


def _logged_models(results: Path) -> list[str]:
    with sqlite3.connect(results / "mlflow.db") as con:
        return [status for (status,) in con.execute("select status from logged_models")]


def _request_dbs(results: Path) -> dict[Path, int]:
    """Each request db under the results folder → the answers it holds."""
    from sqlitedict import SqliteDict

    found = {}
    for path in sorted((results / "eval_cache" / "requests").glob("*.db")):
        with SqliteDict(str(path), flag="r") as db:
            found[path] = len(db)
    return found


def _task_outputs(results: Path) -> dict[str, dict]:
    """The eval cache: each task's lm-eval output (with every sample's raw answers), by cache key. (lm-eval writes
    a task's data hook into its config as a repr, with the function's memory address: not part of a result.)"""
    return {p.name: json.loads(re.sub(r" at 0x[0-9a-f]+", "", p.read_text()))["output"]
            for p in (results / "eval_cache").glob("*.json")}


def _finished(results: Path, checkpoint: Path) -> str:
    runs = [r for r in _eval_runs(results) if r[2] == str(checkpoint)]
    finished = [run_id for run_id, status, _ in runs if status == "FINISHED"]
    assert len(finished) == 1, runs
    return finished[0]


@pytest.fixture(scope="module")
def uninterrupted(tiny_checkpoint, tmp_path_factory) -> dict:
    """The same command, never stopped: its results folder, FINISHED run and request counts."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    results = tmp / "results"
    done = stop_at.run(tmp, _argv(tiny_checkpoint, results))
    assert done.returncode == 0, done.stderr
    assert not _request_dbs(results)  # every task cached: the request db is gone
    return {"results": results, "run": _finished(results, tiny_checkpoint), "computed": done.computed}


@pytest.mark.parametrize("at, after", [("generate_until", 13), ("loglikelihood", 21), ("log_artifact", 1)])
def test_kill_9_then_rerun_reuses_the_work_and_records_one_identical_run(tiny_checkpoint, tmp_path, uninterrupted,
                                                                          at, after):
    results = tmp_path / "results"
    total = uninterrupted["computed"]
    assert total["generate_until"] == 5 * 6 and total["loglikelihood"] == 6 * (4 + 2)  # 4 and 2 choices

    killed = stop_at.run(tmp_path, _argv(tiny_checkpoint, results), at=at, after=after)
    assert killed.returncode == -9, killed.stderr
    dbs = _request_dbs(results)
    if at == "log_artifact":
        assert len(_task_outputs(results)) == len(TASKS) and not dbs  # all cached, the request db deleted
        assert [status for _, status, _ in _eval_runs(results)] == ["RUNNING"]  # what kill -9 leaves
    else:
        assert not _task_outputs(results)  # one shared call, killed: only the request db holds its work
        (answers,) = dbs.values()
        done_before = 12 if at == "generate_until" else total["generate_until"] + 20  # whole batches only
        assert 0 < answers <= done_before

    rerun = stop_at.run(tmp_path, _argv(tiny_checkpoint, results))
    assert rerun.returncode == 0, rerun.stderr
    computed = rerun.computed
    if at == "generate_until":
        assert 0 < computed["generate_until"] < total["generate_until"]
        assert computed["loglikelihood"] == total["loglikelihood"]
    elif at == "loglikelihood":
        assert "generate_until" not in computed  # every generation came from the request db
        assert 0 < computed["loglikelihood"] < total["loglikelihood"]
    else:
        assert computed == {}  # every task from the eval cache: no model work
    assert not _request_dbs(results)

    # The record: one FINISHED eval run for (model, suite), and nothing left RUNNING once the rerun is done (the
    # killed process's run is ended KILLED by the orphan reaper of the next command on the store).
    run_id = _finished(results, tiny_checkpoint)
    assert "RUNNING" not in _statuses(results)
    assert len(_logged_models(results)) == 1  # the checkpoint's one LoggedModel, found again by the rerun

    # Identical to the uninterrupted run: every task's lm-eval output (raw log-likelihoods and generations of every
    # sample included), and the scores and per-sample tables recorded in MLflow.
    assert _task_outputs(results) == _task_outputs(uninterrupted["results"])
    ref, ref_results = uninterrupted["run"], uninterrupted["results"]
    pd.testing.assert_frame_equal(store.read(run_id, schema.SCORES, results), store.read(ref, schema.SCORES,
                                                                                         ref_results))
    for task in TASKS:
        pd.testing.assert_frame_equal(store.read(run_id, schema.samples(task), results),
                                      store.read(ref, schema.samples(task), ref_results))
    metrics = store.find_run(run_id, results)["metrics"]
    assert metrics == store.find_run(ref, ref_results)["metrics"]
