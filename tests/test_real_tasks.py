"""lm-eval's own tasks on real data, offline: ``harness.evals.evaluate`` on a suite with ``data_dir:`` gives exactly
what ``lm_eval.simple_evaluate`` gives on the same local files (every metric, the group aggregate, every prompt and
response), and the Tulu 3 suites resolve what the shared mirror holds.

Data: ``../shared/data/benchmarks`` (gsm8k, IFEval, HumanEval and three BBH subtasks laid out like the hub; see its
README); skipped when absent. The model is the untrained tiny checkpoint, whose context is 256 tokens, so every
generation is capped with ``gen_kwargs: {max_gen_toks: 16}`` on both sides (the tasks ask for 256 to 1280).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import evaluate, items, local_data, offline
from harness.evals import suite as suites
from harness.evals.cache import normalise

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"shared benchmark data not found at {BENCHMARKS}")

LIMIT = 4
GEN = {"max_gen_toks": 16}
COMPARED = ("results", "groups", "group_subtasks", "versions", "n-shot", "n-samples", "higher_is_better")
# A group of the three BBH subtasks the mirror holds, aggregated as lm-eval's own bbh_fewshot group is.
GROUP = """group: bbh_fewshot_shared3
task:
  - bbh_fewshot_boolean_expressions
  - bbh_fewshot_date_understanding
  - bbh_fewshot_navigate
aggregate_metric_list:
  - metric: exact_match
    aggregation: mean
    weight_by_size: true
metadata:
  version: 1.0
"""


@pytest.fixture
def cfg() -> EvalConfig:
    return EvalConfig(device="cpu", cache=False)


def reference(checkpoint: Path, tasks: list[str], cfg: EvalConfig, task_paths: list[Path] | None = None,
              **kwargs) -> dict:
    """lm-eval alone on the same local files: its own TaskManager, its datasets.load_dataset served the mirror."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=[str(p) for p in task_paths] if task_paths else None)
    found: dict = {}
    for task in tasks:
        found |= local_data.sources(tm, task, root=BENCHMARKS)
    with local_data.redirect(found):
        out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(checkpoint)}, tasks=tasks,
                                      limit=LIMIT, gen_kwargs=dict(GEN), batch_size=cfg.batch_size, device="cpu",
                                      bootstrap_iters=cfg.bootstrap_iters, task_manager=tm, log_samples=True,
                                      **kwargs)
    return normalise(out)


def assert_same(ours, direct: dict) -> None:
    """Every section lm-eval reports is identical, and so is every item's prompt, target and response."""
    for section in COMPARED:
        if section in direct:
            assert ours.lm_eval.get(section) == direct[section], section
    for task, samples in direct["samples"].items():
        table = ours.samples[task].set_index(items.INDEX).sort_index()
        theirs = {s["doc_id"]: s for s in samples}
        assert list(table.index) == sorted(theirs) and len(table) == LIMIT, task
        for doc_id, row in table.iterrows():
            assert row.prompt == theirs[doc_id]["arguments"][0][0], (task, doc_id)
            assert row.response == theirs[doc_id]["resps"][0][0], (task, doc_id)
            assert row.target == str(theirs[doc_id]["target"]), (task, doc_id)


def test_gsm8k_ifeval_bbh_and_a_bbh_group_match_lm_eval(tiny_checkpoint, tmp_path, cfg):
    group = tmp_path / "tasks" / "bbh_shared3"
    group.mkdir(parents=True)
    (group / "bbh_shared3.yaml").write_text(GROUP)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""data_dir: {BENCHMARKS}
task_paths: [tasks]
lm_eval_tasks: true
defaults: {{limit: {LIMIT}, gen_kwargs: {{max_gen_toks: {GEN['max_gen_toks']}}}}}
skills:
  math: [gsm8k]
  instruction_following: [ifeval]
  reasoning: [bbh_zeroshot_navigate, bbh_fewshot_shared3]
""")
    ours = evaluate(str(tiny_checkpoint), str(suite), cfg=cfg, results_dir=tmp_path / "results")
    tasks = ["gsm8k", "ifeval", "bbh_zeroshot_navigate", "bbh_fewshot_shared3"]
    direct = reference(tiny_checkpoint, tasks, cfg, [tmp_path / "tasks"])
    assert_same(ours, direct)

    results = direct["results"]
    assert {"gsm8k", "ifeval", "bbh_zeroshot_navigate", "bbh_fewshot_navigate", "bbh_fewshot_shared3"} <= set(results)
    assert "prompt_level_strict_acc,none" in results["ifeval"]  # IFEval's checks ran (NLTK's punkt_tab offline)
    subtasks = [t for t in results if t.startswith("bbh_fewshot_") and t != "bbh_fewshot_shared3"]
    assert len(subtasks) == 3
    weighted = sum(results[t]["exact_match,none"] * results[t]["sample_len"] for t in subtasks) / (3 * LIMIT)
    assert results["bbh_fewshot_shared3"]["exact_match,none"] == pytest.approx(weighted)
    group_row = ours.scores[ours.scores.task == "bbh_fewshot_shared3"]
    assert group_row[group_row.metric == "exact_match,none"].value.tolist() == [
        results["bbh_fewshot_shared3"]["exact_match,none"]]
    # The items are the mirror's rows, in file order.
    first = (BENCHMARKS / "openai" / "gsm8k" / "main" / "test.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["question"] in ours.samples["gsm8k"].set_index(items.INDEX).loc[0, "prompt"]
    assert str(BENCHMARKS / "openai" / "gsm8k" / "main" / "test.jsonl") in ours.sources["gsm8k"]


def test_humaneval_matches_lm_eval(tiny_checkpoint, tmp_path, cfg, monkeypatch):
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    try:
        offline.code_eval()
    except HarnessError as err:
        pytest.skip(f"code_eval cannot run offline here: {err}")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"data_dir: {BENCHMARKS}\nskills:\n  code:\n    - {{task: humaneval, limit: {LIMIT}, "
                     f"confirm_run_unsafe_code: true, gen_kwargs: {{max_gen_toks: {GEN['max_gen_toks']}}}}}\n")
    ours = evaluate(str(tiny_checkpoint), str(suite), cfg=cfg, results_dir=tmp_path / "results")
    assert_same(ours, reference(tiny_checkpoint, ["humaneval"], cfg, confirm_run_unsafe_code=True))


# What the shared mirror holds of the Tulu 3 suites; every other entry names its first missing dataset.
RESOLVED = {"tulu3_dev": {"gsm8k_cot", "ifeval", "humaneval_instruct"}, "tulu3_unseen": set()}
NAMED = {"tulu3_dev": {"mmlu": "cais/mmlu/abstract_algebra", "drop": "EleutherAI/drop"},
         "tulu3_unseen": {"mmlu_pro": "TIGER-Lab/MMLU-Pro", "gpqa_main_cot_zeroshot": "Idavidrein/gpqa/gpqa_main"}}


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_tulu3_suites_resolve_the_mirror_or_name_the_missing_dataset(name, monkeypatch):
    monkeypatch.setenv(local_data.ENV, str(BENCHMARKS))
    spec = suites.load(name)
    suites.check_tasks(spec)
    tm = suites.task_manager(spec)
    root = local_data.data_dir(spec.data_dir)
    resolved, missing = set(), {}
    for entry in spec.entries:
        try:
            found = local_data.sources(tm, entry.task, root=root, entry_data=entry.data)
        except HarnessError as err:
            missing[entry.task] = str(err)
            continue
        assert all(source.kind == "mirror" and str(BENCHMARKS) in source.describe() for source in found.values())
        resolved.add(entry.task)
    assert resolved == RESOLVED[name]
    assert set(missing) == {e.task for e in spec.entries} - resolved
    for task, message in missing.items():
        assert "\n" not in message and f"not found in data_dir {BENCHMARKS}" in message, message
        assert message.startswith("task '") and "dataset " in message, message
    for task, dataset in NAMED[name].items():
        assert f"dataset {dataset}" in missing[task], missing[task]


def test_tulu3_dev_entries_with_data_run_offline(tiny_checkpoint, tmp_path, cfg, monkeypatch):
    """The tulu3_dev entries the mirror holds, with the suite's own settings, run on the tiny model (generation
    capped to its context; humaneval_instruct only where code_eval can run)."""
    import yaml

    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    try:
        offline.code_eval()
        code = True
    except HarnessError:
        code = False
    dev = yaml.safe_load(suites.find("tulu3_dev").read_text())
    keep = {"gsm8k_cot", "ifeval"} | ({"humaneval_instruct"} if code else set())
    skills = {skill: [{**e, "limit": 2, "gen_kwargs": dict(GEN)} for e in entries if e["task"] in keep]
              for skill, entries in dev["skills"].items()}
    dev["skills"] = {skill: entries for skill, entries in skills.items() if entries}
    suite = tmp_path / "tulu3_dev_mirror.yaml"
    suite.write_text(yaml.safe_dump({**dev, "data_dir": str(BENCHMARKS)}))
    result = evaluate(str(tiny_checkpoint), str(suite), cfg=cfg, results_dir=tmp_path / "results")
    assert set(result.samples) == keep and all(len(t) == 2 for t in result.samples.values())
    headline = result.scores[result.scores.task.isin(keep)]
    assert {"exact_match,flexible-extract", "prompt_level_loose_acc,none"} <= set(headline.metric)
