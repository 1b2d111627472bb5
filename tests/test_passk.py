"""pass@k: the unbiased estimator against brute-force enumeration of every k-subset, and task-level CIs that
treat an item's samples as one cluster."""

from __future__ import annotations

import itertools
import math

import pytest

from harness.evals.passk import pass_at_k, task_pass_at_k


def _brute(samples: list[int], k: int) -> float:
    subsets = list(itertools.combinations(range(len(samples)), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_estimator_equals_enumeration(n):
    for c in range(n + 1):
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute(samples, k), abs=1e-12), (n, c, k)


def test_edges_and_large_n():
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 6, 5) == 1.0
    assert pass_at_k(200, 1, 1) == pytest.approx(1 / 200)
    assert pass_at_k(10_000, 3, 100) == pytest.approx(1 - math.comb(9997, 100) / math.comb(10_000, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_task_level_mean_and_clustered_stderr():
    items = [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 1]]
    out = task_pass_at_k(items, [1, 2, 4])
    per_item_1 = [0.25, 1.0, 0.0, 0.5]
    value, stderr, low, high = out[1]
    assert value == pytest.approx(sum(per_item_1) / 4)
    mean = sum(per_item_1) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_item_1) / 3)
    assert stderr == pytest.approx(sd / 2)  # one value per item: 4 clusters, not 16 samples
    assert 0.0 <= low <= value <= high <= 1.0
    assert out[4][0] == pytest.approx(0.75)
    assert out[1][0] <= out[2][0] <= out[4][0]
    with pytest.raises(ValueError, match="at least 5 samples"):
        task_pass_at_k(items, [5])
