"""Eval suites without a model: suite files, lm-eval's task index, task YAML, backend arguments, CI arithmetic."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from harness.config import EvalConfig
from harness.data.verifiers import verify
from harness.errors import HarnessError
from harness.evals import backends, lm_tasks, suite
from harness.evals.result import ci, metric_keys, stderr_key
from harness.resources import resource_path

SUITES = resource_path("suites")  # the packaged suites, wherever harness is installed
TINY_TASKS = ["tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc",
              "tiny_knowledge_gen", "tiny_safety_mc", "tiny_safety_gen"]


def write_suite(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tiny_suite_names_every_skill_and_task():
    spec = suite.load("tiny")
    assert spec.skills == ["arithmetic", "format", "knowledge", "safety"]
    assert [e.task for e in spec.entries] == TINY_TASKS
    assert all(e.apply_chat_template and e.num_fewshot == 0 for e in spec.entries)
    assert spec.task_paths == (SUITES / "tiny",) and not spec.lm_eval_tasks
    suite.check_tasks(spec)


def test_tiny_task_yaml_is_versioned_and_grades_with_the_verifier():
    files = sorted((SUITES / "tiny").glob("*/*.yaml"))
    assert {p.parent.name for p in files} == {"arithmetic", "format", "knowledge", "safety"}
    kinds = {}
    for path in files:
        text = path.read_text()
        config = yaml.load(text, Loader=_FunctionLoader)
        assert config["metadata"]["version"] >= 1.0, path
        kinds[config["task"]] = config["output_type"]
        if config["output_type"] == "generate_until" and "ifeval" not in config["task"]:
            assert config["process_results"] == "utils.process_results", path
    assert kinds == {
        "tiny_arithmetic_gen": "generate_until", "tiny_format_gen": "generate_until",
        "tiny_format_ifeval": "generate_until", "tiny_knowledge_gen": "generate_until",
        "tiny_knowledge_mc": "multiple_choice", "tiny_safety_gen": "generate_until",
        "tiny_safety_mc": "multiple_choice",
    }
    for folder in ("arithmetic", "format", "knowledge", "safety"):
        utils = _module(SUITES / "tiny" / folder / "utils.py")
        assert utils.process_results is lm_tasks.verifier_results
        assert utils.load.args == (SUITES / "tiny" / folder / "eval.jsonl",)


class _FunctionLoader(yaml.SafeLoader):
    """Reads ``!function utils.x`` as the plain string ``utils.x``."""


_FunctionLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_tiny_{path.parent.name}_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["tulu3_dev", "tulu3_unseen"])
def test_real_suites_name_tasks_in_lm_evals_own_index(name):
    spec = suite.load(name)
    assert spec.lm_eval_tasks and not spec.task_paths
    suite.check_tasks(spec)  # the full index that ships inside the lm-eval package, offline


def test_tulu3_dev_covers_its_skills():
    spec = suite.load("tulu3_dev")
    assert spec.skills == ["math", "instruction_following", "knowledge", "reasoning", "code"]
    tasks = {e.task: e for e in spec.entries}
    assert {"gsm8k_cot", "minerva_math", "ifeval", "mmlu", "bbh_cot_fewshot", "drop", "truthfulqa_mc2"} <= set(tasks)
    assert tasks["gsm8k_cot"].num_fewshot == 8 and tasks["humaneval_instruct"].confirm_run_unsafe_code


def test_suites_folder_can_be_moved(tmp_path, monkeypatch):
    write_suite(tmp_path, "skills: {a: [ifeval]}\n", "elsewhere.yaml")
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path))
    assert suite.available() == ["elsewhere"]
    assert suite.load("elsewhere").entries[0].task == "ifeval"


def test_unknown_suite_names_the_available_ones():
    with pytest.raises(HarnessError, match=r"unknown suite 'nope'; available: .*tiny"):
        suite.load("nope")
    with pytest.raises(HarnessError, match="not found"):
        suite.load("missing/suite.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("skills: {a: [tiny_arithmetic_gen]}\nshots: 3\n", r"unknown key 'shots'; valid keys: name, description"),
        ("skills: {a: [{task: tiny_arithmetic_gen, fewshot: 2}]}\n", r"unknown key 'fewshot'; valid keys: task, num"),
        ("defaults: {limt: 3}\nskills: {a: [x]}\n", r"defaults: unknown key 'limt'"),
        ("skills: {a: [{task: x, limit: many}]}\n", r"limit must be int or null"),
        ("skills: {a: [{task: x, apply_chat_template: 1}]}\n", r"apply_chat_template must be true or false"),
        ("skills: {a: []}\n", r"skill 'a' needs a list of tasks"),
        ("skills: {}\n", r"no tasks"),
        ("skills: {a: [x], b: [x]}\n", r"task 'x' is listed twice"),
        ("skills: [a\n", r"not valid YAML at line"),
        ("task_paths: [nowhere]\nskills: {a: [x]}\n", r"task_paths folder .* not found"),
    ],
)
def test_bad_suite_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(HarnessError, match=message):
        suite.load(str(write_suite(tmp_path, text)))


def test_unknown_task_is_named_with_close_matches(tmp_path):
    path = write_suite(tmp_path, f"task_paths: [{SUITES / 'tiny'}]\nskills: {{a: [tiny_arithmetc_gen]}}\n")
    with pytest.raises(HarnessError, match=r"unknown task 'tiny_arithmetc_gen'.*did you mean tiny_arithmetic_gen"):
        suite.check_tasks(suite.load(str(path)))


def test_jsonl_data_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(HarnessError, match="is empty"):
        lm_tasks.read_jsonl(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{oops\n')
    with pytest.raises(HarnessError, match="line 2: not JSON"):
        lm_tasks.read_jsonl(bad)
    with pytest.raises(HarnessError, match="not found"):
        lm_tasks.read_jsonl(tmp_path / "none.jsonl")


def test_task_hooks_grade_with_the_verifier_and_map_ifeval_items():
    rows = lm_tasks.read_jsonl(SUITES / "tiny" / "arithmetic" / "eval.jsonl")
    item = rows[0]
    graded = lm_tasks.verifier_results(item, [item["answer"]])
    assert graded == {"verifier": 1.0} == {"verifier": verify(item, item["answer"])}
    assert lm_tasks.verifier_results(item, ["no idea"]) == {"verifier": 0.0}
    data = lm_tasks.jsonl_dataset(SUITES / "tiny" / "format" / "eval.jsonl", version=1.0)
    docs = lm_tasks.ifeval_docs(data["test"])
    assert len(docs) == sum(r["constraint"] == "quotes" for r in data["test"]) > 0
    assert docs[0]["instruction_id_list"] == ["startend:quotation"] and docs[0]["key"] == 0
    assert docs[0]["id"].startswith("format-")


def test_ifeval_reuse_runs_lm_evals_own_instruction_check():
    from lm_eval.tasks.ifeval.utils import process_results

    doc = lm_tasks.ifeval_docs(lm_tasks.jsonl_dataset(SUITES / "tiny" / "format" / "eval.jsonl")["test"])[0]
    good = process_results(doc, [doc["answer"]])
    bad = process_results(doc, [doc["answer"].strip('"')])
    assert good["prompt_level_strict_acc"] and good["inst_level_strict_acc"] == [True]
    assert not bad["prompt_level_strict_acc"]


def test_backend_arguments_for_lm_eval():
    hf = backends.model_arguments(EvalConfig(), "/ckpt")
    assert hf == ("hf", {"pretrained": "/ckpt", "trust_remote_code": False})
    vllm = EvalConfig(backend="vllm", backend_args={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8})
    import torch

    eager = {} if torch.cuda.is_available() else {"enforce_eager": True}  # no config to read at /ckpt
    assert backends.model_arguments(vllm, "/ckpt", trust_remote_code=True) == (
        "vllm", {"pretrained": "/ckpt", "trust_remote_code": True, **eager, "tensor_parallel_size": 2,
                 "gpu_memory_utilization": 0.8})
    given = EvalConfig(backend="vllm", backend_args={"enforce_eager": False, "max_model_len": 64})
    assert backends.model_arguments(given, "/ckpt")[1]["enforce_eager"] is False  # the user's backend_args win
    chat = EvalConfig(backend="local-chat-completions", backend_args={"base_url": "http://h:8000/v1/chat/completions"})
    assert backends.model_arguments(chat, "org/model") == (
        "local-chat-completions",
        {"model": "org/model", "tokenizer_backend": None, "base_url": "http://h:8000/v1/chat/completions"})
    assert backends.extra_arguments(EvalConfig(batch_size=8, device="cpu")) == {
        "batch_size": 8, "max_batch_size": None, "device": "cpu"}
    with pytest.raises(HarnessError, match="needs eval.backend_args.base_url"):
        EvalConfig(backend="local-chat-completions")  # the config checks it before any backend is built
    with pytest.raises(HarnessError, match="config key eval.backend: 'tgi' is not one of hf, vllm, "
                                           "local-chat-completions"):
        EvalConfig(backend="tgi")


def test_chat_backend_refuses_loglikelihood_tasks_and_plain_prompts():
    chat = EvalConfig(backend="local-chat-completions", backend_args={"base_url": "http://h"})
    backends.check_tasks(chat, "gen", {"generate_until"}, True)
    with pytest.raises(HarnessError, match="needs log-likelihoods"):
        backends.check_tasks(chat, "mc", {"multiple_choice"}, True)
    with pytest.raises(HarnessError, match="needs apply_chat_template"):
        backends.check_tasks(chat, "gen", {"generate_until"}, False)
    backends.check_tasks(EvalConfig(), "mc", {"multiple_choice"}, False)


def test_chat_backend_arguments_build_lm_evals_client():
    """lm-eval's own chat-completions class accepts the arguments (it is built, never called: no server here)."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("tenacity")
    from lm_eval.api import registry

    url = "http://127.0.0.1:9/v1/chat/completions"
    cfg = EvalConfig(backend="local-chat-completions", backend_args={"base_url": url})
    name, args = backends.model_arguments(cfg, "served-model")
    lm = registry.get_model(name).create_from_arg_obj(args, backends.extra_arguments(cfg))
    assert lm.model == "served-model" and lm.base_url == url


def test_intervals_and_metric_names():
    assert ci(0.5, 0.1, proportion=True) == pytest.approx((0.5 - 0.196, 0.5 + 0.196), abs=1e-3)
    assert ci(0.98, 0.05, proportion=True) == (pytest.approx(0.98 - 1.96 * 0.05, abs=1e-3), 1.0)
    assert ci(0.01, 0.05, proportion=True)[0] == 0.0
    assert ci(2.5, 1.0, proportion=False) == pytest.approx((2.5 - 1.96, 2.5 + 1.96), abs=1e-3)
    assert all(math.isnan(x) for x in ci(0.5, math.nan, proportion=True))
    assert stderr_key("exact_match,strict-match") == "exact_match_stderr,strict-match"
    row = {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1, "f1,none": 0.2, "sample_len": 3}
    assert metric_keys(row) == ["acc,none", "f1,none"]


def test_eval_and_compare_commands_parse():
    from harness.evals import cli

    parser = argparse.ArgumentParser(prog="harness")
    cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--model", "m", "--suite", "tiny", "--json", "o.json", "--limit", "5",
                              "--set", "eval.backend=vllm"])
    parsed = (args.model, args.suite, args.json, args.limit, args.set)
    assert parsed == ("m", "tiny", "o.json", 5, ["eval.backend=vllm"])
    args = parser.parse_args(["compare", "base", "sft", "--suite", "tiny"])
    assert args.refs == ["base", "sft"] and args.func.__name__ == "_compare"


def test_json_helpers_are_stable():
    from harness.evals import cache

    material = {"b": 1, "a": [1, 2]}
    assert cache.key(material) == cache.key(json.loads(json.dumps(material))) == cache.key({"a": [1, 2], "b": 1})
    assert cache.key(material) != cache.key({"b": 2, "a": [1, 2]})
    assert "0x" not in json.dumps(cache.normalise({"f": lm_tasks.verifier_results}))  # no memory addresses in keys


def test_cache_key_follows_the_task_definition_and_its_data(tmp_path):
    from lm_eval.tasks import TaskManager

    from harness.evals import cache

    folder = tmp_path / "arithmetic"
    shutil.copytree(SUITES / "tiny" / "arithmetic", folder)

    def material():
        return cache.task_material(TaskManager(include_path=str(tmp_path), include_defaults=False),
                                   "tiny_arithmetic_gen")

    first = material()
    assert first["tiny_arithmetic_gen"]["config"]["metadata"]["version"] == 1.0
    assert material() == first
    rows = (folder / "eval.jsonl").read_text().splitlines()
    (folder / "eval.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    changed_data = material()
    assert changed_data != first
    yaml_file = folder / "arithmetic_gen.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("version: 1.0", "version: 1.1"))
    assert material()["tiny_arithmetic_gen"]["config"]["metadata"]["version"] == 1.1


def test_group_material_covers_its_members():
    from harness.evals import cache

    spec = suite.load("tulu3_dev")
    material = cache.task_material(suite.task_manager(spec), "minerva_math")
    assert material["minerva_math"]["kind"] == "GROUP"
    assert {"minerva_math_algebra", "minerva_math_precalc"} <= set(material)
    assert material["minerva_math_algebra"]["config"]["metadata"]["version"] == 3.1


def test_skill_aggregates_golden_case():
    """Two tasks in one skill: mean 0.6, stderr √(0.1² + 0.2²)/2; overall over two skills the same way."""
    from harness.evals import items
    from harness.evals.result import sample_tables, score_table, skill_table
    from harness.evals.suite import Entry

    output = {
        "results": {
            "a": {"alias": "a", "acc,none": 0.5, "acc_stderr,none": 0.1},
            "b": {"alias": "b", "em,none": 0.9, "em_stderr,none": 0.0, "acc,none": 0.7, "acc_stderr,none": 0.2},
            "c": {"alias": "c", "ppl,none": 12.0, "ppl_stderr,none": 1.0, "acc,none": "N/A"},
        },
        "n-samples": {"a": {"effective": 10}, "b": {"effective": 20}, "c": {"effective": 5}},
        "samples": {"a": [{"doc_id": 0, "doc": {"id": "x-1"}, "arguments": [["Q?", " yes"], ["Q?", " no"]],
                           "resps": [[[-1.0, False]], [[-2.0, False]]], "target": 0, "filter": "none",
                           "metrics": ["acc"], "acc": 1.0}]},
    }
    entries = [Entry("s1", "a"), Entry("s1", "b", metric="acc,none"), Entry("s2", "c")]
    owners = {"a": entries[0], "b": entries[1], "c": entries[2]}
    samples = sample_tables(output)
    assert samples["a"].to_dict("records") == [{"doc_id": 0, "item_id": "x-1", "id_field": "id",
                                                "doc_hash": items.doc_hash({"id": "x-1"}), "prompt": "Q?",
                                                "target": "0", "response": "yes", "acc,none": 1.0}]
    scores = score_table(output, owners, samples)
    assert ("c", "acc,none") not in set(zip(scores.task, scores.metric))  # N/A is not a score
    ppl = scores[scores.metric == "ppl,none"].iloc[0]
    assert (ppl.ci_low, ppl.ci_high) == pytest.approx((12 - 1.96, 12 + 1.96), abs=1e-3)  # not a proportion
    skills = skill_table(scores, entries, output, samples).set_index("skill")
    assert skills.loc["s1", "value"] == pytest.approx(0.6)
    assert skills.loc["s1", "stderr"] == pytest.approx(math.sqrt(0.1**2 + 0.2**2) / 2)
    assert (skills.loc["s1", "n"], skills.loc["s1", "tasks"]) == (30, 2)
    assert skills.loc["s2", "value"] == 12.0
    assert skills.loc["overall", "value"] == pytest.approx((0.6 + 12.0) / 2)
    assert skills.loc["overall", "ci_high"] > 1  # a non-proportion in the mix: no clipping
