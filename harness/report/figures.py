"""Every matplotlib figure of the harness, all made by one helper, `figure(width, height)`: matplotlib's object API on
the Agg canvas (no pyplot state, no display), constrained layout.

- evals: `stage_skill_figure` (skills × stages, grouped bars);
- dashboard: `skill_comparison_figure` (checkpoints on one skill), `stage_progression_figure`, `cost_figure`;
- reasoning: `scaling_figure` (test-time scaling: score vs mean tokens at each thinking budget, per checkpoint);
- nightly: `delta_figure` (per-metric deltas with CIs), `trend_figure` (each metric over the last nightlies);
- ratings and arenas: `ratings_figure` (ratings with CI bars), `win_matrix_figure` (win-probability heatmap),
  `win_rate_vs_baseline_figure`, and `arena_figures` (an arena's set, by name).

Each returns a `Figure`; save it with `figure.savefig(path)`, `png(figure)`, or hand it to
`harness.tracking.store.Run.write`. Error bars come from CI ends: always 95% unless a table's ``attrs`` says otherwise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from harness.nightly.stats import Comparison

COLORS = {"regression": "tab:red", "improvement": "tab:green", "no change": "tab:gray",
          "pass": "tab:green", "fail": "tab:red", "cannot-compare": "tab:orange"}


def figure(width: float, height: float) -> "Figure":
    """A blank figure of `width` × `height` inches on the Agg canvas, with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: "Figure", dpi: int = 100) -> bytes:
    """`fig` as PNG bytes; the figure is cleared afterwards."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clf()
    return buffer.getvalue()


def _errors(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Error-bar lengths from CI ends; 0 where an end is unknown (or, after rounding, on the wrong side)."""
    below = np.where(np.isfinite(low), values - low, 0.0)
    above = np.where(np.isfinite(high), high - values, 0.0)
    return np.clip(np.nan_to_num(np.vstack([below, above])), 0.0, None)


def _floats(frame: "pd.DataFrame", *columns: str) -> list[np.ndarray]:
    return [frame[c].to_numpy(dtype=float) for c in columns]


# --- evals and the dashboard ----------------------------------------------------------------------------------


def stage_skill_figure(long: "pd.DataFrame", title: str = "Skill scores by stage (95% CI)") -> "Figure":
    """Grouped bar chart: one group per skill, one bar per stage, error bars from ``ci_low``/``ci_high``.

    Args:
        long: rows ``stage, skill, value, ci_low, ci_high`` (`harness.evals.table.long_table`).
        title: figure title.

    Returns:
        A matplotlib Figure.
    """
    stages = list(dict.fromkeys(long.stage))
    skills = list(dict.fromkeys(long.skill))
    fig = figure(max(6.0, 1.3 * len(skills) * max(1, len(stages)) / 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(stages))
    x = np.arange(len(skills))
    for i, stage in enumerate(stages):
        values, low, high = _floats(long[long.stage == stage].set_index("skill").reindex(skills),
                                    "value", "ci_low", "ci_high")
        ax.bar(x + (i - (len(stages) - 1) / 2) * width, np.nan_to_num(values), width, label=stage,
               yerr=_errors(values, low, high), capsize=3)
    ax.set_xticks(x, skills)
    top = max([v for v in long.ci_high.tolist() + long.value.tolist() if isinstance(v, float) and math.isfinite(v)],
              default=1.0)
    ax.set_ylim(0, max(1.0, top * 1.05))
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(title="stage", fontsize="small")
    return fig


def skill_comparison_figure(board: "pd.DataFrame", skill: str) -> "Figure":
    """Checkpoints on one skill: horizontal bars with 95% CI error bars, best at the top.

    Args:
        board: one row per checkpoint with ``checkpoint`` and, for the skill, ``<skill>``, ``<skill> ci_low`` and
            ``<skill> ci_high``.
        skill: the skill (``overall`` for the mean over skills).

    Returns:
        A matplotlib Figure.
    """
    frame = board.sort_values(skill, ascending=True, na_position="first")
    values, low, high = _floats(frame, skill, f"{skill} ci_low", f"{skill} ci_high")
    y = np.arange(len(frame))
    fig = figure(6.0, 1.2 + 0.32 * len(frame))
    ax = fig.add_subplot()
    ax.barh(y, np.nan_to_num(values), color="tab:blue", alpha=0.8, xerr=_errors(values, low, high), capsize=3)
    ax.set_yticks(y, frame["checkpoint"].astype(str).tolist(), fontsize=8)
    ax.set_xlim(0, max(1.0, float(np.nanmax(high, initial=0.0))))
    ax.set_xlabel("score (95% CI)")
    ax.set_title(skill)
    ax.grid(axis="x", alpha=0.3)
    return fig


def stage_progression_figure(long: "pd.DataFrame", stages: list[str]) -> "Figure":
    """Each skill's score across the pipeline's stages (base → SFT → DPO → RLVR), with 95% CI error bars.

    Args:
        long: rows ``stage, skill, value, ci_low, ci_high``.
        stages: stage order on the x axis.

    Returns:
        A matplotlib Figure.
    """
    fig = figure(7.0, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(stages))
    skills = list(dict.fromkeys(long["skill"]))
    for i, skill in enumerate(skills):
        values, low, high = _floats(long[long["skill"] == skill].set_index("stage").reindex(stages),
                                    "value", "ci_low", "ci_high")
        offset = (i - (len(skills) - 1) / 2) * 0.04  # keep overlapping error bars apart
        style = {"lw": 2.5, "color": "black"} if skill == "overall" else {"lw": 1.2}
        ax.errorbar(x + offset, values, yerr=_errors(values, low, high), marker="o", capsize=3, label=skill,
                    **style)
    ax.set_xticks(x, stages)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("score (95% CI)")
    ax.set_title("Stage progression")
    ax.legend(fontsize="small", ncols=2)
    ax.grid(alpha=0.3)
    return fig


def scaling_figure(table: "pd.DataFrame") -> "Figure":
    """Test-time scaling: score against mean generated tokens per item, one line per checkpoint, a point per
    thinking budget (labelled with it), 95% CI error bars on both axes.

    Args:
        table: rows ``label, budget, value, ci_low, ci_high, tokens_mean, tokens_ci_low, tokens_ci_high``
            (`harness.evals.budgets.scaling_table`).

    Returns:
        A matplotlib Figure.
    """
    fig = figure(7.0, 4.5)
    ax = fig.add_subplot()
    for label in dict.fromkeys(table["label"]):
        rows = table[table["label"] == label].sort_values("budget")
        values, low, high, tokens, t_low, t_high = _floats(rows, "value", "ci_low", "ci_high", "tokens_mean",
                                                           "tokens_ci_low", "tokens_ci_high")
        line = ax.errorbar(tokens, values, yerr=_errors(values, low, high), xerr=_errors(tokens, t_low, t_high),
                           marker="o", capsize=3, label=str(label))
        for x, y, budget in zip(tokens, values, rows["budget"]):
            if math.isfinite(x) and math.isfinite(y):
                ax.annotate(str(int(budget)), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small",
                            color=line[0].get_color())
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("mean generated tokens per item (reasoning + answer, 95% CI)")
    ax.set_ylabel("score (95% CI)")
    ax.set_title("Test-time scaling (each point labelled with its thinking budget)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def cost_figure(costs: "pd.DataFrame") -> "Figure":
    """Cost per stage: USD and seconds side by side.

    Args:
        costs: rows ``stage, usd, seconds`` in stage order.

    Returns:
        A matplotlib Figure.
    """
    fig = figure(8.0, 3.0)
    left, right = fig.subplots(1, 2)
    stages = costs["stage"].astype(str).tolist()
    left.bar(stages, costs["usd"].to_numpy(dtype=float), color="tab:orange")
    left.set_ylabel("USD")
    left.set_title("cost per stage")
    right.bar(stages, costs["seconds"].to_numpy(dtype=float), color="tab:purple")
    right.set_ylabel("seconds")
    right.set_title("wall time per stage")
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    return fig


# --- nightly --------------------------------------------------------------------------------------------------


def delta_figure(comparisons: Sequence["Comparison"], *, title: str = "candidate − baseline (95% CI)") -> "Figure":
    """Forest plot: one row per (task, metric), the delta as a dot with its CI, coloured by verdict, the minimum
    effect as ticks either side of zero.

    Args:
        comparisons: `harness.nightly.stats.compare_suite` output.
        title: figure title.

    Returns:
        A matplotlib Figure.
    """
    rows = list(reversed(comparisons))  # first metric at the top
    fig = figure(7.5, 1.3 + 0.32 * len(rows))
    ax = fig.add_subplot()
    for y, c in enumerate(rows):
        color = COLORS[c.verdict]
        ax.plot([c.ci_low, c.ci_high], [y, y], color=color, lw=2, alpha=0.6)
        ax.plot([c.delta], [y], "o", color=color)
        if c.min_effect > 0:
            ax.plot([-c.min_effect, c.min_effect], [y, y], "|", color="black", ms=9)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{c.task} {c.metric}" for c in rows], fontsize=8)
    ax.set_xlabel("delta in score units (| : minimum effect)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def trend_figure(trend: "pd.DataFrame", *, title: str = "Candidate score over the last nightlies") -> "Figure":
    """Small multiples, one per (task, metric): the candidate's value per nightly, oldest left, dots coloured by
    that nightly's verdict, this nightly ringed.

    Args:
        trend: `harness.nightly.history.trend` output.
        title: figure title.

    Returns:
        A matplotlib Figure.
    """
    keys = list(dict.fromkeys(zip(trend["task"], trend["metric"])))
    cols = min(3, max(1, len(keys)))
    nrows = -(-len(keys) // cols)
    fig = figure(4.0 * cols, 0.6 + 2.2 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False)
    order = {run: i for i, run in enumerate(dict.fromkeys(trend["run_id"]))}
    for ax, (task, metric) in zip(axes.flat, keys):
        rows = trend[(trend["task"] == task) & (trend["metric"] == metric)]
        x = [order[r] for r in rows["run_id"]]
        ax.plot(x, rows["value"], color="tab:blue", lw=1)
        ax.scatter(x, rows["value"], c=[COLORS.get(v, "tab:gray") for v in rows["verdict"]], zorder=3)
        now = rows[rows["current"]]
        ax.scatter([order[r] for r in now["run_id"]], now["value"], s=120, facecolors="none", edgecolors="black",
                   zorder=4)
        if rows["value"].between(0.0, 1.0).all():  # a proportion: the whole scale, so small moves look small
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{task}\n{metric}", fontsize=8)
        ax.set_xticks(sorted(set(x)))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return fig


# --- ratings and arenas ---------------------------------------------------------------------------------------


def ratings_figure(board: "pd.DataFrame", *, title: str = "Ratings", column: str = "rating") -> "Figure":
    """Horizontal dot plot of ratings with their interval bars, best at the top.

    Args:
        board: a leaderboard table (`model`, the rating column and `ci_low`/`ci_high`; the CI columns may be NaN).
        title: figure title (the confidence level is added when `board.attrs` has it).
        column: which rating column to draw (`rating` or `style_rating`).

    Returns:
        A matplotlib Figure.
    """
    prefix = "style_" if column.startswith("style_") else ""
    frame = board.sort_values(column, ascending=True)
    y = np.arange(len(frame))
    fig = figure(7.0, 1.2 + 0.28 * len(frame))
    ax = fig.add_subplot()
    value = frame[column].to_numpy()
    low, high = frame.get(f"{prefix}ci_low"), frame.get(f"{prefix}ci_high")
    if low is not None and high is not None and np.isfinite(low.to_numpy()).all():
        err = np.vstack([value - low.to_numpy(), high.to_numpy() - value])
        ax.errorbar(value, y, xerr=err, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3)
    else:
        ax.plot(value, y, "o", color="tab:blue")
    ax.set_yticks(y, frame["model"].tolist())
    ax.set_xlabel("rating")
    level = board.attrs.get("level")
    ax.set_title(f"{title} ({level:.0%} CI)" if level and low is not None else title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def win_matrix_figure(matrix: "pd.DataFrame", *,
                      title: str = "Predicted win probability\n(row model beats column model)") -> "Figure":
    """Heatmap of a square win-probability (or win-rate) matrix; cells are labelled when there are ≤ 25 models.

    Args:
        matrix: square DataFrame, rows and columns = models.
        title: figure title.

    Returns:
        A matplotlib Figure.
    """
    n = len(matrix)
    label = 0.075 * max((len(str(m)) for m in matrix.index), default=0)  # inches taken by the tick labels
    cells = min(0.5 * n, 28.0)
    fig = figure(max(6.0, cells + label + 2.0), max(4.5, cells + label + 1.0))
    ax = fig.add_subplot()
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), matrix.columns.tolist(), rotation=90)
    ax.set_yticks(range(n), matrix.index.tolist())
    if n <= 25:
        for r in range(n):
            for c in range(n):
                if np.isfinite(values[r, c]):
                    ax.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(values[r, c] - 0.5) > 0.3 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title)
    return fig


def win_rate_vs_baseline_figure(board: "pd.DataFrame", baseline: str) -> "Figure":
    """Win rate of each model against `baseline` with its 95% interval, the LC win rate as a second marker.

    Args:
        board: the arena leaderboard (``model, win_rate_vs_baseline, win_rate_ci_low, win_rate_ci_high,
            lc_win_rate_vs_baseline``).
        baseline: the baseline's name (its own row is left out).

    Returns:
        A matplotlib Figure.
    """
    frame = board[board["model"] != baseline].sort_values("win_rate_vs_baseline")
    y = np.arange(len(frame))
    fig = figure(7.0, 1.4 + 0.3 * len(frame))
    ax = fig.add_subplot()
    rate, low, high, lc = _floats(frame, "win_rate_vs_baseline", "win_rate_ci_low", "win_rate_ci_high",
                                  "lc_win_rate_vs_baseline")
    err = np.vstack([rate - low, high - rate])
    ax.errorbar(rate, y, xerr=err, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, label="win rate (95% CI)")
    ax.plot(lc, y, "x", color="tab:orange", label="LC win rate")
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set_xlim(0.0, 1.0)
    ax.set_yticks(y, frame["model"].tolist())
    ax.set_xlabel(f"win rate against {baseline}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def arena_figures(board: "pd.DataFrame", win_prob: "pd.DataFrame", judge: str) -> dict[str, "Figure"]:
    """An arena's figures by name: ``ratings``, ``win_prob`` and, with a baseline, ``win_rate_vs_baseline``."""
    figures = {
        "ratings": ratings_figure(board, title=f"Arena ratings, judge {judge}"),
        "win_prob": win_matrix_figure(win_prob),
    }
    baseline = board.attrs.get("baseline")
    if baseline and "win_rate_vs_baseline" in board.columns and len(board) > 1:
        figures["win_rate_vs_baseline"] = win_rate_vs_baseline_figure(board, baseline)
    return figures
