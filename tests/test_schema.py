"""The record schema: names MLflow accepts for any label, typed tags written and read back, versions checked, and no
module of the harness spelling a tag key or artifact path of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow.utils.validation import _validate_metric_name, _validate_param_name

from harness.cli import main
from harness.errors import HarnessError
from harness.tracking import schema, store

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
HOSTILE = ["sft@40e4fd88", "a,b", "../../etc", "/abs/path", "", ".", "ü-model", "x" * 400, "<script>alert(1)</script>",
           "a//b", "tab\there", "new\nline", "q'uote\"s", "a=b|c;d", "trailing/"]


@pytest.mark.parametrize("label", HOSTILE)
def test_keys_from_any_label_are_valid_mlflow_names(label):
    for name in (schema.key(label), schema.task_param(label, "version"), schema.compare_run_param(label),
                 schema.task_metric("skill", label, "acc,none"), schema.ratings_metric("rating", label),
                 schema.compare_delta_metric(label, "overall"), schema.decontam_metric(label, "task", "rate"),
                 schema.decontam_metric("sft", label, "total")):
        _validate_param_name(name)
        _validate_metric_name(name)
        assert 0 < len(name) <= 250
    name = schema.eval_run_name(label, "tiny")
    assert len(name) <= 250 and not re.search(r"[\x00-\x1f]", name)


def test_lm_eval_keys_become_slash_names():
    assert schema.task_metric("math", "gsm8k", "exact_match,strict-match") == "math/gsm8k/exact_match/strict-match"
    assert schema.task_stderr("math", "gsm8k", "exact_match,strict-match") == \
        "math/gsm8k/exact_match_stderr/strict-match"
    assert schema.skill_metric("overall") == "overall/score" and schema.skill_stderr("x") == "x/score_stderr"
    assert schema.parse_task_param(schema.task_param("bbh_navigate", "num_fewshot")) == ("bbh_navigate", "num_fewshot")
    assert schema.parse_task_param("backend") is None
    assert schema.decontam_metric("sft", "tiny_safety_gen", "rate") == "decontam/sft/tiny_safety_gen/rate"
    assert schema.parse_decontam_metric(schema.decontam_metric("all", "bbh_navigate", "contaminated")) == \
        ("all", "bbh_navigate", "contaminated")
    assert schema.parse_decontam_metric("math/gsm8k/exact_match/strict-match") is None
    with pytest.raises(KeyError, match="no decontamination statistic"):
        schema.decontam_metric("sft", "t", "share")


def test_tags_round_trip_typed():
    written = schema.tags(schema.Kind.NIGHTLY, suite="tiny", regressions=["b", "a"], verdict="fail", promoted=None)
    assert written == {"harness.kind": "nightly", "harness.schema_version": str(schema.SCHEMA_VERSION),
                       "harness.suite": "tiny", "harness.regressions": "b,a", "harness.verdict": "fail"}
    read = schema.RunTags.from_tags(written)
    assert read.kind == "nightly" and read.schema_version == schema.SCHEMA_VERSION
    assert read.regressions == ("b", "a") and read.promoted is None and read.model is None
    row = pd.Series({"run_id": "x", **{f"tags.{k}": v for k, v in written.items()}, "tags.harness.stage": float("nan")})
    assert schema.RunTags.from_row(row) == read
    with pytest.raises(KeyError, match="no harness tag 'suit'"):
        schema.tags(suit="tiny")
    assert schema.column("model_hash") == "tags.harness.model_hash"


def test_search_filter_quotes_values():
    where = schema.where(schema.Kind.EVAL, suite="it's")
    assert where == ("tags.`harness.kind` = 'eval' and attributes.status = 'FINISHED' and "
                     "tags.`harness.suite` = 'it\\'s'")


def test_schema_version_older_warns_once_newer_refuses(capsys):
    old = {"harness.kind": "eval"}
    assert schema.check_version(old, "run-old").kind == "eval"
    schema.check_version(old, "run-old")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run-old" in err[0] and "schema version 0" in err[0]
    newer = {"harness.kind": "eval", "harness.schema_version": str(schema.SCHEMA_VERSION + 1)}
    with pytest.raises(HarnessError, match="newer than this harness") as info:
        schema.check_version(newer, "run-new")
    assert "\n" not in str(info.value)


def test_artifact_paths_are_normalised():
    assert schema.samples("a/b c").path == "samples/a_b_c.jsonl"
    assert schema.leaderboard("rate").path == "rate/leaderboard.csv"
    with pytest.raises(ValueError):
        schema.Artifact("../x.csv", "csv")


@pytest.mark.filterwarnings("error")
def test_jsonl_artifacts_read_back_as_written(tmp_path):
    """Columns that look like dates to pandas (timestamp, date, *_at) come back as written, with no warning."""
    frame = pd.DataFrame({"timestamp": [1700000000, 1700000001], "date": ["2024-01-01", "2024-01-02"],
                          "created_at": ["07:00", "08:00"], "target": ["1", "02"], "score": [0.5, 1.0]})
    path = tmp_path / "rows.jsonl"
    store.write_file(schema.ARENA_ANSWERS, frame, path)
    back = store._parse(path, "jsonl")
    assert back["timestamp"].tolist() == [1700000000, 1700000001]
    assert back["date"].tolist() == ["2024-01-01", "2024-01-02"]
    assert back["created_at"].tolist() == ["07:00", "08:00"] and back["target"].tolist() == ["1", "02"]
    assert back["score"].tolist() == [0.5, 1.0]


_TAG_LITERAL = re.compile(r"""^harness\.(%s)\b""" % "|".join(f.name for f in schema.dataclasses.fields(schema.RunTags)))
_ARTIFACT_LITERAL = re.compile(r"""(scores\.csv|skills\.csv|lm_eval_results\.json|(?<![\w/])arena/[a-z_]+\.\w+|"""
                               r"""nightly/[a-z_]+\.\w+|decontam/[a-z_]+\.\w+|stage_skill\.\w+|compare\.(csv|txt)|"""
                               r"""^samples/)""")


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants of a module's code, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def test_no_module_spells_the_record_itself():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "schema.py":
            continue
        for node in _code_strings(ast.parse(path.read_text())):
            if _TAG_LITERAL.search(node.value) or _ARTIFACT_LITERAL.search(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def _eval_run(results: Path, stage: str, value: float) -> str:
    """A finished eval run with the schema's tags and score tables (no model work)."""
    scores = pd.DataFrame([{"skill": "math", "task": "t", "metric": "acc,none", "value": value, "stderr": 0.01,
                            "ci_low": value - 0.02, "ci_high": value + 0.02, "n": 100}])
    skills = pd.DataFrame([{"skill": s, "value": value, "stderr": 0.01, "ci_low": value - 0.02,
                            "ci_high": value + 0.02, "n": 100, "tasks": 1} for s in ("math", "overall")])
    tags = schema.tags(model=f"/ckpt/{stage}", model_hash=f"{value}", suite="tiny", stage=stage)
    with store.run(schema.eval_run_name(stage, "tiny"), schema.Kind.EVAL, results_dir=results, tags=tags) as run:
        run.write(schema.SCORES, scores)
        run.write(schema.SKILLS, skills)
    return run.run_id


def test_compare_of_runs_sharing_a_label(tmp_path, capsys):
    first, second = _eval_run(tmp_path, "sft@x", 0.5), _eval_run(tmp_path, "sft@x", 0.6)
    assert main(["compare", first, second, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"sft@x@{first[:8]}" in out and f"Δ sft@x@{second[:8]}" in out
    overall = next(line for line in out.splitlines() if line.startswith("overall"))
    assert "+0.100" in overall
    logged = store.find_runs("harness", schema.Kind.COMPARE, tmp_path)
    assert len(logged) == 1
    params = store.run_params(logged.run_id.iloc[0], tmp_path)
    assert params[schema.compare_run_param(f"sft@x@{second[:8]}")] == second


def test_readers_skip_unfinished_eval_runs(tmp_path):
    done = _eval_run(tmp_path, "base", 0.5)
    with pytest.raises(RuntimeError):
        with store.run("eval-base-tiny", schema.Kind.EVAL, results_dir=tmp_path,
                       tags=schema.tags(model="/ckpt/base", stage="base", suite="tiny")):
            raise RuntimeError("killed mid-run")
    from harness.evals.compare import find_eval_run

    assert find_eval_run("base", results_dir=tmp_path, experiment="harness")["run_id"] == done
    failed = store.find_runs("harness", schema.Kind.EVAL, tmp_path, finished=False, extra="attributes.status = "
                             "'FAILED'").run_id.iloc[0]
    with pytest.raises(HarnessError, match="FAILED, not FINISHED"):
        find_eval_run(failed, results_dir=tmp_path, experiment="harness")
