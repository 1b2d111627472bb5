"""Bootstrap confidence intervals for Bradley-Terry ratings, and CI-aware ranks.

Resampling: every battle gets an independent Poisson(1) weight (the Poisson bootstrap), which on aggregated counts
means each unique (pair, outcome) count `c` is redrawn as Poisson(c) — exact, and cheap because it works on the
unique outcomes rather than the battles (counts shared by many cells are drawn by guide-table inversion, see
`_Resampler`). The multinomial bootstrap (Chatbot Arena's) fixes the total at the observed
number of battles; the Poisson one lets it vary by about ±√n. Bradley-Terry ratings do not change when all counts are
scaled together, so the two give the same intervals up to O(1/n).

Refits: each round starts from the full-data ratings and takes Newton steps with the full-data Hessian (a chord
method), vectorised over rounds; the fixed point is each round's exact maximum-likelihood fit, reached to `tol`.
Rounds that do not converge that way are refit one by one with full Newton steps. A round whose resample leaves a
model undefeated (or never winning) has no finite maximum; such rounds are fit with a weak L2 penalty
(`FALLBACK_L2`) and counted in a warning that names the models.

Intervals are percentile intervals at the stated level (default 95%); so are the rank intervals (`rank_quantiles`:
each round ranks the models, and a model's interval is the spread of its rank over the rounds). Rounds run in fixed
chunks, each with its own seed spawned from `seed`, so results do not depend on the number of threads.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit

from harness.errors import HarnessError
from harness.ratings.battles import BattlesLike, PairCounts, aggregate
from harness.ratings.bt import (
    NotIdentifiableError,
    _regularised,
    anchor_shift,
    fit_counts,
    hessian,
    single_threaded_blas,
    to_elo,
)

FALLBACK_L2 = 1e-3  # penalty for resampled rounds without a finite maximum (documented above)
CHUNK = 100  # rounds per vectorised chunk (and per seed)


@dataclass
class BootstrapResult:
    """Ratings with bootstrap intervals.

    Attributes:
        ratings: full-data ratings, indexed by model, highest first.
        samples: one row per round, one column per model (same order as `ratings`).
        ci_low, ci_high: percentile interval bounds per model.
        rank: CI-aware rank: 1 + the number of models whose lower bound is above this model's upper bound.
        rank_ci_low, rank_ci_high: percentile interval of the model's rank over the rounds (1 is best).
        level: the confidence level (e.g. 0.95).
        rounds, seed: how the intervals were made.
        method: always "percentile".
        fallback_rounds: rounds that needed the weak L2 penalty (see module docstring).
        coefficients: style coefficients (rating points per SD) for style-controlled results, else None.
        meta: how the rounds were drawn and the rating scale.
    """

    ratings: pd.Series
    samples: pd.DataFrame
    ci_low: pd.Series
    ci_high: pd.Series
    rank: pd.Series
    level: float
    rounds: int
    seed: int
    method: str = "percentile"
    fallback_rounds: int = 0
    coefficients: pd.Series | None = None
    meta: dict = field(default_factory=dict)
    rank_ci_low: pd.Series | None = None
    rank_ci_high: pd.Series | None = None

    def table(self) -> pd.DataFrame:
        """`model, rating, ci_low, ci_high, rank, rank_ci_low, rank_ci_high`, best first."""
        return pd.DataFrame(
            {
                "model": self.ratings.index,
                "rating": self.ratings.to_numpy(),
                "ci_low": self.ci_low.to_numpy(),
                "ci_high": self.ci_high.to_numpy(),
                "rank": self.rank.to_numpy(),
                "rank_ci_low": self.rank_ci_low.to_numpy(),
                "rank_ci_high": self.rank_ci_high.to_numpy(),
            }
        )


def ci_ranks(ci_low: np.ndarray, ci_high: np.ndarray) -> np.ndarray:
    """CI-aware ranks: 1 + the number of models whose lower bound is above this model's upper bound.

    Args:
        ci_low, ci_high: interval bounds per model.

    Returns:
        Integer ranks (ties share a rank; rank 1 is best).
    """
    lo, hi = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    return 1 + (lo[None, :] > hi[:, None]).sum(axis=1)


def rank_quantiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each model's rank over bootstrap rounds.

    Args:
        samples: ratings per round (rounds × models).
        level: confidence level.

    Returns:
        `(low, high)` integer ranks per model (1 is best); each round ranks a model 1 + the models rated above it.
    """
    samples = np.asarray(samples, dtype=float)
    rounds, m = samples.shape
    ranks = np.empty((rounds, m), dtype=np.int64)
    order = np.argsort(-samples, axis=1, kind="stable")
    np.put_along_axis(ranks, order, np.arange(1, m + 1)[None, :], axis=1)
    alpha = (1.0 - level) / 2.0
    low = np.quantile(ranks, alpha, axis=0, method="lower")
    high = np.quantile(ranks, 1.0 - alpha, axis=0, method="higher")
    return low.astype(np.int64), high.astype(np.int64)


def _incidence(counts: PairCounts) -> sparse.csr_matrix:
    p, m = len(counts.i), len(counts.models)
    rows = np.concatenate([np.arange(p), np.arange(p)])
    cols = np.concatenate([counts.i, counts.j])
    vals = np.concatenate([np.ones(p), -np.ones(p)])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(p, m))


class _Resampler:
    """Poisson(c) redraws of the unique-outcome counts `c`, many rounds at a time.

    Cells are the per-pair counts `[wins_i | ties | wins_j]`. Integer counts shared by many cells are drawn by exact
    inversion with a guide table (scipy's `DiscreteGuideTable` over the Poisson pmf, truncated where the tail mass is
    below 1e-25), several times faster than numpy's Poisson sampler; the remaining cells use `Generator.poisson`.
    Cells are grouped by count so each table draws one block, written straight to the cells' rows, so that per-pair
    scores and battle counts are plain sums of the three row blocks.
    """

    def __init__(self, counts: PairCounts, rounds: int):
        p = len(counts.i)
        cells = np.concatenate([counts.wins_i, counts.ties, counts.wins_j])
        nonzero = np.flatnonzero(cells > 0)
        self.blocks: list[tuple[int, int, object]] = []
        order = nonzero
        if np.all(cells == np.round(cells)):
            values, inverse, sizes = np.unique(cells[nonzero], return_inverse=True, return_counts=True)
            big = sizes * rounds >= 20000  # below that, building a table costs more than it saves
            sort = np.argsort(np.where(big[inverse], inverse, len(values)), kind="stable")
            order = nonzero[sort]
            if big.any():
                from scipy.stats import poisson, sampling  # a slow import: only when it pays off
            start = 0
            for k in np.flatnonzero(big):
                lam = float(values[k])
                support = np.arange(int(lam + 12.0 * math.sqrt(lam) + 25.0))
                table = sampling.DiscreteGuideTable(poisson.pmf(support, lam), random_state=0)
                self.blocks.append((start, start + int(sizes[k]), table))
                start += int(sizes[k])
            self.rest_start = start
        else:
            self.rest_start = 0
        self.order = order
        self.lam_rest = cells[order[self.rest_start:]]
        self.n_cells, self.n_pairs = len(cells), p

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Redrawn counts of every cell (`[wins_i | ties | wins_j]` rows, zero where the count is zero) × rounds."""
        out = np.zeros((self.n_cells, size))
        for start, stop, table in self.blocks:
            out[self.order[start:stop]] = table.rvs(size=(stop - start, size), random_state=rng)
        if len(self.lam_rest):
            out[self.order[self.rest_start:]] = rng.poisson(self.lam_rest[:, None], size=(len(self.lam_rest), size))
        return out

    def score_and_n(self, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pair scores and battle counts (pairs × rounds) from `draw`'s output."""
        p = self.n_pairs
        wins, ties = drawn[:p], drawn[p: 2 * p]
        n = wins + ties
        score = ties * 0.5
        score += wins
        n += drawn[2 * p:]
        return score, n

    def cells(self, drawn: np.ndarray, r: int) -> np.ndarray:
        """Round `r`'s counts as `(wins_i, ties, wins_j)`, 3 × pairs."""
        return drawn[:, r].reshape(3, self.n_pairs)


def chord_fit(
    x0: np.ndarray, h_inv: np.ndarray, design: sparse.csr_matrix, design_t: sparse.csr_matrix,
    score: np.ndarray, n: np.ndarray, *, l2: float, n_models: int, tol: float, max_iter: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Refit many resampled data sets at once by chord-Newton steps from the full-data fit.

    The rows of `design` map parameters to logits (a ±1 pair incidence, plus covariates for style control); each
    column of `score` / `n` (rows × rounds) is one resample. Every step uses the full-data inverse Hessian `h_inv`;
    the fixed point is each round's exact maximum.

    Args:
        x0: full-data parameters.
        h_inv: inverse of the full-data Hessian of the negative log-likelihood (regularised as in `bt.newton`).
        design, design_t: the design matrix and its transpose (CSR).
        score, n: per row and round, the score and the battle count.
        l2: L2 penalty on the first `n_models` parameters.
        n_models: number of rating parameters.
        tol: a round stops when its largest step, or the error left after it (estimated from how much the last two
            steps shrank), is below this.
        max_iter: step limit.

    Returns:
        Parameters (parameters × rounds) and a mask of the rounds that converged.
    """
    rounds = score.shape[1]
    x = np.repeat(x0[:, None], rounds, axis=1)
    idx = np.arange(rounds)
    t = x
    converged = np.zeros(rounds, dtype=bool)
    last = np.full(rounds, np.nan)  # each round's previous step size
    with np.errstate(over="ignore"):
        for _ in range(max_iter):
            z = design @ t  # logits, rows × rounds
            expit(z, out=z)
            z *= n  # n σ(logit)
            np.subtract(score, z, out=z)  # residuals
            g = design_t @ z  # gradient of the log-likelihood
            if l2:
                g[:n_models] -= l2 * t[:n_models]
            step = h_inv @ g
            t = t + step
            size = np.max(np.abs(step), axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = size / last  # the chord method contracts linearly: the error left is about size·rate/(1−rate)
                done = (size < tol) | ((rate < 0.5) & (size * rate < tol * (1.0 - rate)))
            last = size
            if done.any():
                x[:, idx] = t
                converged[idx[done]] = True
                keep = ~done
                idx, t, score, n, last = idx[keep], t[:, keep], score[:, keep], n[:, keep], last[keep]
                if idx.size == 0:
                    break
    x[:, idx] = t
    return x, converged


def run_chunks(run, sizes: list[int], threads: int | None) -> list:
    """Run `run(k)` for every chunk `k`, on up to `threads` threads (numpy releases the GIL in the heavy parts)."""
    workers = threads or min(4, os.cpu_count() or 1)
    if workers > 1 and len(sizes) > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, range(len(sizes))))
    return [run(k) for k in range(len(sizes))]


def bootstrap_counts(
    counts: PairCounts,
    *,
    rounds: int = 1000,
    seed: int = 0,
    l2: float = 0.0,
    tol: float = 1e-6,
    threads: int | None = None,
    theta0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Bootstrap θ on aggregated counts.

    Args:
        counts: per-pair counts.
        rounds: number of bootstrap rounds.
        seed: seed for the resampling.
        l2: L2 penalty (as in `fit_counts`).
        tol: each round stops when its Newton step is below this (natural units; 1e-6 ≈ 0.0002 Elo points).
        threads: worker threads for the refits (default: the CPU count, at most 4); the result does not depend on it.
        theta0: the full-data fit if already computed.

    Returns:
        `(theta0, samples, fallback_rounds, fallback_models)`: full-data θ, θ per round (rounds × models), and
        how many rounds needed the fallback penalty, with the reasons (which models made them unidentifiable).
    """
    if rounds < 1:
        raise HarnessError(f"bootstrap rounds must be at least 1, got {rounds}")
    with single_threaded_blas():
        return _bootstrap_counts(counts, rounds, seed, l2, tol, threads, theta0)


def _bootstrap_counts(
    counts: PairCounts, rounds: int, seed: int, l2: float, tol: float, threads: int | None,
    theta0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """`bootstrap_counts` without the BLAS thread limit."""
    m = len(counts.models)
    if theta0 is None:
        theta0 = fit_counts(counts, l2=l2)
    h = _regularised(hessian(theta0, counts.i, counts.j, counts.score_i, counts.n, n_models=m, l2=l2), m, l2)
    h_inv = np.linalg.inv(h)
    inc = _incidence(counts)
    inc_t = inc.T.tocsr()
    resampler = _Resampler(counts, rounds)
    sizes = [min(CHUNK, rounds - s) for s in range(0, rounds, CHUNK)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))

    def run(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        drawn = resampler.draw(np.random.default_rng(seeds[k]), sizes[k])
        score, n = resampler.score_and_n(drawn)
        theta, ok = chord_fit(theta0, h_inv, inc, inc_t, score, n, l2=l2, n_models=m, tol=tol)
        return theta.T, ok, (None if ok.all() else drawn)  # keep the draws only for the rounds to refit

    parts = run_chunks(run, sizes, threads)

    samples = np.concatenate([part[0] for part in parts])
    fallback, culprits = 0, set()
    for k, (_, ok, drawn) in enumerate(parts):
        for r in np.flatnonzero(~ok):
            wins_i, ties, wins_j = resampler.cells(drawn, r)
            keep = wins_i + ties + wins_j > 0
            boot = PairCounts(counts.models, counts.i[keep], counts.j[keep], wins_i[keep], ties[keep], wins_j[keep])
            try:
                th = fit_counts(boot, l2=l2, start=theta0)
            except NotIdentifiableError as err:
                fallback += 1
                culprits.add(str(err).split(": ", 1)[-1].split(" — ")[0])
                th = fit_counts(boot, l2=max(l2, FALLBACK_L2), start=theta0, check=False)
            samples[k * CHUNK + r] = th
    return theta0, samples, fallback, sorted(culprits)


def summarise(
    models: list[str], point: np.ndarray, samples: np.ndarray, *, level: float, seed: int, **extra
) -> BootstrapResult:
    """Percentile intervals and CI-aware ranks from full-data ratings and per-round ratings (rounds × models).

    Args:
        models: model names (columns of `samples`).
        point: full-data ratings.
        samples: ratings per round.
        level: confidence level.
        seed: the seed that made the rounds.
        **extra: further `BootstrapResult` fields.

    Returns:
        A `BootstrapResult`, models ordered best first.
    """
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    order = np.argsort(-point, kind="stable")
    names = [models[k] for k in order]
    rank_low, rank_high = rank_quantiles(samples, level)
    return BootstrapResult(
        ratings=pd.Series(point[order], index=names, name="rating"),
        samples=pd.DataFrame(samples[:, order], columns=names),
        ci_low=pd.Series(low[order], index=names, name="ci_low"),
        ci_high=pd.Series(high[order], index=names, name="ci_high"),
        rank=pd.Series(ci_ranks(low[order], high[order]), index=names, name="rank"),
        rank_ci_low=pd.Series(rank_low[order], index=names, name="rank_ci_low"),
        rank_ci_high=pd.Series(rank_high[order], index=names, name="rank_ci_high"),
        level=level,
        rounds=len(samples),
        seed=seed,
        **extra,
    )


def bootstrap(
    battles: BattlesLike | PairCounts,
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
    """Bradley-Terry ratings with percentile bootstrap intervals and CI-aware ranks.

    Args:
        battles: battles (DataFrame, list of dicts, path) or pre-aggregated `PairCounts`.
        rounds: bootstrap rounds.
        seed: resampling seed (same seed, same intervals).
        level: confidence level of the percentile intervals, in (0, 1).
        anchor: optional `{model: rating}`; applied in every round (the anchor's interval is then a point).
        l2: L2 penalty on natural-unit ratings.
        scale, base, init: the rating scale (see `harness.ratings.bt.fit_bt`).
        threads: worker threads (results do not depend on it).

    Returns:
        A `BootstrapResult`.
    """
    if not 0 < level < 1:
        raise HarnessError(f"confidence level must lie strictly between 0 and 1, got {level}")
    counts = aggregate(battles)
    theta0, thetas, fallback, culprits = bootstrap_counts(counts, rounds=rounds, seed=seed, l2=l2, threads=threads)
    if fallback:
        warnings.warn(
            f"{fallback} of {rounds} bootstrap rounds had no finite maximum-likelihood ratings "
            f"({'; '.join(culprits[:3])}); those rounds were fit with an L2 penalty of {FALLBACK_L2}, so the "
            "intervals of these models are wide by construction",
            RuntimeWarning,
            stacklevel=2,
        )
    models = counts.models
    point = anchor_shift(to_elo(theta0, scale=scale, base=base, init=init), models, anchor)
    samples = anchor_shift(to_elo(thetas, scale=scale, base=base, init=init), models, anchor)
    return summarise(
        models, point, samples, level=level, seed=seed, fallback_rounds=fallback,
        meta={"resampling": "poisson", "scale": scale, "base": base, "init": init, "l2": l2},
    )
