"""Sandwich (robust, Huber-White) standard errors of Bradley-Terry ratings, and rank intervals from any CIs.

The fit maximises a (quasi-)likelihood in which a battle scores s ∈ {0, ½, 1} for model_a; its gradient with
respect to the natural-unit ratings θ is `(s − p)(e_a − e_b)` with `p = σ(θ_a − θ_b)`. The sandwich covariance is

    V = H⁺ B H⁺,   B = Σ_c U_c U_cᵀ,   U_c = Σ_{battles b in cluster c} (s_b − p_b)(e_a − e_b)

with the bread `H` the Hessian of `harness.ratings.bt` and the meat `B` the outer products of the per-cluster score
sums. Without clusters every battle is its own cluster and `B` needs only the per-pair counts
(`Σ (s − p)² = wins_i (1 − p)² + ties (½ − p)² + wins_j p²`), so its cost does not grow with the number of battles.
With clusters (a prompt judged several times, Arena-Hard's `>>` expansion, both position games) battles of one prompt
are not independent and `B` sums their scores first; the small-sample factor `G / (G − 1)` (G clusters) is applied.
Unlike the model-based `H⁻¹`, `V` stays right when ties lower the variance of a battle or when battles share prompts.

Identification: the likelihood fixes only rating differences, so `H` is singular along "shift every θ". `V` is taken
on the centred ratings (`P H⁺ B H⁺ P` with `P = I − 11ᵀ/m`, which is what `to_elo` reports); an anchor model k
(`anchor_shift`) maps ratings through `A = I − 1 e_kᵀ`, so the covariance is `A V Aᵀ` and the anchor's SE is 0, as
its bootstrap interval is a point. With an L2 penalty the bread is the penalised Hessian.

Ratings and SEs are reported on the Elo scale (× scale / ln base). Wald intervals are `rating ± z · se`;
`ci_rank_interval` turns any per-model intervals into an interval of ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import sparse, stats

from harness.errors import HarnessError
from harness.ratings.battles import BattlesLike, PairCounts, aggregate_codes, as_battles, encode
from harness.ratings.bt import _hessian_from_weights, _sigmoid, anchor_shift, fit_counts, to_elo

CLUSTER_COLUMNS = ("prompt_id", "question_id")  # tried in order when the cluster column is left to be found


@dataclass
class SandwichResult:
    """Ratings with sandwich standard errors, Wald intervals and rank intervals, best first.

    Attributes:
        ratings: ratings (Elo scale), highest first.
        se: sandwich standard errors (rating points).
        cov: covariance of the ratings (rating points², models × models, same order).
        ci_low, ci_high: `rating ∓ z · se` at `level`.
        rank_low, rank_high: the best and worst rank the intervals allow (`ci_rank_interval`).
        level: confidence level.
        cluster: the column the battles were clustered by, or None (every battle its own cluster).
        clusters: number of clusters (battles when unclustered).
    """

    ratings: pd.Series
    se: pd.Series
    cov: pd.DataFrame
    ci_low: pd.Series
    ci_high: pd.Series
    rank_low: pd.Series
    rank_high: pd.Series
    level: float
    cluster: str | None
    clusters: int

    def table(self) -> pd.DataFrame:
        """`model, rating, se, ci_low, ci_high, rank_low, rank_high`, best first."""
        return pd.DataFrame({"model": self.ratings.index, "rating": self.ratings.to_numpy(), "se": self.se.to_numpy(),
                             "ci_low": self.ci_low.to_numpy(), "ci_high": self.ci_high.to_numpy(),
                             "rank_low": self.rank_low.to_numpy(), "rank_high": self.rank_high.to_numpy()})


def ci_rank_interval(ci_low: np.ndarray, ci_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranks each model's interval allows: best = 1 + the models clearly above it (their lower bound above its
    upper bound, as `harness.ratings.intervals.ci_ranks`), worst = the number of models not clearly below it.

    Args:
        ci_low, ci_high: interval bounds per model.

    Returns:
        `(best, worst)` integer ranks (1 is best), `best <= worst`.
    """
    lo, hi = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    above = (lo[None, :] > hi[:, None]).sum(axis=1)
    below = (hi[None, :] < lo[:, None]).sum(axis=1)
    return 1 + above, len(lo) - below


def _meat_unclustered(theta: np.ndarray, counts: PairCounts) -> np.ndarray:
    p = _sigmoid(theta[counts.i] - theta[counts.j])
    w2 = counts.wins_i * (1.0 - p) ** 2 + counts.ties * (0.5 - p) ** 2 + counts.wins_j * p**2
    return _hessian_from_weights(w2, counts.i, counts.j, len(theta), None, 0.0)


def _meat_clustered(theta: np.ndarray, a: np.ndarray, b: np.ndarray, outcome: np.ndarray,
                    cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    m = len(theta)
    r = 0.5 * outcome - _sigmoid(theta[a] - theta[b])
    rows = np.concatenate([cluster, cluster])
    cols = np.concatenate([a, b])
    u = sparse.csr_matrix((np.concatenate([r, -r]), (rows, cols)), shape=(n_clusters, m))  # duplicates are summed
    meat = (u.T @ u).toarray()
    return meat * (n_clusters / (n_clusters - 1.0))


def sandwich_cov(theta: np.ndarray, counts: PairCounts, meat: np.ndarray, *, l2: float = 0.0) -> np.ndarray:
    """`P H⁺ B H⁺ P`: the covariance of the centred natural-unit ratings from the bread at `theta` and a meat `B`.

    Args:
        theta: fitted ratings (natural units).
        counts: the per-pair counts they were fitted on.
        meat: `B` (models × models).
        l2: the fit's L2 penalty (the bread is then the penalised Hessian, invertible).

    Returns:
        The covariance (models × models).
    """
    m = len(theta)
    p = _sigmoid(theta[counts.i] - theta[counts.j])
    h = _hessian_from_weights(counts.n * p * (1.0 - p), counts.i, counts.j, m, None, l2)
    if l2 == 0:  # H + c11ᵀ is invertible and acts as H⁺ on the centred subspace, where B lives
        h = h + max(float(np.mean(np.diag(h))), 1e-12) / m
    h_inv = np.linalg.inv(h)
    centre = np.eye(m) - 1.0 / m
    v = h_inv @ meat @ h_inv
    return centre @ v @ centre


def _cluster_codes(frame: pd.DataFrame | None, cluster: str | None) -> tuple[str | None, np.ndarray | None]:
    if cluster is None or frame is None:
        return None, None
    if cluster == "auto":
        cluster = next((c for c in CLUSTER_COLUMNS if c in frame.columns), None)
        if cluster is None:
            return None, None
    elif cluster not in frame.columns:
        found = ", ".join(map(str, frame.columns[:12]))
        raise HarnessError(f"battles: no column {cluster!r} to cluster the standard errors by (found: {found}); "
                           f"name a column of the battles, or cluster by none")
    codes, _ = pd.factorize(frame[cluster].astype(str).where(frame[cluster].notna()), use_na_sentinel=True)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0]) + 1
        raise HarnessError(f"battles: row {row}: column {cluster} is missing (null/NaN); every battle needs a "
                           "cluster to cluster the standard errors by")
    return cluster, codes


def sandwich(
    battles: BattlesLike,
    *,
    level: float = 0.95,
    cluster: str | None = "auto",
    anchor: Mapping[str, float] | None = None,
    l2: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    theta: np.ndarray | None = None,
) -> SandwichResult:
    """Bradley-Terry ratings with sandwich standard errors, Wald CIs and rank intervals.

    Args:
        battles: battles (DataFrame, list of dicts, path).
        level: confidence level of the Wald intervals, in (0, 1).
        cluster: the column whose battles share a cluster; "auto" (default) takes `prompt_id` or `question_id`
            when the battles have one, None treats every battle as its own cluster.
        anchor: optional `{model: rating}` (its SE is then 0).
        l2: L2 penalty on natural-unit ratings (as in `fit_bt`).
        scale, base, init: the rating scale.
        theta: the natural-unit fit when already computed (models in sorted order).

    Returns:
        A `SandwichResult`.
    """
    if not 0 < level < 1:
        raise HarnessError(f"confidence level must lie strictly between 0 and 1, got {level}")
    frame = battles if isinstance(battles, pd.DataFrame) else as_battles(battles)
    models, a, b, outcome = encode(frame)
    counts = aggregate_codes(models, a, b, outcome)
    if theta is None:
        theta = fit_counts(counts, l2=l2)
    name, codes = _cluster_codes(frame, cluster)
    n_clusters = len(a) if codes is None else int(codes.max()) + 1
    if codes is not None and n_clusters < 2 and cluster == "auto":  # one prompt: nothing to cluster
        name, codes, n_clusters = None, None, len(a)
    if codes is None or n_clusters == len(a):  # every battle its own cluster: the per-pair form is the same meat
        meat = _meat_unclustered(theta, counts)
    elif n_clusters < 2:
        raise HarnessError(f"battles: all battles share one {name}; clustered standard errors need at least two "
                           "clusters (cluster by none)")
    else:
        meat = _meat_clustered(theta, a, b, outcome, codes, n_clusters)
    v = sandwich_cov(theta, counts, meat, l2=l2)
    ratings = anchor_shift(to_elo(theta, scale=scale, base=base, init=init), models, anchor)  # checks the anchor
    if anchor:
        shift = np.eye(len(models))
        shift[:, models.index(next(iter(anchor)))] -= 1.0
        v = shift @ v @ shift.T
    k = scale / math.log(base)
    cov = k * k * v
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    low, high = ratings - z * se, ratings + z * se
    best, worst = ci_rank_interval(low, high)
    order = np.argsort(-ratings, kind="stable")
    names = [models[i] for i in order]

    def series(values, label):
        return pd.Series(np.asarray(values)[order], index=names, name=label)

    return SandwichResult(
        ratings=series(ratings, "rating"), se=series(se, "se"),
        cov=pd.DataFrame(cov[np.ix_(order, order)], index=names, columns=names),
        ci_low=series(low, "ci_low"), ci_high=series(high, "ci_high"),
        rank_low=series(best, "rank_low"), rank_high=series(worst, "rank_high"),
        level=level, cluster=name, clusters=n_clusters,
    )
