"""Multi-process training: ``accelerate launch --num_processes 2 -m harness run`` trains SFT and DPO data-parallel on
the CPU (gloo), and the main process alone writes one checkpoint per stage, one MLflow record and one log; a bad
config is one line from all the processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_server import free_port

from harness.tracking import schema, store

pytestmark = pytest.mark.slow

PAIRS, DPO_BATCH = 16, 4  # per process: two processes take PAIRS / (2 * DPO_BATCH) steps, one would take twice that


def _launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # --multi_gpu is what makes accelerate start N local processes (torchrun); on a machine without CUDA they train
    # on the CPU over gloo (--cpu alone starts them through mpirun)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "harness", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_two_processes_train_sft_and_dpo_into_one_checkpoint_and_one_record(tiny_checkpoint, tmp_path):

    results = tmp_path / "results"
    done = _launch(["run", "--quick", "--results", str(results), "--set", "pretrain.enabled=false",
                    "--set", f"sft.init={tiny_checkpoint}", "--set", "rlvr.enabled=false",
                    "--set", "eval.enabled=false", "--set", "arena.enabled=false",
                    "--set", "sft.examples_per_skill=8", "--set", "sft.batch_size=8",
                    "--set", f"dpo.pairs={PAIRS}", "--set", f"dpo.batch_size={DPO_BATCH}", "--set", "dpo.log_every=1"],
                   tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    # one summary on stdout, one progress summary per stage, one log
    assert done.stdout.count("parent run:") == 1
    assert done.stderr.count("train sft:") == 1 and done.stderr.count("train dpo:") == 1
    assert f"train dpo: {PAIRS // (2 * DPO_BATCH)} steps" in done.stderr
    assert len(list((results / "logs").iterdir())) == 1

    # one checkpoint per stage, loadable, trained away from its init; no partial folder left
    root = results / "checkpoints" / "embedded"
    assert sorted(p.name for p in root.iterdir()) == ["dpo", "sft"]
    from harness.models.load import load

    init = _weights(tiny_checkpoint)
    for stage in ("sft", "dpo"):
        model, tokenizer = load(str(root / stage))
        assert model.config.vocab_size == len(tokenizer)
        after = _weights(root / stage)
        assert after.keys() == init.keys()
        assert any(not after[k].equal(init[k]) for k in init), f"{stage} did not train"
    sft, dpo = _weights(root / "sft"), _weights(root / "dpo")
    assert any(not sft[k].equal(dpo[k]) for k in sft)

    # the record: one pipeline run and one train run per stage, all finished, all showing the two processes
    uri = store.tracking_uri(results)
    runs = store.search_runs(uri, "harness")
    kinds = runs[schema.column("kind")].tolist()
    assert sorted(kinds) == sorted([str(schema.Kind.PIPELINE), str(schema.Kind.TRAIN), str(schema.Kind.TRAIN)])
    assert set(runs["status"]) == {"FINISHED"}
    assert runs[f"params.{schema.DISTRIBUTED['processes']}"].tolist() == ["2"] * 3
    assert set(runs[f"params.{schema.DISTRIBUTED['backend']}"]) == {"gloo"}
    train = runs[runs[schema.column("kind")] == str(schema.Kind.TRAIN)].set_index(schema.column("stage"))
    assert sorted(train.index) == ["dpo", "sft"]
    parent = runs[runs[schema.column("kind")] == str(schema.Kind.PIPELINE)]["run_id"].item()
    assert set(train[f"tags.{schema.PARENT_TAG}"]) == {parent}
    assert train.loc["dpo", schema.column("checkpoint")] == str(root / "dpo")
    steps = store.client(uri).get_metric_history(train.loc["dpo", "run_id"], "loss")
    assert max(m.step for m in steps) == PAIRS // (2 * DPO_BATCH)  # each process took half of every batch of pairs


def test_a_bad_config_is_one_line_from_every_process(tmp_path):
    done = _launch(["run", "--quick", "--results", str(tmp_path / "results"), "--set", "sft.learning_rate=-1"],
                   tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("harness: error:")]
    assert errors == ["harness: error: config key sft.learning_rate: -1 is out of range (valid: > 0)"]
    cause = done.stderr.split("Root Cause")[1]  # the launcher's report: the main process failed first, with exit 2
    assert "rank      : 0" in cause and "exitcode  : 2" in cause
    assert done.stdout == "" and not (tmp_path / "results").exists()
