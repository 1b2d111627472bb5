"""Repeated tasks: k samples per item from k seeded lm-eval runs, pooled into one score per metric with CIs that
treat an item's samples as one cluster, pass@k, and the run-to-run spread.

A suite entry with ``repeats: k`` runs its task k times through lm-eval, run r with seeds shifted by r (python,
numpy and torch; the few-shot sampler keeps its seed, so every run sees the same examples) and the entry's
``gen_kwargs`` (set ``do_sample: true`` and a temperature, or the k runs are k copies of greedy decoding). lm-eval
scores every sample; this module only pools what it scored:

- each per-item metric: the mean over the k·n samples, with standard error from the n item means (clustered);
- ``pass@K,<filter>`` for each K of the entry's ``pass_at`` on its headline metric (a sample counts as correct when
  its score is above 0.5), by the unbiased estimator (`harness.evals.passk`);
- ``<metric>_repeat_sd,<filter>``: the standard deviation of the task's mean across the k runs (run-to-run spread).

The samples table of a repeated task has a ``repeat`` column and k rows per item.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.evals.passk import task_pass_at_k
from harness.evals.result import SCORE_COLUMNS, Z95, ci

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.suite import Entry

SEED_OFFSETS = ("random_seed", "numpy_random_seed", "torch_random_seed")


def seeds(repeat: int) -> dict[str, int]:
    """lm-eval's seeds for run `repeat` (run 0: lm-eval's defaults, so an unrepeated task is run 0)."""
    from lm_eval.evaluator import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED

    return {"random_seed": DEFAULT_RANDOM_SEED + repeat, "numpy_random_seed": DEFAULT_OTHER_SEED + repeat,
            "torch_random_seed": DEFAULT_OTHER_SEED + repeat}


def combine(tables: list["pd.DataFrame"]) -> "pd.DataFrame":
    """The per-run samples tables of one task as one table with a ``repeat`` column (run order)."""
    import pandas as pd

    return pd.concat([t.assign(repeat=r) for r, t in enumerate(tables)], ignore_index=True)


def _metric_columns(table: "pd.DataFrame") -> list[str]:
    return [c for c in table.columns if "," in c]


def pool(scores: "pd.DataFrame", samples: dict[str, "pd.DataFrame"], entries: dict[str, "Entry"]
         ) -> "pd.DataFrame":
    """`scores` with every repeated task's rows replaced by pooled ones and pass@K / run-to-run rows added.

    Args:
        scores: `harness.evals.result.score_table` output (run 0's numbers for repeated tasks).
        samples: per task, the combined samples table (`combine`).
        entries: each repeated task → its suite entry (repeats, pass_at, headline metric).

    Returns:
        The score table (same columns), repeated tasks pooled.
    """
    import pandas as pd

    pooled: dict[tuple[str, str], list] = {}
    extra: list[list] = []
    for task, entry in entries.items():
        table = samples[task]
        skill = entry.skill
        n = int(table["item_id"].nunique())
        for metric in _metric_columns(table):
            values = pd.to_numeric(table[metric], errors="coerce")
            if values.isna().any():
                continue  # a metric that is not one number per sample (lists, N/A) is left as lm-eval gave it
            by_item = values.groupby(table["item_id"]).mean()
            value = float(by_item.mean())
            stderr = float(by_item.std(ddof=1) / math.sqrt(len(by_item))) if len(by_item) > 1 else float("nan")
            proportion = bool(values.isin([0.0, 1.0]).all())
            low, high = ci(value, stderr, proportion)
            pooled[(task, metric)] = [skill, task, metric, value, stderr, low, high, n]
            per_run = values.groupby(table["repeat"]).mean()
            if len(per_run) > 1:
                name, _, filt = metric.partition(",")
                extra.append([skill, task, f"{name}_repeat_sd,{filt}", float(per_run.std(ddof=1)), float("nan"),
                              float("nan"), float("nan"), int(len(per_run))])
        if entry.pass_at:
            headline = entry.metric or _metric_columns(table)[0]
            correct = [list(pd.to_numeric(group[headline])) for _, group in table.groupby("item_id", sort=False)]
            _, _, filt = headline.partition(",")
            for k, (value, stderr, low, high) in task_pass_at_k(correct, entry.pass_at, z=Z95).items():
                extra.append([skill, task, f"pass@{k},{filt}", value, stderr, low, high, n])
    rows = [pooled.pop((r.task, r.metric), list(r)) for r in scores.itertuples(index=False)]
    return pd.DataFrame(rows + list(pooled.values()) + extra, columns=SCORE_COLUMNS)
