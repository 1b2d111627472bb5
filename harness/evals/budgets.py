"""Thinking budgets (``eval.budgets``) and the test-time scaling curve they draw.

Each budget is one more eval run of the suite's generation tasks (`harness.evals.run.evaluate` with ``budget=N``:
the reasoning forced closed at N tokens and the answer generated after it, s1's budget forcing), tagged
``budget`` and, in place of a stage, ``curve`` (the checkpoint's label): a stage's own eval run stays the one
without a budget. Every such run holds its scores with CIs and its thinking accounting (``reasoning/tokens_mean``
...), so the curve is a view of the record:

- `scaling_table`: from results in hand, one row per (checkpoint, budget): the overall score of the generation
  tasks with its 95% CI, and the mean generated tokens per item (reasoning and answer) with theirs;
- `read_scaling`: the same rows read back from the budget runs in MLflow (the dashboard);
- `log_scaling`: the table and its figure (`harness.report.figures.scaling_figure`) on a run (the pipeline's, or
  the checkpoint's own eval run for ``harness eval``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from harness.evals.result import SuiteResult, ci
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.tracking.store import Run

COLUMNS = ["label", "budget", "value", "stderr", "ci_low", "ci_high", "tokens_mean", "tokens_stderr",
           "tokens_ci_low", "tokens_ci_high", "reasoning_tokens_mean", "unterminated_rate", "forced_rate", "n",
           "run_id"]


def evaluate_budgets(model: str, suite: str, *, budgets: list[int], **kwargs: Any) -> dict[int, SuiteResult]:
    """`evaluate` the suite's generation tasks once per thinking budget (each an eval run of its own).

    Args:
        model, suite: as `harness.evals.run.evaluate` takes them.
        budgets: the thinking budgets in tokens (``eval.budgets``, checked).
        **kwargs: `evaluate`'s other arguments (cfg, results_dir, parent, label...).

    Returns:
        budget → its `SuiteResult`.
    """
    from harness.evals.run import evaluate

    return {n: evaluate(model, suite, budget=n, **kwargs) for n in budgets}


def _row(label: str, budget: int, value: float, stderr: float, n: int, stats: Mapping[str, float],
         run_id: str | None) -> dict[str, Any]:
    low, high = ci(value, stderr, True)
    tokens, tokens_se = stats.get("tokens_mean", math.nan), stats.get("tokens_stderr", math.nan)
    t_low, t_high = ci(tokens, tokens_se, False)
    return {"label": label, "budget": int(budget), "value": value, "stderr": stderr, "ci_low": low, "ci_high": high,
            "tokens_mean": tokens, "tokens_stderr": tokens_se, "tokens_ci_low": t_low, "tokens_ci_high": t_high,
            "reasoning_tokens_mean": stats.get("reasoning_tokens_mean", math.nan),
            "unterminated_rate": stats.get("unterminated_rate", math.nan),
            "forced_rate": stats.get("forced_rate", math.nan), "n": n, "run_id": run_id}


def scaling_table(curves: Mapping[str, Mapping[int, SuiteResult]]) -> "pd.DataFrame":
    """The scaling curve of each checkpoint from its budget runs' results (see the module docstring).

    Args:
        curves: checkpoint label → budget → `SuiteResult` of that budget's run.

    Returns:
        The `COLUMNS`, one row per (label, budget), in the given order.
    """
    import pandas as pd

    from harness import reasoning

    rows = []
    for label, runs in curves.items():
        for budget, result in runs.items():
            overall = result.skills.set_index("skill").loc[schema.OVERALL]
            tables = [t for t in result.samples.values() if "reasoning_tokens" in t.columns]
            stats = reasoning.sample_metrics(pd.concat(tables, ignore_index=True)) if tables else {}
            rows.append(_row(label, budget, float(overall["value"]), float(overall["stderr"]), int(overall["n"]),
                             stats, result.run_id))
    return pd.DataFrame(rows, columns=COLUMNS)


def read_scaling(runs: "pd.DataFrame") -> "pd.DataFrame":
    """The scaling curves recorded in MLflow: the budget-forced eval runs among `runs` (`search_runs` rows), the
    newest per (checkpoint label, budget), ordered by label then budget.

    Returns:
        The `COLUMNS` (empty when no run has a budget).
    """
    import pandas as pd

    budget_col, curve_col = schema.column("budget"), schema.column("curve")
    if budget_col not in runs or runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows, seen = [], set()
    for _, run in runs[runs[budget_col].notna()].iterrows():
        label = run.get(curve_col) if isinstance(run.get(curve_col), str) else str(run["run_id"])[:8]
        budget = int(run[budget_col])
        if (label, budget) in seen:  # runs come newest first
            continue
        seen.add((label, budget))

        def metric(name: str) -> float:
            value = run.get(f"metrics.{name}")
            return float(value) if value is not None and value == value else math.nan

        stats = {stat: metric(schema.reasoning_metric(stat)) for stat in
                 ("tokens_mean", "tokens_stderr", "reasoning_tokens_mean", "unterminated_rate", "forced_rate")}
        items = metric(schema.reasoning_metric("items"))
        rows.append(_row(label, budget, metric(schema.skill_metric(schema.OVERALL)),
                         metric(schema.skill_stderr(schema.OVERALL)), int(items) if items == items else 0, stats,
                         str(run["run_id"])))
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {label: i for i, label in enumerate(dict.fromkeys(reversed(table["label"].tolist())))}
    return table.sort_values(["label", "budget"], key=lambda c: c.map(order) if c.name == "label" else c,
                             ignore_index=True)


def log_scaling(run: "Run", table: "pd.DataFrame") -> None:
    """Write the scaling table and its figure on `run` (nothing for an empty table)."""
    if table.empty:
        return
    from harness.report.figures import scaling_figure

    run.write(schema.SCALING_TABLE, table)
    run.write(schema.SCALING_FIGURE, scaling_figure(table))


def format_scaling(table: "pd.DataFrame") -> str:
    """The curve as aligned text: per checkpoint and budget, the score and the mean tokens with 95% CIs."""
    from harness.report.tables import estimate, number, render

    rows = [[str(r.label), str(r.budget), estimate(r.value, r.ci_low, r.ci_high),
             estimate(r.tokens_mean, r.tokens_ci_low, r.tokens_ci_high, 1), number(r.reasoning_tokens_mean, 1),
             number(r.unterminated_rate)] for r in table.itertuples()]
    return render(rows, ["checkpoint", "budget", "score [95% CI]", "tokens/item [95% CI]", "reasoning tokens",
                         "unterminated"])
