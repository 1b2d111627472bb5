"""`harness import lm-eval`: the output of the real ``lm_eval`` CLI (``--output_path --log_samples``) on the tiny
checkpoint and suite, recorded as an eval run that equals a harness eval of the same model, suite and limit (params,
metrics, per-item samples, logged model and datasets), so that a nightly against it passes and `compare` shows no
delta; and bad input as one line, exit 2 and no MLflow run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.evals import suite as suites
from harness.evals.compare import compare
from harness.nightly import records
from harness.resources import resource_path
from harness.tracking import schema, store

pytestmark = pytest.mark.slow

LIMIT = 8
TINY = resource_path("suites") / "tiny"  # the tiny suite's task folder, wherever harness is installed


@pytest.fixture(scope="module")
def lm_eval_out(tiny_checkpoint, tmp_path_factory) -> Path:
    """What ``lm_eval --output_path OUT --log_samples`` writes for the tiny suite's tasks, run as the suite runs
    them (chat template, 0-shot) at the harness's default batch size."""
    out = tmp_path_factory.mktemp("lm_eval") / "out"
    tasks = ",".join(e.task for e in suites.load("tiny").entries)
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={tiny_checkpoint}",
           "--tasks", tasks, "--include_path", str(TINY), "--apply_chat_template", "--num_fewshot", "0",
           "--limit", str(LIMIT), "--batch_size", "64", "--device", "cpu", "--output_path", str(out), "--log_samples"]
    done = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _run_id(stdout: str) -> str:
    return re.search(r"MLflow run: ([0-9a-f]{32})", stdout).group(1)


def _newest_eval(results: Path) -> str:
    return store.find_runs("harness", schema.Kind.EVAL, results).run_id.iloc[0]


@pytest.fixture(scope="module")
def runs(lm_eval_out, tiny_checkpoint, tmp_path_factory) -> dict:
    """The import and a harness eval of the same model, suite and limit, in one store."""
    results = tmp_path_factory.mktemp("import_results")
    assert main(["import", "lm-eval", str(lm_eval_out), "--suite", "tiny", "--results", str(results)]) == 0
    imported = _newest_eval(results)
    assert main(["eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", str(LIMIT),
                 "--results", str(results)]) == 0
    return {"results": results, "imported": imported, "evaluated": _newest_eval(results)}


def test_layout_is_a_model_folder_of_results_and_samples(lm_eval_out, tiny_checkpoint):
    (folder,) = [p for p in lm_eval_out.iterdir() if p.is_dir()]
    names = sorted(p.name for p in folder.iterdir())
    assert len([n for n in names if n.startswith("results_")]) == 1
    assert {n.split("_20")[0] for n in names if n.startswith("samples_")} == \
        {f"samples_{e.task}" for e in suites.load("tiny").entries}


def test_import_equals_a_harness_eval_of_the_same_model(runs, tiny_checkpoint):
    results = runs["results"]
    c = store.client(store.tracking_uri(results))
    imp, ev = c.get_run(runs["imported"]), c.get_run(runs["evaluated"])
    assert imp.data.params == ev.data.params  # backend, its args, lm-eval version, per-task settings and data
    assert imp.data.metrics == ev.data.metrics and len(imp.data.metrics) > 20
    tags_i, tags_e = schema.RunTags.from_tags(imp.data.tags), schema.RunTags.from_tags(ev.data.tags)
    assert (tags_i.kind, tags_i.model, tags_i.model_hash, tags_i.suite) == \
        (tags_e.kind, tags_e.model, tags_e.model_hash, tags_e.suite) == ("eval", str(tiny_checkpoint),
                                                                         tags_e.model_hash, "tiny")
    assert tags_i.imported.endswith(".json") and Path(tags_i.imported).name.startswith("results_")
    assert tags_e.imported is None
    # the same logged model and the same data of every task
    assert [m.model_id for m in imp.inputs.model_inputs] == [m.model_id for m in ev.inputs.model_inputs]
    datasets = [(d.dataset.name, d.dataset.digest) for d in imp.inputs.dataset_inputs]
    assert datasets == [(d.dataset.name, d.dataset.digest) for d in ev.inputs.dataset_inputs] and len(datasets) == 7
    # the artifacts a harness eval writes, with the same contents
    a, b = records.load_record(runs["imported"], results), records.load_record(runs["evaluated"], results)
    assert a.scores.equals(b.scores)
    assert store.read(runs["imported"], schema.SKILLS, results).equals(store.read(runs["evaluated"], schema.SKILLS,
                                                                                  results))
    assert sorted(a.samples) == sorted(b.samples) == sorted(e.task for e in suites.load("tiny").entries)
    for task in a.samples:
        assert a.samples[task].equals(b.samples[task]), task
        assert len(a.samples[task]) == LIMIT
    assert records.incomparable(a, b) == []
    assert a.lm_eval["config"]["model"] == "hf"  # lm-eval's own results file, kept whole


def test_nightly_against_the_import_passes(runs, tiny_checkpoint, capsys):
    results = str(runs["results"])
    nightly = ["nightly", "--suite", "tiny", "--results", results, "--set", f"eval.limit={LIMIT}"]
    code = main([*nightly, "--candidate", str(tiny_checkpoint), "--baseline", f"run:{runs['imported']}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "# Nightly tiny: PASS" in out and f"eval run {runs['imported']}" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "tiny_" in line and "+0.000 [" in line]
    assert len(rows) == 7  # every headline metric, delta 0
    # the reverse, both sides given as eval runs: nothing is evaluated
    code = main([*nightly, "--candidate", f"run:{runs['imported']}", "--baseline", f"run:{runs['evaluated']}"])
    out = capsys.readouterr().out
    assert code == 0 and "# Nightly tiny: PASS" in out, out
    nightly_run = store.find_runs("harness", schema.Kind.NIGHTLY, results).iloc[0]
    tags = schema.RunTags.from_row(nightly_run)
    assert (tags.candidate_eval_run, tags.baseline_eval_run) == (runs["imported"], runs["evaluated"])


def test_compare_shows_no_delta(runs, capsys):
    results = str(runs["results"])
    assert main(["compare", runs["imported"], runs["evaluated"], "--results", results, "--no-log"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines[0].index("Δ")  # the delta column
    deltas = [line[at:].split()[0] for line in lines[2:] if line.strip()]
    assert len(deltas) > 10 and set(deltas) == {"+0.000"}, lines
    table = compare([runs["imported"], runs["evaluated"]], results_dir=results, log=False)
    (delta,) = [col for col in table.columns if col.startswith("Δ ") and not col.endswith(("ci_low", "ci_high"))]
    assert (table[delta].dropna() == 0).all() and table[delta].notna().sum() == len(deltas)


def test_without_a_suite_each_task_is_its_own_skill(lm_eval_out, tmp_path, capsys):
    assert main(["import", "lm-eval", str(lm_eval_out), "--label", "external", "--results", str(tmp_path)]) == 0
    run_id = _run_id(capsys.readouterr().out)
    run = store.read_run(run_id, tmp_path)
    assert run["schema"].suite == "lm-eval" and run["schema"].stage == "external" and run["name"] == \
        "eval-external-lm-eval"
    skills = store.read(run_id, schema.SKILLS, tmp_path)
    tasks = [e.task for e in suites.load("tiny").entries]
    assert list(skills.skill) == [*tasks, "overall"]
    assert run["metrics"][schema.task_metric("tiny_knowledge_mc", "tiny_knowledge_mc", "acc,none")] >= 0
    params = store.run_params(run_id, tmp_path)
    assert params[schema.task_param("tiny_arithmetic_gen", "skill")] == "tiny_arithmetic_gen"
    assert params[schema.task_param("tiny_arithmetic_gen", "apply_chat_template")] == "True"
    assert params[schema.task_param("tiny_arithmetic_gen", "limit")] == str(LIMIT)
    # the suite file written from the run is the run's suite artifact
    c = store.client(store.tracking_uri(tmp_path))
    assert [f.path for f in c.list_artifacts(run_id, schema.SUITE_FOLDER)] == ["suite/lm-eval.yaml"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (folder,) = [p for p in dst.iterdir() if p.is_dir()]
    return folder


def _bad(args: list[str], results: Path, capsys) -> str:
    code = main(["import", "lm-eval", *args, "--results", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not len(store.search_runs(store.tracking_uri(results), "harness"))  # no MLflow run started
    return err[0]


def test_bad_input_is_one_line_exit_2_and_no_run(lm_eval_out, tmp_path, capsys):
    results = tmp_path / "results"
    assert "not found" in _bad([str(tmp_path / "empty")], results, capsys)
    (tmp_path / "empty").mkdir()
    assert "no lm-eval results (results_<timestamp>.json)" in _bad([str(tmp_path / "empty")], results, capsys)

    folder = _copy(lm_eval_out, tmp_path / "no_samples")
    next(folder.glob("samples_tiny_safety_gen_*.jsonl")).unlink()
    assert "no samples file for task 'tiny_safety_gen'" in _bad([str(tmp_path / "no_samples")], results, capsys)

    folder = _copy(lm_eval_out, tmp_path / "bad_json")
    path = next(folder.glob("results_*.json"))
    path.write_text(path.read_text()[:500])
    assert "is not valid JSON" in _bad([str(path)], results, capsys)

    folder = _copy(lm_eval_out, tmp_path / "bad_line")
    path = next(folder.glob("samples_tiny_knowledge_mc_*.jsonl"))
    path.write_text(path.read_text() + "{not json\n")
    assert re.search(r"line \d+ is not valid JSON", _bad([str(tmp_path / "bad_line")], results, capsys))

    folder = _copy(lm_eval_out, tmp_path / "other_run")
    path = next(folder.glob("samples_tiny_format_gen_*.jsonl"))
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    assert "not from the same run" in _bad([str(tmp_path / "other_run")], results, capsys)

    two = tmp_path / "two_models"
    _copy(lm_eval_out, two)
    shutil.copytree(next(p for p in lm_eval_out.iterdir() if p.is_dir()), two / "other_model")
    assert "several models" in _bad([str(two)], results, capsys)

    subset = tmp_path / "subset.yaml"  # a suite of two of the imported tasks
    subset.write_text(f"task_paths: [{TINY}]\nlm_eval_tasks: false\ndefaults: {{apply_chat_template: true}}\n"
                      "skills:\n  arithmetic: [tiny_arithmetic_gen]\n  knowledge: [tiny_knowledge_mc, nope_task]\n")
    assert "unknown task 'nope_task'" in _bad([str(lm_eval_out), "--suite", str(subset)], results, capsys)
    subset.write_text(subset.read_text().replace(", nope_task", ""))
    line = _bad([str(lm_eval_out), "--suite", str(subset)], results, capsys)
    assert "does not match suite 'subset'" in line and "imported tasks not in the suite: tiny_format_gen" in line


def test_nightly_side_run_must_be_a_finished_eval_run(runs, tiny_checkpoint, capsys):
    results = str(runs["results"])
    nightly = ["nightly", "--suite", "tiny", "--results", results, "--candidate", str(tiny_checkpoint)]
    assert main([*nightly, "--baseline", "run:" + "0" * 32]) == 2
    assert "no MLflow run" in capsys.readouterr().err
    assert main(["compare", runs["imported"], runs["evaluated"], "--results", results]) == 0  # logs a compare run
    compare_run = store.find_runs("harness", schema.Kind.COMPARE, results).run_id.iloc[0]
    assert main([*nightly, "--baseline", f"run:{compare_run}"]) == 2
    assert "is not an eval run" in capsys.readouterr().err
    assert main([*nightly, "--baseline", "run:"]) == 2
    assert "name the eval run" in capsys.readouterr().err


def test_settings_other_than_the_suites_are_recorded_and_named(lm_eval_out, tmp_path, capsys):
    other = tmp_path / "tiny_3shot.yaml"  # the tiny suite, but 3-shot without the chat template
    text = (resource_path("suites") / "tiny.yaml").read_text()
    defaults = ("num_fewshot: 0\n  apply_chat_template: true", "num_fewshot: 3\n  apply_chat_template: false")
    other.write_text(text.replace("task_paths: [tiny]", f"task_paths: [{TINY}]").replace(*defaults))
    assert main(["import", "lm-eval", str(lm_eval_out), "--suite", str(other), "--results", str(tmp_path)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "lm-eval ran it with" in line]
    assert len(warned) == 7 and "few-shot 0 (suite: 3), chat template True (suite: False)" in warned[0]
    params = store.run_params(_newest_eval(tmp_path), tmp_path)
    assert params[schema.task_param("tiny_safety_mc", "num_fewshot")] == "0"  # what lm-eval ran, not the suite
    assert params[schema.task_param("tiny_safety_mc", "apply_chat_template")] == "True"
