"""AlpacaEval metrics from native `annotations.json` files: win rate, its standard error, and the LC win rate.

An AlpacaEval annotations file is a JSON list of records with `instruction, output_1, generator_1` (the baseline),
`output_2, generator_2` (the model) and the judge's `preference` in [1, 2]: 1 = baseline wins, 2 = model wins, soft
values in between; exactly 1.5 (or 0, the old encoding) is a draw. From it, as AlpacaEval computes them:

- `win_rate` = 100 · mean(preference − 1) and `standard_error` = 100 · its standard error (ddof 1);
- `discrete_win_rate`: preferences rounded to a win or a loss (draws count half);
- `n_wins`, `n_wins_base`, `n_draws`, `n_total`; `avg_length` = int(mean characters of the model's outputs);
- `length_controlled_winrate` and `lc_standard_error`: AlpacaEval's GLM `length_controlled_v1`, per model against
  the baseline: features tanh(standardised length difference), instruction difficulty and a bias; an L1-regularised
  logistic regression on the soft labels (scikit-learn's liblinear `LogisticRegressionCV`, C chosen by grouped
  5-fold cross-validation of the soft log loss), its training rows joined by those of the two length-gamed baselines
  at sample weight 0.1 each (their bias feature is 0: the baseline itself, shorter or longer). The LC is 100 · mean
  over instructions of the prediction at zero length difference; `lc_standard_error` is 100 · the standard error of
  those predictions, as AlpacaEval reports it.

Every annotation is matched to its difficulty by instruction text, never by row position, and rows are put in the
difficulty's instruction order before fitting, so a file's row order changes nothing; an instruction the difficulty
does not know is an error. The difficulty comes from a file — AlpacaEval's `index,instruction_difficulty` (index =
position in AlpacaEval's instruction order, whose texts come from the baseline's outputs file, `baseline_outputs`), or
one with an `instruction` column — or, without one, is estimated jointly from the files given: a logistic model with a
bias and a length slope per model plus one difficulty per instruction with a unit ridge penalty (rough from a handful
of models; a warning says so).

The gamed baselines' per-instruction annotations live on AlpacaEval's hub only; their outputs are public. A gamed
baseline is given as its outputs file with a constant preference (its published win rate; `--gamed FILE=WIN_RATE`)
or, for `gpt4_1106_preview_concise` / `_verbose`, without one: each preference is then what AlpacaEval's published
GLM weights for that baseline predict (their mean equals the published win rate to 0.05 points), which keeps how the
gamed verdicts vary with difficulty and length. README "Ratings calculator" gives how close each lands.
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
from scipy.special import expit

from harness.errors import HarnessError, not_utf8

REQUIRED = ("instruction", "preference", "output_1", "output_2")
DIFFICULTY_RIDGE = 1.0  # penalty on jointly estimated difficulties (unit-variance prior, logit units)
GAMED_WEIGHT = 0.1  # AlpacaEval's regularize_to_baseline_lambda 0.2, split over its two gamed baselines
CV_SPLITS = 5  # AlpacaEval's GroupKFold(n_splits=5)
GLM_SEED = 123  # AlpacaEval's random_state for liblinear
# AlpacaEval's published length_controlled_v1 weights (length, difficulty, bias) of the gamed baselines, judge
# weighted_alpaca_eval_gpt4_turbo against gpt4_1106_preview: github.com/tatsu-lab/alpaca_eval,
# src/alpaca_eval/metrics/weights/weighted_alpaca_eval_gpt4_turbo/length_controlled_v1/baseline_gpt4_1106_preview.csv
PUBLISHED_GAMED = {
    "gpt4_1106_preview_concise": (-1.6424856171097677, 0.6835779026468267, -0.3182055425894927),
    "gpt4_1106_preview_verbose": (-1.5835274219761557, 0.8334888457867451, 0.1923534665807022),
}
PUBLISHED_FOR = {"annotator": "weighted_alpaca_eval_gpt4_turbo", "generator_1": "gpt4_1106_preview"}


def _read_records(path: Path, kind: str) -> list[dict]:
    what = f"{kind} file"
    if not path.is_file():
        raise HarnessError(f"{path}: no such {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8(what, path, err) from None
    if not text.strip():
        raise HarnessError(f"{path}: the file is empty; expected a JSON list of AlpacaEval records")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HarnessError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HarnessError(f"{path}: expected a JSON list of {kind} objects (AlpacaEval's {kind} format)")
    if not data:
        raise HarnessError(f"{path}: no {kind} (empty list)")
    return data


def _check_strings(frame: pd.DataFrame, path: Path, columns: Sequence[str], what: str) -> None:
    for col in columns:
        bad = frame[col].map(lambda v: not isinstance(v, str)).to_numpy()
        if bad.any():
            raise HarnessError(f"{path}: row {int(np.flatnonzero(bad)[0]) + 1}: {col} is not a string ({what})")


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
    data = _read_records(path, "annotations")
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
    _check_strings(frame, path, ("instruction", "output_1", "output_2"), "the instruction and the generated outputs")
    frame = frame.assign(preference=pref)
    if "generator_1" not in frame.columns:
        frame["generator_1"] = "baseline"
    if "generator_2" not in frame.columns:
        frame["generator_2"] = path.stem
    frame["_row"] = np.arange(len(frame))
    return frame[~na].reset_index(drop=True) if na.any() else frame


def read_outputs(path: str | Path) -> pd.DataFrame:
    """Read an AlpacaEval model outputs file (`model_outputs.json`: records `instruction, output[, generator]`)."""
    path = Path(path)
    frame = pd.DataFrame.from_records(_read_records(path, "outputs"))
    missing = [c for c in ("instruction", "output") if c not in frame.columns]
    if missing:
        raise HarnessError(f"{path}: missing field(s) {', '.join(missing)}; AlpacaEval outputs need instruction, "
                           "output")
    _check_strings(frame, path, ("instruction", "output"), "AlpacaEval outputs")
    _unique(frame["instruction"], path)
    if "generator" not in frame.columns:
        frame["generator"] = path.stem
    return frame


def _unique(instructions: pd.Series, where: str | Path, model: str = "") -> None:
    dup = instructions.duplicated(keep=False).to_numpy()
    if dup.any():
        text = str(instructions.iloc[int(np.flatnonzero(dup)[0])])
        who = f" for model {model}" if model else ""
        raise HarnessError(f"{where}: instruction {text[:60]!r} appears {int((instructions == text).sum())} times"
                           f"{who}; AlpacaEval has one record per instruction")


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


def read_difficulty(path: str | Path, instructions: Sequence[str] | None = None) -> pd.Series:
    """Read an instruction difficulty file.

    Args:
        path: CSV with `instruction_difficulty` and either `instruction` (the text) or `index` (the position in
            AlpacaEval's instruction order: AlpacaEval's own file).
        instructions: AlpacaEval's instructions in order (e.g. the baseline's outputs), naming the rows of a file
            without an `instruction` column.

    Returns:
        The difficulty indexed by instruction text, in AlpacaEval's order.
    """
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
    values = pd.to_numeric(frame["instruction_difficulty"], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
        raise HarnessError(f"{path}: row {row}: instruction_difficulty is not a number")
    if "instruction" in frame.columns:
        text = frame["instruction"].astype(str)
        _unique(text, path)
        return pd.Series(values.to_numpy(dtype=float), index=pd.Index(text, name="instruction"))
    index_col = "index" if "index" in frame.columns else frame.columns[0]
    index = pd.to_numeric(frame[index_col], errors="coerce").to_numpy()
    if index_col == "instruction_difficulty" or not np.array_equal(np.sort(index), np.arange(len(index))):
        raise HarnessError(f"{path}: index must be 0..{len(index) - 1}, one row per instruction in AlpacaEval's order")
    if instructions is None:
        raise HarnessError(
            f"{path}: the difficulty rows name no instruction (columns {', '.join(map(str, frame.columns))}); pass "
            "the baseline's outputs in AlpacaEval's order (--baseline-outputs, e.g. model_outputs/gpt4_1106_preview"
            ".json) or a difficulty file with an instruction column"
        )
    if len(instructions) != len(index):
        raise HarnessError(f"{path}: {len(index)} difficulty rows but the baseline outputs name {len(instructions)} "
                           "instructions; they must be AlpacaEval's instructions in the same order")
    order = np.argsort(index.astype(np.int64))
    return pd.Series(values.to_numpy(dtype=float)[order], index=pd.Index(list(instructions), name="instruction"))


def estimate_difficulty(frames: Sequence[pd.DataFrame], ridge: float = DIFFICULTY_RIDGE) -> pd.Series:
    """Estimate instruction difficulty jointly from several models' annotations.

    Fits logit P(model m wins on instruction i) = b_m + g_m · tanh(length diff) + d_i with a ridge penalty
    `ridge/2 · Σ d_i²`; instructions are matched by their text.

    Args:
        frames: one annotations frame per model.
        ridge: the penalty on the difficulties.

    Returns:
        The difficulty (centred) indexed by instruction text, sorted by text.
    """
    codes, uniq = pd.factorize(np.concatenate([f["instruction"].to_numpy() for f in frames]), sort=True)
    model = np.concatenate([np.full(len(f), k) for k, f in enumerate(frames)])
    t = np.concatenate([_length_feature(_delta(f)) for f in frames])
    y = np.concatenate([_soft_label(f["preference"]) for f in frames])
    m, n_i = len(frames), len(uniq)

    def f(p: np.ndarray) -> tuple[float, np.ndarray]:
        b, g, d = p[:m], p[m:2 * m], p[2 * m:]
        z = b[model] + g[model] * t + d[codes]
        r = expit(z) - y
        val = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * d @ d)
        grad = np.concatenate([np.bincount(model, r, m), np.bincount(model, r * t, m), np.bincount(codes, r, n_i) + ridge * d])
        return val, grad

    res = optimize.minimize(f, np.zeros(2 * m + n_i), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-9, "maxiter": 10000})
    d = res.x[2 * m:]
    return pd.Series(d - d.mean(), index=pd.Index(uniq, name="instruction"))


def _soft_label(preference: pd.Series | np.ndarray) -> np.ndarray:
    p = np.asarray(preference, dtype=float)
    return np.where(p == 0, 1.5, p) - 1.0


def _length_feature(delta: np.ndarray) -> np.ndarray:
    # tanh of the baseline's length minus the model's, standardised over the model's rows, as AlpacaEval does
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)


def _delta(frame: pd.DataFrame) -> np.ndarray:
    return frame["output_1"].str.len().to_numpy(dtype=float) - frame["output_2"].str.len().to_numpy(dtype=float)


def _align(frame: pd.DataFrame, difficulty: pd.Series, where: str) -> pd.DataFrame:
    """`frame` in the difficulty's instruction order with its `difficulty` column; unknown instructions fail."""
    model = str(frame["generator_2"].iloc[0]) if "generator_2" in frame.columns else ""
    _unique(frame["instruction"], where, model)
    position = difficulty.index.get_indexer(frame["instruction"])
    unknown = position < 0
    if unknown.any():
        first = int(np.flatnonzero(unknown)[0])
        row = int(frame["_row"].iloc[first]) if "_row" in frame.columns else first
        raise HarnessError(
            f"{where}: {int(unknown.sum())} of {len(frame)} instructions are not in the difficulty (first: row "
            f"{row + 1}, {str(frame['instruction'].iloc[first])[:60]!r}); records are matched to the difficulty by "
            "instruction text"
        )
    out = frame.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    return out.assign(difficulty=difficulty.to_numpy()[np.sort(position)])


def gamed_rows(specs: Iterable, difficulty: pd.Series, baseline_length: pd.Series, *, judged: dict[str, set]
               ) -> pd.DataFrame:
    """The gamed baselines' GLM training rows (`length, difficulty, label, source`), one per instruction each.

    Args:
        specs: each a gamed baseline's outputs file, or `(file, win rate in percent or None)`; with a win rate its
            preference is that constant, else what AlpacaEval's published weights for it predict.
        difficulty: difficulty by instruction text.
        baseline_length: the baseline's output length (characters) by instruction text.
        judged: the annotations' `annotator` and `generator_1` values (published weights hold for AlpacaEval's).
    """
    parts = []
    for spec in specs:
        path, rate = (Path(spec[0]), spec[1]) if isinstance(spec, tuple) else (Path(spec), None)
        outputs = read_outputs(path)
        generator = str(outputs["generator"].iloc[0])
        if rate is not None and not 0 <= rate <= 100:
            raise HarnessError(f"--gamed {path}={rate:g}: the win rate must be in [0, 100] (percent)")
        if rate is None:
            if generator not in PUBLISHED_GAMED:
                raise HarnessError(f"--gamed {path}: no published GLM weights for {generator!r} (known: "
                                   f"{', '.join(PUBLISHED_GAMED)}); give {path}=WIN_RATE, its published win rate")
            for key, value in PUBLISHED_FOR.items():
                if judged.get(key, {value}) != {value}:
                    raise HarnessError(f"--gamed {path}: AlpacaEval's published weights are for {key} {value}, the "
                                       f"annotations have {', '.join(sorted(map(str, judged[key])))}; give "
                                       f"{path}=WIN_RATE instead")
        frame = _align(outputs.rename(columns={"generator": "generator_2"}), difficulty, str(path))
        base = baseline_length.reindex(frame["instruction"]).to_numpy()
        if np.isnan(base).any():
            raise HarnessError(f"--gamed {path}: no baseline output for {int(np.isnan(base).sum())} of its "
                               "instructions; pass the baseline's outputs (--baseline-outputs)")
        length = _length_feature(base - frame["output"].str.len().to_numpy(dtype=float))
        if rate is None:
            w_len, w_diff, w_bias = PUBLISHED_GAMED[generator]
            label = expit(w_len * length + w_diff * frame["difficulty"].to_numpy() + w_bias)
        else:
            label = np.full(len(frame), rate / 100.0)
        parts.append(pd.DataFrame({"length": length, "difficulty": frame["difficulty"], "label": label,
                                   "source": f"{generator} ({'published GLM' if rate is None else f'{rate:g}%'})"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["length", "difficulty", "label"])


def _soft_log_loss(y_true, y_pred, true_prob, true_sample_weight=None) -> float:
    # sklearn scores hard labels: each row is duplicated as (y=1, weight p) and (y=0, weight 1-p), as AlpacaEval does
    target = np.where(y_true == 1, true_prob, 1 - true_prob)
    y_pred = np.clip(y_pred, 1e-15, 1 - 1e-15)
    loss = target * np.log(y_pred) + (1 - target) * np.log(1 - y_pred)
    return -float(np.mean(loss if true_sample_weight is None else loss * true_sample_weight))


def fit_glm(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """AlpacaEval's `fit_LogisticRegressionCV` on soft labels: L1 logistic regression without intercept, C chosen by
    grouped 5-fold cross-validation of the weighted soft log loss, then refitted on all rows.

    Args:
        x: features, one row per annotation.
        y: soft labels in [0, 1].
        weight: sample weights.

    Returns:
        `(coefficients, C)`.
    """
    import sklearn
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(y)
    xd, yd = np.vstack([x, x]), np.r_[np.ones(n), np.zeros(n)]
    prob, wd, groups = np.r_[y, 1.0 - y], np.r_[weight, weight], np.r_[np.arange(n), np.arange(n)]
    # a label of exactly 0 or 1 leaves its twin at weight 0, which liblinear drops; a fold left with one class then
    # prints warnings from C. A weight of 1e-12 keeps both classes at no cost to the fit.
    fit_weight = np.maximum(prob, 1e-12) * wd
    common = dict(l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=GLM_SEED)
    if n < 2:  # nothing to cross-validate: AlpacaEval's n_splits=0 branch
        model = LogisticRegression(C=100.0, **common).fit(xd, yd, sample_weight=fit_weight)
        return model.coef_[0], 100.0
    common["l1_ratios"] = (common.pop("l1_ratio"),)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(_soft_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(min(CV_SPLITS, n)), scoring=scorer, use_legacy_attributes=False,
                                     **common)
        model.set_fit_request(sample_weight=True)
        model.fit(xd, yd, sample_weight=fit_weight, groups=groups, true_sample_weight=wd, true_prob=prob)
    return model.coef_[0], float(np.ravel(model.C_)[0])


def length_controlled_winrate(frame: pd.DataFrame, gamed: pd.DataFrame | None = None
                              ) -> tuple[float, float, dict[str, float]]:
    """LC win rate of one model's annotations (AlpacaEval's `length_controlled_v1`).

    Args:
        frame: one model's annotations with a `difficulty` column, rows in the difficulty's order.
        gamed: the gamed baselines' rows (`gamed_rows`), or None for a fit on the model's rows alone.

    Returns:
        `(lc_win_rate, lc_standard_error, glm)`, percent; `glm` holds the weights `length`, `difficulty`, `bias`
        and the chosen `C`.
    """
    d = frame["difficulty"].to_numpy(dtype=float)
    x = np.column_stack([_length_feature(_delta(frame)), d, np.ones(len(frame))])
    y, w = _soft_label(frame["preference"]), np.ones(len(frame))
    if gamed is not None and len(gamed):
        x = np.vstack([np.column_stack([gamed["length"], gamed["difficulty"], np.zeros(len(gamed))]), x])
        y, w = np.r_[gamed["label"].to_numpy(float), y], np.r_[np.full(len(gamed), GAMED_WEIGHT), w]
    coef, c = fit_glm(x, y, w)
    pred = expit(coef[1] * d + coef[2])  # the length term set to zero
    se = float(pred.std(ddof=1) / math.sqrt(len(pred))) if len(pred) > 1 else float("nan")
    glm = {"length": float(coef[0]), "difficulty": float(coef[1]), "bias": float(coef[2]), "C": c}
    return 100.0 * float(pred.mean()), 100.0 * se, glm


def alpaca_winrate(
    annotations: Iterable[str | Path | pd.DataFrame],
    *,
    difficulty: str | Path | pd.Series | None = None,
    baseline_outputs: str | Path | None = None,
    gamed: Iterable = (),
    drop_missing: bool = False,
) -> pd.DataFrame:
    """AlpacaEval leaderboard rows from annotations files.

    Args:
        annotations: annotations files (or frames from `read_annotations`); a file holding several models
            (`generator_2` values) gives one row per model.
        difficulty: a difficulty file (see `read_difficulty`) or a Series by instruction text; None estimates it
            jointly (see module docstring).
        baseline_outputs: the baseline's AlpacaEval outputs: AlpacaEval's instruction order (naming the rows of an
            `index,instruction_difficulty` file) and the baseline's lengths for the gamed rows.
        gamed: the length-gamed baselines, an outputs file or `(file, win rate)` each (see `gamed_rows`); none: no
            gamed rows.
        drop_missing: leave out annotations without a preference instead of failing.

    Returns:
        One row per model, best win rate first: `model, baseline, win_rate, standard_error, n_wins, n_wins_base,
        n_draws, n_total, discrete_win_rate, avg_length, length_controlled_winrate, lc_standard_error`;
        `attrs["glm_weights"]` holds the GLM per model, `attrs["difficulty"]` and `attrs["gamed"]` the sources.
    """
    frames: list[pd.DataFrame] = []
    for item in annotations:
        frame = item if isinstance(item, pd.DataFrame) else read_annotations(item, drop_missing=drop_missing)
        source = str(item) if not isinstance(item, pd.DataFrame) else "annotations"
        if "instruction" not in frame.columns:
            raise HarnessError(f"{source}: missing field instruction; annotations are matched by instruction text")
        frame = frame.assign(instruction=frame["instruction"].astype(str))
        for _, part in frame.groupby("generator_2", sort=False):
            frames.append(part.reset_index(drop=True).assign(_source=source))
    if not frames:
        raise HarnessError("no annotations files given")
    reference = read_outputs(baseline_outputs) if baseline_outputs is not None else None
    if reference is not None:
        baselines = {str(g) for f in frames for g in f["generator_1"].unique()}
        if "generator" in reference.columns and baselines != {str(reference["generator"].iloc[0])}:
            raise HarnessError(f"{baseline_outputs}: outputs of {reference['generator'].iloc[0]!r}, but the "
                               f"annotations' baseline is {', '.join(sorted(baselines))}")
    if difficulty is None:
        if len(frames) < 10:
            warnings.warn(
                f"instruction difficulty estimated from {len(frames)} model(s) only; the LC win rate is rough — "
                "pass AlpacaEval's instruction difficulty file (--difficulty) to compare with published numbers",
                RuntimeWarning,
                stacklevel=2,
            )
        frames = [f.sort_values(["instruction", "preference"], kind="stable") for f in frames]
        diff, diff_source = estimate_difficulty(frames), f"estimated jointly from {len(frames)} model(s)"
    elif isinstance(difficulty, pd.Series):
        diff, diff_source = difficulty, "given"
    else:
        names = None if reference is None else reference["instruction"].tolist()
        diff, diff_source = read_difficulty(difficulty, names), str(difficulty)
    if difficulty is not None:
        frames = [_align(f, diff, str(f["_source"].iloc[0])) for f in frames]
    else:
        frames = [f.assign(difficulty=diff.reindex(f["instruction"]).to_numpy()) for f in frames]
    gamed = list(gamed)
    gamed_frame = None
    if gamed:
        if len({str(g) for f in frames for g in f["generator_1"].unique()}) > 1:
            raise HarnessError("--gamed: the annotations have several baselines; gamed baselines regularise one")
        if reference is not None:
            lengths = reference.set_index("instruction")["output"].str.len().astype(float)
        else:  # the baseline's outputs as the annotations show them
            base = pd.concat([f[["instruction", "output_1"]] for f in frames]).drop_duplicates("instruction")
            lengths = base.set_index("instruction")["output_1"].str.len().astype(float)
        judged = {k: {str(v) for f in frames for v in f[k].unique()} for k in PUBLISHED_FOR
                  if all(k in f.columns for f in frames)}
        gamed_frame = gamed_rows(gamed, diff, lengths, judged=judged)
    rows, weights = [], {}
    for frame in frames:
        model = str(frame["generator_2"].iloc[0])
        row = {"model": model, "baseline": str(frame["generator_1"].iloc[0])}
        row.update(winrate_metrics(frame["preference"].to_numpy()))
        row["avg_length"] = int(frame["output_2"].str.len().mean())
        lc, lc_se, weights[model] = length_controlled_winrate(frame, gamed_frame)
        row.update(length_controlled_winrate=lc, lc_standard_error=lc_se)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("win_rate", ascending=False, kind="stable").reset_index(drop=True)
    gamed_source = ", ".join(gamed_frame["source"].unique()) if gamed_frame is not None else "none"
    table.attrs.update({"glm_weights": weights, "difficulty": diff_source, "gamed": gamed_source})
    return table
