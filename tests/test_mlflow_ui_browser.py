"""The quick pipeline's record in the real MLflow UI: an ``mlflow server`` on the pipeline's store, its pages opened
in headless Chromium (`browser.Page`).

The link the harness prints opens the runs table (not the GenAI traces overview); the eval runs are listed with the
dataset of each task; the experiment's Models tab lines up one LoggedModel per stage with its registered version,
source run and datasets; an eval run's metrics name their model. Screenshots go to ``<results>/screenshots/``; with
``HARNESS_UPDATE_DOCS=1`` the Models tab's also replaces ``docs/mlflow-ui.png`` (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from harness.tracking import schema, store
from mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

STAGES = ["base", "sft", "dpo", "rlvr"]
DOCS_PICTURE = Path(__file__).resolve().parents[1] / "docs" / "mlflow-ui.png"


@pytest.fixture(scope="module")
def server(quick_pipeline, tmp_path_factory):
    """``mlflow server`` on the pipeline's store (artifacts where the store keeps them), on a free local port."""
    with mlflow_server(store.tracking_uri(quick_pipeline), tmp_path_factory.mktemp("mlflow_server")) as (_, base):
        yield base


def _runs(results: Path):
    return store.search_runs(store.tracking_uri(results), "harness")


def _row_text(page, run_id: str) -> str:
    """All cells of one runs-table row (the grid splits a row over its pinned and scrolling parts)."""
    return page.eval(f"Array.from(document.querySelectorAll('.ag-row[row-id=\"{run_id}\"]'))"
                     ".map(r => r.innerText).join(' | ')")


def _ready(page, width: int = 1600, height: int = 1000) -> None:
    page.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1,
              mobile=False)


def _close_assistant(page) -> None:
    page.eval("Array.from(document.querySelectorAll('button'))"
              ".find(b => b.getAttribute('aria-label') === 'Close')?.click()")


def _exceptions(page) -> list[str]:
    return [json.dumps(e["params"])[:300] for e in page.events if e.get("method") == "Runtime.exceptionThrown"]


def _docs_picture(runs: Path, models: Path) -> None:
    """The README's picture: the top of the runs table above the top of the Models tab, 1100 pixels wide."""
    from PIL import Image

    parts = [Image.open(runs).crop((0, 0, 1600, 590)), Image.open(models).crop((0, 0, 1600, 370))]
    both = Image.new("RGB", (1600, sum(p.height for p in parts)), "white")
    both.paste(parts[0], (0, 0))
    both.paste(parts[1], (0, parts[0].height))
    both = both.resize((1100, round(both.height * 1100 / 1600)), Image.LANCZOS)
    DOCS_PICTURE.parent.mkdir(exist_ok=True)
    both.convert("P", palette=Image.ADAPTIVE, colors=256).save(DOCS_PICTURE, optimize=True)  # a small file


def test_mlflow_ui_lines_checkpoints_up(quick_pipeline, server, page):
    runs = _runs(quick_pipeline)
    experiment_id = runs["experiment_id"].iloc[0]
    uri = store.tracking_uri(quick_pipeline)
    client = store.client(uri)
    assert client.get_experiment(experiment_id).tags[schema.EXPERIMENT_KIND_TAG] == schema.EXPERIMENT_KIND
    train = runs[runs["tags.harness.kind"] == "train"].set_index("tags.harness.stage")
    evals = runs[runs["tags.harness.kind"] == "eval"].set_index("tags.harness.stage")
    parent = runs[runs["tags.harness.kind"] == "pipeline"]["run_id"].iloc[0]

    # the link the harness prints: the runs table, not the GenAI overview of traces
    _ready(page)
    page.open(store.ui_url(experiment_id, server))
    page.wait_for("document.body.innerText.includes('Run Name') && "
                  f"document.querySelector('.ag-row[row-id=\"{parent}\"]') !== null", timeout=90)
    assert "/runs" in page.eval("location.hash")
    text = page.eval("document.body.innerText")
    assert "Training runs" not in text and "Sessions" not in text  # the GenAI view's sidebar
    _close_assistant(page)
    # the pipeline's runs nest under its parent: open it
    page.eval(f"document.querySelector('.ag-row[row-id=\"{parent}\"] button[data-component-id*=runnamecell]')"
              ".click()")
    page.wait_for(f"document.querySelector('.ag-row[row-id=\"{evals.loc['rlvr', 'run_id']}\"]') !== null")
    time.sleep(1)  # the cells of the opened rows render in a second pass
    for stage in STAGES:
        row = _row_text(page, evals.loc[stage, "run_id"])
        data = client.get_run(evals.loc[stage, "run_id"]).inputs.dataset_inputs
        first = sorted(data, key=lambda d: d.dataset.name)[0].dataset
        assert f"eval-{stage}-tiny" in row and f"{first.name} ({first.digest})" in row, row
        row = _row_text(page, train.loc[stage, "run_id"])  # its Models cell: the checkpoint's registered version
        version = train.loc[stage, "tags.harness.model_version"]
        assert f"train-{stage}" in row and re.search(rf"harness-embedded\s+v{version}\b", row), row
    shots = quick_pipeline / "screenshots"
    page.screenshot(shots / "mlflow-runs.png")

    # the Models tab: one LoggedModel per stage, its registered version, source run and datasets
    page.eval(f"location.hash = '#/experiments/{experiment_id}/models?workflowType=machine_learning'")
    page.wait_for("['base', 'sft', 'dpo', 'rlvr'].every(s => Array.from(document.querySelectorAll('a'))"
                  ".some(a => a.innerText.trim() === s)) && document.body.innerText.includes('harness-embedded')",
                  timeout=60)
    time.sleep(1)
    text = page.eval("document.body.innerText")
    for stage in STAGES:
        version = train.loc[stage, "tags.harness.model_version"]
        assert f"train-{stage}" in text and f"v{version}" in text
    assert "tiny_arithmetic_gen (#" in text and "Ready" in text
    page.screenshot(shots / "mlflow-models.png")
    assert (shots / "mlflow-models.png").stat().st_size > 20_000
    if os.environ.get("HARNESS_UPDATE_DOCS") == "1":
        _docs_picture(shots / "mlflow-runs.png", shots / "mlflow-models.png")

    # an eval run's page: every metric names the checkpoint's model
    run_id = evals.loc["sft", "run_id"]
    page.eval(f"location.hash = '#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning'")
    row = page.wait_for("(() => { const row = Array.from(document.querySelectorAll('[role=row]')).find("
                        "r => r.querySelector('a')?.innerText === 'overall/score');"
                        "return row && row.querySelectorAll('[role=cell]').length >= 3 ? row.innerText : null; })()",
                        timeout=60)  # the Models cell fills in once the logged models have loaded
    name, value, model = row.split()
    assert (name, model) == ("overall/score", "sft") and float(value) == pytest.approx(
        evals.loc["sft", "metrics.overall/score"]), row
    assert _exceptions(page) == []


def test_mlflow_finds_one_logged_model_per_stage_with_its_eval_metrics(quick_pipeline, monkeypatch):
    import mlflow

    runs = _runs(quick_pipeline)
    train = runs[runs["tags.harness.kind"] == "train"].set_index("tags.harness.stage")
    evals = runs[runs["tags.harness.kind"] == "eval"].set_index("tags.harness.stage")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri(quick_pipeline))  # MLflow's own reader
    models = mlflow.search_logged_models(experiment_ids=[runs["experiment_id"].iloc[0]], output_format="list")
    assert sorted(m.name for m in models) == sorted(STAGES)
    for model in models:
        stage = model.name
        assert model.model_id == train.loc[stage, "tags.harness.logged_model"]
        assert model.source_run_id == train.loc[stage, "run_id"]
        assert model.params == {"model_hash": evals.loc[stage, "tags.harness.model_hash"], "stage": stage}
        linked = {m.key: m for m in model.metrics}
        assert {m.run_id for m in model.metrics} == {evals.loc[stage, "run_id"]}
        assert linked["overall/score"].value == pytest.approx(evals.loc[stage, "metrics.overall/score"])
        assert linked["arithmetic/tiny_arithmetic_gen/verifier/none"].dataset_name == "tiny_arithmetic_gen"
