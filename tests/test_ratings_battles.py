"""Battle files: formats, aggregation, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.ratings import aggregate, fit_bt, read_battles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = [
    {"model_a": "m1", "model_b": "m2", "winner": "model_a", "prompt_id": "p1", "judge": "j", "len_a": 10, "len_b": 5},
    {"model_a": "m2", "model_b": "m3", "winner": "tie", "prompt_id": "p2", "judge": "j", "len_a": 7, "len_b": 7},
    {"model_a": "m3", "model_b": "m1", "winner": "model_b", "prompt_id": "p3", "judge": "j", "len_a": 3, "len_b": 9},
    {"model_a": "m1", "model_b": "m3", "winner": "tie (bothbad)", "prompt_id": "p4", "judge": "j", "len_a": 1, "len_b": 2},
    {"model_a": "m3", "model_b": "m2", "winner": "model_a", "prompt_id": "p5", "judge": "j", "len_a": 4, "len_b": 4},
    {"model_a": "m2", "model_b": "m1", "winner": "model_a", "prompt_id": "p6", "judge": "j", "len_a": 4, "len_b": 4},
]


def write(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".csv"])
def test_every_format_reads_the_same_battles(tmp_path, suffix):
    frame = read_battles(write(tmp_path / f"b{suffix}", ROWS))
    assert frame[["model_a", "model_b", "winner"]].values.tolist() == [
        [r["model_a"], r["model_b"], r["winner"]] for r in ROWS
    ]
    assert "prompt_id" in frame.columns  # extra fields of the harness's own records are kept
    assert np.allclose(fit_bt(frame).sort_index(), fit_bt(ROWS).sort_index())


def test_json_lines_in_a_json_file_and_several_files(tmp_path):
    p1 = tmp_path / "one.json"
    p1.write_text("\n".join(json.dumps(r) for r in ROWS[:3]))
    p2 = write(tmp_path / "two.jsonl", ROWS[3:])
    frame = read_battles([p1, p2])
    assert len(frame) == len(ROWS) and set(frame["battle_file"]) == {str(p1), str(p2)}


def test_aggregate_counts_by_unordered_pair():
    counts = aggregate(ROWS)
    assert counts.models == ["m1", "m2", "m3"]
    table = {(counts.models[i], counts.models[j]): (wi, t, wj)
             for i, j, wi, t, wj in zip(counts.i, counts.j, counts.wins_i, counts.ties, counts.wins_j)}
    assert table == {("m1", "m2"): (1, 0, 1), ("m1", "m3"): (1, 1, 0), ("m2", "m3"): (0, 1, 1)}
    assert counts.n_battles == len(ROWS)


def test_real_arena_hard_file(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"shared data folder {DATA} is absent")
    path = tmp_path / "arena.jsonl"
    shutil.copy(DATA / "arena" / "arena_hard_battles.jsonl", path)
    frame = read_battles(path)
    assert len(frame) == 2136 and frame["winner"].isin(["model_a", "model_b", "tie", "tie (bothbad)"]).all()
    counts = aggregate(frame)
    assert len(counts.models) == 5 and counts.n_battles == 2136


BAD = [
    ("unknown winner label", [dict(ROWS[0]), dict(ROWS[1], winner="draw")], r"row 2: column winner has unknown label 'draw'"),
    ("self battle", [dict(ROWS[0]), dict(ROWS[1], model_b="m2")], r"row 2: model 'm2' battles itself"),
    ("null model", [dict(ROWS[0]), dict(ROWS[1], model_a=None)], r"row 2: column model_a is missing"),
    ("NaN winner", [dict(ROWS[0]), dict(ROWS[1], winner=None)], r"row 2: column winner is missing"),
    ("empty model name", [dict(ROWS[0], model_b="  ")], r"row 1: column model_b is an empty string"),
    ("missing column", [{"model_a": "a", "model_b": "b"}], r"missing column\(s\) winner"),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
@pytest.mark.parametrize("case,rows,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_battles_give_one_line_errors_naming_file_row_and_column(tmp_path, capsys, suffix, case, rows, pattern):
    path = write(tmp_path / f"battles{suffix}", rows)
    with pytest.raises(HarnessError, match=pattern):
        read_battles(path)
    assert main(["rate", str(path), "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and err.startswith("harness: error: ")


@pytest.mark.parametrize("content", ["", "[]", "\n\n"])
def test_empty_files(tmp_path, capsys, content):
    for suffix in (".json", ".jsonl", ".csv"):
        path = tmp_path / f"empty{suffix}"
        path.write_text(content)
        assert main(["rate", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and ("empty" in err or "no battles" in err or "missing column" in err)


def test_bad_files(tmp_path, capsys):
    cases = {
        "broken.jsonl": '{"model_a": "a", "model_b": "b", "winner": "model_a"}\n{"model_a": oops}\n',
        "broken.json": '[{"model_a": "a"',
        "battles.txt": "model_a,model_b,winner\n",
    }
    expected = {"broken.jsonl": "line 2 is not valid JSON", "broken.json": "not valid JSON", "battles.txt": "unknown"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert main(["rate", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected[name] in err and str(path) in err
    assert main(["rate", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such battle file" in capsys.readouterr().err


def test_categorical_columns_aggregate_in_one_pass_to_the_same_counts(capsys):
    frame = pd.DataFrame(ROWS)
    cat = frame.astype({c: "category" for c in ("model_a", "model_b", "winner")})
    cat["model_a"] = cat["model_a"].cat.add_categories(["unused"])  # never battles: not a model
    cat["winner"] = cat["winner"].cat.add_categories(["bogus"])  # never used: not an error
    plain, fast = aggregate(frame), aggregate(cat)
    assert fast.models == plain.models == ["m1", "m2", "m3"]
    for field in ("i", "j", "wins_i", "ties", "wins_j"):
        assert np.array_equal(getattr(fast, field), getattr(plain, field))
    bad = cat.copy()
    bad.loc[3, "winner"] = "bogus"  # used now: the general path names the row
    with pytest.raises(HarnessError, match="row 4: column winner has unknown label 'bogus'"):
        aggregate(bad)
    selfie = cat.copy()
    selfie["model_b"] = selfie["model_b"].cat.add_categories(["m9"])
    selfie["model_a"] = selfie["model_a"].cat.add_categories(["m9"])
    selfie.loc[5, ["model_a", "model_b"]] = "m9"
    with pytest.raises(HarnessError, match="row 6: model 'm9' battles itself"):
        aggregate(selfie)
