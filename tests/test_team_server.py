"""The team setup of the README, for real: a PostgreSQL 15 cluster and an ``mlflow server`` on it with proxied
artifacts and basic auth (tests/postgres.py), beside the local sqlite store. Evals, the pipeline, nightlies and
``--promote`` record the same things in both (runs FINISHED, metrics, artifacts, registered versions, aliases);
missing or wrong credentials are one line and exit code 2 before any model work; no secret from the environment
reaches either store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SECRETS
from harness.cli import main
from harness.evals import backends
from harness.tracking import schema, store
from postgres import ADMIN, PG_PASSWORD, PG_USER

pytestmark = pytest.mark.slow

MODEL = "harness-embedded"
TASKS = 7  # the tiny suite
# metrics every eval run of the tiny suite logs (a sample; 13 task metrics with their _stderr, 5 aggregates)
EVAL_METRICS = ("overall/score", "safety/score_stderr", "safety/tiny_safety_mc/acc/none",
                "safety/tiny_safety_mc/acc_stderr/none", "arithmetic/tiny_arithmetic_gen/verifier/strict-match",
                "format/tiny_format_ifeval/prompt_level_strict_acc/none")
EVAL_ARTIFACTS = {"lm_eval_results.json", "scores.csv", "skills.csv"}


def _runs(results: Path, experiment: str = "harness"):
    return store.search_runs(store.tracking_uri(results), experiment)


def _artifacts(results: Path, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in store.client(store.tracking_uri(results)).list_artifacts(run_id, folder)}


@pytest.fixture(scope="module")
def eval_results(tmp_path_factory) -> Path:
    """One results folder for the eval tests of both stores: the second one's eval reuses the first's model work
    from the eval cache (what it records is the same)."""
    return tmp_path_factory.mktemp("team-eval")


def test_eval_records_everything(tracking, tiny_checkpoint, eval_results, request):
    experiment = f"team-eval-{tracking}"
    assert main(["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3",
                 "--results", str(eval_results), "--experiment", experiment]) == 0
    runs = _runs(eval_results, experiment)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.harness.kind"] == "eval"
    assert run["tags.harness.suite"] == "tiny" and run["tags.harness.model_hash"]
    for name in EVAL_METRICS:
        assert 0 <= run[f"metrics.{name}"] <= 1, name
    assert run["params.task.tiny_safety_mc.num_fewshot"] == "0"
    assert _artifacts(eval_results, run["run_id"]) >= EVAL_ARTIFACTS | {"samples"}
    assert len(_artifacts(eval_results, run["run_id"], "samples")) == TASKS
    scores = store.read(run["run_id"], schema.SCORES, eval_results)
    assert len(scores) == 13 and set(scores["n"]) == {3}
    logged = store.client(store.tracking_uri(eval_results)).get_run(run["run_id"]).inputs
    assert len(logged.model_inputs) == 1 and len(logged.dataset_inputs) == TASKS
    if tracking == "postgres":  # the record is in PostgreSQL, the files behind the server
        server = request.getfixturevalue("team_server")
        rows = server.cluster.query(server.database, f"SELECT status, name FROM runs WHERE run_uuid = "
                                                     f"'{run['run_id']}'")
        assert rows == [("FINISHED", run["tags.mlflow.runName"])]
        (count,), = server.cluster.query(server.database, f"SELECT count(*) FROM latest_metrics WHERE "
                                                          f"run_uuid = '{run['run_id']}'")
        assert count == sum(k.startswith("metrics.") and runs[k].notna().all() for k in runs.columns)
        assert run["artifact_uri"].startswith("mlflow-artifacts:/")
        assert list(server.artifacts.rglob(f"{run['run_id']}/artifacts/scores.csv"))
        assert not list(eval_results.rglob(f"{run['run_id']}*"))  # nothing of this run's under the results folder


def test_pipeline_records_every_stage(tracking, store_pipeline):
    results = store_pipeline(tracking)
    runs = _runs(results)
    pipeline = runs[runs["tags.harness.kind"] == "pipeline"]
    assert list(pipeline["status"]) == ["FINISHED"]
    children = runs[runs["tags.mlflow.parentRunId"] == pipeline.iloc[0]["run_id"]]
    assert set(children["status"]) == {"FINISHED"}
    stages = ["base", "sft", "dpo", "rlvr"]
    for kind, count in (("train", 4), ("eval", 4), ("arena", 1)):
        assert (children["tags.harness.kind"] == kind).sum() == count, kind
    train = children[children["tags.harness.kind"] == "train"].set_index("tags.harness.stage")
    evals = children[children["tags.harness.kind"] == "eval"].set_index("tags.harness.stage")
    assert sorted(train.index) == sorted(stages) and sorted(evals.index) == sorted(stages)
    assert (train["metrics.cost/tokens"] > 0).all() and evals["metrics.overall/score"].between(0, 1).all()
    # every stage's checkpoint is a registered version, made by a train run; none other (a stage whose bytes equal
    # an earlier one's, as this small RLVR's may, names that version rather than adding one)
    versions = {v["version"]: v for v in store.model_versions(MODEL, results)}
    assert set(train["tags.harness.model_version"]) == set(versions) and len(versions) >= 3
    for stage in stages:
        assert versions[train.loc[stage, "tags.harness.model_version"]]["run_id"] in set(train["run_id"])
    folder = Path(store.download_model(f"models:/{MODEL}/{train.loc['rlvr', 'tags.harness.model_version']}",
                                       results))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").stat().st_size > 0


def test_nightly_promotes_a_pass(tracking, store_pipeline, capsys):
    results = store_pipeline(tracking)
    versions = {v["tags"]["stage"]: v["version"] for v in store.model_versions(MODEL, results)}
    store.set_alias(store.tracking_uri(results), MODEL, "champion", versions["base"])
    code = main(["nightly", "--suite", "tiny", "--results", str(results), "--set", "eval.limit=5",
                 "--candidate", f"models:/{MODEL}/{versions['sft']}", "--baseline", "champion", "--promote"])
    out = capsys.readouterr().out
    assert code == 0, out  # 5 items per task: no drop can be significant
    assert "# Nightly tiny: PASS" in out and f"champion → version {versions['sft']}" in out
    assert store.model_aliases(MODEL, results)["champion"] == versions["sft"]
    runs = _runs(results)
    nightly = runs[runs["tags.harness.kind"] == "nightly"].sort_values("start_time").iloc[-1]
    assert nightly["status"] == "FINISHED" and nightly["tags.harness.verdict"] == "pass"
    assert nightly["tags.harness.promoted_version"] == versions["sft"]
    assert nightly["tags.harness.promotion_held"] == "true"
    assert nightly["params.baseline"] == f"models:/{MODEL}@champion"
    assert nightly["metrics.nightly/metrics"] == TASKS and nightly["metrics.nightly/regressions"] == 0
    nested = runs[runs["tags.mlflow.parentRunId"] == nightly["run_id"]]
    assert list(nested["tags.harness.kind"]) == ["eval", "eval"] and set(nested["status"]) == {"FINISHED"}
    assert set(nested["tags.harness.cached_tasks"].str.split(",").map(len)) == {TASKS}  # the pipeline's work
    assert _artifacts(results, nightly["run_id"], "nightly") >= {
        "nightly/report.md", "nightly/report.html", "nightly/comparisons.csv", "nightly/config.yaml"}


def test_missing_or_wrong_credentials_are_one_line_and_exit_2(team_server, tiny_checkpoint, eval_results,
                                                              monkeypatch, capsys):
    for key, value in team_server.env().items():
        monkeypatch.setenv(key, value)
    store.ping()  # the right ones work (and the eval tests recorded through them)
    real_create = backends.create
    monkeypatch.setattr(backends, "create", lambda *a, **k: pytest.fail("the model must not load"))
    argv = ["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3",
            "--results", str(eval_results), "--experiment", "team-credentials"]
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "requires credentials (HTTP 401)" in err and "MLFLOW_TRACKING_USERNAME" in err

    # the console script, with a wrong password: one line, no traceback, the password nowhere
    wrong = "wrong-pw-secret-77e1"
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": team_server.user, "MLFLOW_TRACKING_PASSWORD": wrong}
    done = subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"refused the credentials of user '{team_server.user}' (HTTP 401)" in lines[0]
    assert wrong not in done.stdout + done.stderr
    logs = list((eval_results / "logs").glob("*.log"))
    assert not any(wrong in log.read_text(errors="replace") for log in logs)

    # a user denied the experiment (default_permission is a floor under a READ grant: only DENY takes it away) is
    # refused when the eval records, after its work (the eval cache's here)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    from mlflow.server import get_app_client

    exp = store.client(team_server.url).create_experiment("team-denied")
    get_app_client("basic-auth", tracking_uri=team_server.url).grant_user_permission(
        team_server.user, "experiment", exp, "DENY")
    for key, value in team_server.env().items():
        monkeypatch.setenv(key, value)
    argv[-1] = "team-denied"
    monkeypatch.setattr(backends, "create", real_create)  # the eval cache of the tests above makes it cheap
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the eval's progress line, then the error
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and f"denied user '{team_server.user}' permission (HTTP 403)" in errors[0], err


def test_no_secret_reaches_the_store(tracking, store_pipeline, eval_results, request):
    results = store_pipeline(tracking)  # and the evals above, all run with these in their environment
    secrets = [*SECRETS.values(), os.environ["MLFLOW_TRACKING_PASSWORD"], PG_PASSWORD, ADMIN[1]]
    if tracking == "sqlite":
        with sqlite3.connect(results / "mlflow.db") as con:
            record = "\n".join(con.iterdump())
        folders = [results, eval_results]
    else:
        server = request.getfixturevalue("team_server")
        record = _pg_dump(server, server.database) + _pg_dump(server, server.database + "_auth")
        assert server.user in record  # the dump is real: the user is there, by name (its password hashed)
        folders = [results, eval_results, server.artifacts]
    assert "tags" in record and "harness.kind" in record
    for secret in secrets:
        assert secret not in record
    for folder in folders:  # artifacts, caches, checkpoints and logs
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(s.encode() in data for s in secrets), path


def _pg_dump(server, database: str) -> str:
    from postgres import BIN

    done = subprocess.run([str(BIN / "pg_dump"), "--data-only", "-h", "127.0.0.1", "-p", str(server.cluster.port),
                           "-U", PG_USER, database], env={**os.environ, "PGPASSWORD": PG_PASSWORD},
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout
