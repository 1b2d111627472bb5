"""`harness compare`: eval runs side by side, with 95% CIs and each run's delta to the first (the baseline).

A reference is an MLflow run id, or a name matched against finished eval runs' ``model`` tag (the ``--model``
that was evaluated: folder, hub id or ``models:/...`` URI), then their ``stage`` tag (base, sft...), then the run
name; the latest matching run wins. Only FINISHED eval runs are compared. Scores come from each run's ``scores.csv`` and ``skills.csv`` artifacts, so MLflow
stays the single record. The delta's CI assumes independent runs: ±1.96·√(se₀² + seᵢ²).

With ``--budget N`` each reference stands for its checkpoint's eval run at thinking budget N (tag ``budget``, on
the scaling curve: `harness.evals.budgets`), the run of the same checkpoint and suite for a run id; without it,
names match only runs without a budget.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.evals.result import Z95
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
KEY = ["skill", "task", "metric"]


def _at_budget(found, budget: int | None):
    """The `search_runs` rows at thinking budget `budget` (None: the rows without one)."""
    column = schema.column("budget")
    if column not in found:
        return found if budget is None else found.iloc[0:0]
    return found[found[column].isna()] if budget is None else found[found[column] == str(budget)]


def find_eval_run(ref: str, *, results_dir: str | os.PathLike, experiment: str, suite: str | None = None,
                  budget: int | None = None) -> dict:
    """The eval run a reference names (see the module docstring), at thinking budget `budget` if given; a
    `HarnessError` if there is none."""
    from harness.tracking import store

    if _RUN_ID.match(ref):
        run = store.read_run(ref, results_dir, kind=schema.Kind.EVAL, finished=True)
        if budget is None or run["schema"].budget == str(budget):
            return run
        tags = run["schema"]
        found = store.find_runs(experiment, schema.Kind.EVAL, results_dir, model_hash=tags.model_hash or "",
                                suite=tags.suite or "", budget=str(budget))
        if len(found):
            return store.read_run(found.run_id.iloc[0], results_dir)
        raise HarnessError(f"run {ref} has no eval run at thinking budget {budget} (same checkpoint and suite) in "
                           f"experiment {experiment!r}; evaluate it with eval.budgets including {budget}")
    where = {"suite": suite} if suite else {}
    for field in ("model", "curve") if budget is not None else ("model", "stage"):
        found = _at_budget(store.find_runs(experiment, schema.Kind.EVAL, results_dir, **where, **{field: ref}), budget)
        if len(found):
            return store.read_run(found.run_id.iloc[0], results_dir)
    found = _at_budget(store.find_runs(experiment, schema.Kind.EVAL, results_dir, extra=schema.where_name(ref),
                                       **where), budget)
    if len(found):
        return store.read_run(found.run_id.iloc[0], results_dir)
    at = f" at thinking budget {budget}" if budget is not None else ""
    raise HarnessError(f"no finished eval run{at} matches {ref!r} (by run id, model, stage or run name) in "
                       f"experiment {experiment!r} of {store.tracking_uri(results_dir)}")


def _label(run: dict) -> str:
    tags = run["schema"]
    return tags.stage or os.path.basename((tags.model or "").rstrip("/")) or run["run_id"][:8]


def _scores(run: dict, results_dir) -> "pd.DataFrame":
    import pandas as pd

    from harness.tracking import store

    scores = store.read(run["run_id"], schema.SCORES, results_dir)
    skills = store.read(run["run_id"], schema.SKILLS, results_dir).assign(task="(skill)", metric="score")
    columns = [*KEY, "value", "stderr", "ci_low", "ci_high"]
    return pd.concat([skills[columns], scores[columns]], ignore_index=True)


def compare(refs: list[str], *, results_dir: str | os.PathLike, experiment: str = "harness",
            suite: str | None = None, log: bool = True, budget: int | None = None) -> "pd.DataFrame":
    """Compare eval runs: one row per (skill, task, metric), each run's value and CI, and deltas to the first.

    Args:
        refs: two or more run ids or names (see the module docstring); the first is the baseline.
        results_dir: results folder of the MLflow store.
        experiment: experiment searched for names.
        suite: only match eval runs of this suite.
        log: also log the table as a ``compare`` run (``compare.csv``, ``compare.txt``, skill deltas as metrics).
        budget: compare the runs at this thinking budget (see the module docstring).

    Returns:
        Columns ``skill, task, metric``, then per run ``<label>``, ``<label> ci_low``, ``<label> ci_high``, and per
        non-baseline run ``Δ <label>``, ``Δ <label> ci_low``, ``Δ <label> ci_high``.
    """
    if len(refs) < 2:
        raise HarnessError("compare needs at least two runs or models")
    runs = [find_eval_run(ref, results_dir=results_dir, experiment=experiment, suite=suite, budget=budget)
            for ref in refs]
    labels = [_label(r) for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label}@{r['run_id'][:8]}" for label, r in zip(labels, runs)]
    import pandas as pd

    frames = [_scores(run, results_dir).rename(columns={
        "value": label, "stderr": f"{label} stderr", "ci_low": f"{label} ci_low", "ci_high": f"{label} ci_high"})
        for run, label in zip(runs, labels)]
    table = pd.concat([f[KEY] for f in frames]).drop_duplicates(ignore_index=True)  # rows in the runs' own order
    for frame in frames:
        table = table.merge(frame, on=KEY, how="left")
    base = labels[0]
    for label in labels[1:]:
        delta = table[label] - table[base]
        half = Z95 * (table[f"{base} stderr"] ** 2 + table[f"{label} stderr"] ** 2) ** 0.5
        table[f"Δ {label}"] = delta
        table[f"Δ {label} ci_low"] = delta - half
        table[f"Δ {label} ci_high"] = delta + half
    table = table.drop(columns=[f"{label} stderr" for label in labels])
    if log:
        _log(table, runs, labels, results_dir, experiment)
    return table


def format_compare(table: "pd.DataFrame") -> str:
    """The comparison as aligned text: ``value [ci]`` per run, ``+delta [ci]`` per non-baseline run."""
    from harness.report.tables import estimate, render

    labels = [c for c in table.columns if c not in KEY and not c.endswith((" ci_low", " ci_high"))]
    rows = [[str(row.skill), str(row.task), str(row.metric),
             *(estimate(row[label], row[f"{label} ci_low"], row[f"{label} ci_high"], signed=label.startswith("Δ "))
               for label in labels)] for _, row in table.iterrows()]
    return render(rows, [*KEY, *labels])


def _log(table: "pd.DataFrame", runs: list[dict], labels: list[str], results_dir, experiment: str) -> None:
    from harness.tracking import store

    tags = schema.tags(runs=[r["run_id"] for r in runs])
    with store.run(schema.compare_run_name(labels), schema.Kind.COMPARE, experiment=experiment,
                   results_dir=results_dir, tags=tags) as run:
        params = {"baseline": labels[0]}
        for i, (label, r) in enumerate(zip(labels, runs)):
            name = schema.compare_run_param(label)
            params[name if name not in params else f"{name}-{i}"] = r["run_id"]  # two labels may sanitise alike
        run.log_params(params)
        run.write(schema.COMPARE_TABLE, table)
        run.write(schema.COMPARE_TEXT, format_compare(table) + "\n")
        skills = table[table.task == "(skill)"]
        run.log_metrics({schema.compare_delta_metric(label, row.skill): row[f"Δ {label}"]
                         for label in labels[1:] for _, row in skills.iterrows()})
