"""`harness sweep` and `harness nightly --ray`: two tiny checkpoints × the tiny suite, in this process and on a real
local Ray cluster (a head and a second node, `tests/ray_cluster.py`) with a worker SIGKILLed mid-task; every eval
recorded once, with the metrics and params of `harness eval`; bad input refused in one line before any work."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from harness.cli import main
from harness.tracking import schema, store
from ray_cluster import free_port, ray_cluster, ray_processes

pytest.importorskip("ray")

LIMIT = "3"
TASKS = ["tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc", "tiny_knowledge_gen",
         "tiny_safety_mc", "tiny_safety_gen"]

@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory) -> list[str]:
    """The session's tiny checkpoint and a second one (other weights, the same tokenizer recipe)."""
    from harness.data import skills
    from harness.models import tiny

    other = tmp_path_factory.mktemp("tiny-other") / "other"
    tok = tiny.build_tokenizer(skills.pretraining_corpus(2000, seed=0), vocab_size=384)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, other)
    return [str(tiny_checkpoint), str(other)]


@pytest.fixture(scope="module")
def alone(models, tmp_path_factory) -> dict[str, dict]:
    """`harness eval` of each model on its own: its eval run's metrics and params, by model."""
    results = tmp_path_factory.mktemp("alone")
    for model in models:
        assert main(["eval", "--model", model, "--suite", "tiny", "--limit", LIMIT, "--results", str(results)]) == 0
    return _recorded(results, models)


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster of two one-CPU nodes on this machine, with token authentication; this process holds its
    token while the module's tests run; stopped by pid after them."""
    with ray_cluster(nodes=2, cpus=1) as c:
        with _ray_env(c.env):
            yield c


@contextmanager
def _ray_env(env: dict[str, str]) -> Iterator[None]:
    """`env` set in this process as a user sets it before ``harness``: Ray reads its config (the auth mode) once per
    process, so it is read again after the change and after the restore, as Ray itself does when it turns token
    authentication on."""
    from ray._raylet import AuthenticationTokenLoader, Config

    def reread():
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        reread()
        try:
            yield
        finally:
            patch.undo()
            reread()


def _recorded(results: Path, models: list[str]) -> dict[str, dict]:
    """Each model's one FINISHED eval run (metrics, params): the store holds exactly one per model and nothing
    RUNNING."""
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert (runs["status"] == "FINISHED").all(), runs[["run_id", "status"]]
    evals = runs[runs[schema.column("kind")] == schema.Kind.EVAL.value]
    assert sorted(evals["params.model"]) == sorted(models)  # one eval run per model, none twice
    out = {}
    for _, row in evals.iterrows():
        out[row["params.model"]] = {
            "metrics": {k: v for k, v in row.items() if k.startswith("metrics.")},
            "params": {k: v for k, v in row.items() if k.startswith("params.")},
            "fingerprint": {k: v for k, v in row.items() if k.startswith("tags.fingerprint.")},
        }
    return out


def _done_lines(err: str, model: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"sweep: {model} ") and line.endswith(")")
            and ": done (" in line]


def _assert_same_evals(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for model in want:
        assert got[model]["metrics"] == want[model]["metrics"], model
        assert got[model]["params"] == want[model]["params"], model
        assert got[model]["fingerprint"] == want[model]["fingerprint"], model  # computed alike, wherever it ran
        fields = {f"tags.{schema.fingerprint_tag(f)}" for f in schema.FINGERPRINT_FIELDS}
        assert set(got[model]["fingerprint"]) == fields
        assert "unknown" not in got[model]["fingerprint"].values()


def test_in_process_sweep_records_each_model_once_as_harness_eval_does(models, alone, tmp_path, capsys):
    results = tmp_path / "results"
    out = tmp_path / "sweep.json"
    assert main(["sweep", "--models", *models, "--suite", "tiny", "--limit", LIMIT, "--results", str(results),
                 "--json", str(out)]) == 0
    captured = capsys.readouterr()
    for model in models:  # one line per (model, entry), then the summary naming both runs
        assert sorted(line.split()[2].rstrip(":") for line in _done_lines(captured.err, model)) == sorted(TASKS)
    recorded = _recorded(results, models)
    _assert_same_evals(recorded, alone)
    written = json.loads(out.read_text())
    assert [r["model"] for r in written] == models
    assert "sweep: 2 eval runs recorded (suite tiny)" in captured.out
    for r in written:
        assert r["run_id"] in captured.out
        assert r["skills"]["overall"]["value"] == recorded[r["model"]]["metrics"]["metrics.overall/score"]
    assert len(list((results / "eval_cache").glob("*.json"))) == 2 * len(TASKS)

    # Again: everything is cached, no model work, and each model gets one more run (as harness eval would).
    assert main(["sweep", "--models", *models, "--suite", "tiny", "--limit", LIMIT, "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert sum(line.endswith(": cached") for line in err.splitlines()) == 2 * len(TASKS)
    assert not _done_lines(err, models[0])


def _kill_one_task(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first Ray worker found executing a sweep task (its title ``ray::evaluate_call``), a second
    into it, while it is still on it."""
    while not stop.is_set():
        for pid, cmd in ray_processes().items():
            if cmd.startswith("ray::evaluate_call"):
                time.sleep(1.0)
                if ray_processes().get(pid, "").startswith("ray::evaluate_call"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.1)


def test_ray_sweep_records_every_eval_once_after_a_killed_worker(models, alone, cluster, tmp_path, capsys,
                                                                  monkeypatch):
    from harness import stops
    from harness.evals import sweep

    results = tmp_path / "results"
    handlers = []  # SIGTERM's handler while the outputs arrive: the harness's (runs end KILLED), not Ray's sys.exit
    store_outputs = sweep._store
    monkeypatch.setattr(sweep, "_store", lambda *a: (handlers.append(signal.getsignal(signal.SIGTERM)),
                                                     store_outputs(*a))[1])
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_task, args=(killed, stop), daemon=True)
    killer.start()
    try:
        code = main(["sweep", "--models", *models, "--suite", "tiny", "--limit", LIMIT, "--results", str(results),
                     "--ray", cluster.address])
    finally:
        stop.set()
        killer.join()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert handlers and all(h is stops._raise_terminated for h in handlers), handlers
    assert killed, "no worker was found executing a sweep task"
    for model in models:  # every (model, entry) evaluated once, on a node of the cluster
        lines = _done_lines(captured.err, model)
        assert sorted(line.split()[2].rstrip(":") for line in lines) == sorted(TASKS)
        assert all(" (node " in line for line in lines)
    _assert_same_evals(_recorded(results, models), alone)  # one FINISHED run per model, nothing RUNNING
    log = next((results / "logs").glob("harness-sweep-*.log")).read_text()
    assert "evaluate_call" in log  # the workers' output went to the log, not the terminal
    assert "evaluate_call" not in captured.err and "Ray" not in captured.err


def test_a_task_that_dies_more_often_than_max_retries_is_one_line_and_records_nothing(models, cluster, tmp_path,
                                                                                     capsys):
    results = tmp_path / "results"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_task, args=(killed, stop), daemon=True)
    killer.start()
    try:
        code = main(["sweep", "--models", *models, "--suite", "tiny", "--limit", LIMIT, "--results", str(results),
                     "--ray", cluster.address, "--set", "sweep.max_retries=0"])
    finally:
        stop.set()
        killer.join()
    err = capsys.readouterr().err
    assert killed and code == 2, err
    line = [x for x in err.splitlines() if x.startswith("harness: error: ")]
    assert line == err.strip().splitlines()[-1:] and "Traceback" not in err
    assert "sweep: 1 of 2 tasks failed: " in line[0] and "after 0 retries (sweep.max_retries)" in line[0]
    assert store.running(results) == []
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert runs.empty or (runs[schema.column("kind")] != schema.Kind.EVAL.value).all()  # no model recorded
    assert len(list(results.glob("eval_cache/*.json"))) == len(TASKS)  # the other model's entries are kept


def test_nightly_evaluates_both_sides_on_ray(models, alone, cluster, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["nightly", "--candidate", models[1], "--baseline", models[0], "--suite", "tiny",
                 "--set", f"eval.limit={LIMIT}", "--results", str(results), "--ray", cluster.address])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err  # a verdict: pass or regression
    for model in models:
        assert sorted(line.split()[2].rstrip(":") for line in _done_lines(captured.err, model)) == sorted(TASKS)
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert (runs["status"] == "FINISHED").all()
    nightly = runs[runs[schema.column("kind")] == schema.Kind.NIGHTLY.value]
    assert len(nightly) == 1 and nightly.iloc[0][schema.column("verdict")] in ("pass", "fail")
    evals = runs[runs[schema.column("kind")] == schema.Kind.EVAL.value]
    assert sorted(evals["params.model"]) == sorted(models)
    assert (evals["tags.mlflow.parentRunId"] == nightly.iloc[0]["run_id"]).all()  # nested, as without --ray
    for _, row in evals.iterrows():
        assert row["metrics.overall/score"] == alone[row["params.model"]]["metrics"]["metrics.overall/score"]


def test_aa_on_ray_evaluates_the_baseline_again_on_the_cluster(models, alone, cluster, tmp_path, capsys):
    """--aa --ray: the baseline's recorded scores computed on the cluster (the cache was empty), then every entry
    computed again there with the cache bypassed: each task done twice, no drift, two eval runs under the nightly."""
    results = tmp_path / "results"
    code = main(["nightly", "--aa", "--baseline", models[0], "--suite", "tiny", "--set", f"eval.limit={LIMIT}",
                 "--results", str(results), "--ray", cluster.address])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert captured.out.startswith("# Nightly tiny: A/A PASS: no drift"), captured.out
    done = sorted(line.split()[2].rstrip(":") for line in _done_lines(captured.err, models[0]))
    assert done == sorted(TASKS * 2)  # recorded, then computed again: nothing read from the cache the second time
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert (runs["status"] == "FINISHED").all()
    nightly = runs[runs[schema.column("kind")] == schema.Kind.NIGHTLY.value].iloc[0]
    assert (nightly[schema.column("aa")], nightly[schema.column("drift")]) == ("true", "false")
    evals = runs[runs["tags.mlflow.parentRunId"] == nightly["run_id"]]
    assert sorted(evals["run_id"]) == sorted([nightly[schema.column("candidate_eval_run")],
                                              nightly[schema.column("baseline_eval_run")]])
    for _, row in evals.iterrows():  # both as harness eval scores the model alone, fingerprinted where computed
        assert row["metrics.overall/score"] == alone[models[0]]["metrics"]["metrics.overall/score"]
        assert all(row[f"tags.{schema.fingerprint_tag(name)}"] not in (None, "", "unknown")
                   for name in schema.FINGERPRINT_FIELDS)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("harness: error: ")
    return lines[0]


def _nothing_recorded(results: Path) -> None:
    assert store.running(results) == []
    if (results / "mlflow.db").exists():
        assert store.search_runs(store.tracking_uri(results), "harness").empty
    assert not list(results.glob("eval_cache/*.json"))


@pytest.mark.parametrize("command", ["sweep", "nightly"])
def test_a_ray_address_where_nothing_listens_is_one_line(command, models, tmp_path, capsys, no_model_work):
    results = tmp_path / "results"
    address = f"127.0.0.1:{free_port()}"
    sides = ["--models", *models] if command == "sweep" else ["--candidate", models[1], "--baseline", models[0]]
    assert main([command, *sides, "--suite", "tiny", "--results", str(results), "--ray", address]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--ray {address}: no Ray cluster answers there" in line and "ray start --head" in line
    _nothing_recorded(results)


def test_a_client_without_the_clusters_token_is_one_line(models, cluster, tmp_path, capsys, no_model_work):
    results = tmp_path / "results"
    with _ray_env({"RAY_AUTH_MODE": "disabled", "RAY_gcs_server_port_wait_time_s": "2"}):  # Ray's retries: 2 s, not 20
        code = main(["sweep", "--models", *models, "--suite", "tiny", "--results", str(results),
                     "--ray", cluster.address])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert line == (f"harness: error: --ray {cluster.address}: the Ray cluster there refused this client's "
                    "authentication token; a cluster with token authentication needs RAY_AUTH_MODE=token here and its "
                    "token in RAY_AUTH_TOKEN_PATH (a file), RAY_AUTH_TOKEN or ~/.ray/auth_token")
    _nothing_recorded(results)


def test_a_missing_model_is_one_line_before_any_work(models, tmp_path, capsys, no_model_work):
    results = tmp_path / "results"
    missing = str(tmp_path / "no-such-checkpoint")
    assert main(["sweep", "--models", models[0], missing, "--suite", "tiny", "--results", str(results)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert repr(missing) in line and "no such folder" in line
    _nothing_recorded(results)


def test_without_ray_installed_ray_is_one_line_naming_the_extra(models, tmp_path, capsys, monkeypatch,
                                                                 no_model_work):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where it is not installed
    results = tmp_path / "results"
    assert main(["sweep", "--models", *models, "--suite", "tiny", "--results", str(results),
                 "--ray", f"127.0.0.1:{free_port()}"]) == 2
    assert "pip install 'harness[ray]'" in _one_line(capsys.readouterr().err)
    _nothing_recorded(results)


def test_sweep_config_section_is_checked(models, tmp_path, capsys, no_model_work):
    assert main(["sweep", "--models", *models, "--suite", "tiny", "--results", str(tmp_path / "r"),
                 "--set", "sweep.gpus_per_task=-1"]) == 2
    assert "config key sweep.gpus_per_task: -1 is out of range (valid: >= 0)" in _one_line(capsys.readouterr().err)
