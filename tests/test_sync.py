"""The outbox and `harness sync`: what was computed when the tracking server went away is kept under
``<results>/outbox/`` (one line, exit code 3) and recorded once the server is back, exactly once however often sync
runs or wherever it was killed.

The first tests inject the outage into a real sqlite store (fast); the slow ones stop a real ``mlflow server`` (on
sqlite, and on PostgreSQL for one) in the middle of an eval's or a nightly's record and restart it on the same port
and backend.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import requests

from harness.cli import main
from harness.errors import ServerUnreachable
from harness.evals import backends
from harness.evals import record as eval_record
from harness.evals import run as eval_run
from harness.nightly import run as nightly_run
from harness.tracking import outbox, schema, store
from mlflow_server import free_port, mlflow_server

DATA = schema.TaskData("tiny_t", "abc123", "local", {"uri": "/data/t.jsonl"}, rows=3)


def _outage_while_logging(results: Path, name: str = "eval-x-tiny", model_hash: str = "h1") -> ServerUnreachable:
    """An eval run whose server 'goes away' while it is logged (a connection error injected into a real sqlite
    store); what `keep` writes is what the run would have held."""

    def keep(entry: outbox.Entry) -> None:
        entry.log_params({"limit": 3, "backend": "hf"})
        model_id = entry.eval_model(model="/ckpt/x", model_hash=model_hash, name="x")
        entry.log_datasets([DATA])
        entry.log_metrics({"s/tiny_t/acc/none": 0.5, "s/tiny_t/skip": float("nan")}, model_id=model_id, dataset=DATA)
        entry.log_metrics({"overall/score": 0.25}, model_id=model_id)
        entry.write(schema.SCORES, pd.DataFrame({"task": ["tiny_t"], "value": [0.5]}))
        entry.set_tags(schema.tags(cached_tasks=["tiny_t"]))

    with pytest.raises(ServerUnreachable) as caught:
        with outbox.run(name, schema.Kind.EVAL, experiment="harness", results_dir=results, keep=keep,
                        tags=schema.tags(model="/ckpt/x", model_hash=model_hash, suite="tiny")) as run:
            run.log_params({"limit": 3})
            raise requests.exceptions.ConnectionError("Connection refused")
    return caught.value


def _entries(results: Path) -> list[Path]:
    box = results / "outbox"
    return sorted(p for p in box.iterdir() if p.is_dir()) if box.is_dir() else []


def _evals(results: Path, experiment: str = "harness") -> pd.DataFrame:
    runs = store.search_runs(store.tracking_uri(results), experiment, schema.where(schema.Kind.EVAL, finished=False))
    return runs.sort_values("start_time").reset_index(drop=True) if len(runs) else runs


def _metrics(row: pd.Series) -> dict[str, float]:
    return {k[len("metrics."):]: v for k, v in row.items()
            if str(k).startswith("metrics.") and isinstance(v, float) and not math.isnan(v)}


def _params(row: pd.Series) -> dict[str, str]:
    return {k: v for k, v in row.items() if str(k).startswith("params.") and isinstance(v, str)}


def _artifact_files(uri: str, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for f in store.client(uri).list_artifacts(run_id, path):
        out += _artifact_files(uri, run_id, f.path) if f.is_dir else [f.path]
    return sorted(out)


def test_an_outage_while_logging_is_kept_and_sync_records_it_once(tmp_path, capsys):
    results = tmp_path / "results"
    err = _outage_while_logging(results)
    [entry] = _entries(results)
    assert err.exit_code == 3 and "\n" not in str(err)
    assert "does not answer" in str(err) and f"outbox {entry}" in str(err)
    assert f"harness sync --results {results.resolve()}" in str(err)
    kept = json.loads((entry / "entry.json").read_text())
    assert kept["id"] == entry.name and kept["kind"] == "eval" and kept["params"] == {"limit": "3", "backend": "hf"}
    assert [m["values"] for m in kept["metrics"]] == [{"s/tiny_t/acc/none": 0.5}, {"overall/score": 0.25}]
    assert (entry / "artifacts" / schema.SCORES.path).is_file()
    cut_short = _evals(results)  # the run the outage cut short (a sqlite store still ends it)
    assert list(cut_short.status) == ["FAILED"] and list(cut_short[schema.column("record_id")]) == [entry.name]

    assert main(["sync", "--results", str(results)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    runs = _evals(results)
    done = runs[runs.status == "FINISHED"]
    assert len(done) == 1
    row = done.iloc[0]
    assert out[0] == f"recorded eval eval-x-tiny as run {row.run_id} (outbox entry {entry.name})"
    assert out[1].startswith("harness sync: 1 recorded, 0 already recorded") and out[1].endswith("is empty")
    assert row[schema.column("record_id")] == entry.name and row[schema.column("cached_tasks")] == "tiny_t"
    assert row[schema.column("model_hash")] == "h1" and row["params.limit"] == "3" and row["params.backend"] == "hf"
    assert _metrics(row) == {"s/tiny_t/acc/none": 0.5, "overall/score": 0.25}
    assert store.read(row.run_id, schema.SCORES, results).to_dict("list") == {"task": ["tiny_t"], "value": [0.5]}
    recorded = store.client(store.tracking_uri(results)).get_run(row.run_id)
    [model] = recorded.inputs.model_inputs
    assert store.client(store.tracking_uri(results)).get_logged_model(model.model_id).params["model_hash"] == "h1"
    assert [d.dataset.name for d in recorded.inputs.dataset_inputs] == ["tiny_t"]
    assert [p.name for p in (results / "outbox").iterdir()] == [".lock"]  # the entry is gone, no leftovers

    assert main(["sync", "--results", str(results)]) == 0
    assert capsys.readouterr().out.startswith("nothing to sync")
    assert (_evals(results).status == "FINISHED").sum() == 1


def test_an_eval_kept_under_a_parent_run_is_recorded_at_the_top_with_its_parent_named(tmp_path, monkeypatch,
                                                                                      capsys):
    import argparse

    from harness import cli

    results = tmp_path / "results"
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        with store.run("pipeline", schema.Kind.PIPELINE, results_dir=results) as parent:
            c = store.client(parent.uri)
            end = c.set_terminated

            def gone(run_id, status=None):  # the parent cannot be ended either: the server is away
                if run_id == parent.run_id:
                    raise requests.exceptions.ConnectionError("Connection refused")
                return end(run_id, status)

            monkeypatch.setattr(c, "set_terminated", gone)
            with outbox.run("eval-x-tiny", schema.Kind.EVAL, experiment="harness", results_dir=results,
                            parent=parent, keep=lambda entry: entry.log_params({"limit": 3})):
                raise requests.exceptions.ConnectionError("Connection refused")
    monkeypatch.undo()
    [entry] = _entries(results)
    line = cli._unreachable(caught.value, argparse.Namespace(results=str(results)))  # what the command says
    assert isinstance(line, ServerUnreachable) and f"outbox {entry}" in str(line)
    assert json.loads((entry / "entry.json").read_text())["parent"] == parent.run_id

    assert main(["sync", "--results", str(results)]) == 0
    runs = _evals(results)
    done = runs[runs.status == "FINISHED"].iloc[0]
    assert done[schema.column("outbox_parent")] == parent.run_id
    assert not isinstance(done.get(f"tags.{schema.PARENT_TAG}"), str)  # not nested: that parent died unfinished
    assert isinstance(runs[runs.status != "FINISHED"].iloc[0][f"tags.{schema.PARENT_TAG}"], str)  # the cut-short one


def test_nothing_to_keep_or_another_error_keeps_nothing(tmp_path):
    with pytest.raises(requests.exceptions.ConnectionError):  # the original error, for the CLI's generic line
        with outbox.run("nightly-tiny-x", schema.Kind.NIGHTLY, experiment="harness", results_dir=tmp_path,
                        keep=lambda entry: None):  # a nightly that had not compared yet
            raise requests.exceptions.ConnectionError("Connection refused")
    assert _entries(tmp_path) == [] and not list((tmp_path / "outbox").iterdir())
    with pytest.raises(ValueError):
        with outbox.run("eval-x-tiny", schema.Kind.EVAL, experiment="harness", results_dir=tmp_path / "other",
                        keep=lambda entry: pytest.fail("not an outage")):
            raise ValueError("a bug")
    assert not (tmp_path / "other" / "outbox").exists()


def test_a_sync_killed_after_the_record_or_during_it_records_each_entry_once(tmp_path, capsys):
    results = tmp_path / "results"
    _outage_while_logging(results, "eval-a-tiny", "ha")
    _outage_while_logging(results, "eval-b-tiny", "hb")
    first, second = _entries(results)
    recorded = outbox._record(outbox.Entry.load(first), results)  # a sync killed before it removed the entry
    c = store.client(store.tracking_uri(results))
    exp = c.get_experiment_by_name("harness").experiment_id
    c.create_run(exp, tags={**schema.tags(schema.Kind.EVAL, record_id=second.name)})  # killed while recording

    assert main(["sync", "--results", str(results)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"already recorded: eval eval-a-tiny is run {recorded} (outbox entry {first.name} removed)"
    assert out[1].startswith("recorded eval eval-b-tiny as run ")
    assert out[2].startswith("harness sync: 1 recorded, 1 already recorded")
    runs = _evals(results)
    for entry in (first, second):
        mine = runs[runs[schema.column("record_id")] == entry.name]
        assert list(mine.status).count("FINISHED") == 1, mine[["run_id", "status"]]
    assert _entries(results) == []


def _equal_eval_run(results: Path, model_hash: str) -> str:
    """A FINISHED eval run with what `_outage_while_logging` keeps (its tags and params), as a live run logs it."""
    with store.run("eval-x-tiny", schema.Kind.EVAL, results_dir=results,
                   tags=schema.tags(model="/ckpt/x", model_hash=model_hash, suite="tiny")) as run:
        run.log_params({"limit": 3, "backend": "hf"})
    return run.run_id


def test_an_equal_eval_recorded_after_the_outage_is_not_recorded_twice(tmp_path, capsys):
    results = tmp_path / "results"
    earlier = _equal_eval_run(results, "h1")  # before the outage: another evaluation, which does not count
    _outage_while_logging(results)
    rerun = _equal_eval_run(results, "h1")  # the command run again once the server was back (from the eval cache)
    _outage_while_logging(results, "eval-y-tiny", "h2")
    with store.run("eval-x-tiny", schema.Kind.EVAL, results_dir=results,
                   tags=schema.tags(model="/ckpt/x", model_hash="h2", suite="tiny")) as run:
        run.log_params({"limit": 5, "backend": "hf"})  # the same checkpoint and suite, other settings
    assert main(["sync", "--results", str(results)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"already recorded: eval eval-x-tiny is run {rerun} ")
    assert out[1].startswith("recorded eval eval-y-tiny as run ") and earlier not in out[1]
    assert out[2].startswith("harness sync: 1 recorded, 1 already recorded")


def test_leftovers_of_killed_processes_are_removed_and_live_writers_left_alone(tmp_path, capsys):
    results = tmp_path / "results"
    box = results / "outbox"
    gone = subprocess.Popen(["true"])
    gone.wait()
    writing = f".tmp-y-{os.getpid()}"  # an entry this (live) process is still writing
    for name in (f".tmp-x-{gone.pid}", "20250101T000000Z-eval-0123456789.done", writing):
        (box / name / "artifacts").mkdir(parents=True)
    assert main(["sync", "--results", str(results)]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to sync: the outbox {box.resolve()} holds no entry")
    assert [p.name for p in box.iterdir()] == [writing]


def test_an_unreadable_entry_stays_and_the_others_are_recorded(tmp_path, capsys):
    results = tmp_path / "results"
    _outage_while_logging(results)
    bad = results / "outbox" / "20000101T000000Z-eval-broken"
    bad.mkdir()
    (bad / "entry.json").write_text("{")
    assert main(["sync", "--results", str(results)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"not recorded: outbox entry {bad.name} (entry.json: ")
    assert out[1].startswith("recorded eval eval-x-tiny as run ")
    assert out[2].endswith(f"1 left in the outbox {(results / 'outbox').resolve()}")
    assert _entries(results) == [bad]


def test_sync_against_a_dead_server_is_one_line_exit_3_and_keeps_the_entries(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    _outage_while_logging(results)
    [entry] = _entries(results)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store._client_cache.clear()
    start = time.monotonic()
    assert main(["sync", "--results", str(results)]) == 3
    assert time.monotonic() - start < 60
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "does not answer" in err[0] and f"outbox {(results / 'outbox').resolve()}" in err[0]
    assert "harness sync" in err[0] and captured.out == ""
    assert _entries(results) == [entry]
    store._client_cache.clear()


# ------------------------------------------------------------------------------- a real server, stopped


@contextmanager
def _server(folder: Path, port: int, backend: str | None = None):
    """An ``mlflow server`` with proxied artifacts on `backend` (default: a sqlite file in `folder`); called again
    with the same port and backend, it is the same server restarted."""
    from postgres import PG_PASSWORD

    env = {"PGPASSWORD": PG_PASSWORD} if backend else None  # libpq's password, never in the URI
    with mlflow_server(backend or f"sqlite:///{folder / 'server.db'}", folder, "--artifacts-destination",
                       str(folder / "artifacts"), "--serve-artifacts", port=port, env=env) as (proc, _):
        yield proc


@pytest.fixture(scope="module")
def postgres_database(postgres):
    """A database on the session's real PostgreSQL cluster (tests/postgres.py), for the server's backend."""
    return postgres.database("outage")


def _stop(server) -> None:
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    """A second tiny checkpoint (other weights, the same tokenizer recipe) for a nightly."""
    from harness.data import skills
    from harness.models import tiny

    out = tmp_path_factory.mktemp("tiny-other") / "other"
    tok = tiny.build_tokenizer(skills.pretraining_corpus(2000, seed=0), vocab_size=384)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, out)
    return out


@pytest.fixture(scope="module")
def eval_cache(tiny_checkpoint, other_checkpoint, tmp_path_factory) -> Path:
    """The eval cache of both checkpoints on the tiny suite (3 items per task), computed once into a local store:
    the outage tests below then do no model work."""
    results = tmp_path_factory.mktemp("computed")
    for model in (tiny_checkpoint, other_checkpoint):
        assert main(["eval", "--model", str(model), "--suite", "tiny", "--limit", "3", "--results", str(results)]) == 0
    return results / "eval_cache"


def _cached_results(eval_cache: Path, tmp_path: Path, monkeypatch) -> Path:
    results = tmp_path / "results"
    shutil.copytree(eval_cache, results / "eval_cache")
    monkeypatch.setattr(backends, "create", lambda *a, **k: pytest.fail("the cached work must not be redone"))
    return results


def _the_error_line(stderr: str, entry: Path) -> str:
    """The command's one error line: the last line, naming the outbox entry and `harness sync`; no traceback."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert [line for line in lines if line.startswith("harness: error:")] == lines[-1:], lines
    assert "does not answer" in lines[-1] and f"outbox {entry}" in lines[-1] and "harness sync --results" in lines[-1]
    return lines[-1]


def _sync_twice(results: Path, capsys) -> list[str]:
    """`harness sync`, twice: its lines the first time; the second has nothing left."""
    assert main(["sync", "--results", str(results)]) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert main(["sync", "--results", str(results)]) == 0
    assert capsys.readouterr().out.startswith("nothing to sync")
    assert _entries(results) == []
    return first


@pytest.mark.slow
@pytest.mark.parametrize("when, backend", [("before the record", "sqlite"), ("while uploading its artifacts", "sqlite"),
                                           ("while uploading its artifacts", "postgresql")])
def test_server_gone_mid_eval_is_kept_and_synced_once(when, backend, tiny_checkpoint, eval_cache, tmp_path,
                                                      monkeypatch, capsys, request):
    port = free_port()
    database = request.getfixturevalue("postgres_database") if backend == "postgresql" else None
    results = _cached_results(eval_cache, tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    store._client_cache.clear()
    computed: dict = {}
    real_record, real_upload = eval_run.record, store.Run.log_artifact
    with _server(tmp_path, port, database) as server:
        def record(*args, **kwargs):
            computed["args"] = args
            if when == "before the record":
                _stop(server)
                computed["stopped"] = time.monotonic()
            return real_record(*args, **kwargs)

        def upload(self, *args, **kwargs):  # the run was created and its params and metrics logged
            _stop(server)
            computed["stopped"] = time.monotonic()
            return real_upload(self, *args, **kwargs)

        monkeypatch.setattr(eval_run, "record", record)
        if when != "before the record":
            monkeypatch.setattr(store.Run, "log_artifact", upload)
        start = time.monotonic()
        code = main(["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3", "--results",
                     str(results)])
        end = time.monotonic()
    assert code == 3 and end - start < 90 and end - computed["stopped"] < 60, (end - start, end - computed["stopped"])
    [entry] = _entries(results)
    _the_error_line(capsys.readouterr().err, entry)
    assert not [p for p in (results / "outbox").iterdir() if p.name.startswith(".tmp-")]
    kept = json.loads((entry / "entry.json").read_text())
    result, datasets = computed["args"][0], computed["args"][9]
    assert kept["kind"] == "eval" and kept["parent"] is None and len(kept["datasets"]) == len(datasets) > 0
    monkeypatch.setattr(eval_run, "record", real_record)
    monkeypatch.setattr(store.Run, "log_artifact", real_upload)

    store._client_cache.clear()
    uri = store.tracking_uri(results)
    with _server(tmp_path, port, database):
        lines = _sync_twice(results, capsys)
        runs = _evals(results)
        done = runs[runs.status == "FINISHED"]
        assert len(done) == 1, runs[["run_id", "status"]]
        row = done.iloc[0]
        assert lines[0] == f"recorded eval {kept['name']} as run {row.run_id} (outbox entry {entry.name})"
        assert row[schema.column("record_id")] == entry.name and row[schema.column("suite")] == "tiny"
        if when == "before the record":
            assert len(runs) == 1  # nothing reached the server before the outage
        else:  # the run the outage cut short: left for the orphan reaper, never FINISHED
            assert len(runs) == 2 and set(runs[schema.column("record_id")]) == {entry.name}

        expected = {k: v for task in eval_record._task_metrics(result).values() for k, v in task.items()}
        expected.update(eval_record._skill_metrics(result))
        assert _metrics(row) == pytest.approx({k: v for k, v in expected.items() if math.isfinite(v)})
        scores = store.read(row.run_id, schema.SCORES, results)
        assert list(scores.task) == list(result.scores.task)
        assert list(scores.value) == pytest.approx(list(result.scores.value))
        for task, table in result.samples.items():
            assert len(store.read(row.run_id, schema.samples(task), results)) == len(table) == 3

        # The same result recorded live, for reference: the synced run holds the same params, metrics, artifacts
        # and links.
        reference = real_record(*computed["args"][:8], "reference", *computed["args"][9:])
        ref = _evals(results, "reference").iloc[0]
        assert ref.run_id == reference
        assert _params(row) == _params(ref) and _metrics(row) == _metrics(ref)
        assert _artifact_files(uri, row.run_id) == _artifact_files(uri, reference)
        for artifact in (schema.SCORES, schema.SKILLS, schema.LM_EVAL_RESULTS):
            assert str(store.read(row.run_id, artifact, results)) == str(store.read(reference, artifact, results))
        synced, live = (store.client(uri).get_run(r).inputs for r in (row.run_id, reference))
        assert len(synced.model_inputs) == len(live.model_inputs) == 1
        assert sorted(d.dataset.digest for d in synced.dataset_inputs) == sorted(
            d.dataset.digest for d in live.dataset_inputs)
    store._client_cache.clear()


@pytest.mark.slow
def test_server_gone_while_a_nightly_logs_its_verdict_is_kept_and_synced_once(
        tiny_checkpoint, other_checkpoint, eval_cache, tmp_path, monkeypatch, capsys):
    port = free_port()
    results = _cached_results(eval_cache, tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    store._client_cache.clear()
    computed: dict = {}
    real_log = nightly_run._log_results
    with _server(tmp_path, port) as server:
        def log_results(run, result, cfg):  # both evals are recorded and compared: the verdict is known
            if "result" not in computed:  # (the outbox entry is written through this function too)
                computed["result"] = result
                _stop(server)
                computed["stopped"] = time.monotonic()
            return real_log(run, result, cfg)

        monkeypatch.setattr(nightly_run, "_log_results", log_results)
        start = time.monotonic()
        code = main(["nightly", "--candidate", str(other_checkpoint), "--baseline", str(tiny_checkpoint),
                     "--suite", "tiny", "--set", "eval.limit=3", "--results", str(results)])
        end = time.monotonic()
    assert code == 3 and end - start < 90 and end - computed["stopped"] < 60, (end - start, end - computed["stopped"])
    [entry] = _entries(results)  # the nightly's: its eval runs were recorded before the outage
    _the_error_line(capsys.readouterr().err, entry)
    kept = json.loads((entry / "entry.json").read_text())
    result = computed["result"]
    assert kept["kind"] == "nightly" and kept["end_tags"][schema.tag_key("verdict")] == result.verdict
    monkeypatch.setattr(nightly_run, "_log_results", real_log)

    store._client_cache.clear()
    with _server(tmp_path, port):
        lines = _sync_twice(results, capsys)
        runs = store.search_runs(store.tracking_uri(results), "harness", schema.where(schema.Kind.NIGHTLY,
                                                                                      finished=False))
        done = runs[runs.status == "FINISHED"]
        assert len(done) == 1 and len(runs) == 2, runs[["run_id", "status"]]
        row = done.iloc[0]
        assert lines[0] == f"recorded nightly {kept['name']} as run {row.run_id} (outbox entry {entry.name})"
        tags = schema.RunTags.from_row(row)
        assert tags.record_id == entry.name and tags.verdict == result.verdict
        assert tags.candidate_eval_run == result.candidate.eval_run
        evals = _evals(results)
        assert result.candidate.eval_run in set(evals[evals.status == "FINISHED"].run_id)
        assert row[f"metrics.{schema.NIGHTLY_COUNTS['metrics']}"] == len(result.comparisons) > 0
        for c in result.comparisons:
            assert row[f"metrics.{result.metric_key(c)}"] == pytest.approx(c.candidate_mean)
        comparisons = store.read(row.run_id, schema.NIGHTLY_COMPARISONS, results)
        assert list(comparisons.p_value) == pytest.approx([c.p_value for c in result.comparisons])
        assert f"outbox entry {entry.name}" in store.read(row.run_id, schema.NIGHTLY_REPORT_MD, results)
        assert store.read(row.run_id, schema.NIGHTLY_CONFIG, results)["suite"] == "tiny"
    store._client_cache.clear()
