"""Power and minimum detectable effect of the nightly's paired tests: how many items a task needs to catch a drop
of a given size, and what drop a task of n items can catch. ``harness power`` prints them; every nightly reports
each metric's minimum detectable effect at its n and observed disagreement (`harness.nightly.stats`).

0/1 scores. The nightly's test is the exact McNemar test (`harness.nightly.stats.mcnemar_exact`): only the
discordant items, those the two sides score differently, carry information. So power depends on the effect Δ (the
drop in accuracy) and the discordant share d (the disagreement rate); the accuracy a itself only bounds them (a
baseline at a and a candidate at a − Δ disagree on at least Δ and at most min(2a − Δ, 2(1 − a) + Δ) of the items,
`check_design`). Without a disagreement rate, the two sides' answers are taken as independent given the accuracy,
d = a(1 − a′) + a′(1 − a): the worst case; checkpoints of one model agree far more (``tests/test_nightly_stats.py``).

Power is computed exactly, not by a normal approximation (which is off by several points at the few dozen
discordant items a small task has): the number of discordant items K is Binomial(n, d); given K = k the
candidate's wins W are Binomial(k, (d − Δ) / 2d), and the test rejects when its p-value, 2·P(Binomial(k, ½) ≤ W)
for the two-sided test the nightly runs (``scipy.stats.binomtest``), is at most α. Only rejections in the effect's
direction count: a drop reported as a gain is not caught. ``sided="one"`` is the one-sided test at α.

The nightly's family: with m metrics compared, Holm's first step tests at α/m, so the nightly reports each metric's
minimum detectable effect at α/m (Bonferroni: what a metric must reach when it is the only one that moved;
conservative for BH). A verdict also needs |delta| ≥ the metric's ``min_effect``, which this does not model.

Continuous and weighted scores (the sign-flip permutation test): the normal approximation
(z₁₋α/₂ + z_power) · sd / √n_eff, with the weighted standard deviation of the per-item differences and Kish's
effective number of items.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from harness.errors import HarnessError

Sided = Literal["two", "one"]
SIDES = get_args(Sided)
MAX_ITEMS = 10_000_000  # items_needed searches up to this many
_KEPT = 1 << 21  # thresholds kept per (alpha, sided) for up to this many discordant items (16 MiB)
_kept: dict[tuple[float, str], np.ndarray] = {}


def _check_probability(name: str, value: float, *, closed_top: bool = False) -> None:
    ok = math.isfinite(value) and 0 < value and (value <= 1 if closed_top else value < 1)
    if not ok:
        raise HarnessError(f"{name} {value!r} is out of range (valid: > 0 and {'<=' if closed_top else '<'} 1)")


def _check_test(alpha: float, power: float | None, sided: str) -> None:
    _check_probability("--alpha", alpha)
    if power is not None:
        _check_probability("--power", power)
    if sided not in SIDES:
        raise HarnessError(f"--sided {sided!r} is not one of {', '.join(SIDES)}")


def _thresholds(k: np.ndarray, alpha: float, sided: str) -> np.ndarray:
    """For each count of discordant items k (sorted, consecutive), the largest number of wins c_k at which the test
    rejects: the largest c with P(Binomial(k, 1/2) <= c) <= alpha/2 (two-sided; alpha one-sided), −1 for none.
    They do not depend on the effect, so they are kept per (alpha, sided) for k up to `_KEPT`: a search over
    effects or item counts computes each once."""
    key = (alpha, sided)
    kept = _kept.get(key, np.empty(0))
    top = int(k[-1]) if k.size else -1
    if top >= kept.size and top < _KEPT:
        kept = np.concatenate([kept, _exact_thresholds(np.arange(kept.size, max(top + 1, 2 * kept.size)), alpha,
                                                       sided)])
        _kept[key] = kept
    if top < kept.size:
        return kept[k]
    return _exact_thresholds(k, alpha, sided)


def _exact_thresholds(k: np.ndarray, alpha: float, sided: str) -> np.ndarray:
    """`_thresholds` computed: from the normal approximation, stepped to the exact value with scipy.special's
    binomial CDF (a step or two)."""
    tail = alpha / 2 if sided == "two" else alpha
    c = np.clip(np.floor((k - sps.norm.isf(tail) * np.sqrt(k)) / 2), -1, k)
    for _ in range(10_000):
        up = (c + 1 < k / 2) & (special.bdtr(c + 1, k, 0.5) <= tail)
        down = (c >= 0) & (special.bdtr(np.maximum(c, 0), k, 0.5) > tail)
        if not (up.any() or down.any()):
            return c
        c = c + up - down
    raise RuntimeError("binomial thresholds did not settle")  # unreachable: each step moves towards the bound


def mcnemar_power(n: int, effect: float, disagreement: float, *, alpha: float = 0.05, sided: str = "two") -> float:
    """Exact power of the nightly's McNemar test to find a drop of `effect` on `n` paired items.

    Args:
        n: items scored by both sides.
        effect: the true accuracy difference |Δ| (0.03: three points of a 0..1 accuracy).
        disagreement: the true share d of items the two sides score differently; at least `effect`.
        alpha: the test's level (the nightly's family: alpha / metrics).
        sided: ``two`` (the nightly's test) or ``one``.

    Returns:
        The probability that the test rejects in the effect's direction.
    """
    _check_test(alpha, None, sided)
    if not (0 <= effect <= disagreement <= 1) or n < 0:
        raise HarnessError(f"power of n={n}, effect={effect}, disagreement={disagreement}: need n >= 0 and "
                           "0 <= effect <= disagreement <= 1")
    if n == 0 or disagreement == 0:
        return 0.0
    # scipy.special's binomial functions directly: a search over effects calls this often, and the distribution
    # objects' argument checks cost more than the sums of a few hundred terms.
    spread = 9 * math.sqrt(n * disagreement * (1 - disagreement)) + 10  # P(K outside) < 1e-18
    k = np.arange(max(0, int(n * disagreement - spread)), min(n, int(n * disagreement + spread)) + 1)
    weights = np.exp(special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
                     + special.xlogy(k, disagreement) + special.xlog1py(n - k, -disagreement))
    c = _thresholds(k, alpha, sided)
    q = (disagreement - effect) / (2 * disagreement)  # a discordant item goes the candidate's way
    caught = np.where(c >= 0, special.bdtr(np.maximum(c, 0), k, q), 0.0)
    return float(np.clip(np.sum(weights * caught), 0.0, 1.0))


def independent_disagreement(accuracy: float, effect: float) -> float:
    """The discordant share of two sides at `accuracy` and `accuracy - effect` whose answers are independent."""
    other = accuracy - effect
    return accuracy * (1 - other) + other * (1 - accuracy)


def check_design(accuracy: float, effect: float, disagreement: float) -> None:
    """A baseline at `accuracy` and a candidate `effect` lower can disagree on `disagreement` of the items.

    Raises:
        HarnessError: the 2x2 table they imply has a negative or impossible cell (one line, naming the bound).
    """
    _check_probability("--accuracy", accuracy)
    if not (math.isfinite(effect) and 0 < effect < accuracy):
        raise HarnessError(f"--effect {effect!r} is out of range (valid: > 0 and < the accuracy {accuracy:g}: a drop "
                           "to a positive accuracy)")
    _check_probability("--disagreement", disagreement, closed_top=True)
    if disagreement < effect:
        raise HarnessError(f"--disagreement {disagreement:g} is below the effect {effect:g}: a drop of {effect:g} "
                           f"makes at least that share of items score differently (valid: >= {effect:g})")
    # Items only the baseline gets right, (d + Δ) / 2, are at most a and 1 − (a − Δ); items only the candidate gets
    # right, (d − Δ) / 2, at most a − Δ and 1 − a.
    most = min(2 * accuracy - effect, 2 * (1 - accuracy) + effect)
    if disagreement > most + 1e-12:
        raise HarnessError(f"--disagreement {disagreement:g} is more than a baseline at {accuracy:g} and a candidate "
                           f"at {accuracy - effect:g} can disagree on (valid: <= {most:g})")


def _normal_items(effect: float, disagreement: float, alpha: float, power: float, sided: str) -> float:
    """The normal approximation of the items needed (Connor 1987), a starting point for the exact search."""
    z_a = sps.norm.isf(alpha / 2 if sided == "two" else alpha)
    z_b = sps.norm.ppf(power)
    return (z_a * math.sqrt(disagreement) + z_b * math.sqrt(disagreement - effect**2)) ** 2 / effect**2


def items_needed(effect: float, disagreement: float, *, alpha: float = 0.05, power: float = 0.8,
                 sided: str = "two") -> int:
    """The fewest paired items at which the McNemar test catches a drop of `effect` with probability `power`.

    Args:
        effect: the drop to catch, in score units (0 < effect <= disagreement).
        disagreement: the share of items the two sides score differently.
        alpha: the test's level; power: the probability of catching it; sided: ``two`` or ``one``.

    Returns:
        n (exact power at n is >= `power`; power rises with n, up to the sawtooth of a discrete test).

    Raises:
        HarnessError: out-of-range inputs, or more than `MAX_ITEMS` needed.
    """
    _check_test(alpha, power, sided)
    if not (0 < effect <= disagreement <= 1):
        raise HarnessError(f"effect {effect:g} and disagreement {disagreement:g}: need 0 < effect <= disagreement <= 1")
    high = max(2, int(_normal_items(effect, disagreement, alpha, power, sided)))
    while high > MAX_ITEMS or mcnemar_power(high, effect, disagreement, alpha=alpha, sided=sided) < power:
        high *= 2
        if high > MAX_ITEMS:  # the normal approximation is close at that size: no exact sum needed to say so
            raise HarnessError(f"a drop of {effect:g} at disagreement {disagreement:g} needs more than {MAX_ITEMS:,} "
                               "items for that power")
    low = 0  # power(low) < power <= power(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if mcnemar_power(mid, effect, disagreement, alpha=alpha, sided=sided) >= power \
            else (mid, high)
    return high


def detectable_effect(n: int, disagreement: float | None = None, *, accuracy: float | None = None,
                      alpha: float = 0.05, power: float = 0.8, sided: str = "two") -> float:
    """The smallest drop the McNemar test catches with probability `power` on `n` paired items.

    Args:
        n: items scored by both sides.
        disagreement: the share of items the two sides score differently (or the effect's own share, where that is
            larger: a drop of Δ makes at least Δ of the items discordant); None: the two sides' answers independent
            given `accuracy` (`independent_disagreement`).
        accuracy: the baseline's accuracy: bounds the drop (and gives the disagreement when it is None).
        alpha, power, sided: as for `items_needed`.

    Returns:
        The minimum detectable effect in score units; ``inf`` when no possible drop is caught that often (too few
        items: the test cannot reject at `alpha` with so few discordant items).
    """
    _check_test(alpha, power, sided)
    if accuracy is not None:
        _check_probability("--accuracy", accuracy)
    if disagreement is None and accuracy is None:
        raise HarnessError("a detectable effect needs the disagreement rate or the accuracy")
    if n < 1 or disagreement is not None and not 0 <= disagreement <= 1:
        raise HarnessError(f"detectable effect at n={n}, disagreement={disagreement}: need n >= 1 and a "
                           "disagreement between 0 and 1")
    top = 1.0 if accuracy is None else accuracy

    def short(effect: float) -> float:
        d = independent_disagreement(accuracy, effect) if disagreement is None else disagreement
        return mcnemar_power(n, effect, min(1.0, max(d, effect)), alpha=alpha, sided=sided) - power

    if short(top) < 0:
        return math.inf
    return float(optimize.brentq(short, 1e-9, top, xtol=1e-5))


def design(*, accuracy: float, effect: float | None = None, items: int | None = None,
           disagreement: float | None = None, alpha: float = 0.05, power: float = 0.8, sided: str = "two",
           metrics: int = 1) -> dict:
    """What ``harness power`` answers: the items needed for a drop of `effect`, or the drop detectable at `items`.

    Args:
        accuracy: the baseline's accuracy (0..1).
        effect: the drop to catch (give this or `items`).
        items: the task's paired items (give this or `effect`).
        disagreement: the share of items the two checkpoints score differently; None: independent answers (the
            worst case).
        alpha: the familywise level; metrics: how many metrics share it (each is tested at alpha / metrics, as
            Holm's first step does).
        power, sided: see `items_needed`.

    Returns:
        ``level, accuracy, disagreement (None if assumed independent), items, effect, power`` (the exact power at
        the answer) and ``normal_items`` (the normal approximation, items mode only).

    Raises:
        HarnessError: out-of-range or inconsistent inputs, one line naming the flag.
    """
    if (effect is None) == (items is None):
        raise HarnessError("give --effect (items needed for that drop) or --items (the drop detectable there), not "
                           "both or neither")
    if not (isinstance(metrics, int) and metrics >= 1):
        raise HarnessError(f"--metrics {metrics!r} is out of range (valid: >= 1)")
    _check_test(alpha, power, sided)
    _check_probability("--accuracy", accuracy)
    level = alpha / metrics
    out = {"level": level, "accuracy": accuracy, "disagreement": disagreement, "sided": sided, "target": power}
    if effect is not None:
        if not (math.isfinite(effect) and 0 < effect < accuracy):
            raise HarnessError(f"--effect {effect!r} is out of range (valid: > 0 and < the accuracy {accuracy:g}: a "
                               "drop to a positive accuracy)")
        d = independent_disagreement(accuracy, effect) if disagreement is None else disagreement
        check_design(accuracy, effect, d)
        n = items_needed(effect, d, alpha=level, power=power, sided=sided)
        return {**out, "items": n, "effect": effect, "used_disagreement": d,
                "power": mcnemar_power(n, effect, d, alpha=level, sided=sided),
                "normal_items": math.ceil(_normal_items(effect, d, level, power, sided))}
    if not (isinstance(items, int) and items >= 1):
        raise HarnessError(f"--items {items!r} is out of range (valid: >= 1)")
    if disagreement is not None:
        _check_probability("--disagreement", disagreement, closed_top=True)
    found = detectable_effect(items, disagreement, accuracy=accuracy, alpha=level, power=power, sided=sided)
    d = None if not math.isfinite(found) else \
        max(found, independent_disagreement(accuracy, found) if disagreement is None else disagreement)
    return {**out, "items": items, "effect": found, "used_disagreement": d,
            "power": mcnemar_power(items, found, min(1.0, d), alpha=level, sided=sided) if d is not None else 0.0}


def detectable_shift(diff: np.ndarray, weights: np.ndarray | None = None, *, alpha: float = 0.05,
                     power: float = 0.8) -> float:
    """The smallest mean shift of continuous (or weighted) per-item differences that a two-sided test at `alpha`
    finds with probability `power`, by the normal approximation: (z₁₋α/₂ + z_power) · sd / √n_eff.

    Returns:
        The shift in score units; NaN when every difference is 0 (nothing to estimate the spread from).
    """
    _check_test(alpha, power, "two")
    d = np.asarray(diff, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    mean = np.average(d, weights=w)
    sd = math.sqrt(float(np.average((d - mean) ** 2, weights=w)))
    if d.size < 2 or sd == 0:
        return math.nan
    n_eff = w.sum() ** 2 / (w**2).sum()  # Kish's effective number of items
    return float((sps.norm.isf(alpha / 2) + sps.norm.ppf(power)) * sd * math.sqrt(d.size / (d.size - 1) / n_eff))
