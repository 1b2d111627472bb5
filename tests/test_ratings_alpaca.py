"""AlpacaEval metrics on the real annotations against the published leaderboard, plus bad-input errors."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.ratings import alpaca_winrate, read_annotations, winrate_metrics

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"
MODELS = ["alpaca-7b", "claude-2.1", "gpt-3.5-turbo-1106"]
TOL_POINTS = 0.01  # acceptance: win rate and standard error equal the published CSV to 0.01 points
TOL_LC = 3.0  # acceptance: LC with the difficulty file within 3 points of the published LC


@pytest.fixture(scope="module")
def alpaca(tmp_path_factory) -> dict[str, Path]:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder {DATA} is absent")
    root = tmp_path_factory.mktemp("alpaca")
    files = {m: root / f"{m}.json" for m in MODELS}
    for m, path in files.items():
        shutil.copy(DATA / "annotations" / f"{m}.json", path)
    shutil.copy(DATA / "instruction_difficulty.csv", root / "difficulty.csv")
    shutil.copy(DATA / "leaderboard_weighted_alpaca_eval_gpt4_turbo.csv", root / "leaderboard.csv")
    return {**files, "difficulty": root / "difficulty.csv", "published": root / "leaderboard.csv"}


@pytest.fixture(scope="module")
def results(alpaca) -> tuple[pd.DataFrame, pd.DataFrame]:
    ours = alpaca_winrate([alpaca[m] for m in MODELS], difficulty=alpaca["difficulty"]).set_index("model")
    published = pd.read_csv(alpaca["published"], index_col=0).loc[MODELS]
    return ours, published


def test_win_rate_and_standard_error_equal_the_published_csv(results):
    ours, published = results
    for col in ("win_rate", "standard_error", "discrete_win_rate"):
        assert np.abs(ours.loc[MODELS, col] - published[col]).max() < TOL_POINTS, col
    for col in ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length"):
        assert (ours.loc[MODELS, col] == published[col]).all(), col
    assert (ours["baseline"] == "gpt4_1106_preview").all()


def test_length_controlled_win_rate_with_the_difficulty_file(results):
    ours, published = results
    gap = np.abs(ours.loc[MODELS, "length_controlled_winrate"] - published["length_controlled_winrate"])
    assert gap.max() < TOL_LC, gap.to_dict()
    weights = ours.attrs["glm_weights"]
    assert all(w["length"] < 0 for w in weights.values())  # longer than the baseline helps: the model is penalised


def test_joint_difficulty_without_a_file_warns_and_stays_sane(alpaca):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = alpaca_winrate([alpaca[m] for m in MODELS]).set_index("model")
    assert any("estimated from 3 model(s)" in str(w.message) for w in caught)
    assert table.attrs["difficulty"] == "estimated jointly from 3 model(s)"
    lc = table["length_controlled_winrate"]
    assert ((lc > 0) & (lc < 100)).all()
    # all three are much shorter than the baseline, so controlling for length raises every win rate
    assert (lc > table["win_rate"]).all()
    assert lc.idxmin() == "alpaca-7b"


def test_metrics_golden():
    m = winrate_metrics([1.0, 2.0, 1.5, 0.0, 1.75])
    assert m["win_rate"] == pytest.approx(100 * np.mean([0, 1, 0.5, 0.5, 0.75]))
    assert m["standard_error"] == pytest.approx(100 * pd.Series([0, 1, 0.5, 0.5, 0.75]).sem())
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"]) == (2, 1, 2, 5)
    assert m["discrete_win_rate"] == pytest.approx(100 * (2 + 1) / 5)


def test_cli_winrate_json(alpaca, capsys):
    args = ["winrate", *[str(alpaca[m]) for m in MODELS], "--difficulty", str(alpaca["difficulty"]), "--format", "json"]
    assert main(args) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(MODELS)
    for key in ("model", "win_rate", "standard_error", "length_controlled_winrate", "n_draws", "avg_length", "n_total"):
        assert key in rows["claude-2.1"]
    assert rows["claude-2.1"]["win_rate"] == pytest.approx(15.733507, abs=1e-5)
    assert rows["alpaca-7b"]["n_draws"] == 3


def annotations(rows: list[dict]) -> list[dict]:
    base = {"instruction": "i", "output_1": "a", "generator_1": "base", "output_2": "bb", "generator_2": "m"}
    return [{**base, **r} for r in rows]


@pytest.mark.parametrize(
    "rows,pattern",
    [
        (annotations([{"preference": 1.0}, {"preference": 2.5}]), r"row 2: preference 2.5 is outside \[1, 2\]"),
        (annotations([{"preference": 1.0}, {"preference": None}]), r"row 2: preference is missing"),
        (annotations([{"preference": "x"}]), r"row 1: preference 'x' is not a number"),
        ([{"preference": 1.0, "output_1": "a"}], r"missing field\(s\) output_2"),
        ([], r"no annotations"),
        ({"not": "a list"}, r"expected a JSON list"),
    ],
)
def test_bad_annotations(tmp_path, capsys, rows, pattern):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(HarnessError, match=pattern):
        read_annotations(path)
    assert main(["winrate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err


def test_drop_missing_and_mismatched_difficulty(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(annotations([{"preference": 1.0}, {"preference": None}, {"preference": 2.0}])))
    frame = read_annotations(path, drop_missing=True)
    assert len(frame) == 2 and frame["_row"].tolist() == [0, 2]
    diff = tmp_path / "d.csv"
    diff.write_text("index,instruction_difficulty\n0,0.1\n1,0.2\n")
    with pytest.raises(HarnessError, match="difficulty file covers 2 instructions"):
        alpaca_winrate([frame], difficulty=diff)
    diff.write_text("index,instruction_difficulty\n0,0.1\n1,oops\n2,0.3\n")
    with pytest.raises(HarnessError, match="row 2: instruction_difficulty is not a number"):
        alpaca_winrate([frame], difficulty=diff)
