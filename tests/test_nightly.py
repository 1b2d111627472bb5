"""The nightly's parts without models: config, like-with-like checks, pairing, side resolution, suite versions,
escaping, and the report. End to end runs are in test_nightly_e2e.py, the browser in test_dashboard_browser.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.evals import items
from harness.evals import suite as suites
from harness.nightly import records, sides
from harness.nightly.config import NightlyConfig, load_nightly_config
from harness.nightly.result import NightlyResult
from harness.nightly.stats import PairedScores, compare_suite
from harness.report import nightly as report
from harness.resources import resource_path

SUITES = resource_path("suites")  # the packaged suites, wherever harness is installed
XSS = "<script>document.title='pwned'</script>"


# --- config ---------------------------------------------------------------------------------------------------


def test_config_defaults_file_and_overrides(tmp_path):
    cfg = load_nightly_config()
    assert (cfg.correction, cfg.alpha, cfg.baseline, cfg.arena.enabled) == ("holm", 0.05, "champion", False)
    path = tmp_path / "nightly.yaml"
    path.write_text("correction: bh\nmin_effects: {'acc,none': 0.01}\neval: {limit: 50}\narena: {enabled: true}\n")
    cfg = load_nightly_config(path, ["alpha=0.01", "eval.batch_size=8"])
    assert (cfg.correction, cfg.alpha, cfg.eval.limit, cfg.eval.batch_size) == ("bh", 0.01, 50, 8)
    assert cfg.arena.enabled and cfg.min_effects == {"acc,none": 0.01}


@pytest.mark.parametrize("text, message", [
    ("corection: bh\n", "unknown config key 'corection'; valid keys: suite, baseline"),
    ("eval: {limt: 3}\n", "unknown config key 'eval.limt'"),
    ("correction: bonferroni\n", "config key correction: 'bonferroni' is not one of holm, bh"),
    ("metrics: some\n", "config key metrics: 'some' is not one of headline, all"),
    ("alpha: 2\n", "config key alpha: 2 is out of range (valid: > 0 and < 1)"),
    ("min_effect: -0.1\n", "config key min_effect: -0.1 is out of range (valid: >= 0)"),
    ("min_effects: {'acc,none': x}\n", "config key min_effects.acc,none: expected float, got 'x'"),
    ("min_effects: {'acc,none': -1}\n", "config key min_effects.acc,none: -1 is out of range (valid: >= 0)"),
    ("min_effects: [1]\n", "expected a mapping"),
    ("rounds: 0\n", "config key rounds: 0 is out of range (valid: >= 1)"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as err:
        load_nightly_config(path)
    assert message in str(err.value)


def test_min_effect_lookup_order():
    cfg = NightlyConfig(min_effect=0.05, min_effects={"t1/acc,none": 0.01, "acc,none": 0.02})
    assert records.min_effect_for(cfg, "t1", "acc,none") == 0.01
    assert records.min_effect_for(cfg, "t2", "acc,none") == 0.02
    assert records.min_effect_for(cfg, "t2", "verifier,none") == 0.05


# --- records: like with like, pairing -------------------------------------------------------------------------


def _samples(ids, **metrics) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"doc_id": range(n), "item_id": [str(i) for i in ids], "id_field": "id",
                         "doc_hash": [items.doc_hash({"id": str(i)}) for i in ids], "prompt": ["q"] * n,
                         "target": ["a"] * n, "response": ["r"] * n, **{k: np.asarray(v, float)
                                                                        for k, v in metrics.items()}})


def _record(samples: dict, **settings) -> records.EvalRecord:
    base = {"backend": "hf", "backend_args": "{}", "lm_eval_version": "0.4.13"}
    for task in samples:
        base.update({f"task.{task}.version": "1.0", f"task.{task}.num_fewshot": "0",
                     f"task.{task}.apply_chat_template": "True", f"task.{task}.limit": "None"})
    base.update(settings)
    higher = {t: {c.split(",")[0]: c != "perplexity,none" for c in s.columns if "," in c} for t, s in samples.items()}
    return records.EvalRecord(run_id="r", model="m", model_hash="h", suite="tiny", settings=base,
                              scores=pd.DataFrame(), lm_eval={"higher_is_better": higher}, samples=samples)


def test_like_with_like_passes_for_the_same_settings():
    a = _record({"tiny_knowledge_mc": _samples([1, 2, 3], **{"acc,none": [1, 0, 1]})})
    b = _record({"tiny_knowledge_mc": _samples([3, 2, 1], **{"acc,none": [0, 0, 1]})})
    assert records.incomparable(a, b) == []


def test_incomparable_names_every_difference():
    task = "tiny_knowledge_mc"
    a = _record({task: _samples([1, 2, 3], **{"acc,none": [1, 0, 1]}), "tiny_safety_mc": _samples([1], **{
        "acc,none": [1]})}, backend="vllm", **{f"task.{task}.version": "2.0", f"task.{task}.num_fewshot": "5",
                                             f"task.{task}.apply_chat_template": "False"})
    b = _record({task: _samples([1, 2, 4], **{"acc,none": [1, 0, 1]})})
    reasons = records.incomparable(a, b)
    assert "tasks scored only for the candidate: tiny_safety_mc" in reasons
    assert "backend: vllm (candidate) vs hf (baseline)" in reasons
    assert f"task version of task {task}: 2.0 (candidate) vs 1.0 (baseline)" in reasons
    assert f"few-shot of task {task}: 5 (candidate) vs 0 (baseline)" in reasons
    assert f"chat template of task {task}: False (candidate) vs True (baseline)" in reasons
    assert f"task {task}: different items scored (1 only for the candidate, 1 only for the baseline)" in reasons
    assert not any("tiny_safety_mc" in r and "version" in r for r in reasons)  # named once, as a one-sided task
    other = _record({task: _samples([1], **{"acc,none": [1]})})
    other.suite = "tulu3_dev"
    assert "suite 'tiny' (candidate) vs 'tulu3_dev' (baseline)" in records.incomparable(a, other)


def test_pairing_by_item_id_headline_and_all_metrics():
    spec = suites.load("tiny")
    gen, mc = "tiny_arithmetic_gen", "tiny_knowledge_mc"
    cand = _record({gen: _samples(["a", "b", "c"], **{"verifier,none": [1, 1, 0], "verifier,strict-match": [1, 0, 0]}),
                    mc: _samples(["x", "y"], **{"acc,none": [1, 0], "acc_norm,none": [0, 0]})})
    base = _record({gen: _samples(["c", "b", "a"], **{"verifier,none": [1, 0, 0], "verifier,strict-match": [0, 0, 0]}),
                    mc: _samples(["y", "x"], **{"acc,none": [1, 1], "acc_norm,none": [1, 1]})})
    cfg = NightlyConfig(min_effects={f"{mc}/acc,none": 0.1})
    pairs = records.paired_metrics(spec, cand, base, cfg)
    assert [(p.task, p.metric) for p in pairs] == [(gen, "verifier,none"), (mc, "acc,none")]  # suite order
    assert pairs[0].candidate.tolist() == [1, 1, 0] and pairs[0].baseline.tolist() == [0, 0, 1]  # a, b, c
    assert pairs[1].min_effect == 0.1 and pairs[0].min_effect == 0.0 and pairs[1].test == "mcnemar"
    cfg.metrics = "all"
    assert len(records.paired_metrics(spec, cand, base, cfg)) == 4
    with pytest.raises(HarnessError, match=r"min_effects names no compared metric: gsm8k/acc,none; compared: "):
        records.paired_metrics(spec, cand, base, NightlyConfig(min_effects={"gsm8k/acc,none": 0.1}))


def test_pairing_drops_items_without_a_score_and_keeps_direction():
    spec = suites.load("tiny")
    task = "tiny_format_ifeval"
    cand = _record({task: _samples(["a", "b", "c"], **{"prompt_level_strict_acc,none": [0.5, np.nan, 1.0]})})
    base = _record({task: _samples(["a", "b", "c"], **{"prompt_level_strict_acc,none": [0.25, 1.0, 1.0]})})
    (pair,) = records.paired_metrics(spec, cand, base, NightlyConfig())
    assert pair.candidate.tolist() == [0.5, 1.0] and pair.test == "permutation" and pair.higher_is_better


# --- suite versions -------------------------------------------------------------------------------------------


def test_suite_version_ignores_the_folder_and_follows_task_versions(tmp_path):
    original = records.suite_version(suites.load("tiny"))
    shutil.copytree(SUITES / "tiny", tmp_path / "tiny")
    shutil.copy(SUITES / "tiny.yaml", tmp_path / "tiny.yaml")
    assert records.suite_version(suites.load(str(tmp_path / "tiny.yaml"))) == original
    task = tmp_path / "tiny" / "safety" / "safety_mc.yaml"
    task.write_text(task.read_text().replace("version: 1.0", "version: 1.1"))
    suites._task_manager.cache_clear()
    assert records.suite_version(suites.load(str(tmp_path / "tiny.yaml"))) != original


# --- sides ----------------------------------------------------------------------------------------------------


def _resolve(spec: str, results: Path, role: str = "baseline") -> sides.Side:
    return sides.resolve(spec, role=role, registered_model="harness-embedded", suite="tiny", experiment="harness",
                         results_dir=results)


def test_sides_that_name_nothing_are_one_line_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(HarnessError, match=r"^baseline 'champion' not found: not an alias of registered model "
                                           r"'harness-embedded' \(aliases: none\)"):
        _resolve("champion", tmp_path)
    with pytest.raises(HarnessError, match=r"registered model 'harness-embedded' has no version '3'"):
        _resolve("models:/harness-embedded/3", tmp_path)
    with pytest.raises(HarnessError, match=r"has no alias 'gold'"):
        _resolve("models:/harness-embedded@gold", tmp_path)
    with pytest.raises(HarnessError, match=r"^candidate model .*: no such folder"):
        _resolve(str(tmp_path / "missing"), tmp_path, role="candidate")
    with pytest.raises(HarnessError, match=r"only the baseline can be the last passing nightly"):
        _resolve("last-pass", tmp_path, role="candidate")
    with pytest.raises(HarnessError, match=r"no passing nightly of suite 'tiny' in experiment 'harness'"):
        _resolve("last-pass", tmp_path)
    side = _resolve(str(tiny_checkpoint), tmp_path, role="candidate")
    assert side.model == str(tiny_checkpoint) and side.label == "base"
    with pytest.raises(HarnessError, match=r"--promote: candidate .* is not a version of registered model"):
        sides.promotion_version(side, "harness-embedded", tmp_path)


# --- escaping and the report ----------------------------------------------------------------------------------


def _result(verdict_drop: float) -> NightlyResult:
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.7).astype(float)
    cand = base.copy()
    flip = np.flatnonzero(base == 1)[: int(verdict_drop * 400)]
    cand[flip] = 0.0
    pairs = [PairedScores("tiny_arithmetic_gen", "verifier,none", cand, base, min_effect=0.01),
             PairedScores("tiny_safety_mc", "acc,none", base, base)]
    comparisons = compare_suite(pairs)
    result = NightlyResult(
        verdict="fail" if verdict_drop else "pass", suite="tiny", suite_version="abc123def456",
        candidate=sides.Side(XSS, f"/ckpt/{XSS}", XSS, eval_run="c" * 32),
        baseline=sides.Side("champion", "models:/harness-embedded@champion", "champion (v1)", eval_run="b" * 32),
        comparisons=comparisons, skills={"tiny_arithmetic_gen": "arithmetic", "tiny_safety_mc": "safety"},
        run_id="r" * 32)
    if verdict_drop:
        result.examples[("tiny_arithmetic_gen", "verifier,none")] = pd.DataFrame({
            "item_id": ["arithmetic-1+2"], "prompt": ["What is 1 + 2?"], "target": ["3"],
            "response_candidate": [XSS], "score_candidate": [0.0], "response_baseline": ["3"],
            "score_baseline": [1.0]})
    return result


def test_report_names_the_regression_and_escapes_model_text():
    result = _result(0.1)
    assert result.exit_code == 1 and [c.task for c in result.regressions] == ["tiny_arithmetic_gen"]
    md = report.markdown(result)
    assert md.startswith("# Nightly tiny: FAIL: regression")
    assert "1 of 2 metrics dropped: tiny_arithmetic_gen verifier,none -0.100" in md
    assert "| arithmetic | tiny_arithmetic_gen | verifier,none | 400 |" in md and "REGRESSION" in md
    assert "### Regressed items: tiny_arithmetic_gen verifier,none" in md
    page = report.html_page(result)
    assert "<script" not in page.lower() and page.count("&lt;script&gt;") >= 3
    assert page.count("data:image/png;base64,") == 1  # the delta plot (no trend, no arena here)
    assert 'class="verdict fail"' in page and '<tr class="regression">' in page


def test_report_of_a_pass_and_of_cannot_compare():
    result = _result(0.0)
    assert result.exit_code == 0
    assert "no significant drop in 2 metrics (0 improved)" in report.markdown(result)
    result.verdict, result.comparisons = "cannot-compare", []
    result.reasons = ["task version of task tiny_safety_mc: 2.0 (candidate) vs 1.0 (baseline)"]
    assert result.exit_code == 2
    md = report.markdown(result)
    assert "# Nightly tiny: CANNOT COMPARE" in md and "- task version of task tiny_safety_mc" in md
    assert "Cannot compare" in report.html_page(result)


# --- CLI ------------------------------------------------------------------------------------------------------


def test_cli_registers_nightly_and_dashboard(capsys):
    for command in ("nightly", "dashboard"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
    assert "--promote" in capsys.readouterr().out


def test_dashboard_of_a_missing_experiment_is_one_line(tmp_path, capsys):
    assert main(["dashboard", "--experiment", "nope", "--results", str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: no experiment 'nope' in sqlite:///") and "\n" not in err
