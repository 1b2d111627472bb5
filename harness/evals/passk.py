"""pass@k from repeated samples: the unbiased estimator of Chen et al. (2021), per item and over a task, with a
confidence interval that treats an item's samples as one cluster.

With n samples of an item of which c are correct, the chance that at least one of k samples drawn without
replacement is correct is ``1 - C(n-c, k) / C(n, k)``; it is computed as a product so large n cannot overflow.
A task's pass@k is the mean over items; its standard error is the items' spread (each item contributes one value,
whatever its n), so the k samples of one item are never counted as independent evidence.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one item with `n` samples of which `c` are correct (``k <= n``)."""
    if not 0 <= c <= n:
        raise ValueError(f"correct samples c={c} must lie in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must lie in [1, n={n}]")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def task_pass_at_k(correct: Sequence[Sequence[float]], ks: Sequence[int], z: float = 1.959963984540054
                   ) -> dict[int, tuple[float, float, float, float]]:
    """pass@k over a task for each k in `ks`.

    Args:
        correct: per item, its samples' scores (1 correct, 0 not; a score above 0.5 counts as correct).
        ks: the k values; each must be at most the smallest item's sample count.
        z: the normal quantile of the interval (1.96: 95%).

    Returns:
        k → ``(value, stderr, ci_low, ci_high)``; the interval is clipped to [0, 1].
    """
    counts = [(len(s), int(sum(1 for v in s if float(v) > 0.5))) for s in correct]
    if not counts:
        raise ValueError("no items")
    smallest = min(n for n, _ in counts)
    out = {}
    for k in ks:
        if k > smallest:
            raise ValueError(f"pass@{k} needs at least {k} samples per item; the fewest an item has is {smallest}")
        per_item = np.array([pass_at_k(n, c, k) for n, c in counts])
        value = float(per_item.mean())
        stderr = float(per_item.std(ddof=1) / math.sqrt(len(per_item))) if len(per_item) > 1 else float("nan")
        half = z * stderr if math.isfinite(stderr) else float("nan")
        out[k] = (value, stderr, max(0.0, value - half), min(1.0, value + half))
    return out
