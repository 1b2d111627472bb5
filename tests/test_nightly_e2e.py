"""`harness nightly` end to end on the quick pipeline's checkpoints and MLflow store (a copy of it, so the shared
store stays as the pipeline left it): verdicts and exit codes, the MLflow record, promotion, the last passing
nightly as baseline, arena deltas, and bad input."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.resources import resource_path
from harness.tracking import schema, store

pytestmark = pytest.mark.slow

SUITES = resource_path("suites")  # the packaged suites, wherever harness is installed
MODEL = "harness-embedded"
# The quick pipeline evaluated 40 items per task: the same limit keeps the eval cache warm.
LIMIT = ["--set", "eval.limit=40"]


def copy_results(src: Path, dst: Path) -> Path:
    """A private copy of a results folder's MLflow store and caches (checkpoints and artifacts stay where they are:
    the copied store points at them by absolute path)."""
    a, b = sqlite3.connect(src / "mlflow.db"), sqlite3.connect(dst / "mlflow.db")
    try:
        a.backup(b)  # consistent even while another test writes to the source
    finally:
        a.close()
        b.close()
    for name in ("eval_cache", "cache"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def results(quick_pipeline, tmp_path_factory) -> Path:
    return copy_results(quick_pipeline, tmp_path_factory.mktemp("nightly"))


@pytest.fixture(scope="module")
def ckpt(quick_pipeline):
    return lambda stage: str(quick_pipeline / "checkpoints" / "embedded" / stage)


@pytest.fixture(scope="module")
def twin(results, ckpt, tmp_path_factory) -> str:
    """A checkpoint that scores exactly as the pipeline's sft but is another checkpoint to the nightly (which refuses
    a checkpoint against itself): a copy with a note file, so its content hash differs. Evaluated once here, so
    that the nightlies find both sides in the eval cache."""
    folder = tmp_path_factory.mktemp("twin") / "sft-twin"
    shutil.copytree(ckpt("sft"), folder)
    (folder / "NOTE.txt").write_text("a copy of sft: the same weights, another content hash\n")
    assert main(["eval", "--model", str(folder), "--suite", "tiny", "--results", str(results), *LIMIT]) == 0
    return str(folder)


def _nightly(results: Path, *args: str) -> int:
    return main(["nightly", "--suite", "tiny", "--results", str(results), *LIMIT, *args])


def _nightlies(results: Path, experiment: str = "harness") -> pd.DataFrame:
    runs = store.search_runs(store.tracking_uri(results), experiment, "tags.`harness.kind` = 'nightly'",
                             ["attributes.start_time DESC"])
    return runs


def _version(results: Path, stage: str) -> str:
    return next(v["version"] for v in store.model_versions(MODEL, results) if v["tags"]["stage"] == stage)


def _report_rows(stdout: str) -> dict[str, list[str]]:
    """The Markdown comparison table: task → its cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 13 and cells[1].startswith("tiny_"):
            rows[cells[1]] = cells
    return rows


def test_rlvr_against_base_passes(results, ckpt, capsys):
    code = _nightly(results, "--candidate", ckpt("rlvr"), "--baseline", ckpt("base"))
    out = capsys.readouterr().out
    print(out)  # the measured deltas and p-values, shown when this fails
    assert code == 0, out
    assert "# Nightly tiny: PASS" in out


def test_base_against_rlvr_reports_the_tasks_that_dropped(results, ckpt, capsys):
    code = _nightly(results, "--candidate", ckpt("base"), "--baseline", ckpt("rlvr"))
    out = capsys.readouterr().out
    print(out)
    assert code == 1, out
    assert "# Nightly tiny: FAIL: regression" in out
    dropped = [task for task, cells in _report_rows(out).items() if cells[-1] == "REGRESSION"]
    assert dropped
    headline = out.split("**")[1]
    assert all(task in headline for task in dropped)
    run = _nightlies(results).iloc[0]
    assert run["tags.harness.verdict"] == "fail"
    assert sorted(run["tags.harness.regressions"].split(",")) == sorted(dropped)
    for task in dropped:
        key = next(k for k in run.index if k.startswith("metrics.delta/") and f"/{task}/" in k)
        assert run[key] < 0
        assert run[key.replace("metrics.delta/", "metrics.p_adjusted/")] <= 0.05


def test_identical_models_pass_and_the_mlflow_record_lines_up_with_eval_runs(results, ckpt, twin, capsys):
    assert _nightly(results, "--candidate", ckpt("sft"), "--baseline", twin) == 0
    assert "PASS" in capsys.readouterr().out
    runs = store.search_runs(store.tracking_uri(results), "harness")
    nightly = _nightlies(results).iloc[0]
    assert nightly["status"] == "FINISHED"
    assert nightly["tags.harness.verdict"] == "pass" and nightly["tags.harness.suite"] == "tiny"
    assert len(nightly["tags.harness.suite_version"]) == 12
    assert nightly["params.candidate"] == ckpt("sft") and nightly["params.nightly.correction"] == "holm"
    assert nightly["metrics.nightly/metrics"] == 7 and nightly["metrics.nightly/regressions"] == 0
    # both sides were evaluated as eval runs nested under the nightly (from the eval cache: no model work)
    children = runs[runs["tags.mlflow.parentRunId"] == nightly["run_id"]]
    assert list(children["tags.harness.kind"]) == ["eval", "eval"]
    assert set(children["tags.harness.cached_tasks"].str.split(",").map(len)) == {7}
    # the candidate's scores carry the eval runs' metric names, so MLflow's compare view lines them up
    cand = children[children["run_id"] == nightly["tags.harness.candidate_eval_run"]].iloc[0]
    deltas = [k[len("metrics.delta/"):] for k in nightly.index if k.startswith("metrics.delta/")
              and pd.notna(nightly[k])]
    assert len(deltas) == 7
    for key in deltas:
        assert nightly[f"metrics.{key}"] == pytest.approx(cand[f"metrics.{key}"])
        assert nightly[f"metrics.delta/{key}"] == 0 and nightly[f"metrics.p_adjusted/{key}"] == 1
    client = store.client(store.tracking_uri(results))
    files = {a.path for a in client.list_artifacts(nightly["run_id"], "nightly")}
    assert {"nightly/report.md", "nightly/report.html", "nightly/comparisons.csv", "nightly/config.yaml"} <= files
    table = store.read(nightly["run_id"], schema.NIGHTLY_COMPARISONS, results)
    assert set(table["test"]) == {"mcnemar_exact"} and set(table["verdict"]) == {"no change"}


def test_promote_moves_the_alias_only_on_a_pass(results, twin, capsys):
    uri = store.tracking_uri(results)
    base, rlvr, sft = _version(results, "base"), _version(results, "rlvr"), _version(results, "sft")
    store.set_alias(uri, MODEL, "champion", base)
    code = _nightly(results, "--candidate", f"models:/{MODEL}/{sft}", "--baseline", twin, "--promote")
    assert code == 0 and store.model_aliases(MODEL, results)["champion"] == sft
    assert f"promoted: models:/{MODEL}@champion → version {sft}" in capsys.readouterr().out
    assert _nightlies(results).iloc[0]["tags.harness.promoted"].endswith(f"version {sft}")
    # champion is now sft; a candidate that fails leaves it there, one that passes takes it
    code = _nightly(results, "--candidate", f"models:/{MODEL}/{rlvr}", "--baseline", "champion", "--promote")
    capsys.readouterr()
    assert code in (0, 1)
    assert store.model_aliases(MODEL, results)["champion"] == (rlvr if code == 0 else sft)
    assert _nightlies(results).iloc[0]["params.baseline"] == f"models:/{MODEL}@champion"


def test_promote_needs_a_registered_candidate(results, tmp_path, ckpt, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(ckpt("sft"), folder)
    before = len(_nightlies(results))
    assert _nightly(results, "--candidate", str(folder), "--baseline", ckpt("sft"), "--promote") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--promote" in err and "not a version" in err
    assert len(_nightlies(results)) == before  # nothing evaluated, no run opened


def test_last_pass_baseline_reuses_the_passing_nightly_scores(results, ckpt, twin, capsys):
    assert _nightly(results, "--candidate", ckpt("sft"), "--baseline", twin) == 0
    passed = _nightlies(results).iloc[0]
    capsys.readouterr()
    # the last pass's own candidate again: the same content hash, refused before any eval
    assert _nightly(results, "--candidate", ckpt("sft"), "--baseline", "last-pass") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "are the same checkpoint" in err and "have the same content hash" in err
    assert _nightlies(results).iloc[0]["run_id"] == passed["run_id"]  # no nightly run opened
    assert _nightly(results, "--candidate", twin, "--baseline", "last-pass") == 0
    assert "last pass (" in capsys.readouterr().out
    latest = _nightlies(results).iloc[0]
    assert latest["params.baseline_eval_run"] == passed["tags.harness.candidate_eval_run"]
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert (runs["tags.mlflow.parentRunId"] == latest["run_id"]).sum() == 1  # only the candidate was evaluated


def test_arena_adds_elo_delta_and_win_probability(results, ckpt, capsys):
    code = _nightly(results, "--candidate", ckpt("rlvr"), "--baseline", ckpt("base"), "--arena",
                    "--set", "arena.prompts=8", "--set", "arena.bootstrap=50")
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "## Arena (judge verifier)" in out and "Elo delta candidate − baseline" in out
    nightly = _nightlies(results).iloc[0]
    assert 0.0 <= nightly["metrics.arena/p_win"] <= 1.0 and pd.notna(nightly["metrics.arena/elo_delta"])
    runs = store.search_runs(store.tracking_uri(results), "harness")
    arena = runs[(runs["tags.mlflow.parentRunId"] == nightly["run_id"]) & (runs["tags.harness.kind"] == "arena")]
    assert len(arena) == 1


def test_baseline_not_found_is_one_line_and_exit_2(results, ckpt, capsys):
    before = len(_nightlies(results))
    assert _nightly(results, "--candidate", ckpt("rlvr"), "--baseline", "no-such-alias") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: baseline 'no-such-alias' not found") and "\n" not in err
    assert _nightly(results, "--candidate", ckpt("rlvr"), "--baseline", f"models:/{MODEL}/99") == 2
    err = capsys.readouterr().err.strip()
    assert "has no version '99'" in err and "\n" not in err
    assert len(_nightlies(results)) == before


def test_no_history_is_one_line_and_exit_2(results, ckpt, capsys):
    code = main(["nightly", "--suite", "tiny", "--results", str(results), "--experiment", "no-nightlies-yet",
                 "--candidate", ckpt("rlvr"), "--baseline", "last-pass"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "no passing nightly of suite 'tiny'" in err and "\n" not in err


def test_a_new_suite_version_cannot_be_compared_with_the_last_pass(results, ckpt, twin, tmp_path, capsys):
    # The same suite name, one task's metadata.version bumped and the other tasks dropped.
    shutil.copytree(SUITES / "tiny", tmp_path / "tiny")
    task = tmp_path / "tiny" / "knowledge" / "knowledge_mc.yaml"
    task.write_text(task.read_text().replace("version: 1.0", "version: 2.0"))
    (tmp_path / "tiny.yaml").write_text("task_paths: [tiny]\nlm_eval_tasks: false\n"
                                        "defaults: {num_fewshot: 0, apply_chat_template: true}\n"
                                        "skills:\n  knowledge:\n    - {task: tiny_knowledge_mc, metric: 'acc,none'}\n")
    assert _nightly(results, "--candidate", ckpt("sft"), "--baseline", twin) == 0  # a pass of tiny as it is
    capsys.readouterr()
    code = main(["nightly", "--suite", str(tmp_path / "tiny.yaml"), "--results", str(results), *LIMIT,
                 "--candidate", twin, "--baseline", "last-pass"])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "# Nightly tiny: CANNOT COMPARE" in out
    assert "task version of task tiny_knowledge_mc: 2.0 (candidate) vs 1.0 (baseline)" in out
    assert "tasks scored only for the baseline: tiny_arithmetic_gen" in out
    assert "ran suite version" in out
    nightly = _nightlies(results).iloc[0]
    assert nightly["tags.harness.verdict"] == "cannot-compare" and nightly["metrics.nightly/metrics"] == 0


def test_config_file_sets_the_correction_and_minimum_effects(results, ckpt, twin, tmp_path, capsys):
    config = tmp_path / "nightly.yaml"
    config.write_text("correction: bh\nmin_effect: 0.5\nmin_effects: {'tiny_safety_mc/acc,none': 0.01}\n"
                      "eval: {limit: 40}\n")
    code = main(["nightly", "--config", str(config), "--results", str(results), "--candidate", ckpt("sft"),
                 "--baseline", twin])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Benjamini-Hochberg across 7 metrics" in out
    nightly = _nightlies(results).iloc[0]
    assert nightly["params.nightly.correction"] == "bh" and nightly["params.nightly.min_effect"] == "0.5"
    table = store.read(nightly["run_id"], schema.NIGHTLY_COMPARISONS, results).set_index("task")
    assert table.loc["tiny_safety_mc", "min_effect"] == 0.01 and table.loc["tiny_knowledge_mc", "min_effect"] == 0.5
    assert (table["correction"] == "bh").all()
    bad = tmp_path / "bad.yaml"
    bad.write_text("corection: bh\n")
    assert main(["nightly", "--config", str(bad), "--candidate", ckpt("base")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'corection'" in err and "correction" in err


def test_a_checkpoint_against_the_alias_registered_from_it_is_refused(results, ckpt, no_model_work, capsys):
    """The folder the pipeline trained and registered, against an alias of that version: one checkpoint (the
    LoggedModel's content hash), so the nightly is refused before any eval, and --promote could not promote it."""
    store.set_alias(store.tracking_uri(results), MODEL, "same", _version(results, "sft"))
    before = len(_nightlies(results))
    assert _nightly(results, "--candidate", ckpt("sft"), "--baseline", "same") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"harness: error: candidate '{ckpt('sft')}' and baseline 'same' "
                                                   "are the same checkpoint")
    assert "have the same content hash" in err and "--aa for an A/A check" in err
    assert len(_nightlies(results)) == before


def test_aa_re_evaluates_the_baseline_finds_no_drift_and_names_the_fingerprint_change(results, ckpt, tmp_path,
                                                                                      capsys):
    """--aa on one task of the pipeline's eval cache: the baseline's recorded scores are the cache entry, which says
    (tampered here) that another machine computed them; the fresh eval on this CPU gives the same per-item scores."""
    import json

    from harness.models.load import content_hash

    (tmp_path / "one.yaml").write_text(f"task_paths: [{SUITES / 'tiny'}]\nlm_eval_tasks: false\n"
                                       "defaults: {num_fewshot: 0, apply_chat_template: true}\n"
                                       "skills:\n  knowledge:\n    - {task: tiny_knowledge_mc, metric: 'acc,none'}\n")
    digest = content_hash(ckpt("sft"))
    (entry,) = [f for f in (results / "eval_cache").glob("*.json") if (key := json.loads(f.read_text())["key"])
                ["task"] == "tiny_knowledge_mc" and key["model"] == digest and key["settings"]["limit"] == 40]
    data = json.loads(entry.read_text())
    here, elsewhere = data["fingerprint"]["hardware"], "8 x NVIDIA H100 80GB HBM3"
    entry.write_text(json.dumps({**data, "fingerprint": {**data["fingerprint"], "hardware": elsewhere}}))
    code = main(["nightly", "--suite", str(tmp_path / "one.yaml"), "--results", str(results), *LIMIT, "--aa",
                 "--baseline", ckpt("sft")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("# Nightly one: A/A PASS: no drift")
    assert f"- warning: the two sides were computed differently (reproducibility fingerprint): hardware: {here} " \
           f"(candidate) vs {elsewhere} (baseline)" in out
    assert "## Infrastructure drift" in out and "- none: every metric held" in out
    nightly = _nightlies(results).iloc[0]
    assert (nightly[schema.column("aa")], nightly[schema.column("drift")]) == ("true", "false")
    assert nightly["metrics.nightly/drift"] == 0 and nightly["metrics.nightly/drifted_metrics"] == 0
    key = "knowledge/tiny_knowledge_mc/acc/none"
    assert nightly[f"metrics.discordant/{key}"] == 0 and nightly[f"metrics.delta/{key}"] == 0
    assert 0 < nightly[f"metrics.mde/{key}"] < 1 and nightly[f"metrics.discordant_ci_high/{key}"] > 0
    runs = store.search_runs(store.tracking_uri(results), "harness")
    evals = runs[runs["tags.mlflow.parentRunId"] == nightly["run_id"]].set_index("run_id")
    fresh, recorded = evals.loc[nightly[schema.column("candidate_eval_run")]], \
        evals.loc[nightly[schema.column("baseline_eval_run")]]
    assert recorded[schema.column("cached_tasks")] == "tiny_knowledge_mc"  # as recorded
    assert pd.isna(fresh[schema.column("cached_tasks")]) or not fresh[schema.column("cached_tasks")]  # computed
    # every eval run carries its fingerprint: where its scores were computed, not where they were read
    assert fresh[f"tags.{schema.fingerprint_tag('hardware')}"] == here
    assert recorded[f"tags.{schema.fingerprint_tag('hardware')}"] == elsewhere
    for name in schema.FINGERPRINT_FIELDS:
        assert fresh[f"tags.{schema.fingerprint_tag(name)}"], name
    assert json.loads(entry.read_text())["fingerprint"]["hardware"] == here  # the fresh output replaced the entry
    # the A/A check judged no candidate: it is no 'last-pass' baseline, and not a point of the candidates' trend
    one = ["nightly", "--suite", str(tmp_path / "one.yaml"), "--results", str(results), *LIMIT]
    assert main([*one, "--candidate", ckpt("rlvr"), "--baseline", "last-pass"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no passing nightly of suite 'one'" in err and "(A/A checks do not count)" in err
    assert main([*one, "--candidate", ckpt("rlvr"), "--baseline", ckpt("sft")]) in (0, 1)
    out = capsys.readouterr().out
    assert "## Trend over the last 1 nightlies" in out, out
    # the dashboard's nightly table tells the A/A check from the nightlies that judged a candidate
    assert main(["dashboard", "--results", str(results), "--out", str(tmp_path / "site"), "--samples", "0"]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    checks = re.findall(r"<td[^>]*>\s*(A/A \(drift\)|candidate)\s*</td>", page)
    assert checks.count("A/A (drift)") == 1 and checks[0] == "candidate", checks  # newest first
