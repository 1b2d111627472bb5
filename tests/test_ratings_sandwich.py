"""Sandwich standard errors of Bradley-Terry ratings: agreement with the bootstrap, clustering, anchoring, rank
intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.ratings import aggregate, bootstrap, fit_bt, simulate_battles
from harness.ratings.battles import encode
from harness.ratings.bt import fit_counts
from harness.ratings.intervals import rank_quantiles
from harness.ratings.sandwich import _meat_clustered, _meat_unclustered, ci_rank_interval, sandwich

TRUE = np.array([850.0, 930.0, 1000.0, 1010.0, 1080.0, 1200.0])


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return simulate_battles(TRUE, 12000, seed=4, tie_rate=0.4)


def test_sandwich_se_agrees_with_the_bootstrap_spread_within_15_percent(log):
    robust = sandwich(log)
    boot = bootstrap(log, rounds=1000, seed=0)
    spread = boot.samples.std(ddof=1)[robust.se.index]
    ratio = robust.se / spread
    print("sandwich SE / bootstrap SD per model:", ratio.round(3).to_dict())
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio
    assert robust.cluster is None and robust.clusters == len(log)
    assert np.allclose(robust.ratings[boot.ratings.index], boot.ratings)


def test_ties_make_the_robust_se_smaller_than_the_model_based_one(log):
    """Half-win ties carry less variance than a win/loss coin, which the model-based H⁻¹ cannot see."""
    counts = aggregate(log)
    theta = fit_counts(counts)
    from harness.ratings.bt import _regularised, hessian

    m = len(counts.models)
    h = _regularised(hessian(theta, counts.i, counts.j, counts.score_i, counts.n, n_models=m), m, 0.0)
    centre = np.eye(m) - 1.0 / m
    model_based = 400 / np.log(10) * np.sqrt(np.diag(centre @ np.linalg.inv(h) @ centre))
    robust = sandwich(log).se[counts.models].to_numpy()
    assert (robust < 0.95 * model_based).all()


def test_aggregated_meat_equals_the_per_battle_outer_products(log):
    models, a, b, outcome = encode(log)
    counts = aggregate(log)
    theta = fit_counts(counts)
    per_battle = _meat_clustered(theta, a, b, outcome, np.arange(len(a)), len(a)) * (len(a) - 1) / len(a)
    assert np.allclose(_meat_unclustered(theta, counts), per_battle, rtol=1e-9, atol=1e-6)


def test_clusters_count_repeated_battles_once(log):
    """Every battle copied three times (Arena-Hard's >> expansion): clustered by the original battle the SEs do not
    change; treated as independent battles they shrink by √3 — too narrow."""
    once = sandwich(log)
    thrice = pd.concat([log.assign(prompt_id=np.arange(len(log)))] * 3, ignore_index=True)
    clustered = sandwich(thrice)
    assert clustered.cluster == "prompt_id" and clustered.clusters == len(log)
    assert np.allclose(clustered.se, once.se[clustered.se.index], rtol=1e-4)
    naive = sandwich(thrice, cluster=None)
    assert np.allclose(naive.se, once.se[naive.se.index] / np.sqrt(3), rtol=1e-9)


def test_anchor_fixes_one_rating_and_its_se(log):
    free = sandwich(log)
    anchored = sandwich(log, anchor={"model-002": 1000.0})
    assert anchored.ratings["model-002"] == pytest.approx(1000.0) and anchored.se["model-002"] == 0.0
    v = free.cov
    for model in ("model-000", "model-005"):
        diff = v.loc[model, model] + v.loc["model-002", "model-002"] - 2 * v.loc[model, "model-002"]
        assert anchored.se[model] == pytest.approx(np.sqrt(diff))
    assert np.allclose(anchored.ratings - anchored.ratings["model-002"], free.ratings - free.ratings["model-002"])
    assert np.allclose(fit_bt(log, anchor={"model-002": 1000.0})[anchored.ratings.index], anchored.ratings)


def test_rank_intervals():
    best, worst = ci_rank_interval([10, 15, 30], [20, 25, 40])
    assert best.tolist() == [2, 2, 1] and worst.tolist() == [3, 3, 1]
    samples = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0], [3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])
    low, high = rank_quantiles(samples, 0.95)
    assert low.tolist() == [1, 2, 2] and high.tolist() == [1, 3, 3]
    result = sandwich(simulate_battles(TRUE, 12000, seed=4, tie_rate=0.4))
    assert result.rank_low["model-003"] <= 3 and result.rank_high["model-002"] >= 4  # 10 points apart: unresolved
    assert result.rank_low["model-005"] == result.rank_high["model-005"] == 1


def test_bad_cluster_column_and_level(log):
    with pytest.raises(HarnessError, match="no column 'session' to cluster the standard errors by"):
        sandwich(log, cluster="session")
    with pytest.raises(HarnessError, match="row 2: column prompt_id is missing"):
        sandwich(log.assign(prompt_id=["p"] + [None] + ["q"] * (len(log) - 2)), cluster="prompt_id")
    with pytest.raises(HarnessError, match="at least two clusters"):
        sandwich(log.assign(prompt_id="p"), cluster="prompt_id")
    assert sandwich(log.assign(prompt_id="p")).cluster is None  # found, not asked for: one prompt, no clustering
    with pytest.raises(HarnessError, match="strictly between 0 and 1"):
        sandwich(log, level=1.0)
