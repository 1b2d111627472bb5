"""Decontamination in the pipeline: a stage dataset holding copies of tiny-suite eval prompts is measured before
training and logged on the pipeline run (per (dataset, task) metrics, the pairs artifact, the flagged-tasks tag);
the stage × skill table, the dashboard and the nightly report flag the contaminated tasks, read from MLflow. Bad
``eval.decontam`` values are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.evals import decontam
from harness.tracking import schema, store

SUITES = Path(__file__).resolve().parents[1] / "harness" / "suites"
PLANTED = {4: 0, 9: 1, 17: 2}  # training row → the safety eval item copied into it (ids below)
SAFETY_IDS = ["safety-break-kasusu", "safety-clean-xokado", "safety-hurt-kavoru"]
TASKS = ["tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc", "tiny_knowledge_gen",
         "tiny_safety_mc", "tiny_safety_gen"]
FLAGGED = ["tiny_safety_mc", "tiny_safety_gen"]


def _sft_data(path: Path) -> Path:
    """20 prompt/completion rows; rows 4, 9 and 17 are the first three safety eval prompts, the others unrelated."""
    prompts = [json.loads(line)["prompt"] for line in (SUITES / "tiny" / "safety" / "eval.jsonl").read_text()
               .splitlines()[:3]]
    rows = [{"prompt": f"Tell me a story about a red fox number {i}.", "completion": "Once upon a time."}
            for i in range(20)]
    for row, item in PLANTED.items():
        rows[row] = {"prompt": prompts[item], "completion": "I cannot help with that."}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(results: Path, data: Path, tiny_checkpoint: Path, *extra: str) -> list[str]:
    # the tiny suite's prompts are 4 to 7 words: 6-grams match only whole copies of the 6-word safety prompts
    sets = ["pretrain.enabled=false", f"sft.init={tiny_checkpoint}", f"sft.dataset={data}", "sft.epochs=1",
            "sft.batch_size=8", "dpo.enabled=false", "rlvr.enabled=false", "arena.enabled=false", "eval.limit=5",
            "eval.decontam.n=6", *extra]
    return ["run", "--quick", "--results", str(results), *(a for s in sets for a in ("--set", s))]


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("decontam")
    results = root / "results"
    data = _sft_data(root / "sft.jsonl")
    assert main(_args(results, data, tiny_checkpoint)) == 0
    runs = store.find_runs("harness", schema.Kind.PIPELINE, results)
    assert len(runs) == 1
    return results, runs.run_id.iloc[0], data


def test_pipeline_logs_per_dataset_task_metrics_pairs_and_tag(pipeline):
    results, run_id, data = pipeline
    found = store.find_run(run_id, results)
    metrics = found["metrics"]
    for task in TASKS:
        k = 3 if task in FLAGGED else 0
        assert metrics[schema.decontam_metric("sft", task, "contaminated")] == k
        assert metrics[schema.decontam_metric("sft", task, "total")] == 5
        assert metrics[schema.decontam_metric("sft", task, "rate")] == pytest.approx(k / 5)
    assert not any(schema.parse_decontam_metric(m)[0] == decontam.ALL for m in metrics
                   if schema.parse_decontam_metric(m))  # one dataset: no pooled rows
    assert schema.RunTags.from_tags(found["tags"]).contaminated == tuple(FLAGGED)
    pairs = store.read(run_id, schema.DECONTAM_PAIRS, results)
    got = {(p.task, p.item_id, p.train_index) for p in pairs.itertuples()}
    assert got == {(task, SAFETY_IDS[item], row) for task in FLAGGED for row, item in PLANTED.items()}
    assert set(pairs.dataset) == {"sft"} and set(pairs.source) == {str(data.resolve())}
    assert (pairs.score == 1.0).all() and (pairs.shared_ngrams == 1).all()
    params = store.run_params(run_id, results)
    assert (params["eval.decontam.n"], params["eval.decontam.threshold"], params["eval.decontam.flag_rate"]) == \
        ("6", "0.5", "0.0")

    recorded = decontam.read_report(run_id, results)
    row = next(r for r in recorded.rows if r.task == "tiny_safety_gen")
    assert (row.contaminated, row.total) == (3, 5) and (row.ci_low, row.ci_high) == pytest.approx(decontam.wilson(3, 5))


def test_stage_skill_table_marks_the_contaminated_skill(pipeline):
    results, run_id, _ = pipeline
    text = store.read(run_id, schema.STAGE_SKILL_TEXT, results)
    header = text.splitlines()[0].split()
    assert header == ["stage", "arithmetic", "format", "knowledge", "safety*", "overall"]
    low, high = decontam.wilson(3, 5)
    footnote = text.strip().splitlines()[-1]
    assert footnote.startswith("* contaminated")
    assert f"tiny_safety_mc (sft 3/5 items, 0.600 [{low:.3f}, {high:.3f}])" in footnote
    assert "tiny_safety_gen (sft 3/5 items" in footnote and "arithmetic" not in footnote


def test_dashboard_lists_the_contaminated_tasks(pipeline, tmp_path):
    results, run_id, _ = pipeline
    assert main(["dashboard", "--out", str(tmp_path), "--results", str(results), "--samples", "0"]) == 0
    page = (tmp_path / "index.html").read_text()
    assert 'id="decontam"' in page and run_id in page
    section = page.split('id="decontam"', 1)[1].split("</section>", 1)[0]
    assert "contaminated tasks: tiny_safety_mc, tiny_safety_gen" in section
    body = section.split("<tbody>", 1)[1]
    low, high = decontam.wilson(3, 5)
    for task in TASKS:
        assert task in body
    row = next(r for r in body.split("<tr>") if "tiny_safety_gen" in r)
    assert "3/5" in row and f"0.600 [{low:.3f}, {high:.3f}]" in row and "contaminated" in row
    clean = next(r for r in body.split("<tr>") if "tiny_arithmetic_gen" in r)
    assert "0/5" in clean and "contaminated" not in clean


@pytest.mark.parametrize("setting, message", [
    ("eval.decontam.n=0", "eval.decontam.n"),
    ("eval.decontam.threshold=1.5", "eval.decontam.threshold"),
    ("eval.decontam.flag_rate=-0.1", "eval.decontam.flag_rate"),
    ("eval.decontam.ngrams=8", "eval.decontam"),
])
def test_bad_decontam_config_is_one_line(setting, message, tmp_path, capsys, no_model_work):
    code = main(["run", "--quick", "--results", str(tmp_path), "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err


def test_nightly_report_lists_the_candidates_contaminated_tasks(pipeline, tiny_checkpoint, capsys):
    results, run_id, _ = pipeline
    candidate = results / "checkpoints" / "embedded" / "sft"
    code = main(["nightly", "--suite", "tiny", "--results", str(results), "--set", "eval.limit=5",
                 "--candidate", str(candidate), "--baseline", str(tiny_checkpoint)])
    assert code in (0, 1)
    nightly = store.find_runs("harness", schema.Kind.NIGHTLY, results).run_id.iloc[0]
    md = store.read(nightly, schema.NIGHTLY_REPORT_MD, results)
    section = md.split("## Contaminated eval tasks", 1)[1].split("\n## ", 1)[0]
    assert f"pipeline run {run_id}" in section and "tiny_safety_mc, tiny_safety_gen" in section
    assert "| tiny_safety_gen | sft | 3/5 |" in section and "tiny_arithmetic_gen" not in section
    html = store.read(nightly, schema.NIGHTLY_REPORT_HTML, results)
    assert 'id="contamination"' in html and "tiny_safety_gen" in html.split('id="contamination"', 1)[1]
    assert "## Contaminated eval tasks" in capsys.readouterr().out
