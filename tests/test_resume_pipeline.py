"""`harness run --resume` after a kill -9 in the middle of a stage: the same parent run continues at the first
unfinished stage; finished stages and their evals are not redone; every stage ends with one FINISHED train run,
one FINISHED eval run and one model version; the stage that was cut short keeps its KILLED run beside the new one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SMALL_PIPELINE

from harness.cli import main
from harness.tracking import schema, store
from harness.tracking.schema import Kind, RunTags

pytestmark = pytest.mark.slow

_KILL_IN_DPO = """
import os, signal, sys
from harness.train import dpo
dpo.run = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # dies mid-stage, ending nothing
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _runs(results, kind: Kind):
    rows = store.find_runs("harness", kind, results, finished=False)
    return [(RunTags.from_row(r).stage, r["status"], r) for _, r in rows.iterrows()]


def test_resume_continues_the_killed_pipeline_under_its_parent(tmp_path, capsys):
    results = tmp_path / "results"
    args = ["run", *SMALL_PIPELINE, "--results", str(results)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_DPO, *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd=tmp_path)
    assert proc.returncode == -9, proc.stderr[-2000:]
    (parent_status, parent), = [(r["status"], r) for _, r in
                                store.find_runs("harness", Kind.PIPELINE, results, finished=False).iterrows()]
    assert parent_status == "RUNNING"  # nobody ended it
    trained = {stage: status for stage, status, _ in _runs(results, Kind.TRAIN)}
    assert trained == {"base": "FINISHED", "sft": "FINISHED", "dpo": "RUNNING"}

    # another config is refused (the orphaned runs are ended KILLED on the way)
    assert main([*args, "--resume", "--set", "dpo.beta=0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "config differs" in err[-1] and "dpo.beta" in err[-1]
    assert {s: st for s, st, _ in _runs(results, Kind.TRAIN)}["dpo"] == "KILLED"

    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr()
    said = out.err + out.out
    assert f"resuming pipeline run {parent['run_id']}: stages base, sft done" in said
    assert "stage base: done in run" in said and "stage sft: done in run" in said

    pipelines = store.find_runs("harness", Kind.PIPELINE, results, finished=False)
    assert list(pipelines["run_id"]) == [parent["run_id"]] and list(pipelines["status"]) == ["FINISHED"]
    assert RunTags.from_row(pipelines.iloc[0]).resumed == "1"
    train = _runs(results, Kind.TRAIN)
    assert sorted((s, st) for s, st, _ in train) == [("base", "FINISHED"), ("dpo", "FINISHED"), ("dpo", "KILLED"),
                                                     ("rlvr", "FINISHED"), ("sft", "FINISHED")]
    assert all(r[f"tags.{schema.PARENT_TAG}"] == parent["run_id"] for _, _, r in train)
    # the stages read back count in the pipeline's totals with the costs their runs recorded
    tokens = sum(r[f"metrics.{schema.COST['tokens']}"] for _, st, r in train if st == "FINISHED")
    assert tokens > 0 and pipelines.iloc[0][f"metrics.{schema.COST_TOTALS['tokens']}"] == tokens
    evals = _runs(results, Kind.EVAL)
    assert sorted((s, st) for s, st, _ in evals) == [("base", "FINISHED"), ("dpo", "FINISHED"),
                                                     ("rlvr", "FINISHED"), ("sft", "FINISHED")]
    # one registered version per distinct checkpoint, each stage's train run naming its own: a stage whose bytes equal
    # an earlier stage's (the small pipeline's RLVR can leave DPO's unchanged) links that version, not a copy
    from harness.models.load import content_hash

    finished = {s: r for s, st, r in train if st == "FINISHED"}
    by_stage = {s: r[f"tags.{schema.tag_key('model_version')}"] for s, r in finished.items()}
    hashes = {s: content_hash(str(results / "checkpoints" / "embedded" / s)) for s in by_stage}
    first = {}
    for stage in ("base", "sft", "dpo", "rlvr"):
        first.setdefault(hashes[stage], stage)
    versions = store.model_versions("harness-embedded", results)
    assert sorted(v["tags"]["stage"] for v in versions) == sorted(first.values())
    assert {v["tags"]["stage"]: str(v["version"]) for v in versions} == \
        {stage: by_stage[stage] for stage in first.values()}
    assert all(by_stage[s] == by_stage[first[hashes[s]]] for s in by_stage)
    assert store.running(results) == []

    # the pipeline is done: a second --resume has nothing to do
    assert main([*args, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
