"""Earlier nightlies, read from MLflow: each metric's trend over the last N nightlies of the same suite version.

A nightly logs the candidate's value of every compared metric under the eval runs' name
(``<skill>/<task>/<metric>``), so the trend is those metrics over the finished nightly runs tagged with the same
``suite`` and ``suite_version`` and a ``pass`` or ``fail`` verdict, oldest first, ending with the
nightly being reported (which is still open, so its values come from memory). A/A nightlies (``--aa``) are drift
checks of the baseline, not candidates: they are left out of the trend and of ``last-pass``
(`harness.nightly.sides.judged`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.nightly.sides import judged
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.nightly.result import NightlyResult

COLUMNS = ["run_id", "start_time", "verdict", "candidate", "current", "task", "metric", "value"]


def nightly_runs(*, results_dir: str | os.PathLike, experiment: str, suite: str | None = None,
                 suite_version: str | None = None) -> "pd.DataFrame":
    """Finished nightly runs of `experiment` (optionally one suite and version), newest first."""
    from harness.tracking import store

    where = {k: v for k, v in (("suite", suite), ("suite_version", suite_version)) if v}
    return store.find_runs(experiment, schema.Kind.NIGHTLY, results_dir, **where)


def trend(result: "NightlyResult", *, results_dir: str | os.PathLike, experiment: str, last: int
          ) -> "pd.DataFrame":
    """Each compared metric's candidate value over the last `last` nightlies, this one included.

    Args:
        result: the nightly being reported (its comparisons and metric names).
        results_dir: results folder of the MLflow store.
        experiment: the nightlies' experiment.
        last: how many nightlies, this one included.

    Returns:
        Long table ``run_id, start_time, verdict, candidate, current, task, metric, value``, oldest first; empty
        when this nightly compared nothing.
    """
    import pandas as pd

    if not result.comparisons:
        return pd.DataFrame(columns=COLUMNS)
    runs = nightly_runs(results_dir=results_dir, experiment=experiment, suite=result.suite,
                        suite_version=result.suite_version)
    if len(runs):
        runs = judged(runs)
        runs = runs[(runs["run_id"] != result.run_id) & runs[schema.column("verdict")].isin(["pass", "fail"])]
        runs = runs.head(last - 1).iloc[::-1]
    rows = []
    for _, run in runs.iterrows():
        tags = schema.check_version(schema.row_tags(run), run["run_id"])
        for c in result.comparisons:
            value = run.get(f"metrics.{result.metric_key(c)}")
            if value is not None and pd.notna(value):
                rows.append([run["run_id"], run["start_time"], tags.verdict, tags.candidate, False, c.task,
                             c.metric, float(value)])
    now = pd.Timestamp.now(tz="UTC")
    rows += [[result.run_id, now, result.verdict, result.candidate.model, True, c.task, c.metric, c.candidate_mean]
             for c in result.comparisons]
    return pd.DataFrame(rows, columns=COLUMNS)
