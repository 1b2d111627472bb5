"""Bradley-Terry fit: golden cases, gradient checks, start independence, identifiability, agreement with others."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from harness.ratings import (
    NotIdentifiableError,
    aggregate,
    fit_bt,
    read_battles,
    simulate_battles,
)
from harness.ratings.battles import pair_counts_from_matrix
from harness.ratings.bt import fit_counts, gradient, hessian, objective

ELO_PER_NAT = 400 / math.log(10)
TOL_ELO = 0.1  # acceptance: agreement with an independent fit of the same likelihood, in rating points


def battles(rows):
    return pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])


def test_three_cycle_gives_equal_ratings():
    frame = battles([("a", "b", "model_a"), ("b", "c", "model_a"), ("c", "a", "model_a")] * 5)
    ratings = fit_bt(frame)
    assert np.allclose(ratings.to_numpy(), 1000.0, atol=1e-9)


def test_ties_count_half_a_win_each_way():
    # one win each way plus two ties is the same evidence as 2 wins each way: equal ratings
    frame = battles([("a", "b", "model_a"), ("a", "b", "model_b"), ("a", "b", "tie"), ("b", "a", "tie (bothbad)")])
    assert np.allclose(fit_bt(frame).to_numpy(), 1000.0)
    # 3 wins + 1 tie vs 0 wins + 1 tie: a's score is 3.5 of 4, so P = 7/8 and the margin is 400·log10(7)
    frame = battles([("a", "b", "model_a")] * 3 + [("b", "a", "tie")])
    r = fit_bt(frame)
    assert r["a"] - r["b"] == pytest.approx(400 * math.log10(7), abs=1e-7)


def test_two_models_closed_form_and_scale_base_init():
    frame = battles([("x", "y", "model_a")] * 3 + [("x", "y", "model_b")])
    r = fit_bt(frame)
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(3))
    assert (r["x"] + r["y"]) / 2 == pytest.approx(1000)
    r2 = fit_bt(frame, scale=173.7178, base=math.e, init=1500)
    assert r2["x"] - r2["y"] == pytest.approx(173.7178 * math.log(3))
    assert r2.mean() == pytest.approx(1500)


def test_anchor_fixes_one_model():
    frame = simulate_battles(np.array([1000, 1100, 1200]), 600, seed=1)
    free, anchored = fit_bt(frame), fit_bt(frame, anchor={"model-001": 1114.0})
    assert anchored["model-001"] == pytest.approx(1114.0)
    assert np.allclose((anchored - anchored["model-001"]).sort_index(), (free - free["model-001"]).sort_index())


def test_known_ratings_recovered_from_a_large_log():
    true = pd.Series([800.0, 950.0, 1000.0, 1050.0, 1200.0, 1300.0], index=list("abcdef"))
    frame = simulate_battles(true, 200_000, seed=3, tie_rate=0.2)
    r = fit_bt(frame)
    err = (r - r.mean()) - (true - true.mean())
    assert np.abs(err).max() < 6.0  # ~3 standard errors at 200k battles


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_gradient_and_hessian_match_finite_differences(l2):
    rng = np.random.default_rng(0)
    counts = aggregate(simulate_battles(rng.normal(1000, 100, 6), 500, seed=0, tie_rate=0.1))
    m = len(counts.models)
    args = (counts.i, counts.j, counts.score_i, counts.n)
    for _ in range(5):
        x = rng.normal(0, 1, m)
        err = optimize.check_grad(lambda v: objective(v, *args, n_models=m, l2=l2),
                                  lambda v: gradient(v, *args, n_models=m, l2=l2), x)
        assert err < 1e-4 * max(1.0, np.linalg.norm(gradient(x, *args, n_models=m, l2=l2)))
        h = hessian(x, *args, n_models=m, l2=l2)
        eps = 1e-6
        numeric = np.stack([(gradient(x + eps * e, *args, n_models=m, l2=l2)
                             - gradient(x - eps * e, *args, n_models=m, l2=l2)) / (2 * eps) for e in np.eye(m)])
        assert np.allclose(h, numeric, atol=1e-4)


def test_gradient_with_covariates():
    rng = np.random.default_rng(1)
    rows, m, k = 200, 5, 2
    i = rng.integers(0, m, rows)
    j = (i + rng.integers(1, m, rows)) % m
    f = rng.normal(size=(rows, k))
    score = rng.integers(0, 3, rows) / 2
    n = np.ones(rows)
    for _ in range(3):
        x = rng.normal(size=m + k)
        err = optimize.check_grad(lambda v: objective(v, i, j, score, n, n_models=m, features=f),
                                  lambda v: gradient(v, i, j, score, n, n_models=m, features=f), x)
        assert err < 1e-4


def test_result_does_not_depend_on_the_starting_point():
    counts = aggregate(simulate_battles(np.linspace(700, 1300, 8), 3000, seed=4, tie_rate=0.1))
    reference = fit_counts(counts)
    rng = np.random.default_rng(5)
    for _ in range(5):
        start = rng.normal(0, 3, len(counts.models))  # far from the optimum, not centred
        assert np.allclose(fit_counts(counts, start=start), reference, atol=1e-8)


def test_undefeated_model_is_named():
    frame = battles([("a", "b", "model_a"), ("a", "c", "model_a"), ("b", "c", "model_a"), ("c", "b", "model_a")])
    with pytest.raises(NotIdentifiableError, match=r"\{a\} never lost"):
        fit_bt(frame)
    r = fit_bt(frame, l2=0.1)  # regularised: finite, and a still on top
    assert r.index[0] == "a" and np.isfinite(r).all()


def test_winless_model_is_named():
    frame = battles([("a", "b", "model_a"), ("b", "a", "model_a"), ("a", "z", "model_a"), ("z", "b", "model_b")])
    with pytest.raises(NotIdentifiableError, match=r"\{z\} never beat or tied"):
        fit_bt(frame)


def test_disconnected_graph_is_named():
    frame = battles([("a", "b", "model_a"), ("b", "a", "model_a"), ("c", "d", "model_a"), ("d", "c", "tie")])
    with pytest.raises(NotIdentifiableError, match=r"disconnected .*\{a, b\} \| \{c, d\}"):
        fit_bt(frame)
    r = fit_bt(frame, l2=1.0)
    assert np.isfinite(r).all()


def test_tie_only_pair_is_identifiable():
    frame = battles([("a", "b", "tie"), ("b", "c", "model_a"), ("c", "b", "model_a")])
    r = fit_bt(frame)
    assert r["a"] == pytest.approx(r["b"])


def test_agrees_with_choix_on_real_battles(arena_hard):
    choix = pytest.importorskip("choix", reason="choix is in the test extra")
    counts = aggregate(read_battles(arena_hard))
    # choix has no ties: doubling every battle turns a tie into one win each way, the same likelihood (×2)
    data = []
    for i, j, wi, t, wj in zip(counts.i, counts.j, counts.wins_i, counts.ties, counts.wins_j):
        data += [(int(i), int(j))] * int(2 * wi + t) + [(int(j), int(i))] * int(2 * wj + t)
    theta = choix.ilsr_pairwise(len(counts.models), data, alpha=0.0, tol=1e-12, max_iter=10_000)
    theirs = pd.Series(1000 + ELO_PER_NAT * (theta - theta.mean()), index=counts.models)
    ours = fit_bt(arena_hard)
    assert np.abs(ours.sort_index() - theirs.sort_index()).max() < TOL_ELO


def test_agrees_with_plain_lbfgs_on_battle_rows(arena_hard):
    frame = read_battles(arena_hard)
    models = sorted(set(frame.model_a) | set(frame.model_b))
    a = frame.model_a.map(models.index).to_numpy()
    b = frame.model_b.map(models.index).to_numpy()
    y = frame.winner.map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}).to_numpy()
    alpha = math.log(10) / 400

    def loss(r):  # one term per battle row, Elo units, no aggregation
        z = alpha * (r[a] - r[b])
        p = 1 / (1 + np.exp(-z))
        g = np.zeros_like(r)
        np.add.at(g, a, -alpha * (y - p))
        np.add.at(g, b, alpha * (y - p))
        return np.sum(np.logaddexp(0, z) - y * z), g

    res = optimize.minimize(loss, np.zeros(len(models)), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000})
    theirs = pd.Series(res.x - res.x.mean() + 1000, index=models)
    ours = fit_bt(arena_hard)
    assert np.abs(ours.sort_index() - theirs.sort_index()).max() < TOL_ELO


def test_pair_counts_from_matrix_matches_battles():
    wins = np.array([[0, 3, 1], [1, 0, 2], [2, 2, 0]])
    counts = pair_counts_from_matrix(["a", "b", "c"], wins)
    rows = [(x, y, "model_a") for x, rx in zip("abc", wins) for y, k in zip("abc", rx) for _ in range(k)]
    assert np.allclose(fit_bt(counts).sort_index(), fit_bt(battles(rows)).sort_index())
