"""Style control: recovering ratings at equal style, metadata formats, intervals, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.ratings import fit_bt, fit_style_bt, style_bootstrap, style_features

ELO_PER_NAT = 400 / math.log(10)


def styled_battles(n: int = 20000, seed: int = 0, beta: float = 0.8) -> tuple[pd.DataFrame, np.ndarray]:
    """Weaker models write longer answers; the judge likes length (beta per SD of the length covariate)."""
    rng = np.random.default_rng(seed)
    m = 5
    true = np.linspace(-1.0, 1.0, m)  # natural units
    verbosity = np.linspace(1.6, 0.6, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    len_a = rng.lognormal(6, 0.4, n) * verbosity[a]
    len_b = rng.lognormal(6, 0.4, n) * verbosity[b]
    headers_a, headers_b = rng.poisson(2, n), rng.poisson(2, n)
    diff = (len_a - len_b) / (len_a + len_b + 1)
    logit = true[a] - true[b] + beta * (diff - diff.mean()) / diff.std()
    win = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({
        "model_a": [f"m{k}" for k in a], "model_b": [f"m{k}" for k in b],
        "winner": np.where(win, "model_a", "model_b"),
        "len_a": len_a, "len_b": len_b, "header_count_a": headers_a, "header_count_b": headers_b,
    })
    return frame, 1000 + ELO_PER_NAT * (true - true.mean())


def test_style_control_recovers_ratings_at_equal_style():
    frame, truth = styled_battles()
    truth = pd.Series(truth, index=[f"m{k}" for k in range(5)])
    raw = fit_bt(frame)
    styled = fit_style_bt(frame)
    raw_err = np.abs(raw.sort_index() - truth).max()
    style_err = np.abs(styled.ratings.sort_index() - truth).max()
    assert raw_err > 40  # length bias compresses the raw ratings
    assert style_err < 15
    assert styled.features == ["length", "header"]
    assert styled.coefficients["length"] == pytest.approx(0.8 * ELO_PER_NAT, rel=0.15)
    assert abs(styled.coefficients["header"]) < 15  # no real effect


def test_conv_metadata_gives_the_same_fit():
    frame, _ = styled_battles(3000, seed=1)
    arena = frame[["model_a", "model_b", "winner"]].copy()
    arena["conv_metadata"] = [
        {"sum_assistant_a_tokens": la, "sum_assistant_b_tokens": lb,
         "header_count_a": {"h1": int(ha), "h2": 0}, "header_count_b": {"h1": int(hb)}}
        for la, lb, ha, hb in zip(frame.len_a, frame.len_b, frame.header_count_a, frame.header_count_b)
    ]
    flat, nested = fit_style_bt(frame), fit_style_bt(arena)
    assert np.allclose(flat.ratings.sort_index(), nested.ratings.sort_index())
    assert np.allclose(style_features(frame), style_features(arena))


def test_style_bootstrap_is_seeded_and_brackets_the_fit():
    frame, _ = styled_battles(4000, seed=2)
    a = style_bootstrap(frame, rounds=120, seed=3)
    b = style_bootstrap(frame, rounds=120, seed=3, threads=1)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert (a.ci_low < a.ratings).all() and (a.ratings < a.ci_high).all()
    assert np.allclose(a.ratings.sort_index(), fit_style_bt(frame).ratings.sort_index())
    assert a.coefficients is not None and "length" in a.coefficients


def test_missing_or_bad_metadata():
    frame, _ = styled_battles(200, seed=3)
    with pytest.raises(HarnessError, match="style control needs response lengths"):
        fit_style_bt(frame.drop(columns=["len_a", "len_b"]))
    broken = frame.copy()
    broken.loc[7, "len_b"] = np.nan
    with pytest.raises(HarnessError, match=r"row 8: column len_b"):
        fit_style_bt(broken)


def test_cli_rate_style(tmp_path, capsys):
    frame, _ = styled_battles(2000, seed=4)
    path = tmp_path / "battles.jsonl"
    frame.to_json(path, orient="records", lines=True)
    assert main(["rate", str(path), "--style", "--bootstrap", "50", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"style_rating", "style_ci_low", "style_ci_high", "style_rank"} <= set(rows[0])
    path2 = tmp_path / "plain.jsonl"
    frame[["model_a", "model_b", "winner"]].to_json(path2, orient="records", lines=True)
    assert main(["rate", str(path2), "--style"]) == 2
    assert "style control needs response lengths" in capsys.readouterr().err


def test_chatbot_arena_jsonl_with_uneven_metadata_and_errors_name_the_file(tmp_path, capsys):
    rng = np.random.default_rng(5)
    rows = []
    for k in range(300):
        a, b = rng.choice(["x", "y", "z"], 2, replace=False)
        rows.append({
            "model_a": a, "model_b": b, "winner": str(rng.choice(["model_a", "model_b", "tie"])),
            "conv_metadata": {
                "sum_assistant_a_tokens": int(rng.integers(50, 500)), "sum_assistant_b_tokens": int(rng.integers(50, 500)),
                # keys differ between rows, as in Chatbot Arena's data
                "header_count_a": {"h1": int(rng.integers(0, 3))} if k % 2 else {"h2": int(rng.integers(0, 3))},
                "header_count_b": {"h3": int(rng.integers(0, 3))},
            },
        })
    good = tmp_path / "arena.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["rate", str(good), "--style", "--bootstrap", "30", "--format", "json"]) == 0
    assert {"style_rating", "style_rank"} <= set(json.loads(capsys.readouterr().out)[0])
    rows[4]["conv_metadata"]["sum_assistant_b_tokens"] = -1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["rate", str(good), str(bad), "--style", "--bootstrap", "30"]) == 2
    assert f"{bad}: row 5: conv_metadata" in capsys.readouterr().err
