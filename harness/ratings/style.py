"""Style control: Bradley-Terry with style covariates, giving style-controlled ratings next to the raw ones.

Judges and voters favour longer, more formatted answers. Following Chatbot Arena's style control, each battle gets
covariates for the difference in response style, and the logit becomes `θ_a − θ_b + β·f`; the θ are then ratings
"at equal style". For each style element the covariate is `(x_a − x_b) / (x_a + x_b + 1)`, standardised over the
battles (mean 0, standard deviation 1).

Where the metadata comes from (per battle; the first form found wins, per element):

| element  | flat columns                         | Chatbot Arena `conv_metadata` keys                      |
|----------|--------------------------------------|---------------------------------------------------------|
| length   | `len_a`, `len_b` (required)          | `sum_assistant_a_tokens`, `sum_assistant_b_tokens`      |
| header   | `header_count_a`, `header_count_b`   | `header_count_a`, `header_count_b` (int or {h1: n, …})  |
| list     | `list_count_a`, `list_count_b`       | `list_count_a`, `list_count_b` (int or {ordered: n, …}) |
| bold     | `bold_count_a`, `bold_count_b`       | `bold_count_a`, `bold_count_b` (int or {"**": n, …})    |

Lengths may be characters or tokens (the covariate is a ratio). Markdown counts are optional; a constant covariate
is dropped with a warning. Bootstrap rounds resample battles with Poisson(1) weights and refit by the same chord-Newton
steps as `harness.ratings.intervals`; their cost grows with the number of battles (no aggregation is possible).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from harness.errors import HarnessError
from harness.ratings.battles import BattlesLike, aggregate_codes, as_battles, encode, locate
from harness.ratings.intervals import FALLBACK_L2, BootstrapResult, chord_fit, run_chunks, summarise
from harness.ratings.bt import (
    NotIdentifiableError,
    _regularised,
    anchor_shift,
    check_identifiable,
    hessian,
    newton,
    single_threaded_blas,
    to_elo,
)

FLAT_COLUMNS = {
    "length": ("len_a", "len_b"),
    "header": ("header_count_a", "header_count_b"),
    "list": ("list_count_a", "list_count_b"),
    "bold": ("bold_count_a", "bold_count_b"),
}
ARENA_KEYS = {
    "length": ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    "header": ("header_count_a", "header_count_b"),
    "list": ("list_count_a", "list_count_b"),
    "bold": ("bold_count_a", "bold_count_b"),
}


@dataclass
class StyleFit:
    """Style-controlled ratings.

    Attributes:
        ratings: ratings at equal style, indexed by model, highest first.
        coefficients: rating points per standard deviation of each style covariate (positive = the judge prefers
            the side with more of it).
        features: the covariates used, in order.
    """

    ratings: pd.Series
    coefficients: pd.Series
    features: list[str]


def _total(value) -> float:
    """A count, or the sum of a dict of counts (keys missing in some rows may come back as None: they count 0)."""
    try:
        if isinstance(value, Mapping):
            return float(sum(v for v in value.values() if v is not None))
        return float("nan") if value is None else float(value)
    except (TypeError, ValueError):
        return float("nan")


def _raw_element(frame: pd.DataFrame, element: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    col_a, col_b = FLAT_COLUMNS[element]
    if col_a in frame.columns and col_b in frame.columns:
        values = []
        for col in (col_a, col_b):
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(x) | (x < 0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise HarnessError(
                    f"{locate(frame, row, source)}: column {col} is {frame[col].iloc[row]!r}; style control needs a "
                    "non-negative number in every battle"
                )
            values.append(x)
        return values[0], values[1]
    if "conv_metadata" in frame.columns:
        key_a, key_b = ARENA_KEYS[element]
        meta = frame["conv_metadata"].tolist()
        if not all(isinstance(m, Mapping) and key_a in m and key_b in m for m in meta):
            if element == "length":
                bad = next(k for k, m in enumerate(meta) if not (isinstance(m, Mapping) and key_a in m and key_b in m))
                raise HarnessError(
                    f"{locate(frame, bad, source)}: column conv_metadata lacks {key_a}/{key_b}; style control needs them "
                    "(or flat len_a, len_b columns) in every battle"
                )
            return None
        a = np.array([_total(m[key_a]) for m in meta])
        b = np.array([_total(m[key_b]) for m in meta])
        bad = ~np.isfinite(a) | ~np.isfinite(b) | (a < 0) | (b < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise HarnessError(
                f"{locate(frame, row, source)}: conv_metadata {key_a}/{key_b} must be non-negative numbers"
            )
        return a, b
    return None


def style_features(battles: BattlesLike, source: str = "battles") -> pd.DataFrame:
    """Standardised style covariates per battle.

    Args:
        battles: battles with style metadata (see the module docstring).
        source: how to name the input in error messages.

    Returns:
        One column per available style element (`length` always), one row per battle.
    """
    frame = as_battles(battles)
    if "battle_file" in frame.columns:
        source = ", ".join(map(str, frame["battle_file"].unique()))
    out = {}
    for element in FLAT_COLUMNS:
        raw = _raw_element(frame, element, source)
        if raw is None:
            if element == "length":
                raise HarnessError(
                    f"{source}: style control needs response lengths: columns len_a and len_b, or Chatbot Arena's "
                    "conv_metadata with sum_assistant_a_tokens and sum_assistant_b_tokens"
                )
            continue
        a, b = raw
        diff = (a - b) / (a + b + 1.0)
        sd = diff.std()
        if not sd > 0:
            warnings.warn(f"style covariate {element!r} is constant over the battles; it is left out", RuntimeWarning,
                          stacklevel=2)
            continue
        out[element] = (diff - diff.mean()) / sd
    if not out:
        raise HarnessError(f"{source}: every style covariate is constant; there is no style to control for")
    return pd.DataFrame(out)


def _design(a: np.ndarray, b: np.ndarray, features: np.ndarray, m: int) -> sparse.csr_matrix:
    rows = len(a)
    r = np.arange(rows)
    inc = sparse.csr_matrix(
        (np.concatenate([np.ones(rows), -np.ones(rows)]), (np.concatenate([r, r]), np.concatenate([a, b]))),
        shape=(rows, m),
    )
    return sparse.hstack([inc, sparse.csr_matrix(features)], format="csr")


def _prepare(battles: BattlesLike, l2: float):
    frame = as_battles(battles)
    feats = style_features(frame)
    models, a, b, outcome = encode(frame)
    if l2 == 0:
        check_identifiable(aggregate_codes(models, a, b, outcome))
    return models, a, b, outcome / 2.0, feats


def fit_style_bt(
    battles: BattlesLike,
    *,
    anchor: Mapping[str, float] | None = None,
    l2: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> StyleFit:
    """Style-controlled Bradley-Terry ratings on the Elo scale.

    Args:
        battles: battles with style metadata.
        anchor, l2, scale, base, init: as for `harness.ratings.bt.fit_bt` (the penalty applies to the ratings only).

    Returns:
        A `StyleFit`.
    """
    models, a, b, score, feats = _prepare(battles, l2)
    m = len(models)
    with single_threaded_blas():
        x, _ = newton(a, b, score, np.ones(len(a)), n_models=m, features=feats.to_numpy(), l2=l2)
    ratings = anchor_shift(to_elo(x[:m], scale=scale, base=base, init=init), models, anchor)
    coef = pd.Series(x[m:] * scale / math.log(base), index=list(feats.columns), name="rating_points_per_sd")
    return StyleFit(pd.Series(ratings, index=models, name="rating").sort_values(ascending=False), coef,
                    list(feats.columns))


def style_bootstrap(
    battles: BattlesLike,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    anchor: Mapping[str, float] | None = None,
    l2: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    threads: int | None = None,
) -> BootstrapResult:
    """Style-controlled ratings with percentile bootstrap intervals (battles resampled with Poisson(1) weights).

    Args:
        battles: battles with style metadata.
        rounds, seed, level: as for `harness.ratings.intervals.bootstrap`.
        anchor, l2, scale, base, init: as for `fit_style_bt`.
        threads: worker threads (results do not depend on it).

    Returns:
        A `BootstrapResult`; `coefficients` holds the style coefficients (rating points per SD).
    """
    if not 0 < level < 1:
        raise HarnessError(f"confidence level must lie strictly between 0 and 1, got {level}")
    if rounds < 1:
        raise HarnessError(f"bootstrap rounds must be at least 1, got {rounds}")
    models, a, b, score, feats = _prepare(battles, l2)
    with single_threaded_blas():
        return _style_bootstrap(models, a, b, score, feats, rounds, seed, level, anchor, l2, scale, base, init, threads)


def _style_bootstrap(
    models: list[str], a: np.ndarray, b: np.ndarray, score: np.ndarray, feats: pd.DataFrame, rounds: int, seed: int,
    level: float, anchor: Mapping[str, float] | None, l2: float, scale: float, base: float, init: float,
    threads: int | None,
) -> BootstrapResult:
    """`style_bootstrap` on encoded battles, without the BLAS thread limit."""
    m, f = len(models), feats.to_numpy()
    ones = np.ones(len(a))
    x0, _ = newton(a, b, score, ones, n_models=m, features=f, l2=l2)
    h_inv = np.linalg.inv(_regularised(hessian(x0, a, b, score, ones, n_models=m, features=f, l2=l2), m, l2))
    design = _design(a, b, f, m)
    design_t = design.T.tocsr()
    chunk = int(max(1, min(100, 2_000_000 // len(a))))
    sizes = [min(chunk, rounds - s) for s in range(0, rounds, chunk)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))

    def run(k: int):
        w = np.random.default_rng(seeds[k]).poisson(1.0, size=(len(a), sizes[k])).astype(np.float64)
        x, ok = chord_fit(x0, h_inv, design, design_t, w * score[:, None], w, l2=l2, n_models=m, tol=1e-6)
        for r in np.flatnonzero(~ok):  # rare: refit exactly, with the weak fallback penalty if needed
            keep = w[:, r] > 0
            try:
                if l2 == 0:
                    check_identifiable(aggregate_codes(models, a[keep], b[keep], np.round(2 * score[keep]).astype(int)))
                pen = l2
            except NotIdentifiableError:
                pen = FALLBACK_L2
            x[:, r], _ = newton(a[keep], b[keep], w[keep, r] * score[keep], w[keep, r], n_models=m,
                                features=f[keep], l2=pen, start=x0)
        return x.T

    samples_x = np.concatenate(run_chunks(run, sizes, threads))
    point = anchor_shift(to_elo(x0[:m], scale=scale, base=base, init=init), models, anchor)
    samples = anchor_shift(to_elo(samples_x[:, :m], scale=scale, base=base, init=init), models, anchor)
    return summarise(
        models, point, samples, level=level, seed=seed,
        coefficients=pd.Series(x0[m:] * scale / math.log(base), index=list(feats.columns), name="rating_points_per_sd"),
        meta={"resampling": "poisson (per battle)", "scale": scale, "base": base, "init": init, "l2": l2},
    )
