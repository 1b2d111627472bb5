"""Benchmark: harness.ratings against the arena-style baseline, evalica and arena-rank on a simulated battle log.

    python benchmarks/ratings.py                      # 1,000,000 battles, 150 models, 1000 bootstrap rounds
    python benchmarks/ratings.py --battles 100000 --models 50 --repeats 3

The baseline is written from the Bradley-Terry likelihood the way the arena code does it today: battle rows
de-duplicated into (model_a, model_b, outcome) counts with `np.unique`, scipy L-BFGS-B with an analytic gradient
(`np.add.at`), gtol 1e-6, at most 100 iterations, and for the bootstrap a multinomial redraw of the unique-row counts
with one refit per round in a process pool of all CPUs. Its bootstrap is run for `--baseline-rounds` rounds and
extrapolated to `--rounds`; the output says so. `evalica` and `arena-rank` are timed where they are installed (a
note is printed where not). Every timing is a median over `--repeats` runs (bootstraps: over `--boot-repeats`), on
the same in-memory battle table (string columns), end to end unless labelled "solver only".
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import time
from functools import partial

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from harness.ratings import aggregate, bootstrap, fit_bt, simulate_battles
from harness.ratings.bt import fit_counts


# ---- the baseline: arena-style Bradley-Terry ------------------------------------------------------------------------
def baseline_preprocess(df: pd.DataFrame):
    """Unique (model_a, model_b, outcome) rows and their counts, as the arena code builds them."""
    n = len(df)
    idx, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
    schedule = np.full((n, 3), 1, dtype=np.int32)  # outcome: 2 = model_a won, 1 = tie, 0 = model_b won
    schedule[:, 0], schedule[:, 1] = idx[:n], idx[n:]
    schedule[df["winner"].to_numpy() == "model_a", 2] = 2
    schedule[df["winner"].to_numpy() == "model_b", 2] = 0
    rows, weights = np.unique(schedule, return_counts=True, axis=0)
    return rows[:, :2], rows[:, 2].astype(np.float64) / 2.0, list(models), weights.astype(np.float64)


def baseline_loss_and_grad(r, matchups, outcomes, weights, alpha):
    d = alpha * (r[matchups[:, 0]] - r[matchups[:, 1]])
    p = expit(d)
    loss = -((np.log(p) * outcomes + np.log(1.0 - p) * (1.0 - outcomes)) * weights).sum()
    g_rows = -alpha * (outcomes - p) * weights
    grad = np.zeros_like(r)
    np.add.at(grad, matchups, g_rows[:, None] * np.array([1.0, -1.0]))
    return loss, grad


def baseline_fit(matchups, outcomes, n_models, alpha, weights):
    res = minimize(baseline_loss_and_grad, np.zeros(n_models), args=(matchups, outcomes, weights, alpha), jac=True,
                   method="L-BFGS-B", options={"maxiter": 100, "gtol": 1e-6})
    return res.x


def baseline_compute_bt(df: pd.DataFrame) -> pd.Series:
    matchups, outcomes, models, weights = baseline_preprocess(df)
    r = baseline_fit(matchups, outcomes, len(models), math.log(10.0), weights)
    return pd.Series(400.0 * r + 1000.0, index=models)  # L-BFGS from zeros keeps the mean at 0


def baseline_bootstrap(df: pd.DataFrame, rounds: int, seed: int = 0) -> np.ndarray:
    matchups, outcomes, models, weights = baseline_preprocess(df)
    rng = np.random.default_rng(seed)
    boot = rng.multinomial(len(df), weights / weights.sum(), size=rounds).astype(np.float64) / len(df)
    fit = partial(baseline_fit, matchups, outcomes, len(models), math.log(10.0))
    with mp.Pool(os.cpu_count()) as pool:
        return 400.0 * np.array(pool.map(fit, boot)) + 1000.0


# ---- helpers --------------------------------------------------------------------------------------------------------
def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def max_gap(a: pd.Series, b: pd.Series) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.abs(a.sort_index().to_numpy() - b.sort_index().to_numpy()).max())


def row(name: str, seconds: float, reference: float, gap: float | None = None, note: str = "") -> str:
    gap_text = "" if gap is None else f"{gap:10.4f}"
    return f"  {name:<52s} {seconds:9.3f} s  {seconds / reference:8.1f}×  {gap_text:>10s}  {note}".rstrip()


def evalica_fit(df: pd.DataFrame, winners) -> pd.Series:
    import evalica

    scores = evalica.bradley_terry(df["model_a"], df["model_b"], winners, tie_weight=0.5).scores
    return 1000.0 + 400.0 / math.log(10.0) * np.log(scores)


def library_timings(df: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Fit (and where feasible bootstrap) timings of evalica and arena-rank; notes where they are missing."""
    out: dict = {"fit": {}, "bootstrap": {}, "notes": []}
    reps = max(1, args.repeats // 2)
    try:
        import evalica

        wmap = {"model_a": evalica.Winner.X, "model_b": evalica.Winner.Y, "tie": evalica.Winner.Draw}
        t_conv, winners = timed(lambda: [wmap[w] for w in df["winner"]], 1)
        t_ev, ev = timed(lambda: evalica_fit(df, winners), reps)
        out["fit"][f"evalica {evalica.__version__} bradley_terry"] = (t_ev, ev, f"(+{t_conv:.1f} s to build its Winner list)")
        out["bootstrap"]["evalica: one fit × rounds (estimated)"] = (
            t_ev * args.rounds, None, f"evalica.bootstrap refits on all {len(df):,} rows per round; not run")
    except ImportError:
        out["notes"].append("evalica: not installed — skipped")
    try:
        from importlib.metadata import version

        import jax.numpy as jnp
        from arena_rank.models.bradley_terry import BradleyTerry, fit_single_bootstrap_sample
        from arena_rank.utils.data_utils import PairDataset

        def arena_rank_fit():
            ds = PairDataset.from_pandas(df)
            model = BradleyTerry(len(ds.competitors))
            model.fit(ds)
            return ds, model

        t_ar, (ds, model) = timed(arena_rank_fit, reps)
        ar = pd.Series(np.asarray(model.params["ratings"]) * model.alpha + model.init_rating, index=ds.competitors)
        t_ar_fit, _ = timed(lambda: BradleyTerry(len(ds.competitors)).fit(ds), reps)
        out["fit"][f"arena-rank {version('arena-rank')} (JAX L-BFGS)"] = (t_ar, ar, "")
        out["fit"]["arena-rank: fit only (its PairDataset)"] = (t_ar_fit, None, "")
        total = int(jnp.sum(ds.counts))
        draws = np.random.default_rng(0).multinomial(total, np.asarray(ds.counts) / total, size=2)
        t_two, _ = timed(lambda: [fit_single_bootstrap_sample(jnp.asarray(d, dtype=jnp.float64), model, ds)
                                  for d in draws], 1)
        out["bootstrap"]["arena-rank: 2 rounds timed, × rounds / CPUs (estimated)"] = (
            t_two / 2 * args.rounds / (os.cpu_count() or 1), None,
            "its own bootstrap forks a multithreaded JAX process (it deadlocked here)")
    except ImportError:
        out["notes"].append("arena-rank: not installed — skipped")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--battles", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--baseline-rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--boot-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-libraries", action="store_true", help="skip evalica and arena-rank")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    true = rng.normal(1000.0, 200.0, args.models)
    df = simulate_battles(true, args.battles, seed=args.seed, tie_rate=0.3)
    counts = aggregate(df)
    print(f"simulated {len(df):,} battles among {args.models} models ({(df['winner'] == 'tie').mean():.1%} ties, "
          f"{len(counts.i):,} pairs); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
          f"medians of {args.repeats} runs ({args.boot_repeats} for bootstraps)\n")

    # ---- ours and the baseline first: the baseline's process pool must fork before any JAX import
    t_ours, ours = timed(lambda: fit_bt(df), args.repeats)
    t_solver, _ = timed(lambda: fit_counts(counts), args.repeats)
    t_base, base = timed(lambda: baseline_compute_bt(df), args.repeats)
    prep = baseline_preprocess(df)
    t_base_solver, _ = timed(lambda: baseline_fit(prep[0], prep[1], len(prep[2]), math.log(10.0), prep[3]),
                             args.repeats)
    t_boot, boot = timed(lambda: bootstrap(df, rounds=args.rounds, seed=args.seed), args.boot_repeats)
    t_boot_counts, _ = timed(lambda: bootstrap(counts, rounds=args.rounds, seed=args.seed), args.boot_repeats)
    t_bb, _ = timed(lambda: baseline_bootstrap(df, args.baseline_rounds, seed=args.seed), 1)
    t_bb_full = t_bb * args.rounds / args.baseline_rounds
    libraries = {} if args.skip_libraries else library_timings(df, args)

    print("Bradley-Terry fit (max |Δ| = largest rating difference from the baseline, both centred)")
    print(f"  {'':<52s} {'median':>11s}  {'vs ours':>9s}  {'max |Δ| Elo':>10s}")
    print(row("ours: fit_bt(battle table)", t_ours, t_ours, max_gap(ours, base)))
    print(row("ours: Newton solver only (pair counts)", t_solver, t_ours))
    print(row("baseline: de-dup + L-BFGS-B (arena-style)", t_base, t_ours, 0.0))
    print(row("baseline: L-BFGS-B only (unique rows)", t_base_solver, t_ours))
    for name, (seconds, ratings, note) in libraries.get("fit", {}).items():
        print(row(name, seconds, t_ours, None if ratings is None else max_gap(ratings, base), note))
    for note in libraries.get("notes", []):
        print(f"  {note}")
    truth = pd.Series(true, index=[f"model-{k:03d}" for k in range(args.models)])
    print(f"  (ours vs the simulated truth: max |Δ| = {max_gap(ours, truth):.2f} Elo)")

    print(f"\nBootstrap, {args.rounds} rounds (95% percentile CIs)")
    print(f"  {'':<52s} {'median':>11s}  {'vs ours':>9s}")
    print(row("ours: bootstrap(battle table)", t_boot, t_boot))
    print(row("ours: bootstrap(pair counts)", t_boot_counts, t_boot))
    print(row(f"baseline: {args.baseline_rounds} rounds run, × {args.rounds / args.baseline_rounds:g} (extrapolated)",
              t_bb_full, t_boot, note=f"measured {t_bb:.1f} s for {args.baseline_rounds} rounds on "
                                      f"{os.cpu_count()} processes"))
    for name, (seconds, _, note) in libraries.get("bootstrap", {}).items():
        print(row(name, seconds, t_boot, note=note))
    width = (boot.ci_high - boot.ci_low)
    print(f"  ours: median CI width {width.median():.1f} Elo (min {width.min():.1f}, max {width.max():.1f}); "
          f"{boot.fallback_rounds} fallback rounds")

    print(f"\nTargets (this machine; load average {os.getloadavg()[0]:.1f} at the end — other jobs share the CPUs):")
    print(f"  fit speed-up over the baseline: {t_base / t_ours:.1f}× end to end (target ≥ 20×), "
          f"{t_base_solver / t_solver:.0f}× solver only")
    print(f"  largest rating difference from the baseline: {max_gap(ours, base):.4f} Elo (target ≤ 0.5)")
    print(f"  {args.rounds} bootstrap rounds: {t_boot:.2f} s from the battle table, {t_boot_counts:.2f} s from "
          f"pair counts (target ≤ 5 s); baseline ≈ {t_bb_full:.0f} s ({t_bb_full / t_boot:.0f}× slower)")


if __name__ == "__main__":
    main()
