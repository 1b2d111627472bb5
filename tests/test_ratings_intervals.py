"""Bootstrap intervals: seeding, exact refits, coverage, CI-aware ranks, non-identifiable resamples."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from harness.ratings import aggregate, bootstrap, ci_ranks, fit_bt, read_battles, simulate_battles
from harness.ratings.bt import _regularised, fit_counts, hessian, to_elo
from harness.ratings.intervals import _incidence, chord_fit



def test_ci_ranks_golden():
    low = np.array([10.0, 8.0, 1.0, 0.0])
    high = np.array([12.0, 11.0, 9.0, 0.5])
    # model 0 overlaps 1; model 2's upper bound (9) is below model 0's lower bound (10) only
    assert ci_ranks(low, high).tolist() == [1, 1, 2, 4]


def test_seeded_and_thread_independent():
    frame = simulate_battles(np.linspace(900, 1100, 6), 3000, seed=2, tie_rate=0.3)
    a = bootstrap(frame, rounds=250, seed=7, threads=1)
    b = bootstrap(frame, rounds=250, seed=7, threads=2)
    c = bootstrap(frame, rounds=250, seed=8)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert not np.allclose(a.samples.to_numpy(), c.samples.to_numpy())
    assert a.rounds == 250 and a.level == 0.95 and a.method == "percentile"
    assert (a.ci_low <= a.ratings).all() and (a.ratings <= a.ci_high).all()


def test_point_estimate_is_the_full_fit_and_level_is_honoured():
    frame = simulate_battles(np.linspace(900, 1100, 5), 2000, seed=3)
    wide = bootstrap(frame, rounds=400, seed=0, level=0.95)
    narrow = bootstrap(frame, rounds=400, seed=0, level=0.5)
    pd.testing.assert_series_equal(wide.ratings, fit_bt(frame), check_names=False)
    assert ((narrow.ci_high - narrow.ci_low) < (wide.ci_high - wide.ci_low)).all()
    q = wide.samples.quantile([0.025, 0.975])
    assert np.allclose(q.iloc[0], wide.ci_low) and np.allclose(q.iloc[1], wide.ci_high)


def test_chord_refits_equal_exact_refits():
    counts = aggregate(simulate_battles(np.linspace(800, 1200, 7), 5000, seed=4, tie_rate=0.2))
    m = len(counts.models)
    theta0 = fit_counts(counts)
    h_inv = np.linalg.inv(_regularised(hessian(theta0, counts.i, counts.j, counts.score_i, counts.n, n_models=m), m, 0))
    inc = _incidence(counts)
    rng = np.random.default_rng(0)
    draws = rng.poisson(np.stack([counts.wins_i, counts.ties, counts.wins_j])[:, :, None], size=(3, len(counts.i), 20))
    score, n = draws[0] + 0.5 * draws[1], draws.sum(axis=0)
    theta, ok = chord_fit(theta0, h_inv, inc, inc.T.tocsr(), score.astype(float), n.astype(float),
                          l2=0.0, n_models=m, tol=1e-10)
    assert ok.all()
    for r in range(20):
        exact = fit_counts(type(counts)(counts.models, counts.i, counts.j, draws[0, :, r] * 1.0,
                                        draws[1, :, r] * 1.0, draws[2, :, r] * 1.0))
        assert np.allclose(theta[:, r] - theta[:, r].mean(), exact, atol=1e-8)


def test_intervals_match_a_multinomial_bootstrap_with_exact_refits(arena_hard):
    # the reference: Chatbot Arena's resampling (multinomial over unique outcomes, total fixed) + a full refit each
    counts = aggregate(read_battles(arena_hard))
    cells = np.stack([counts.wins_i, counts.ties, counts.wins_j])
    total = int(cells.sum())
    rng = np.random.default_rng(123)
    ref = []
    for draw in rng.multinomial(total, cells.ravel() / total, size=1000):
        w = draw.reshape(cells.shape).astype(float)
        ref.append(to_elo(fit_counts(type(counts)(counts.models, counts.i, counts.j, w[0], w[1], w[2]))))
    ref = pd.DataFrame(ref, columns=counts.models)
    ours = bootstrap(counts, rounds=1000, seed=0)
    lo, hi = ref.quantile(0.025), ref.quantile(0.975)
    # Monte Carlo noise of a 2.5% quantile at 1000 rounds is ~1.5 points here
    assert np.abs(ours.ci_low - lo[ours.ci_low.index]).max() < 6.0
    assert np.abs(ours.ci_high - hi[ours.ci_high.index]).max() < 6.0


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    true = np.array([850.0, 950.0, 1000.0, 1020.0, 1100.0, 1180.0])
    centred = true - true.mean() + 1000
    hits = []
    for rep in range(150):
        frame = simulate_battles(true, 1500, seed=1000 + rep, tie_rate=0.2)
        res = bootstrap(frame, rounds=300, seed=rep)
        lo = res.ci_low.sort_index().to_numpy()
        hi = res.ci_high.sort_index().to_numpy()
        hits.append((lo <= centred) & (centred <= hi))
    coverage = float(np.mean(hits))
    assert 0.91 <= coverage <= 0.985, coverage


def test_anchor_applies_to_every_round():
    frame = simulate_battles(np.linspace(900, 1100, 4), 1000, seed=5)
    res = bootstrap(frame, rounds=100, anchor={"model-000": 1114.0})
    assert res.ci_low["model-000"] == pytest.approx(1114.0) and res.ci_high["model-000"] == pytest.approx(1114.0)
    assert res.ratings["model-000"] == pytest.approx(1114.0)


def test_resamples_without_a_finite_fit_are_counted_and_named():
    rows = [("z", "a", "model_a")] * 6 + [("z", "a", "model_b")] + [("a", "b", "model_a"), ("b", "a", "model_a")] * 4
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = bootstrap(frame, rounds=200, seed=0)
    assert 30 < res.fallback_rounds < 120  # P(the one loss is not redrawn) = e^-1 ≈ 0.37
    message = " ".join(str(w.message) for w in caught)
    assert "{z} never lost" in message and f"{res.fallback_rounds} of 200" in message
    assert np.isfinite(res.samples.to_numpy()).all()


def test_rejects_bad_parameters():
    frame = simulate_battles(np.linspace(900, 1100, 3), 300, seed=5)
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="level"):
        bootstrap(frame, rounds=10, level=1.5)
    with pytest.raises(HarnessError, match="rounds"):
        bootstrap(frame, rounds=0)
    with pytest.raises(HarnessError, match="not among the rated models"):
        bootstrap(frame, rounds=10, anchor={"nope": 1000})
