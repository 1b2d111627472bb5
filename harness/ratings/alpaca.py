"""AlpacaEval metrics from native `annotations.json` files: win rate, its standard error, and the LC win rate.

An AlpacaEval annotations file is a JSON list of records with `instruction, output_1, generator_1` (the baseline),
`output_2, generator_2` (the model) and the judge's `preference` in [1, 2]: 1 = baseline wins, 2 = model wins, soft
values in between; exactly 1.5 (or 0, the old encoding) is a draw. From it, as AlpacaEval computes them:

- `win_rate` = 100 · mean(preference − 1) and `standard_error` = 100 · its standard error (ddof 1);
- `discrete_win_rate`: preferences rounded to a win or a loss (draws count half);
- `n_wins`, `n_wins_base`, `n_draws`, `n_total`; `avg_length` = int(mean characters of the model's outputs);
- `length_controlled_winrate`: per model against the baseline, a logistic GLM of the (soft) preference on
  `tanh(standardised length difference)`, the instruction difficulty and a bias, fitted by maximum likelihood;
  reported as 100 · mean over instructions of the prediction with the length term set to zero.

Instruction difficulty comes from a file (`index,instruction_difficulty` per instruction in annotation order, as
AlpacaEval publishes it) or, without one, is estimated jointly from the files given: a logistic model with a bias
and a length slope per model plus one difficulty per instruction (matched by instruction text) with a unit ridge
penalty. AlpacaEval estimated its difficulties over its whole leaderboard; from a handful of models the joint estimate
is rough (a warning says so), so pass the published difficulty file to compare with published numbers. AlpacaEval
also regularises its GLM with annotations of length-"gamed" baselines, which this does not, so LC lands within a few
points of the published figure rather than on it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from harness.errors import HarnessError, not_utf8

REQUIRED = ("preference", "output_1", "output_2")
DIFFICULTY_RIDGE = 1.0  # penalty on jointly estimated difficulties (unit-variance prior, logit units)


def read_annotations(path: str | Path, *, drop_missing: bool = False) -> pd.DataFrame:
    """Read and check one AlpacaEval annotations file.

    Args:
        path: the JSON file (a list of annotation records).
        drop_missing: drop records whose preference is null/NaN (AlpacaEval drops them) instead of failing.

    Returns:
        The annotations, rows in file order, with a float `preference` and `generator_1`/`generator_2` filled in
        (`baseline` and the file's stem when absent).
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such annotations file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8("annotations file", path, err) from None
    if not text.strip():
        raise HarnessError(f"{path}: the file is empty; expected a JSON list of AlpacaEval annotations")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HarnessError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HarnessError(f"{path}: expected a JSON list of annotation objects (AlpacaEval's annotations.json)")
    if not data:
        raise HarnessError(f"{path}: no annotations (empty list)")
    frame = pd.DataFrame.from_records(data)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise HarnessError(
            f"{path}: missing field(s) {', '.join(missing)}; AlpacaEval annotations need {', '.join(REQUIRED)}"
        )
    pref = pd.to_numeric(frame["preference"], errors="coerce").to_numpy(dtype=float)
    nonnum = np.isnan(pref) & frame["preference"].notna().to_numpy()
    if nonnum.any():
        row = int(np.flatnonzero(nonnum)[0])
        raise HarnessError(f"{path}: row {row + 1}: preference {data[row]['preference']!r} is not a number in [1, 2]")
    na = np.isnan(pref)
    if na.any() and not drop_missing:
        raise HarnessError(
            f"{path}: row {int(np.flatnonzero(na)[0]) + 1}: preference is missing (null/NaN) in {int(na.sum())} "
            "row(s); pass --drop-missing to leave them out as AlpacaEval does"
        )
    bad = ~na & ~(((pref >= 1) & (pref <= 2)) | (pref == 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise HarnessError(f"{path}: row {row + 1}: preference {pref[row]} is outside [1, 2] (0 or 1.5 = draw)")
    for col in ("output_1", "output_2"):
        if frame[col].map(lambda v: not isinstance(v, str)).any():
            row = int(np.flatnonzero(frame[col].map(lambda v: not isinstance(v, str)).to_numpy())[0])
            raise HarnessError(f"{path}: row {row + 1}: {col} is not a string (the generated output)")
    frame = frame.assign(preference=pref)
    if "generator_1" not in frame.columns:
        frame["generator_1"] = "baseline"
    if "generator_2" not in frame.columns:
        frame["generator_2"] = path.stem
    frame["_row"] = np.arange(len(frame))
    return frame[~na].reset_index(drop=True) if na.any() else frame


def winrate_metrics(preferences: Sequence[float] | np.ndarray) -> dict[str, float]:
    """AlpacaEval's head-to-head metrics from preferences in [1, 2] (0 or 1.5 = draw).

    Args:
        preferences: one judge preference per instruction.

    Returns:
        `win_rate, standard_error, n_wins, n_wins_base, n_draws, n_total, discrete_win_rate` (rates in percent).
    """
    p = np.asarray(preferences, dtype=float)
    p = np.where(p == 0, 1.5, p)
    y = p - 1.0
    n = len(y)
    draws = int(np.sum(p == 1.5))
    wins, wins_base = int(np.sum(y > 0.5)), int(np.sum(y < 0.5))
    return {
        "win_rate": 100.0 * float(y.mean()),
        "standard_error": 100.0 * float(y.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "n_wins": wins,
        "n_wins_base": wins_base,
        "n_draws": draws,
        "n_total": n,
        "discrete_win_rate": 100.0 * (wins + 0.5 * draws) / n,
    }


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression with soft labels y in [0, 1] (no intercept added)."""

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z)), x.T @ (0.5 * (1.0 + np.tanh(0.5 * z)) - y)

    res = optimize.minimize(f, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "maxiter": 10000})
    return res.x


def _length_feature(frame: pd.DataFrame) -> np.ndarray:
    # baseline length minus model length, standardised per model as AlpacaEval does
    delta = (frame["output_1"].str.len() - frame["output_2"].str.len()).to_numpy(dtype=float)
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)


def length_controlled_winrate(frame: pd.DataFrame, difficulty: np.ndarray) -> tuple[float, dict[str, float]]:
    """LC win rate of one model's annotations.

    Args:
        frame: one model's annotations (as `read_annotations` returns them).
        difficulty: instruction difficulty per row of `frame`.

    Returns:
        `(lc_win_rate_percent, glm_weights)` with weights for `length`, `difficulty`, `bias`.
    """
    y = np.where(frame["preference"].to_numpy() == 0, 1.5, frame["preference"].to_numpy()) - 1.0
    x = np.column_stack([_length_feature(frame), difficulty, np.ones(len(frame))])
    w = _logistic_fit(x, y)
    z = x[:, 1:] @ w[1:]  # the length term set to zero
    lc = 100.0 * float(np.mean(0.5 * (1.0 + np.tanh(0.5 * z))))
    return lc, {"length": float(w[0]), "difficulty": float(w[1]), "bias": float(w[2])}


def read_difficulty(path: str | Path) -> np.ndarray:
    """Read `index,instruction_difficulty` (AlpacaEval's file; index = position in annotation order)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such difficulty file")
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: the file is empty; expected columns index,instruction_difficulty")
    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError as err:
        raise not_utf8("difficulty file", path, err) from None
    except pd.errors.ParserError as err:
        raise HarnessError(f"{path}: cannot read as CSV ({str(err).splitlines()[0]})") from None
    if "instruction_difficulty" not in frame.columns:
        raise HarnessError(f"{path}: missing column instruction_difficulty (found: {', '.join(map(str, frame.columns))})")
    if "index" in frame.columns:
        frame = frame.set_index("index")
    elif frame.columns[0] != "instruction_difficulty":
        frame = frame.set_index(frame.columns[0])
    values = pd.to_numeric(frame["instruction_difficulty"], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
        raise HarnessError(f"{path}: row {row}: instruction_difficulty is not a number")
    index = frame.index.to_numpy()
    if not np.array_equal(np.sort(index.astype(np.int64)), np.arange(len(index))):
        raise HarnessError(f"{path}: index must be 0..{len(index) - 1}, one row per instruction in annotation order")
    return values.to_numpy(dtype=float)[np.argsort(index.astype(np.int64))]


def estimate_difficulty(frames: Sequence[pd.DataFrame], ridge: float = DIFFICULTY_RIDGE) -> list[np.ndarray]:
    """Estimate instruction difficulty jointly from several models' annotations.

    Fits logit P(model m wins on instruction i) = b_m + g_m · tanh(length diff) + d_i with a ridge penalty
    `ridge/2 · Σ d_i²`; instructions are matched by their text.

    Args:
        frames: one annotations frame per model.
        ridge: the penalty on the difficulties.

    Returns:
        The difficulty per row of each frame (centred).
    """
    keys = [f["instruction"].astype(str).to_numpy() if "instruction" in f.columns else f["_row"].astype(str).to_numpy()
            for f in frames]
    codes, uniq = pd.factorize(np.concatenate(keys))
    model = np.concatenate([np.full(len(f), k) for k, f in enumerate(frames)])
    t = np.concatenate([_length_feature(f) for f in frames])
    y = np.concatenate([np.where(f["preference"].to_numpy() == 0, 1.5, f["preference"].to_numpy()) - 1 for f in frames])
    m, n_i = len(frames), len(uniq)

    def f(p: np.ndarray) -> tuple[float, np.ndarray]:
        b, g, d = p[:m], p[m:2 * m], p[2 * m:]
        z = b[model] + g[model] * t + d[codes]
        r = 0.5 * (1.0 + np.tanh(0.5 * z)) - y
        val = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * d @ d)
        grad = np.concatenate([np.bincount(model, r, m), np.bincount(model, r * t, m), np.bincount(codes, r, n_i) + ridge * d])
        return val, grad

    res = optimize.minimize(f, np.zeros(2 * m + n_i), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-9, "maxiter": 10000})
    d = res.x[2 * m:]
    d = d - d.mean()
    out, start = [], 0
    for frame in frames:
        out.append(d[codes[start:start + len(frame)]])
        start += len(frame)
    return out


def alpaca_winrate(
    annotations: Iterable[str | Path | pd.DataFrame],
    *,
    difficulty: str | Path | np.ndarray | None = None,
    drop_missing: bool = False,
) -> pd.DataFrame:
    """AlpacaEval leaderboard rows from annotations files.

    Args:
        annotations: annotations files (or frames from `read_annotations`); a file holding several models
            (`generator_2` values) gives one row per model.
        difficulty: a difficulty file / array in annotation order; None estimates it jointly (see module docstring).
        drop_missing: leave out annotations without a preference instead of failing.

    Returns:
        One row per model, best win rate first: `model, baseline, win_rate, standard_error, n_wins, n_wins_base,
        n_draws, n_total, discrete_win_rate, avg_length, length_controlled_winrate`; `attrs["glm_weights"]` holds
        the GLM weights per model and `attrs["difficulty"]` where the difficulty came from.
    """
    frames: list[pd.DataFrame] = []
    for item in annotations:
        frame = item if isinstance(item, pd.DataFrame) else read_annotations(item, drop_missing=drop_missing)
        source = str(item) if not isinstance(item, pd.DataFrame) else "annotations"
        if "_row" not in frame.columns:
            frame = frame.assign(_row=np.arange(len(frame)))
        for _, part in frame.groupby("generator_2", sort=False):
            frames.append(part.reset_index(drop=True).assign(_source=source))
    if not frames:
        raise HarnessError("no annotations files given")
    if difficulty is None:
        if len(frames) < 10:
            warnings.warn(
                f"instruction difficulty estimated from {len(frames)} model(s) only; the LC win rate is rough — "
                "pass AlpacaEval's instruction difficulty file (--difficulty) to compare with published numbers",
                RuntimeWarning,
                stacklevel=2,
            )
        diffs, diff_source = estimate_difficulty(frames), f"estimated jointly from {len(frames)} model(s)"
    else:
        values = read_difficulty(difficulty) if not isinstance(difficulty, np.ndarray) else difficulty
        diffs = []
        for frame in frames:
            rows = frame["_row"].to_numpy()
            if rows.max() >= len(values):
                raise HarnessError(
                    f"{frame['_source'].iloc[0]}: has {rows.max() + 1} annotations but the difficulty file covers "
                    f"{len(values)} instructions; they must be in the same instruction order"
                )
            diffs.append(values[rows])
        diff_source = str(difficulty) if not isinstance(difficulty, np.ndarray) else "given"
    rows, weights = [], {}
    for frame, d in zip(frames, diffs):
        model = str(frame["generator_2"].iloc[0])
        row = {"model": model, "baseline": str(frame["generator_1"].iloc[0])}
        row.update(winrate_metrics(frame["preference"].to_numpy()))
        row["avg_length"] = int(frame["output_2"].str.len().mean())
        row["length_controlled_winrate"], weights[model] = length_controlled_winrate(frame, d)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("win_rate", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs.update({"glm_weights": weights, "difficulty": diff_source})
    return table
