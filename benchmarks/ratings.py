"""Benchmark: harness.ratings at 10M battles among 300 models, beside FastChat's method, evalica and arena-rank.

    python benchmarks/ratings.py                      # 10,000,000 battles, 300 models, 1000 bootstrap rounds
    python benchmarks/ratings.py --battles 1000000 --models 150 --repeats 5

The log is a simulated battle table with categorical columns (as a dictionary-encoded Parquet file loads). Every
figure is printed beside a baseline measured in the same run:

- "one pass over the log": `np.bincount((a * m + b) * 3 + w)` on the integer codes of the three columns (cast to
  int64) — the aggregation into (pair, outcome) counts that any Bradley-Terry fit has to do once. Target: our fit, end
  to end from the table, in at most twice its time.
- FastChat's `compute_mle_elo` (pivot tables of the log, then scikit-learn's LogisticRegression on the aggregated
  design matrix with sample weights; the per-battle design matrix would need 10M × 300 floats).
- evalica's `bradley_terry` on the raw rows (once) and on the aggregated rows with weights; arena-rank where
  installed.
- the arena-style baseline of the earlier benchmark: rows de-duplicated with `np.unique`, scipy L-BFGS-B, and for
  the bootstrap a multinomial redraw with one refit per round in a process pool (run for `--baseline-rounds` and
  extrapolated; its de-duplication is timed once, not per round). The whole run takes about 10 minutes on 2 cores.

Peak memory is the process's peak resident set (Linux VmHWM, reset before each measured step with
`/proc/self/clear_refs`), so it includes the log and the interpreter. Timings are medians over `--repeats` runs
(bootstraps: `--boot-repeats`) with wall and CPU time: the machine may be shared, and CPU time shows what the work
costs when it is not.
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


def baseline_bootstrap(df: pd.DataFrame, rounds: int, seed: int = 0, prep=None) -> np.ndarray:
    matchups, outcomes, models, weights = prep or baseline_preprocess(df)
    rng = np.random.default_rng(seed)
    boot = rng.multinomial(len(df), weights / weights.sum(), size=rounds).astype(np.float64) / len(df)
    fit = partial(baseline_fit, matchups, outcomes, len(models), math.log(10.0))
    with mp.Pool(os.cpu_count()) as pool:
        return 400.0 * np.array(pool.map(fit, boot)) + 1000.0


# ---- FastChat's method -----------------------------------------------------------------------------------------------
def fastchat_compute_mle_elo(df: pd.DataFrame, SCALE=400, BASE=10, INIT_RATING=1000) -> pd.Series:
    """FastChat's `compute_mle_elo` (fastchat/serve/monitor/elo_analysis.py) as published, less its fixed anchor."""
    from sklearn.linear_model import LogisticRegression

    def pivot(rows):
        return pd.pivot_table(rows, index="model_a", columns="model_b", aggfunc="size", fill_value=0, observed=True)

    ptbl_a_win = pivot(df[df["winner"] == "model_a"])
    if sum(df["winner"].isin(["tie", "tie (bothbad)"])) == 0:
        ptbl_tie = pd.DataFrame(0, index=ptbl_a_win.index, columns=ptbl_a_win.columns)
    else:
        ptbl_tie = pivot(df[df["winner"].isin(["tie", "tie (bothbad)"])])
        ptbl_tie = ptbl_tie + ptbl_tie.T
    ptbl_b_win = pivot(df[df["winner"] == "model_b"])
    ptbl_win = ptbl_a_win * 2 + ptbl_b_win.T * 2 + ptbl_tie
    models = pd.Series(np.arange(len(ptbl_win.index)), index=ptbl_win.index)
    p = len(models)
    X = np.zeros([p * (p - 1) * 2, p])
    Y = np.zeros(p * (p - 1) * 2)
    cur_row = 0
    sample_weights = []
    for m_a in ptbl_win.index:
        for m_b in ptbl_win.columns:
            if m_a == m_b:
                continue
            if math.isnan(ptbl_win.loc[m_a, m_b]) or math.isnan(ptbl_win.loc[m_b, m_a]):
                continue
            X[cur_row, models[m_a]] = +math.log(BASE)
            X[cur_row, models[m_b]] = -math.log(BASE)
            Y[cur_row] = 1.0
            sample_weights.append(ptbl_win.loc[m_a, m_b])
            X[cur_row + 1, models[m_a]] = math.log(BASE)
            X[cur_row + 1, models[m_b]] = -math.log(BASE)
            Y[cur_row + 1] = 0.0
            sample_weights.append(ptbl_win.loc[m_b, m_a])
            cur_row += 2
    X = X[:cur_row]
    Y = Y[:cur_row]
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)  # C=inf: today's spelling of penalty=None
    lr.fit(X, Y, sample_weight=sample_weights)
    elo_scores = SCALE * lr.coef_[0] + INIT_RATING
    return pd.Series(elo_scores, index=models.index).sort_values(ascending=False)


# ---- helpers --------------------------------------------------------------------------------------------------------
def _reset_peak() -> bool:
    try:  # Linux >= 4.0: writing 5 resets the peak resident set (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats: int):
    """Median wall and CPU seconds over `repeats` runs, the last result, and the peak RSS (MB) across them."""
    walls, cpus, out = [], [], None
    _reset_peak()
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out, peak_rss_mb()


def max_gap(a: pd.Series, b: pd.Series) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.abs(a.sort_index().to_numpy() - b.sort_index().to_numpy()).max())


def row(name: str, wall: float, cpu: float, reference: float, rss: float | None = None, gap: float | None = None,
        note: str = "") -> str:
    gap_text = "" if gap is None else f"{gap:.4f}"
    rss_text = "" if rss is None else f"{rss:,.0f}"
    return (f"  {name:<50s} {wall:8.2f} s {cpu:8.2f} s {wall / reference:7.1f}× {rss_text:>8s}  {gap_text:>9s}  "
            f"{note}").rstrip()


HEADER = f"  {'':<50s} {'wall':>10s} {'CPU':>10s} {'ratio':>8s} {'peak MB':>8s}  {'max |Δ|':>9s}"


def evalica_timings(df: pd.DataFrame, counts, args) -> list:
    """evalica's Bradley-Terry on the raw rows and on the aggregated rows (weights); [] with a note if absent."""
    try:
        import evalica
    except ImportError:
        return [("evalica: not installed (pip install evalica, or harness[bench]) — skipped",)]
    wmap = {"model_a": evalica.Winner.X, "model_b": evalica.Winner.Y, "tie": evalica.Winner.Draw,
            "tie (bothbad)": evalica.Winner.Draw}
    winner = df["winner"]
    t_conv, c_conv, winners, _ = timed(
        lambda: np.array([wmap[c] for c in winner.cat.categories], dtype=object)[winner.cat.codes.to_numpy()].tolist(), 1)
    xs, ys = df["model_a"], df["model_b"]
    k = 400.0 / math.log(10.0)
    out = []
    wall, cpu, res, rss = timed(lambda: evalica.bradley_terry(xs, ys, winners, tie_weight=0.5), 1)
    out.append((f"evalica {evalica.__version__} bradley_terry (raw rows)", wall + t_conv, cpu + c_conv, rss,
                1000.0 + k * np.log(res.scores), f"incl. {t_conv:.1f} s to build its Winner column"))
    m = counts.models
    agg_x = [m[i] for i in counts.i] * 3
    agg_y = [m[j] for j in counts.j] * 3
    agg_w = [evalica.Winner.X] * len(counts.i) + [evalica.Winner.Draw] * len(counts.i) + [evalica.Winner.Y] * len(counts.i)
    weights = np.concatenate([counts.wins_i, counts.ties, counts.wins_j])
    wall, cpu, res, rss = timed(lambda: evalica.bradley_terry(agg_x, agg_y, agg_w, weights=weights, tie_weight=0.5),
                                args.repeats)
    out.append((f"evalica {evalica.__version__} on pair counts (weights), solver", wall, cpu, rss,
                1000.0 + k * np.log(res.scores), ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--battles", type=int, default=10_000_000)
    ap.add_argument("--models", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--baseline-rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--boot-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-libraries", action="store_true", help="skip FastChat's method, evalica and arena-rank")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    true = rng.normal(1000.0, 200.0, args.models)
    df = simulate_battles(true, args.battles, seed=args.seed, tie_rate=0.3, categorical=True)
    counts = aggregate(df)
    codes = [np.asarray(df[c].array.codes) for c in ("model_a", "model_b", "winner")]
    m = args.models
    print(f"simulated {len(df):,} battles among {m} models ({(df['winner'] == 'tie').mean():.1%} ties, "
          f"{len(counts.i):,} pairs; the table takes {df.memory_usage(deep=True).sum() / 1e6:.0f} MB); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; medians of {args.repeats} runs "
          f"({args.boot_repeats} for bootstraps); peak MB = the process's peak resident set during the step\n")

    def one_pass():
        a, b, w = codes
        return np.bincount((a.astype(np.int64) * m + b) * 3 + w, minlength=3 * m * m)

    # ours and the baselines that fork first: the process pool must fork before any threaded library is loaded
    t_pass, c_pass, _, rss_pass = timed(one_pass, args.repeats)
    t_fit, c_fit, ours, rss_fit = timed(lambda: fit_bt(df), args.repeats)
    t_agg, c_agg, _, _ = timed(lambda: aggregate(df), args.repeats)
    t_solver, c_solver, _, _ = timed(lambda: fit_counts(counts), args.repeats)
    t_base, c_base, base, rss_base = timed(lambda: baseline_compute_bt(df), 1)
    prep = baseline_preprocess(df)
    t_boot, c_boot, boot, rss_boot = timed(lambda: bootstrap(df, rounds=args.rounds, seed=args.seed), args.boot_repeats)
    t_bb, _, _, _ = timed(lambda: baseline_bootstrap(df, args.baseline_rounds, seed=args.seed, prep=prep), 1)
    t_bb_full = t_bb * args.rounds / args.baseline_rounds
    from harness.ratings.sandwich import sandwich

    t_sw, c_sw, robust, rss_sw = timed(lambda: sandwich(df, cluster=None), args.repeats)

    print("Bradley-Terry fit (ratio: wall time over one pass; max |Δ|: largest rating difference from ours, centred)")
    print(HEADER)
    print(row("one pass over the log: np.bincount of (pair, outcome)", t_pass, c_pass, t_pass, rss_pass))
    print(row("ours: fit_bt(battle table), end to end", t_fit, c_fit, t_pass, rss_fit, 0.0))
    print(row("ours: aggregate only", t_agg, c_agg, t_pass))
    print(row("ours: Newton solver only (pair counts)", t_solver, c_solver, t_pass))
    print(row("arena-style: np.unique + L-BFGS-B", t_base, c_base, t_pass, rss_base, max_gap(base, ours)))
    if not args.skip_libraries:
        t_fc, c_fc, fc, rss_fc = timed(lambda: fastchat_compute_mle_elo(df), 1)
        print(row("FastChat compute_mle_elo (pivot + sklearn LR)", t_fc, c_fc, t_pass, rss_fc,
                  max_gap(fc, ours)))
        for item in evalica_timings(df, counts, args):
            if len(item) == 1:
                print(f"  {item[0]}")
            else:
                name, wall, cpu, rss, ratings, note = item
                print(row(name, wall, cpu, t_pass, rss, max_gap(pd.Series(ratings), ours), note))
        try:
            import arena_rank  # noqa: F401
        except ImportError:
            print("  arena-rank: not installed — skipped")
    truth = pd.Series(true, index=[f"model-{k:03d}" for k in range(m)])
    print(f"  (ours vs the simulated truth: max |Δ| = {max_gap(ours, truth):.2f} Elo)")

    print(f"\nIntervals, {args.rounds} bootstrap rounds (95% percentile CIs) and sandwich SEs (ratio: over ours)")
    print(HEADER)
    print(row("ours: bootstrap(battle table)", t_boot, c_boot, t_boot, rss_boot))
    print(row(f"arena-style: {args.baseline_rounds} rounds on {os.cpu_count()} processes, extrapolated", t_bb_full,
              math.nan, t_boot, note=f"(measured {t_bb:.1f} s; CPU time is in the worker processes)"))
    print(row("ours: sandwich SEs (analytic, no resampling)", t_sw, c_sw, t_boot, rss_sw))
    spread = boot.samples.std(ddof=1)[robust.se.index]
    agree = robust.se / spread
    width = boot.ci_high - boot.ci_low
    print(f"  bootstrap: median CI width {width.median():.2f} Elo; {boot.fallback_rounds} fallback rounds; sandwich SE "
          f"/ bootstrap SD: median {agree.median():.3f} (range {agree.min():.3f}–{agree.max():.3f})")

    print(f"\nTargets (load average {os.getloadavg()[0]:.1f} at the end — other jobs share the CPUs):")
    print(f"  fit ≤ 2× one pass: {t_fit / t_pass:.2f}× wall ({c_fit / c_pass:.2f}× CPU)")
    print(f"  {args.rounds} bootstrap rounds ≤ 10 s: {t_boot:.2f} s wall ({c_boot:.2f} s CPU over all threads)")
    print(f"  peak memory ≤ 2 GB: {max(rss_fit, rss_boot, rss_sw):,.0f} MB (fit {rss_fit:,.0f}, bootstrap "
          f"{rss_boot:,.0f}, sandwich {rss_sw:,.0f})")


if __name__ == "__main__":
    main()
