"""Paired per-item statistics for the nightly regression check: is the candidate really worse than the baseline?

A nightly evaluates a candidate checkpoint and a baseline on the same items. For each metric this module compares
the two per item (paired), adjusts the p-values across every metric of the nightly, and gives a verdict per metric
and overall. It is pure: arrays in, dataclasses out, seeded; MLflow and lm-eval live elsewhere.

Choices, and why:
- Binary scores (every value 0 or 1): exact McNemar test, i.e. a two-sided binomial test of the discordant pairs
  (`scipy.stats.binomtest`); items both models get right or wrong carry no information about the difference.
  The 95% CI of the delta is Newcombe's (1998) method 10 for paired proportions (square-and-add of Wilson score
  intervals, with the continuity-corrected correlation term), a closed form that stays sensible near 0 and 1.
- Continuous scores: paired sign-flip permutation test of the mean difference (exact when the non-zero differences
  have at most `log2(rounds)` items, else `rounds` random sign vectors) and a paired bootstrap percentile CI of the
  mean difference (`rounds` resamples of items).
- Tests are two-sided and the sign of the delta is checked afterwards. The same adjusted p-values then decide both
  "regression" and "improvement", and the chance of any false verdict in either direction on a nightly where
  nothing changed is at most `alpha` under Holm; false "regression" alarms alone are about `alpha / 2`.
- Weighted items (`PairedScores.weights`): a metric that is a weighted mean of per-item scores — lm-eval's
  micro-averages (IFEval's instruction-level accuracy: an item weighs as many instructions as it has) and a group's
  pooled items (each subtask's items share its weight in the group score) — is tested on the weighted differences
  w·d with the sign-flip test (an item's sign flips with all its weight: the permutation is clustered by item) and
  a bootstrap of Σ w·d / Σ w over resampled items; means and deltas are the weighted ones, so they equal the
  aggregate lm-eval reports. McNemar is for equally weighted 0/1 scores only.
- Multiple comparisons across all metrics of a nightly: Holm (familywise error, the default) or Benjamini-Hochberg
  (false discovery rate). When nothing changed at all both bound the chance of any alarm by `alpha`.
- A verdict needs both a significant adjusted p-value and a drop (or gain) of at least the metric's `min_effect`,
  in score units. The gate is on the observed delta, so a true drop exactly equal to `min_effect` is caught only
  about half the time: set `min_effect` below the smallest drop that must be caught reliably.

Power depends mostly on how often the two checkpoints disagree per item, so every comparison reports the share
of items the two sides score differently (``discordant``, with its 95% Wilson CI) and the minimum detectable effect
at its n and that disagreement (``mde``: the drop caught with probability ``power`` at alpha / metrics,
`harness.nightly.power`). An A/A nightly (the same checkpoint against itself) should show no discordant items.
With McNemar and Holm over 10 metrics, a 3-point drop on 1000 items is caught at 80% only if roughly 6.5% or fewer
of the items differ between the two checkpoints; if the two models' answers were independent given the accuracy,
it is caught ~7% of the time (simulations in tests/test_nightly_stats.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
from scipy import stats as sps

from harness.errors import HarnessError
from harness.nightly import power as power_analysis
from harness.nightly.config import Correction

__all__ = [
    "PairedScores",
    "Comparison",
    "align_items",
    "mcnemar_exact",
    "newcombe_paired_ci",
    "sign_flip_test",
    "paired_bootstrap_ci",
    "adjust_p_values",
    "compare_suite",
    "drift",
    "overall_verdict",
]

TESTS = ("auto", "mcnemar", "permutation")
CORRECTIONS = get_args(Correction)  # the config's choices
# Most random draws held in memory at once by the resampling tests (float64: 32 MiB).
_CHUNK_ELEMENTS = 1 << 22


def align_items(candidate: Mapping[Any, float], baseline: Mapping[Any, float], *, task: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pair two per-item score tables by item (doc) id.

    Args:
        candidate: scores keyed by item id: a dict or a pandas Series indexed by doc id.
        baseline: the same for the baseline; must cover exactly the same ids.
        task: task name, used in error messages.

    Returns:
        (candidate, baseline) float arrays in the candidate's item order.

    Raises:
        HarnessError: duplicate ids, differing item sets, or non-finite scores.
    """
    tables = {}
    for side, scores in (("candidate", candidate), ("baseline", baseline)):
        pairs = list(scores.items())
        table = dict(pairs)
        if len(table) != len(pairs):
            raise HarnessError(f"task {task!r}: {side} scores have duplicate item ids; each doc id must appear once")
        tables[side] = table
    cand, base = tables["candidate"], tables["baseline"]
    only_cand = [k for k in cand if k not in base]
    only_base = [k for k in base if k not in cand]
    if only_cand or only_base:
        raise HarnessError(
            f"task {task!r}: candidate and baseline were scored on different items "
            f"({len(only_cand)} only in candidate, e.g. {only_cand[:3]}; {len(only_base)} only in baseline, "
            f"e.g. {only_base[:3]}); both must be evaluated on the same doc ids")
    if not cand:
        raise HarnessError(f"task {task!r}: no items to compare; need at least one scored doc id")
    ids = list(cand)
    c = np.array([cand[k] for k in ids], dtype=float)
    b = np.array([base[k] for k in ids], dtype=float)
    for side, arr in (("candidate", c), ("baseline", b)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise HarnessError(f"task {task!r}: {side} score of item {ids[int(np.argmax(bad))]!r} is {arr[bad][0]}; "
                               "scores must be finite numbers")
    return c, b


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare
class PairedScores:
    """One metric of a nightly: per-item scores of both models on the same items, in the same order."""

    task: str = field(metadata={"help": "lm-eval task name, e.g. 'gsm8k'."})
    metric: str = field(metadata={"help": "Metric name, e.g. 'exact_match,strict-match'."})
    candidate: np.ndarray = field(metadata={"help": "Candidate per-item scores (1-D, aligned with baseline)."})
    baseline: np.ndarray = field(metadata={"help": "Baseline per-item scores (1-D, same items, same order)."})
    higher_is_better: bool = field(default=True, metadata={"help": "False for metrics like perplexity."})
    min_effect: float = field(default=0.0, metadata={
        "help": "Smallest |delta| worth a verdict, in score units (0.01 = 1 point of a 0..1 accuracy)."})
    test: str = field(default="auto", metadata={
        "help": "'mcnemar' (binary, equal weights), 'permutation' (continuous or weighted) or 'auto': mcnemar iff "
                "every score is 0 or 1 and the items weigh the same."})
    weights: np.ndarray | None = field(default=None, metadata={
        "help": "Per-item weights (None: equal), the same on both sides: the metric is the weighted mean of the "
                "items' scores (instructions per item for a micro-average, subtask shares for a group)."})

    def __post_init__(self) -> None:
        where = f"task {self.task!r} metric {self.metric!r}"
        cand = np.asarray(self.candidate, dtype=float)
        base = np.asarray(self.baseline, dtype=float)
        if cand.ndim != 1 or cand.shape != base.shape or cand.size == 0:
            raise HarnessError(f"{where}: candidate {cand.shape} and baseline {base.shape} scores must be 1-D "
                               "arrays of the same non-zero length (use align_items to pair by doc id)")
        if not (np.isfinite(cand).all() and np.isfinite(base).all()):
            raise HarnessError(f"{where}: scores contain NaN or inf; scores must be finite numbers")
        if not (np.isfinite(self.min_effect) and self.min_effect >= 0):
            raise HarnessError(f"{where}: min_effect={self.min_effect}; must be a finite number >= 0")
        if self.test not in TESTS:
            raise HarnessError(f"{where}: unknown test {self.test!r}; valid: {', '.join(TESTS)}")
        weights = None
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=float)
            if weights.shape != cand.shape or not np.isfinite(weights).all() or (weights <= 0).any():
                raise HarnessError(f"{where}: weights {weights.shape} must be positive finite numbers, one per item")
            weights = weights / weights.mean()
            if np.allclose(weights, 1.0, rtol=0, atol=1e-12):
                weights = None  # equal weights: a plain mean, and McNemar stays available
        binary = bool(np.isin(cand, (0.0, 1.0)).all() and np.isin(base, (0.0, 1.0)).all())
        if self.test == "mcnemar" and not (binary and weights is None):
            raise HarnessError(f"{where}: test 'mcnemar' needs scores that are all 0 or 1, equally weighted; use "
                               "'permutation'")
        object.__setattr__(self, "candidate", cand)
        object.__setattr__(self, "baseline", base)
        object.__setattr__(self, "weights", weights)
        if self.test == "auto":
            object.__setattr__(self, "test", "mcnemar" if binary and weights is None else "permutation")

    def means(self) -> tuple[float, float]:
        """(candidate, baseline) means, weighted by `weights`."""
        return (float(np.average(self.candidate, weights=self.weights)),
                float(np.average(self.baseline, weights=self.weights)))


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of one metric, after multiple-comparison adjustment across the nightly."""

    task: str
    metric: str
    n: int  # items compared
    candidate_mean: float
    baseline_mean: float
    delta: float  # candidate_mean - baseline_mean, whatever the direction
    ci_low: float  # 95% CI of delta
    ci_high: float
    p_value: float  # raw two-sided p-value
    p_adjusted: float  # after `correction` across all metrics of the nightly
    test: str  # "mcnemar_exact" or "sign_flip_permutation"
    ci_method: str  # "newcombe_paired_wilson" or "paired_bootstrap_percentile"
    correction: str  # "holm" or "bh"
    higher_is_better: bool
    min_effect: float
    verdict: str  # "regression", "improvement" or "no change"
    discordant: float = float("nan")  # share of items the two sides score differently
    discordant_ci_low: float = float("nan")  # its 95% Wilson CI
    discordant_ci_high: float = float("nan")
    mde: float = float("nan")  # minimum detectable effect at n, that disagreement, alpha / metrics and the power


def mcnemar_exact(candidate: np.ndarray, baseline: np.ndarray) -> float:
    """Exact two-sided McNemar p-value for paired 0/1 scores.

    Args:
        candidate: per-item 0/1 scores of the candidate.
        baseline: per-item 0/1 scores of the baseline, same items.

    Returns:
        p-value of a binomial test of the discordant pairs against 1/2; 1.0 when there are none.
    """
    cand, base = np.asarray(candidate, bool), np.asarray(baseline, bool)
    wins = int(np.sum(cand & ~base))
    losses = int(np.sum(~cand & base))
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(wins, wins + losses, 0.5).pvalue)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe_paired_ci(candidate: np.ndarray, baseline: np.ndarray, confidence: float = 0.95
                       ) -> tuple[float, float]:
    """CI of mean(candidate) - mean(baseline) for paired 0/1 scores: Newcombe (1998), method 10.

    Args:
        candidate: per-item 0/1 scores of the candidate.
        baseline: per-item 0/1 scores of the baseline, same items.
        confidence: two-sided coverage, e.g. 0.95.

    Returns:
        (low, high) of the difference of proportions.
    """
    cand, base = np.asarray(candidate, bool), np.asarray(baseline, bool)
    n = cand.size
    both, wins = int(np.sum(cand & base)), int(np.sum(cand & ~base))
    losses, neither = int(np.sum(~cand & base)), int(np.sum(~cand & ~base))
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    p1, p2 = (both + wins) / n, (both + losses) / n
    l1, u1 = _wilson(both + wins, n, z)
    l2, u2 = _wilson(both + losses, n, z)
    margins = (both + wins) * (losses + neither) * (both + losses) * (wins + neither)
    cross = both * neither - wins * losses
    # Newcombe's continuity correction of the correlation: shrink a positive cross-product by n/2.
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / np.sqrt(float(margins))
    delta = p1 - p2
    low = delta - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = delta + np.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return float(low), float(high)


def sign_flip_test(diff: np.ndarray, *, rounds: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation test that the per-item differences are centred on zero.

    Under the null each difference is equally likely to have either sign, so the statistic |sum(diff)| is
    compared with its value under random sign flips. Zero differences carry no information and are dropped.

    Args:
        diff: per-item candidate - baseline differences.
        rounds: random sign vectors drawn; the test is exact (all 2**k vectors) when 2**k <= rounds.
        seed: seed of the sign draws.

    Returns:
        p-value; exact tests include the observed signs, random ones use (1 + hits) / (1 + rounds).
    """
    d = np.asarray(diff, dtype=float)
    d = d[d != 0]
    k = d.size
    if k == 0:
        return 1.0
    observed = abs(d.sum())
    # Sums that equal the observed one in exact arithmetic can differ in the last bits.
    threshold = observed - 1e-10 * np.abs(d).sum()
    if k < 63 and 2**k <= rounds:
        signs = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1) * 2 - 1
        return float(np.mean(np.abs(signs @ d) >= threshold))
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    rows = max(1, _CHUNK_ELEMENTS // k)
    while done < rounds:
        m = min(rows, rounds - done)
        flipped = np.where(rng.random((m, k)) < 0.5, -d, d).sum(axis=1)
        hits += int(np.sum(np.abs(flipped) >= threshold))
        done += m
    return (1 + hits) / (1 + rounds)


def paired_bootstrap_ci(diff: np.ndarray, *, rounds: int = 10_000, seed: int = 0, confidence: float = 0.95,
                        weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean per-item difference, resampling items (so pairs stay together).

    Args:
        diff: per-item candidate - baseline differences.
        rounds: bootstrap resamples.
        seed: seed of the resampling.
        confidence: two-sided coverage, e.g. 0.95.
        weights: per-item weights (None: equal); each resample's statistic is then the weighted mean
            Σ w·d / Σ w of the items drawn, so an item's weight travels with it (a cluster bootstrap).

    Returns:
        (low, high) of the (weighted) mean difference.
    """
    d = np.asarray(diff, dtype=float)
    n = d.size
    w = None if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, rounds, rows):
        m = min(rows, rounds - start)
        idx = rng.integers(0, n, size=(m, n))
        means[start:start + m] = d[idx].mean(axis=1) if w is None else \
            (d[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjust raw p-values for testing them all at once.

    Args:
        p_values: raw p-values, one per metric of the nightly.
        method: "holm" (Holm step-down, controls the familywise error) or "bh" (Benjamini-Hochberg, controls the
            false discovery rate; `scipy.stats.false_discovery_control`).

    Returns:
        adjusted p-values in the input order; reject where adjusted <= alpha.
    """
    if method not in CORRECTIONS:
        raise HarnessError(f"unknown multiple-comparison correction {method!r}; valid: {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    if method == "bh":
        return sps.false_discovery_control(p, method="bh")
    order = np.argsort(p, kind="stable")
    m = p.size
    # The i-th smallest p-value (0-based) is compared with alpha / (m - i); monotone so that rejections step down.
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def _raw_test(scores: PairedScores, rounds: int, seed: int) -> tuple[float, float, float, str, str]:
    """(p, ci_low, ci_high, test name, ci method) of one metric."""
    if scores.test == "mcnemar":
        low, high = newcombe_paired_ci(scores.candidate, scores.baseline)
        return mcnemar_exact(scores.candidate, scores.baseline), low, high, "mcnemar_exact", "newcombe_paired_wilson"
    diff = scores.candidate - scores.baseline
    test_seed, ci_seed = np.random.SeedSequence(seed).generate_state(2)
    # Weighted items: the statistic is Σ w·d, so flipping an item's sign flips its whole weight (its instructions,
    # or its share of a group) at once: the permutation is clustered by item.
    weighted = diff if scores.weights is None else scores.weights * diff
    p = sign_flip_test(weighted, rounds=rounds, seed=int(test_seed))
    low, high = paired_bootstrap_ci(diff, rounds=rounds, seed=int(ci_seed), weights=scores.weights)
    return p, low, high, "sign_flip_permutation", "paired_bootstrap_percentile"


def _verdict(delta: float, p_adjusted: float, alpha: float, higher_is_better: bool, min_effect: float) -> str:
    # A tolerance so that a delta of exactly min_effect is not lost to float rounding (0.70 - 0.67 != 0.03).
    if p_adjusted > alpha or delta == 0 or abs(delta) < min_effect - 1e-12:
        return "no change"
    return "improvement" if (delta > 0) == higher_is_better else "regression"


def _disagreement(s: PairedScores, level: float, power: float) -> dict[str, float]:
    """The share of items the two sides score differently, its 95% Wilson CI, and the metric's minimum detectable
    effect at `level` and `power` (`harness.nightly.power`: exact McNemar for 0/1 scores, else the normal
    approximation on the per-item differences)."""
    diff = s.candidate - s.baseline
    n, changed = diff.size, int(np.count_nonzero(diff))
    low, high = _wilson(changed, n, float(sps.norm.isf(0.025)))
    if s.test == "mcnemar":
        mde = power_analysis.detectable_effect(n, changed / n, alpha=level, power=power)
    else:
        mde = power_analysis.detectable_shift(diff, s.weights, alpha=level, power=power)
    return {"discordant": changed / n, "discordant_ci_low": max(0.0, float(low)),
            "discordant_ci_high": min(1.0, float(high)), "mde": mde}


def compare_suite(metrics: Sequence[PairedScores], *, correction: str = "holm", alpha: float = 0.05,
                  rounds: int = 10_000, seed: int = 0, power: float | None = 0.8) -> list[Comparison]:
    """Compare candidate and baseline on every metric of a nightly, with multiple-comparison control.

    Args:
        metrics: one PairedScores per (task, metric); all of them form one family for the adjustment.
        correction: "holm" (default) or "bh".
        alpha: familywise error (Holm) or false discovery rate (BH) of the verdicts.
        rounds: permutation and bootstrap rounds for continuous metrics.
        seed: base seed; metric i uses a seed derived from (seed, i), so results depend on the order given.
        power: the power at which each metric's minimum detectable effect is reported (at alpha / metrics); None
            leaves the disagreement and the effect out (NaN), for simulations that only need the verdicts.

    Returns:
        one Comparison per metric, in the input order.
    """
    if correction not in CORRECTIONS:
        raise HarnessError(f"unknown multiple-comparison correction {correction!r}; valid: {', '.join(CORRECTIONS)}")
    if not 0 < alpha < 1:
        raise HarnessError(f"alpha={alpha}; must be between 0 and 1, e.g. 0.05")
    if rounds < 1:
        raise HarnessError(f"rounds={rounds}; must be a positive integer, e.g. 10000")
    if power is not None and not 0 < power < 1:
        raise HarnessError(f"power={power}; must be between 0 and 1, e.g. 0.8")
    if not metrics:
        raise HarnessError("no metrics to compare; a nightly needs at least one (task, metric)")
    keys = [(s.task, s.metric) for s in metrics]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise HarnessError(f"(task, metric) pairs given more than once: {duplicates}; each must appear once")
    seeds = np.random.SeedSequence(seed).generate_state(len(metrics))
    raw = [_raw_test(s, rounds, int(sd)) for s, sd in zip(metrics, seeds)]
    adjusted = adjust_p_values([r[0] for r in raw], correction)
    out = []
    for s, (p, low, high, test, ci_method), p_adj in zip(metrics, raw, adjusted):
        cand_mean, base_mean = s.means()
        delta = float(np.average(s.candidate - s.baseline, weights=s.weights))
        out.append(Comparison(
            task=s.task, metric=s.metric, n=int(s.candidate.size), candidate_mean=cand_mean,
            baseline_mean=base_mean, delta=delta, ci_low=low, ci_high=high, p_value=float(p),
            p_adjusted=float(p_adj), test=test, ci_method=ci_method, correction=correction,
            higher_is_better=s.higher_is_better, min_effect=float(s.min_effect),
            verdict=_verdict(delta, float(p_adj), alpha, s.higher_is_better, s.min_effect),
            **(_disagreement(s, alpha / len(metrics), power) if power is not None else {})))
    return out


def drift(comparisons: Sequence[Comparison], *, alpha: float = 0.05, tolerance: float = 0.01) -> list[str]:
    """Infrastructure drift in an A/A comparison (one checkpoint, its recorded scores against a fresh evaluation):
    the metrics whose own scores moved beyond noise, one line each.

    A metric drifts when its paired difference is significant after the multiple-comparison correction (adjusted
    p <= `alpha`, whatever its size or min_effect), or when more than `tolerance` of its items changed score. With
    greedy decoding on the same software and hardware nothing changes at all; a few items flipping in their last
    bits (another batch composition, another kernel) stays under a small tolerance.

    Returns:
        ``task metric: ...`` lines; empty when nothing drifted.
    """
    out = []
    for c in comparisons:
        changed = f"{c.discordant:.1%} of {c.n} items changed score " \
                  f"[{c.discordant_ci_low:.1%}, {c.discordant_ci_high:.1%}]"
        if c.p_adjusted <= alpha:
            out.append(f"{c.task} {c.metric}: {c.delta:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}], significant "
                       f"(adjusted p {c.p_adjusted:.2g}); {changed}")
        elif c.discordant > tolerance:
            out.append(f"{c.task} {c.metric}: {changed}, above the tolerance {tolerance:.1%} (delta {c.delta:+.4f})")
    return out


def overall_verdict(comparisons: Sequence[Comparison]) -> str:
    """"fail" if any metric is a regression, else "pass".

    Args:
        comparisons: the output of compare_suite.

    Returns:
        "fail" or "pass".
    """
    return "fail" if any(c.verdict == "regression" for c in comparisons) else "pass"
