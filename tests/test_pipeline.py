"""The quick pipeline end to end: four checkpoints that reload offline, and the MLflow record of it all."""

from __future__ import annotations

import json

import pytest

from harness.tracking import store

pytestmark = pytest.mark.slow


@pytest.fixture()
def quick_run(quick_pipeline):
    return quick_pipeline


def _runs(results):
    return store.search_runs(store.tracking_uri(results), "harness")


def test_four_checkpoints_reload_offline(quick_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stage in ("base", "sft", "dpo", "rlvr"):
        path = quick_run / "checkpoints" / "embedded" / stage
        assert (path / "model.safetensors").is_file() and (path / "harness_config.yaml").is_file()
        AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        assert tok.chat_template
    assert not list((quick_run / "checkpoints" / "embedded").glob(".*partial"))


def test_mlflow_parent_and_four_finished_stage_runs(quick_run):
    runs = _runs(quick_run)
    assert set(runs["status"]) == {"FINISHED"}
    parent = runs[runs["tags.harness.kind"] == "pipeline"]
    assert len(parent) == 1
    parent_id = parent["run_id"].iloc[0]
    train = runs[runs["tags.harness.kind"] == "train"]
    assert sorted(train["tags.harness.stage"]) == ["base", "dpo", "rlvr", "sft"]
    assert set(train["tags.mlflow.parentRunId"]) == {parent_id}
    # params: the resolved config on the parent, the stage and TRL configs on each stage
    assert parent["params.sft.learning_rate"].iloc[0] == "0.001"
    sft = train[train["tags.harness.stage"] == "sft"].iloc[0]
    assert sft["params.trainer.learning_rate"] == "0.001" and sft["params.trainer.use_cpu"] == "True"
    assert sft["params.stage.examples_per_skill"] == "300"
    # provenance tags
    p = parent.iloc[0]
    assert len(p["tags.git.commit"]) in (40, len("unknown")) and p["tags.git.dirty"] in ("true", "false", "unknown")
    assert p["tags.version.trl"] and p["tags.device"].startswith(("cpu", "cuda")) and p["tags.seed"] == "0"
    # cost per stage and summed on the parent
    assert (train["metrics.cost/tokens"] > 0).all() and (train["metrics.cost/usd"] > 0).all()
    assert p["metrics.cost/total_tokens"] == pytest.approx(train["metrics.cost/tokens"].sum())
    assert p["metrics.cost/total_flops"] == pytest.approx(train["metrics.cost/flops"].sum())


def test_training_curves_and_artifacts(quick_run):
    runs = _runs(quick_run)
    uri = store.tracking_uri(quick_run)
    client = store.client(uri)
    train = runs[runs["tags.harness.kind"] == "train"].set_index("tags.harness.stage")
    assert len(client.get_metric_history(train.loc["base", "run_id"], "loss")) > 3
    assert len(client.get_metric_history(train.loc["sft", "run_id"], "loss")) >= 2
    assert client.get_metric_history(train.loc["sft", "run_id"], "learning_rate")
    rl = client.get_metric_history(train.loc["rlvr", "run_id"], "reward")
    assert rl and all(0.0 <= m.value <= 1.0 for m in rl)
    for stage, row in train.iterrows():
        names = {a.path for a in client.list_artifacts(row["run_id"])}
        assert "config.yaml" in names
        # the checkpoint is the run's LoggedModel (its artifacts), registered as a version
        model = client.get_logged_model(row["tags.harness.logged_model"])
        assert model.name == stage and model.source_run_id == row["run_id"] and str(model.status) == "READY"
        files = {a.path for a in client.list_logged_model_artifacts(model.model_id)}
        assert {"model.safetensors", "tokenizer.json"} <= files
        assert [o.model_id for o in client.get_run(row["run_id"]).outputs.model_outputs] == [model.model_id]
        version = client.get_model_version("harness-embedded", row["tags.harness.model_version"])
        assert version.tags["stage"] == stage and version.run_id == row["run_id"]
        registered = [(v["name"], str(v["version"])) for v in json.loads(model.tags["mlflow.modelVersions"])]
        assert registered == [("harness-embedded", str(version.version))]
    versions = client.search_model_versions("name='harness-embedded'")
    assert sorted(v.tags["stage"] for v in versions) == ["base", "dpo", "rlvr", "sft"]


def test_registered_version_loads_through_models_uri(quick_run, monkeypatch):
    from harness.models.load import load

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri(quick_run))
    client = store.client(store.tracking_uri(quick_run))
    version = next(v for v in client.search_model_versions("name='harness-embedded'") if v.tags["stage"] == "sft")
    model, tok = load(f"models:/harness-embedded/{version.version}")
    assert model.config.model_type == "llama" and tok.eos_token == "<|end|>"


def test_every_stage_evaluated_and_arena_ran(quick_run):
    runs = _runs(quick_run)
    evals = runs[runs["tags.harness.kind"] == "eval"]
    assert sorted(evals["tags.harness.stage"]) == ["base", "dpo", "rlvr", "sft"]
    assert (runs["tags.harness.kind"] == "arena").sum() == 1
    parent = runs[runs["tags.harness.kind"] == "pipeline"].iloc[0]
    names = {a.path for a in store.client(store.tracking_uri(quick_run)).list_artifacts(parent["run_id"])}
    assert any(n.endswith(".csv") for n in names) or any("stage" in n for n in names)


def test_mlflow_search_runs_sees_the_same_record(quick_run, monkeypatch):
    import mlflow

    # MLflow's own reader, pointed at the store through the environment (restored after the test).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri(quick_run))
    runs = mlflow.search_runs(experiment_names=["harness"], filter_string="tags.`harness.kind` = 'train'")
    assert sorted(runs["tags.harness.stage"]) == ["base", "dpo", "rlvr", "sft"]
    assert set(runs["status"]) == {"FINISHED"}
    assert runs["tags.mlflow.parentRunId"].nunique() == 1
    assert (runs["metrics.cost/flops"] > 0).all()
