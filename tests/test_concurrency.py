"""Many harness processes on one store at once, as a team's scheduler starts them: eight evals and nightlies into
one FRESH sqlite store (which they create and migrate together: `harness.tracking.migrate`) and into the team
server (tests/postgres.py); two nightlies promoting at once; a store whose first migration hit a full disk.

The processes are real (``python -m harness.cli``) and cheap: their checkpoints are the small pipeline's, whose eval
cache they share, so they do no model work and all of them are recording at the same moment.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SMALL_PIPELINE
from harness.tracking import migrate, schema, store

pytestmark = pytest.mark.slow

MODEL = "harness-embedded"
TASKS = 7
LIMIT = next(a.split("=")[1] for a in SMALL_PIPELINE if a.startswith("eval.limit="))  # the pipeline's: cache warm
EVAL_ARTIFACTS = {"lm_eval_results.json", "scores.csv", "skills.csv", "samples"}


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    """``python -m harness.cli ARGS`` in `cwd` (a test folder: nothing a process writes by default lands in the
    checkout), with the test's environment."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": path}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(procs: list[subprocess.Popen], timeout: float = 400) -> list[tuple[int, str, str]]:
    """Wait for every process (killing any left when one hangs or the test fails): (code, stdout, stderr)."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
        return [(p.returncode, *output) for p, output in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _warm_results(pipeline: Path, dst: Path) -> Path:
    """A results folder holding only a copy of the pipeline's eval cache (no store of its own)."""
    shutil.copytree(pipeline / "eval_cache", dst / "eval_cache")
    return dst


def test_eight_evals_and_nightlies_at_once(tracking, store_pipeline, tmp_path, monkeypatch):
    pipeline = store_pipeline("sqlite")  # its checkpoints and their eval cache (whichever store is under test)
    ckpt = {s: str(pipeline / "checkpoints" / "embedded" / s) for s in ("base", "sft", "dpo", "rlvr")}
    results = _warm_results(pipeline, tmp_path / "results")
    experiment = f"concurrent-{tracking}"
    if tracking == "sqlite":  # one fresh store for all eight: none of them finds it there
        fresh = tmp_path / "fresh" / "mlflow.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh}")
        assert not fresh.exists()
    common = ["--results", str(results), "--experiment", experiment]
    evals = [(f"c{i}", ckpt[stage]) for i, stage in enumerate(["base", "sft", "dpo", "rlvr", "base", "sft"])]
    procs = [_start("eval", "--model", model, "--suite", "tiny", "--limit", LIMIT, "--label", label, *common,
                    cwd=tmp_path) for label, model in evals]
    pairs = [("rlvr", "base"), ("dpo", "sft")]  # nightly candidate, baseline
    procs += [_start("nightly", "--suite", "tiny", "--set", f"eval.limit={LIMIT}", "--candidate", ckpt[cand],
                     "--baseline", ckpt[base], *common, cwd=tmp_path) for cand, base in pairs]
    done = _finish(procs)
    for i, (code, out, err) in enumerate(done):
        # every eval exits 0; a nightly may find a regression (1)
        assert code in ((0,) if i < len(evals) else (0, 1)) and "Traceback" not in err, (code, out[-3000:], err)

    runs = store.search_runs(store.tracking_uri(results), experiment)
    assert set(runs["status"]) == {"FINISHED"} and len(runs) == 6 + 2 + 4  # each nightly nests two evals
    top = runs[runs["tags.mlflow.parentRunId"].isna()]
    labelled = top[top["tags.harness.kind"] == "eval"].set_index("tags.harness.stage")
    assert sorted(labelled.index) == [label for label, _ in evals]
    reference = _pipeline_scores(pipeline)
    client = store.client(store.tracking_uri(results))
    for label, model in evals:
        run = labelled.loc[label]
        assert len(run["tags.harness.cached_tasks"].split(",")) == TASKS  # no model work: all recording at once
        stage = Path(model).name
        for name, value in reference[stage].items():  # every metric there, with the value computed once
            assert run[name] == pytest.approx(value), (label, name)
        assert {a.path for a in client.list_artifacts(run["run_id"])} >= EVAL_ARTIFACTS
        assert len(client.list_artifacts(run["run_id"], "samples")) == TASKS
    nightlies = runs[runs["tags.harness.kind"] == "nightly"]
    assert len(nightlies) == 2 and set(nightlies["tags.harness.verdict"]) <= {"pass", "fail"}
    for _, nightly in nightlies.iterrows():
        nested = runs[runs["tags.mlflow.parentRunId"] == nightly["run_id"]]
        assert list(nested["tags.harness.kind"]) == ["eval", "eval"]
        assert nightly["metrics.nightly/metrics"] == TASKS
        assert {a.path for a in client.list_artifacts(nightly["run_id"], "nightly")} >= {
            "nightly/report.md", "nightly/report.html", "nightly/comparisons.csv"}
    logs = list((results / "logs").glob("harness-*.log"))
    assert len(logs) == 8
    if tracking == "sqlite":  # the artifacts beside the store, wherever the processes ran
        assert len(list((fresh.parent / "mlartifacts").glob("*/artifacts/scores.csv"))) == len(evals) + 4
        assert not (tmp_path / "mlruns").exists()
    assert not any("database is locked" in log.read_text(errors="replace") for log in logs)


def _pipeline_scores(pipeline: Path) -> dict[str, dict[str, float]]:
    """Each stage's eval metrics as the pipeline recorded them (``metrics.<name>`` → value)."""
    runs = store.search_runs(f"sqlite:///{pipeline / 'mlflow.db'}", "harness", schema.where(schema.Kind.EVAL))
    return {row["tags.harness.stage"]: {k: v for k, v in row.items() if k.startswith("metrics.") and v == v}
            for _, row in runs.iterrows()}


def test_two_nightlies_promoting_at_once_leave_the_alias_on_one(tracking, store_pipeline):
    results = store_pipeline(tracking)  # its store holds the stages as registered versions
    uri = store.tracking_uri(results)
    versions = {v["tags"]["stage"]: v["version"] for v in store.model_versions(MODEL, results)}
    store.set_alias(uri, MODEL, "race", versions["base"])
    candidates = [versions["sft"], versions["dpo"]]
    procs = [_start("nightly", "--suite", "tiny", "--results", str(results), "--set", f"eval.limit={LIMIT}",
                    "--set", "alias=race", "--candidate", f"models:/{MODEL}/{v}", "--baseline", "race",
                    "--promote", "--experiment", f"race-{tracking}", cwd=results) for v in candidates]
    for code, out, err in _finish(procs):
        assert code == 0, out + err  # 5 items per task: no drop can be significant, both pass and promote
    final = store.model_aliases(MODEL, results)["race"]
    assert final in candidates
    runs = store.search_runs(uri, f"race-{tracking}", schema.where(schema.Kind.NIGHTLY))
    said = {row["tags.harness.promoted_version"]: row for _, row in runs.iterrows()}
    assert sorted(said) == sorted(candidates)  # each says which version it pointed the alias at
    assert said[final]["tags.harness.promotion_held"] == "true"  # the last one found it still there
    for version, row in said.items():
        assert row["tags.harness.promotion_held"] in ("true", "false")
        assert row["tags.harness.promoted"].startswith(f"models:/{MODEL}@race → version {version}")
        if row["tags.harness.promotion_held"] == "false":  # the other moved it in between: it says so
            assert row["tags.harness.promoted"].endswith(f"(then moved to version {final} by another promotion)")


def test_a_first_migration_cut_short_leaves_nothing_and_a_broken_store_is_rebuilt(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    # the first creation runs out of space (a file size limit: the kernel's EFBIG, sqlite's "disk I/O error")
    # the first command on the store runs out of space while creating it (a file size limit: the kernel's EFBIG)
    limit = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.RLIM_INFINITY)); ")
    code = limit + "from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "compare", "run-a", "run-b", "--results", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stderr  # storage that cannot be written
    assert done.stderr.strip() == (f"harness: error: cannot create the MLflow store {db}: disk I/O error; nothing "
                                   "was left behind")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db.lock"]  # no half-built store, no temp file

    # a store half-built by MLflow itself (as before this fix): cut short the same way, then opened by harness
    code = limit + "from mlflow.tracking import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", code, uri], cwd=REPO, capture_output=True, timeout=300)
    assert migrate.state(db) == "half-built"
    store.client(uri).search_experiments()
    assert migrate.state(db) == "ready"
    assert len(list(tmp_path.glob("mlflow.db.broken-*"))) == 1  # moved aside, not deleted
    with sqlite3.connect(db) as con:
        assert not con.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()
    store._client_cache.pop(uri, None)
