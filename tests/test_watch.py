"""`harness watch DIR`: the checkpoints a trainer writes into a folder, each evaluated once (also across restarts),
their scores charted by step on one watch run, a nightly verdict per checkpoint with --baseline, Ctrl-C in the
polling loop, and bad input refused before any work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import schema, store
from harness.watch import SETTLE_S, checkpoints, complete

LIMIT = ["--set", "eval.limit=3"]


@pytest.fixture(scope="module")
def tokenizer():
    from harness.data import skills
    from harness.models import tiny

    return tiny.build_tokenizer(skills.pretraining_corpus(2000, seed=0), vocab_size=384)


@pytest.fixture()
def write_checkpoint(tokenizer):
    """`write_checkpoint(folder, step, seed)`: the tiny model initialised with `seed`, saved into
    ``folder/checkpoint-<step>`` as the Hugging Face Trainer saves a checkpoint (weights, config and tokenizer,
    then trainer_state.json last)."""
    def write(folder: Path, step: int, seed: int, *, state: bool = True) -> Path:
        from transformers import TrainerState

        from harness.models import tiny

        out = folder / f"checkpoint-{step}"
        tiny.save(tiny.build_model(tokenizer, hidden_size=32, layers=2, heads=2, seed=seed), tokenizer, out)
        if state:
            TrainerState(global_step=step, max_steps=100).save_to_json(str(out / "trainer_state.json"))
        return out

    return write


def _watch(folder: Path, results: Path, *args: str) -> int:
    return main(["watch", str(folder), "--suite", "tiny", "--once", "--results", str(results), *LIMIT, *args])


def _runs(results: Path, kind: schema.Kind, **tags: str):
    return store.find_runs("harness", kind, results, finished=False, **tags)


def _all_runs(results: Path) -> dict[str, str]:
    with sqlite3.connect(results / "mlflow.db") as con:
        return dict(con.execute("select run_uuid, status from runs").fetchall())


def _history(results: Path, run_id: str, key: str) -> dict[int, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.tracking_uri(results))
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_each_checkpoint_evaluated_once_and_charted_by_step(tmp_path, write_checkpoint, capsys):
    folder, results = tmp_path / "trainer-out", tmp_path / "results"
    write_checkpoint(folder, 10, seed=0)
    write_checkpoint(folder, 20, seed=1)
    write_checkpoint(folder, 30, seed=2, state=False)  # still being written: no trainer_state.json, files fresh
    (folder / "runs").mkdir()  # a trainer's other folders are not checkpoints

    assert _watch(folder, results) == 0
    out = capsys.readouterr().out
    assert "checkpoint-10: overall" in out and "checkpoint-20: overall" in out and "checkpoint-30" not in out

    watch_runs = _runs(results, schema.Kind.WATCH)
    assert len(watch_runs) == 1 and watch_runs.status.iloc[0] == "FINISHED"
    watch_id = watch_runs.run_id.iloc[0]
    assert schema.RunTags.from_row(watch_runs.iloc[0]).watched == str(folder.resolve())
    evals = _runs(results, schema.Kind.EVAL)
    assert sorted(evals.status) == ["FINISHED", "FINISHED"]
    assert set(evals[f"tags.{schema.PARENT_TAG}"]) == {watch_id}
    by_step = {int(schema.RunTags.from_row(row).step): row for _, row in evals.iterrows()}
    assert sorted(by_step) == [10, 20]
    for step, row in by_step.items():
        assert schema.RunTags.from_row(row).model == str(folder.resolve() / f"checkpoint-{step}")
    assert by_step[10]["params.model_hash"] != by_step[20]["params.model_hash"]  # two different checkpoints

    # The watch run charts every skill's score against the step, as the eval runs scored them.
    for skill in ("arithmetic", "format", "knowledge", "safety", "overall"):
        history = _history(results, watch_id, schema.eval_step_metric(skill))
        assert sorted(history) == [10, 20], skill
        for step, row in by_step.items():
            assert history[step] == pytest.approx(row[f"metrics.{schema.skill_metric(skill)}"])

    # A second look finds nothing new and records nothing.
    before = _all_runs(results)
    assert _watch(folder, results) == 0
    assert "nothing new" in capsys.readouterr().out
    assert _all_runs(results) == before
    assert sorted(_history(results, watch_id, schema.eval_step_metric("overall"))) == [10, 20]

    # checkpoint-30 completes: it is the only new eval, on the same watch run.
    from transformers import TrainerState

    TrainerState(global_step=30, max_steps=100).save_to_json(str(folder / "checkpoint-30" / "trainer_state.json"))
    assert _watch(folder, results) == 0
    out = capsys.readouterr().out
    assert "checkpoint-30: overall" in out and "checkpoint-10" not in out and "checkpoint-20" not in out
    new = set(_all_runs(results)) - set(before)
    assert len(new) == 1
    (new_id,) = new
    assert schema.RunTags.from_tags(store.find_run(new_id, results)["tags"]).step == "30"
    assert _all_runs(results)[watch_id] == "FINISHED" and len(_runs(results, schema.Kind.WATCH)) == 1
    assert sorted(_history(results, watch_id, schema.eval_step_metric("overall"))) == [10, 20, 30]
    assert sorted(_runs(results, schema.Kind.EVAL).status) == ["FINISHED"] * 3

    # Other eval settings would chart incomparable scores on the same run: refused in one line.
    assert main(["watch", str(folder), "--suite", "tiny", "--once", "--results", str(results),
                 "--set", "eval.limit=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval.limit=3" in err[0] and "other eval settings" in err[0]


def test_baseline_gives_a_nightly_verdict_per_checkpoint(tmp_path, write_checkpoint, tiny_checkpoint, capsys):
    folder, results = tmp_path / "trainer-out", tmp_path / "results"
    write_checkpoint(folder, 10, seed=0)  # the baseline's own weights (tiny_checkpoint is seed 0 too)
    write_checkpoint(folder, 20, seed=1)
    code = _watch(folder, results, "--baseline", str(tiny_checkpoint))
    out = capsys.readouterr().out
    nightlies = _runs(results, schema.Kind.NIGHTLY)
    assert len(nightlies) == 2 and set(nightlies.status) == {"FINISHED"}
    evals = _runs(results, schema.Kind.EVAL, watched=str(folder.resolve()))
    step_of = {row.run_id: schema.RunTags.from_row(row).step for _, row in evals.iterrows()}
    verdicts = {}
    for _, row in nightlies.iterrows():
        tags = schema.RunTags.from_row(row)
        assert tags.baseline == str(tiny_checkpoint) and tags.verdict in ("pass", "fail")
        verdicts[step_of[tags.candidate_eval_run]] = tags.verdict
    assert sorted(verdicts) == ["10", "20"]
    assert verdicts["10"] == "pass"  # the same weights score the same items the same
    for step, verdict in verdicts.items():
        assert f"checkpoint-{step}: nightly {verdict} against" in out
    assert code == (1 if "fail" in verdicts.values() else 0)
    watch_id = _runs(results, schema.Kind.WATCH).run_id.iloc[0]
    assert _history(results, watch_id, schema.NIGHTLY_COUNTS["pass"])[10] == 1.0

    # Judged once: a second look runs no nightly again.
    before = _all_runs(results)
    assert _watch(folder, results, "--baseline", str(tiny_checkpoint)) == 0
    assert _all_runs(results) == before


def test_a_folder_counts_when_its_writer_is_done(tmp_path, write_checkpoint):
    ckpt = write_checkpoint(tmp_path, 5, seed=0, state=False)
    assert not complete(ckpt)  # no trainer_state.json, files just written
    old = time.time() - SETTLE_S - 5
    for f in ckpt.iterdir():
        os.utime(f, (old, old))
    assert complete(ckpt)  # a writer without trainer_state.json: nothing changed for a minute
    (ckpt / "trainer_state.json").write_text('{"global_step": ')  # being written
    assert not complete(ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    assert complete(ckpt) and checkpoints(tmp_path) == {5: ckpt}
    (ckpt / "model.safetensors").rename(ckpt / "model-00001-of-00002.safetensors")
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert not complete(ckpt)  # a shard missing


def test_polling_until_ctrl_c(tmp_path, write_checkpoint):
    folder, results = tmp_path / "trainer-out", tmp_path / "results"
    write_checkpoint(folder, 10, seed=0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "watch", str(folder), "--suite", "tiny",
                             "--poll", "0.5", "--results", str(results), *LIMIT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not _eval_finished(results / "mlflow.db"):
            assert proc.poll() is None and time.monotonic() < deadline, "checkpoint-10 was never evaluated"
            time.sleep(0.5)
        time.sleep(1.5)  # a few more polls: nothing new
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            logs = sorted((results / "logs").glob("*.log"))
            pytest.fail("the watch did not stop within 60 s of SIGINT; its log ends:\n"
                        + (logs[-1].read_text(errors="replace")[-3000:] if logs else "(no log)"))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1]
    assert out.count("checkpoint-10: overall") == 1
    statuses = _all_runs(results)
    watch_id = _runs(results, schema.Kind.WATCH).run_id.iloc[0]
    assert statuses.pop(watch_id) == "KILLED" and list(statuses.values()) == ["FINISHED"]
    assert sorted(_history(results, watch_id, schema.eval_step_metric("overall"))) == [10]


def _eval_finished(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=1) as con:
            rows = con.execute("select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
                               "where t.key = ? and t.value = 'eval'", (schema.tag_key("kind"),)).fetchall()
    except sqlite3.Error:
        return False
    return any(status == "FINISHED" for (status,) in rows)


@pytest.mark.parametrize("args, message", [
    (["watch", "{missing}", "--suite", "tiny"], "watch folder '{missing}' not found"),
    (["watch", "{file}", "--suite", "tiny"], "is not a folder"),
    (["watch", "{folder}", "--suite", "no_such_suite"], "unknown suite 'no_such_suite'"),
    (["watch", "{folder}", "--suite", "tiny", "--poll", "0"], "out of range"),
    (["watch", "{folder}", "--suite", "tiny", "--baseline", "no-such-alias"], "baseline 'no-such-alias' not found"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path, args, message, write_checkpoint, no_model_work, capsys):
    folder = tmp_path / "out"
    write_checkpoint(folder, 10, seed=0)
    (tmp_path / "a-file").write_text("x")
    names = {"missing": str(tmp_path / "nope"), "file": str(tmp_path / "a-file"), "folder": str(folder)}
    argv = [a.format(**names) for a in args] + ["--once", "--results", str(tmp_path / "results")]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(**names) in err[0], err
    db = tmp_path / "results" / "mlflow.db"
    assert not db.exists() or not _all_runs(tmp_path / "results")
