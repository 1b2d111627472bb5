"""`harness rate` end to end on the real Arena-Hard battles: formats, plots and a real MLflow store."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.ratings import fit_bt

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REQUIRED = {"model", "rating", "ci_low", "ci_high", "rank", "battles"}


def test_json_output(arena_hard, capsys):
    assert main(["rate", str(arena_hard), "--bootstrap", "200", "--seed", "3", "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert isinstance(rows, list) and len(rows) == 5 and REQUIRED <= set(rows[0])
    assert "95% percentile bootstrap CIs (200 rounds, seed 3)" in captured.err
    ratings = fit_bt(arena_hard)
    for row in rows:
        assert row["rating"] == pytest.approx(ratings[row["model"]])
        assert row["ci_low"] < row["rating"] < row["ci_high"]
    assert [r["model"] for r in rows] == list(ratings.index)
    assert rows[0]["rank"] == 1 and rows[-1]["model"] == "claude-3-haiku-20240307" and rows[-1]["rank"] == 5
    assert sum(r["battles"] for r in rows) == 2 * 2136


def test_other_formats_and_output_file(arena_hard, tmp_path, capsys):
    out = tmp_path / "board.csv"
    assert main(["rate", str(arena_hard), "--bootstrap", "50", "--format", "csv", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(printed))
    assert REQUIRED <= set(frame.columns) and out.read_text() == printed
    assert main(["rate", str(arena_hard), "--bootstrap", "50", "--format", "markdown", "--level", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "90% percentile bootstrap CIs" in text and "| rank | model | rating |" in text
    assert main(["rate", str(arena_hard), "--bootstrap", "0"]) == 0
    assert "no bootstrap" in capsys.readouterr().out


def test_anchor_l2_and_online_elo(arena_hard, capsys):
    assert main(["rate", str(arena_hard), "--bootstrap", "50", "--anchor", "gpt-4o=1200", "--format", "json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gpt-4o"]["rating"] == pytest.approx(1200.0)
    assert main(["rate", str(arena_hard), "--bootstrap", "0", "--l2", "5", "--format", "json"]) == 0
    shrunk = json.loads(capsys.readouterr().out)
    assert shrunk[0]["rating"] - shrunk[-1]["rating"] < rows[shrunk[0]["model"]]["rating"] - rows[shrunk[-1]["model"]]["rating"]
    assert main(["rate", str(arena_hard), "--method", "online-elo", "--format", "json"]) == 0
    elo = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(elo[0]) and elo[0]["ci_low"] is None
    assert main(["rate", str(arena_hard), "--anchor", "nobody=1000"]) == 2
    assert "anchor model 'nobody' is not among the rated models" in capsys.readouterr().err


@pytest.mark.slow
def test_plots_and_mlflow(arena_hard, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    plots = tmp_path / "plots"
    assert main(["rate", str(arena_hard), "--bootstrap", "100", "--plots", str(plots), "--mlflow",
                 "--results", str(results), "--experiment", "ratings-test", "--run-name", "arena-hard"]) == 0
    assert "logged to MLflow run" in capsys.readouterr().err
    assert {p.name for p in plots.iterdir()} == {"ratings.png", "win_prob.png"}

    from harness.tracking import store

    uri = store.tracking_uri(results)
    runs = store.search_runs(uri, "ratings-test")
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    run_id = runs.loc[0, "run_id"]
    client = store.client(uri)
    run = client.get_run(run_id)
    ratings = fit_bt(arena_hard)
    assert run.data.metrics["rating/gpt-4o"] == pytest.approx(ratings["gpt-4o"])
    assert "ci_low/gpt-4o" in run.data.metrics and "rank/gpt-4o" in run.data.metrics
    assert run.data.params["seed"] == "0" and run.data.params["bootstrap"] == "100"
    assert run.data.tags["mlflow.runName"] == "arena-hard" and run.data.tags["seed"] == "0"
    assert run.data.tags["git.commit"] and run.data.tags["version.numpy"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "rate")}
    assert {"rate/leaderboard.csv", "rate/leaderboard.json", "rate/win_prob.csv", "rate/empirical_win_rate.csv",
            "rate/battle_counts.csv", "rate/ratings.png", "rate/win_prob.png"} <= artifacts
    board = json.loads(Path(client.download_artifacts(run_id, "rate/leaderboard.json", str(tmp_path))).read_text())
    assert REQUIRED <= set(board[0])
    # the sandwich SE and the rank interval of every model, as metrics equal to the leaderboard's
    for row in board:
        m = row["model"]
        for column in ("rating", "ci_low", "ci_high", "se", "rank", "rank_ci_low", "rank_ci_high"):
            assert run.data.metrics[f"{column}/{m}"] == pytest.approx(row[column]), (column, m)
        assert row["se"] > 0 and row["rank_ci_low"] <= row["rank"] <= row["rank_ci_high"]
        assert row["ci_low"] < row["rating"] < row["ci_high"]


def test_winrate_mlflow(tmp_path, monkeypatch, capsys):
    if not DATA.is_dir():
        pytest.skip(f"shared data folder {DATA} is absent")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "claude-2.1.json"
    shutil.copy(DATA / "alpaca_eval" / "annotations" / "claude-2.1.json", path)
    diff = tmp_path / "difficulty.csv"
    shutil.copy(DATA / "alpaca_eval" / "instruction_difficulty.csv", diff)
    results = tmp_path / "results"
    base = DATA / "alpaca_eval" / "model_outputs" / "gpt4_1106_preview.json"
    assert main(["winrate", str(path), "--difficulty", str(diff), "--baseline-outputs", str(base), "--mlflow",
                 "--results", str(results)]) == 0
    capsys.readouterr()
    from harness.tracking import store

    uri = store.tracking_uri(results)
    run_id = store.search_runs(uri, "ratings").loc[0, "run_id"]
    metrics = store.client(uri).get_run(run_id).data.metrics
    assert metrics["win_rate/claude-2.1"] == pytest.approx(15.733507, abs=1e-5)
    assert "length_controlled_winrate/claude-2.1" in metrics


def test_help_is_fast_and_lists_the_commands():
    code = "import sys, time; t = time.time(); from harness.ratings import cli; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("numpy", "pandas", "scipy", "matplotlib"):
        assert f"'{heavy}'" not in out, f"harness.ratings.cli imports {heavy} at module level"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "rate", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--bootstrap" in proc.stdout and "--anchor" in proc.stdout
