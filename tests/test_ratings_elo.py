"""The Elo-scale calculator, predicted matrices and online Elo, through the API and `harness elo`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.ratings import margin_for, online_elo, simulate_battles, win_prob, win_prob_matrix


def test_published_margins():
    assert [round(win_prob(d), 3) for d in (100, 200, 300)] == [0.640, 0.760, 0.849]
    assert win_prob(0) == 0.5 and win_prob(-100) == pytest.approx(1 - win_prob(100))
    assert win_prob(1e6) == 1.0 and win_prob(-1e6) == 0.0  # no overflow


def test_margin_inverts_probability_and_settings():
    d = np.array([-350.0, -20.0, 0.0, 55.5, 400.0])
    assert np.allclose(margin_for(win_prob(d)), d)
    assert np.allclose(margin_for(win_prob(d, scale=173.7, base=np.e), scale=173.7, base=np.e), d)
    assert win_prob(400, scale=400, base=10) == pytest.approx(10 / 11)
    assert win_prob(100, scale=100, base=2) == pytest.approx(2 / 3)
    with pytest.raises(HarnessError, match="strictly between 0 and 1"):
        margin_for(1.0)
    with pytest.raises(HarnessError, match="base"):
        win_prob(1, base=1)


def test_win_prob_matrix():
    m = win_prob_matrix({"a": 1200, "b": 1100, "c": 1000})
    assert list(m.index) == ["a", "b", "c"] and np.isnan(np.diag(m.to_numpy())).all()
    assert m.loc["a", "b"] == pytest.approx(0.640, abs=5e-4) and m.loc["a", "c"] == pytest.approx(0.760, abs=5e-4)
    off = ~np.eye(3, dtype=bool)
    assert np.allclose((m.to_numpy() + m.to_numpy().T)[off], 1.0)


def test_online_elo_is_order_dependent_and_tracks_strength():
    frame = simulate_battles(np.array([900.0, 1000.0, 1100.0]), 3000, seed=0)
    r1 = online_elo(frame)
    r2 = online_elo(frame.sample(frac=1.0, random_state=1))
    assert list(r1.index) == ["model-002", "model-001", "model-000"]
    assert not np.allclose(r1.sort_index(), r2.sort_index())
    assert r1.mean() == pytest.approx(1000.0)  # zero-sum updates keep the mean


def test_online_elo_single_update():
    r = online_elo([{"model_a": "a", "model_b": "b", "winner": "model_a"}], k=32)
    assert r["a"] == pytest.approx(1016.0) and r["b"] == pytest.approx(984.0)


def test_cli_prob_and_margin(capsys):
    assert main(["elo", "prob", "100", "200", "300"]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["100 -> 0.640", "200 -> 0.760", "300 -> 0.849"]
    assert main(["elo", "prob", "-100", "--scale", "200"]) == 0
    assert capsys.readouterr().out.strip() == f"-100 -> {win_prob(-100, scale=200):.3f}"
    assert main(["elo", "margin", "0.64", "0.5", "--base", "2", "--scale", "1"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == f"0.64 -> {margin_for(0.64, base=2, scale=1):.1f}" and lines[1] == "0.5 -> 0.0"
    assert main(["elo", "margin", "1.2"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_cli_matrix_from_pairs_and_from_a_ratings_file(tmp_path, capsys):
    assert main(["elo", "matrix", "x=1100", "y=1000", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["model"] == "x" and rows[0]["y"] == pytest.approx(0.640, abs=5e-4) and rows[0]["x"] is None
    path = tmp_path / "ratings.json"
    path.write_text(json.dumps([{"model": "x", "rating": 1000}, {"model": "y", "rating": 1300}]))
    assert main(["elo", "matrix", str(path), "--format", "csv"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert frame.iloc[0]["model"] == "y" and frame.iloc[0]["x"] == pytest.approx(0.849, abs=5e-4)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\na,1\n")
    assert main(["elo", "matrix", str(bad)]) == 2
    assert "missing column(s) model, rating" in capsys.readouterr().err
