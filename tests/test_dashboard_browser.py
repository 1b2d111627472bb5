"""The dashboard and the nightly report in headless Chromium: the pages load without console errors, show the
leaderboard rows and their images, and keep a ``<script>`` in a model's output as text. Screenshots are saved under
the results folder (``<results>/screenshots/``).

Chromium is driven over the DevTools protocol (`browser.Page`), so the test reads console messages, exceptions and
failed loads as events and asks the page itself whether its images decoded.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import Page

from harness.cli import main
from harness.tracking import schema, store

pytestmark = pytest.mark.slow

XSS = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def results(quick_pipeline, tmp_path_factory) -> Path:
    """A copy of the quick pipeline's store with one nightly and one eval run whose model wrote a ``<script>``."""
    out = tmp_path_factory.mktemp("dashboard")
    a, b = sqlite3.connect(quick_pipeline / "mlflow.db"), sqlite3.connect(out / "mlflow.db")
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    shutil.copytree(quick_pipeline / "eval_cache", out / "eval_cache")
    sft = str(quick_pipeline / "checkpoints" / "embedded" / "sft")
    twin = out / "sft-twin"  # the same weights, another checkpoint to the nightly (which refuses one against itself)
    shutil.copytree(sft, twin)
    (twin / "NOTE.txt").write_text("a copy of sft: the same weights, another content hash\n")
    assert main(["nightly", "--suite", "tiny", "--results", str(out), "--set", "eval.limit=40",
                 "--candidate", sft, "--baseline", str(twin)]) == 0
    _log_hostile_eval_run(out)
    return out


def _log_hostile_eval_run(results: Path) -> None:
    """An eval run like the pipeline's rlvr one, but its model's name and first answer are a script."""
    runs = store.search_runs(store.tracking_uri(results), "harness", "tags.`harness.kind` = 'eval' and "
                             "tags.`harness.stage` = 'rlvr'")
    source = runs.iloc[0]["run_id"]
    lm_eval = store.read(source, schema.LM_EVAL_RESULTS, results)
    tags = schema.tags(model=f"/ckpt/{XSS}", model_hash="0" * 16, suite="tiny")
    with store.run("eval-hostile-tiny", schema.Kind.EVAL, experiment="harness", results_dir=results,
                   tags=tags) as run:
        run.write(schema.LM_EVAL_RESULTS, lm_eval)
        run.write(schema.SCORES, store.read(source, schema.SCORES, results))
        skills = store.read(source, schema.SKILLS, results)
        better = {c: np.minimum(skills[c] + 0.5, 1.0) for c in ("value", "ci_low", "ci_high")}
        run.write(schema.SKILLS, skills.assign(**better))  # ranks first
        for i, task in enumerate(lm_eval["n-samples"]):
            samples = store.read(source, schema.samples(task), results)
            if i == 0:
                samples.loc[0, "response"] = XSS
            run.write(schema.samples(task), samples)


def _checkpoints(results: Path) -> int:
    runs = store.search_runs(store.tracking_uri(results), "harness", "tags.`harness.kind` = 'eval'")
    return runs["tags.harness.model_hash"].nunique()


def _images(page: Page) -> list[dict]:
    return page.eval("Array.from(document.images).map(i => ({src: i.getAttribute('src').slice(0, 30), "
                     "ok: i.complete && i.naturalWidth > 0}))")


def test_dashboard_renders_without_errors_and_keeps_scripts_as_text(results, page, tmp_path):
    out = tmp_path / "site"
    assert main(["dashboard", "--experiment", "harness", "--results", str(results), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "<script" not in html.lower()
    page.open((out / "index.html").as_uri())
    assert page.errors() == []
    rows = page.eval("Array.from(document.querySelectorAll('#leaderboard-tiny tbody tr'))"
                     ".map(r => r.cells[1].innerText)")
    assert len(rows) == _checkpoints(results) and {"base", "sft"} <= set(rows)
    assert rows[0] == os.path.basename(f"/ckpt/{XSS}")  # the hostile run ranks first, its name as text
    images = _images(page)
    names = {i["src"] for i in images}
    assert all(i["ok"] for i in images) and len(images) >= 9, images
    assert {"img/tiny-skill-overall.png", "img/stage-progression.png", "img/arena-ratings.png",
            "img/arena-win-prob.png", "img/cost-per-stage.png"} <= names
    assert page.eval("document.scripts.length") == 0
    assert page.eval("document.title") == "harness: harness"
    assert page.eval(f"document.body.innerText.includes({json.dumps(XSS)})")
    assert page.eval("document.querySelectorAll('#nightlies tbody tr').length") == 1
    shot = results / "screenshots" / "dashboard.png"
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_nightly_report_renders_without_errors(results, page):
    nightly = store.search_runs(store.tracking_uri(results), "harness", "tags.`harness.kind` = 'nightly'").iloc[0]
    report = results / "reports" / "nightly.html"
    report.parent.mkdir(exist_ok=True)
    local = store.client(store.tracking_uri(results)).download_artifacts(nightly["run_id"], "nightly/report.html",
                                                                         str(report.parent))
    shutil.move(local, report)
    page.open(report.as_uri())
    assert page.errors() == []
    assert page.eval("document.querySelector('.verdict').innerText") == "PASS"
    rows = page.eval("Array.from(document.querySelectorAll('#deltas tbody tr')).map(r => r.cells[1].innerText)")
    assert len(rows) == 7 and rows[0] == "tiny_arithmetic_gen"
    images = _images(page)
    assert len(images) == 2 and all(i["ok"] and i["src"].startswith("data:image/png") for i in images)
    page.screenshot(results / "screenshots" / "nightly.png")
    assert (results / "screenshots" / "nightly.png").stat().st_size > 20_000


def test_nightly_report_keeps_a_script_in_a_model_answer_as_text(results, page):
    from harness.report import nightly as report
    from harness.nightly.result import NightlyResult
    from harness.nightly.sides import Side
    from harness.nightly.stats import PairedScores, compare_suite

    base = np.repeat([1.0, 0.0], [300, 100])
    cand = base.copy()
    cand[:60] = 0.0
    result = NightlyResult(
        verdict="fail", suite="tiny", suite_version="0" * 12, candidate=Side(XSS, f"/ckpt/{XSS}", XSS),
        baseline=Side("champion", "models:/harness-embedded@champion", "champion"),
        comparisons=compare_suite([PairedScores("tiny_arithmetic_gen", "verifier,none", cand, base)]),
        skills={"tiny_arithmetic_gen": "arithmetic"}, run_id="0" * 32)
    result.examples[("tiny_arithmetic_gen", "verifier,none")] = pd.DataFrame({
        "item_id": ["a-1"], "prompt": ["What is 1 + 2?"], "target": ["3"], "response_candidate": [XSS],
        "score_candidate": [0.0], "response_baseline": ["3"], "score_baseline": [1.0]})
    path = results / "reports" / "hostile.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(report.html_page(result))
    page.open(path.as_uri())
    assert page.errors() == []
    assert page.eval("document.scripts.length") == 0 and page.eval("document.title").startswith("Nightly tiny")
    cells = page.eval("Array.from(document.querySelectorAll('#examples td')).map(c => c.innerText)")
    assert XSS in cells
    assert page.eval("document.querySelector('.verdict').innerText") == "FAIL: regression"
    page.screenshot(results / "screenshots" / "nightly-regression.png")
