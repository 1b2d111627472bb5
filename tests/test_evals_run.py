"""Eval suites end to end on the tiny checkpoint: parity with lm-eval, the cache, MLflow contents, CLI, compare."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.config import EvalConfig
from harness.evals import (SuiteResult, compare, evaluate, format_stage_skill_table, log_stage_skill_table,
                           stage_skill_table)
from harness.evals import backends
from harness.evals import run as eval_run
from harness.resources import resource_path
from harness.tracking import schema, store

SUITES = resource_path("suites")  # the packaged suites, wherever harness is installed
TINY_TASKS = ["tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc",
              "tiny_knowledge_gen", "tiny_safety_mc", "tiny_safety_gen"]
LIMIT = 8


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow sqlite store: copying it saves each test the schema creation (seconds)."""
    folder = tmp_path_factory.mktemp("mlflow_template")
    store.client(store.tracking_uri(folder)).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def results(tmp_path, mlflow_template) -> Path:
    """A fresh results folder per test, with its own MLflow store."""
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    return folder


@pytest.fixture
def cfg() -> EvalConfig:
    return EvalConfig(limit=LIMIT, device="cpu")


def cli_main(argv: list[str]) -> int:
    """`harness.cli.main`, or this package's commands alone if the top-level CLI cannot be built."""
    try:
        from harness.cli import build_parser, main

        build_parser()
    except ImportError:
        from harness.errors import HarnessError
        from harness.evals import cli

        parser = argparse.ArgumentParser(prog="harness")
        cli.add_parsers(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        try:
            return args.func(args)
        except HarnessError as err:
            import sys

            print(f"harness: error: {err}", file=sys.stderr)
            return 2
    return main(argv)


def test_parity_with_lm_eval_simple_evaluate(tiny_checkpoint, results, cfg):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.evals.cache import normalise

    cfg.cache = False
    ours = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    direct = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(tiny_checkpoint)}, tasks=TINY_TASKS, num_fewshot=0, limit=LIMIT,
        apply_chat_template=True, batch_size=cfg.batch_size, device="cpu",
        task_manager=TaskManager(include_path=str(SUITES / "tiny"), include_defaults=False),
    )
    direct = normalise({k: direct[k] for k in ("results", "versions", "n-shot", "n-samples", "higher_is_better")})
    for key, value in direct.items():
        assert ours.lm_eval[key] == value, key
    # Every number lm-eval reported is in the score table, unchanged; per-item scores average to it.
    for task, row in direct["results"].items():
        for metric, value in row.items():
            if "," in metric and "_stderr," not in metric and value != "N/A":
                got = ours.scores[(ours.scores.task == task) & (ours.scores.metric == metric)].value
                assert got.tolist() == [value], (task, metric)
    mc = ours.samples["tiny_knowledge_mc"]
    assert mc["acc,none"].mean() == pytest.approx(direct["results"]["tiny_knowledge_mc"]["acc,none"])
    assert mc.item_id.str.startswith("knowledge-").all() and len(mc) == LIMIT
    assert set(ours.samples) == set(TINY_TASKS)


def test_cached_eval_does_no_model_work_and_mlflow_has_everything(tiny_checkpoint, results, cfg, monkeypatch):
    first = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results, label="base")
    assert first.cached == []

    def no_model(*args, **kwargs):
        raise AssertionError("a cached eval must not load the model")

    monkeypatch.setattr(backends, "create", no_model)
    with store.run("pipeline", schema.Kind.PIPELINE, results_dir=results) as parent:
        again = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results, label="base", parent=parent)
    assert again.cached == TINY_TASKS
    pd.testing.assert_frame_equal(first.scores, again.scores)
    pd.testing.assert_frame_equal(first.skills, again.skills)
    with pytest.raises(AssertionError, match="must not load"):  # another limit is another key
        evaluate(str(tiny_checkpoint), "tiny", cfg=EvalConfig(limit=LIMIT + 1, device="cpu"), results_dir=results)

    record = store.find_run(again.run_id, results)
    assert record["tags"]["mlflow.parentRunId"] == parent.run_id
    assert {k: record["tags"][k] for k in ("harness.kind", "harness.stage", "harness.suite", "harness.model")} == {
        "harness.kind": "eval", "harness.stage": "base", "harness.suite": "tiny", "harness.model": str(tiny_checkpoint)}
    metrics = record["metrics"]
    assert metrics["arithmetic/tiny_arithmetic_gen/verifier/none"] == first.scores.set_index(["task", "metric"]).loc[
        ("tiny_arithmetic_gen", "verifier,none"), "value"]
    for name in ("arithmetic/tiny_arithmetic_gen/verifier_stderr/strict-match", "knowledge/tiny_knowledge_mc/acc/none",
                 "knowledge/tiny_knowledge_mc/acc_stderr/none", "safety/score", "safety/score_stderr", "overall/score"):
        assert name in metrics, name
    assert metrics["overall/score"] == pytest.approx(first.skill("overall"))
    assert not any("," in name for name in metrics)
    assert "format/tiny_format_ifeval/inst_level_strict_acc_stderr/none" not in metrics  # lm-eval said N/A

    params = store.client(store.tracking_uri(results)).get_run(again.run_id).data.params
    import lm_eval

    assert params["lm_eval_version"] == lm_eval.__version__ and params["backend"] == "hf"
    assert params["task.tiny_arithmetic_gen.version"] == "1.0"
    assert params["task.tiny_knowledge_mc.apply_chat_template"] == "True"
    assert params["task.tiny_knowledge_mc.num_fewshot"] == "0" and params["batch_size"] == str(cfg.batch_size)
    assert params["model_hash"] == record["tags"]["harness.model_hash"]

    samples = store.read(again.run_id, schema.samples("tiny_arithmetic_gen"), results)
    columns = {"doc_id", "item_id", "prompt", "target", "response", "verifier,none", "verifier,strict-match"}
    assert columns <= set(samples)
    assert samples.item_id.str.startswith("arithmetic-").all()
    assert samples.prompt.str.startswith("<|user|>What is").all()  # the chat template was applied
    lm_json = json.loads(Path(store.client(store.tracking_uri(results)).download_artifacts(
        again.run_id, "lm_eval_results.json")).read_text())
    assert set(lm_json["results"]) == set(TINY_TASKS)
    scores = store.read(again.run_id, schema.SCORES, results)
    assert list(scores.columns) == ["skill", "task", "metric", "value", "stderr", "ci_low", "ci_high", "n"]
    assert (scores.ci_low.dropna() >= 0).all() and (scores.ci_high.dropna() <= 1).all()


def test_eval_links_metrics_to_the_logged_model_and_each_tasks_dataset(tiny_checkpoint, results, cfg, monkeypatch):
    import mlflow

    first = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results, label="base")
    again = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results, label="base")  # cached
    uri = store.tracking_uri(results)
    client = store.client(uri)
    run = client.get_run(first.run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == sorted(TINY_TASKS)
    for task, given in inputs.items():
        skill = task.split("_")[1]
        assert json.loads(given.dataset.source) == {"uri": str(SUITES / "tiny" / skill / "eval.jsonl")}
        assert given.dataset.source_type == "local" and json.loads(given.dataset.profile) == {"num_rows": 200}
        assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "eval"}
    digests = {task: d.dataset.digest for task, d in inputs.items()}
    assert len(digests["tiny_arithmetic_gen"]) == 16 and digests["tiny_knowledge_mc"] == digests["tiny_knowledge_gen"]
    assert digests["tiny_knowledge_mc"] != digests["tiny_safety_mc"]  # a digest of the data the task read

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's own reader (restored after the test)
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert len(models) == 1  # the external checkpoint's, found again by the second eval
    model = models[0]
    assert model.name == "base" and model.params["model_hash"] == run.data.tags["harness.model_hash"]
    assert str(model.status) == "READY" and model.tags["harness.model_hash"] == model.params["model_hash"]
    for result in (first, again):
        assert [m.model_id for m in client.get_run(result.run_id).inputs.model_inputs] == [model.model_id]
        linked = {m.key: m for m in model.metrics if m.run_id == result.run_id}
        assert linked["overall/score"].value == pytest.approx(result.skill("overall"))
        assert linked["overall/score"].model_id == model.model_id and linked["overall/score"].dataset_name is None
        task = linked["arithmetic/tiny_arithmetic_gen/verifier/none"]
        assert (task.dataset_name, task.dataset_digest) == ("tiny_arithmetic_gen", digests["tiny_arithmetic_gen"])
        assert len(linked) == len(client.get_run(result.run_id).data.metrics)  # every metric is the model's


def test_interrupted_eval_resumes_at_the_first_unfinished_task(tiny_checkpoint, results, cfg, monkeypatch):
    cfg.group_items = 0  # one lm-eval call per task
    real = eval_run._run_call
    ran: list[list[str]] = []

    def interrupt_third(lm, call, *args):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append([plan.entry.task for plan in call])
        return real(lm, call, *args)

    monkeypatch.setattr(eval_run, "_run_call", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    assert ran == [[task] for task in TINY_TASKS[:2]]

    def record(lm, call, *args):
        ran.append([plan.entry.task for plan in call])
        return real(lm, call, *args)

    monkeypatch.setattr(eval_run, "_run_call", record)
    ran.clear()
    resumed = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    assert resumed.cached == TINY_TASKS[:2] and ran == [[task] for task in TINY_TASKS[2:]]


def test_small_tasks_share_one_call_and_are_cached_one_by_one(tiny_checkpoint, results, cfg, tmp_path, monkeypatch):
    real = eval_run._run_call
    calls: list[list[str]] = []

    def record(lm, call, *args):
        calls.append([plan.entry.task for plan in call])
        return real(lm, call, *args)

    monkeypatch.setattr(eval_run, "_run_call", record)
    whole = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    assert calls == [TINY_TASKS]  # 7 × 8 items: one lm-eval call
    calls.clear()
    per_task = evaluate(str(tiny_checkpoint), "tiny", cfg=EvalConfig(limit=LIMIT, device="cpu", cache=False,
                                                                     group_items=2 * LIMIT), results_dir=results)
    assert calls == [TINY_TASKS[0:2], TINY_TASKS[2:4], TINY_TASKS[4:6], TINY_TASKS[6:]]
    pd.testing.assert_frame_equal(whole.scores, per_task.scores)  # grouping changes no score

    calls.clear()
    changed = tmp_path / "changed.yaml"  # the same suite with one task under another limit
    text = (SUITES / "tiny.yaml").read_text().replace("task_paths: [tiny]", f"task_paths: [{SUITES / 'tiny'}]")
    entry = "    - task: tiny_safety_gen\n"
    changed.write_text(text.replace(entry, f"{entry}      limit: {LIMIT - 2}\n"))
    again = evaluate(str(tiny_checkpoint), str(changed), cfg=EvalConfig(limit=LIMIT, device="cpu"), results_dir=results)
    assert calls == [["tiny_safety_gen"]] and again.cached == TINY_TASKS[:-1]


def test_cli_eval_writes_lm_eval_results_plus_aggregates(tiny_checkpoint, results, capsys):
    out = results / "scores.json"
    code = cli_main(["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "4", "--json", str(out),
                     "--results", str(results), "--label", "base"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "tiny_safety_mc" in printed and "MLflow run:" in printed
    data = json.loads(out.read_text())
    assert set(data["results"]) == set(TINY_TASKS)
    assert {"acc,none", "acc_stderr,none"} <= set(data["results"]["tiny_knowledge_mc"])
    assert list(data["skills"]) == ["arithmetic", "format", "knowledge", "safety", "overall"]
    assert {"value", "stderr", "ci_low", "ci_high", "n"} <= set(data["skills"]["knowledge"])
    assert data["versions"]["tiny_safety_gen"] == 1.0 and data["label"] == "base"


def test_bad_input_is_one_line_and_exit_2(tiny_checkpoint, results, tmp_path, capsys):
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("skills: {a: [tiny_arithmetic_gen]}\nsuite_version: 2\n")
    unknown_task = tmp_path / "unknown.yaml"
    unknown_task.write_text(f"task_paths: [{SUITES / 'tiny'}]\nskills: {{a: [tiny_algebra]}}\n")
    empty = tmp_path / "empty_tasks" / "arithmetic"
    shutil.copytree(SUITES / "tiny" / "arithmetic", empty)
    (empty / "eval.jsonl").write_text("")
    empty_suite = tmp_path / "empty.yaml"
    empty_suite.write_text("task_paths: [empty_tasks]\nskills: {arithmetic: [tiny_arithmetic_gen]}\n")
    cases = [
        (["--model", str(tmp_path / "missing"), "--suite", "tiny"], "no such folder"),
        (["--model", str(not_a_model), "--suite", "tiny"], "not a model folder"),
        (["--model", str(tiny_checkpoint), "--suite", "nope"], "unknown suite 'nope'"),
        (["--model", str(tiny_checkpoint), "--suite", str(bad_key)], "unknown key 'suite_version'"),
        (["--model", str(tiny_checkpoint), "--suite", str(unknown_task)], "unknown task 'tiny_algebra'"),
        (["--model", str(tiny_checkpoint), "--suite", str(empty_suite)], "is empty"),
    ]
    for argv, message in cases:
        code = cli_main(["eval", *argv, "--results", str(results)])
        err = capsys.readouterr().err.strip()
        assert code == 2, argv
        assert err.startswith("harness: error:") and message in err and "\n" not in err, err
        assert "Traceback" not in err


def test_compare_and_stage_skill_table(tiny_checkpoint, results, cfg, capsys):
    stages = {label: evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results, label=label)
              for label in ("base", "sft")}
    table = compare(["base", stages["sft"].run_id], results_dir=results)
    skills = table[table.task == "(skill)"].set_index("skill")
    assert list(skills.index) == ["arithmetic", "format", "knowledge", "safety", "overall"]
    assert (skills["Δ sft"] == 0).all()  # same checkpoint
    assert (skills["Δ sft ci_low"] <= 0).all() and (skills["Δ sft ci_high"] >= 0).all()
    assert cli_main(["compare", "base", "sft", "--results", str(results), "--no-log"]) == 0
    assert "Δ sft" in capsys.readouterr().out
    logged = store.search_runs(store.tracking_uri(results), "harness", "tags.`harness.kind` = 'compare'")
    assert len(logged) == 1

    wide = stage_skill_table(stages)
    assert list(wide.index) == ["base", "sft"]
    assert list(dict.fromkeys(wide.columns.get_level_values(0))) == ["arithmetic", "format", "knowledge", "safety",
                                                                     "overall"]
    assert wide[("knowledge", "value")]["base"] == pytest.approx(stages["base"].skill("knowledge"))
    text = format_stage_skill_table(wide)
    assert text.splitlines()[0].split() == ["stage", "arithmetic", "format", "knowledge", "safety", "overall"]
    with store.run("pipeline", schema.Kind.PIPELINE, results_dir=results) as parent:
        log_stage_skill_table(parent, stages)
    listed = {a.path for a in store.client(store.tracking_uri(results)).list_artifacts(parent.run_id)}
    assert {"stage_skill.csv", "stage_skill.png", "stage_skill.txt"} <= listed
    long = store.read(parent.run_id, schema.STAGE_SKILL_TABLE, results)
    assert list(long.columns) == ["stage", "skill", "value", "stderr", "ci_low", "ci_high", "n"] and len(long) == 10


def test_mlflow_model_uri_is_the_same_checkpoint(tiny_checkpoint, results, cfg):
    from harness.models.load import content_hash

    folder = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    with store.run("train", schema.Kind.TRAIN, results_dir=results) as run:
        logged = store.log_checkpoint(run, tiny_checkpoint, "tiny-evals", {"stage": "base"},
                                      model_hash=content_hash(str(tiny_checkpoint)))
    uri = f"models:/tiny-evals/{logged.version}"
    registered = evaluate(uri, "tiny", cfg=cfg, results_dir=results)
    assert registered.cached == TINY_TASKS  # same bytes, same cache key
    pd.testing.assert_frame_equal(folder.scores, registered.scores)
    assert store.find_run(registered.run_id, results)["tags"]["harness.model"] == uri
    inputs = store.client(store.tracking_uri(results)).get_run(registered.run_id).inputs.model_inputs
    assert [m.model_id for m in inputs] == [logged.model_id]  # the train run's LoggedModel, by content hash
    # the same files through the LoggedModel's URI and the train run's checkpoint URI
    for alias in (f"models:/{logged.model_id}", f"runs:/{run.run_id}/checkpoint"):
        local = Path(store.download_model(alias, results))
        assert (local / "model.safetensors").read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()


def test_backend_arguments_reach_lm_eval(tiny_checkpoint, results, tmp_path, monkeypatch):
    from lm_eval.api import registry

    handed = {}

    class Handed(Exception):
        pass

    class Recorder:
        def __init__(self, name):
            self.name = name

        def create_from_arg_obj(self, args, extra):
            handed.update(name=self.name, args=args, extra=extra)
            raise Handed

    import torch

    from harness.evals import checks

    monkeypatch.setattr(registry, "get_model", Recorder)
    monkeypatch.setattr(checks, "engine_installed", lambda *args: None)  # vLLM itself: tests/test_vllm.py
    vllm = EvalConfig(backend="vllm", backend_args={"tensor_parallel_size": 1}, batch_size=16, cache=False)
    with pytest.raises(Handed):
        evaluate(str(tiny_checkpoint), "tiny", cfg=vllm, results_dir=results)
    eager = {} if torch.cuda.is_available() else {"enforce_eager": True}
    assert handed == {"name": "vllm", "args": {"pretrained": str(tiny_checkpoint.resolve()), "trust_remote_code": False,
                                               "dtype": "float32", "max_model_len": 256, **eager,
                                               "tensor_parallel_size": 1},
                      "extra": {"batch_size": 16, "max_batch_size": None, "device": None}}

    gen_only = tmp_path / "gen.yaml"
    gen_only.write_text(f"task_paths: [{SUITES / 'tiny'}]\ndefaults: {{apply_chat_template: true}}\n"
                        "skills: {arithmetic: [tiny_arithmetic_gen]}\n")
    chat = EvalConfig(backend="local-chat-completions", cache=False,
                      backend_args={"base_url": "http://127.0.0.1:8000/v1/chat/completions", "num_concurrent": 4})
    with pytest.raises(Handed):
        evaluate("served-model", str(gen_only), cfg=chat, results_dir=results)
    assert handed["name"] == "local-chat-completions"
    assert handed["args"] == {"model": "served-model", "tokenizer_backend": None, "num_concurrent": 4,
                              "base_url": "http://127.0.0.1:8000/v1/chat/completions"}
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="needs log-likelihoods"):
        evaluate("served-model", "tiny", cfg=chat, results_dir=results)


def test_suite_result_type():
    fields = {"model", "suite", "label", "run_id", "scores", "samples", "skills"}
    assert SuiteResult.__dataclass_fields__.keys() >= fields
