"""Nightly figures: per-metric deltas with their CIs, and each metric's trend over the last nightlies.

Figures use matplotlib's object API on the Agg canvas (no display); `harness.nightly.report` embeds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from harness.nightly.stats import Comparison

COLORS = {"regression": "tab:red", "improvement": "tab:green", "no change": "tab:gray",
          "pass": "tab:green", "fail": "tab:red", "cannot-compare": "tab:orange"}


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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
    fig = _figure(7.5, 1.3 + 0.32 * len(rows))
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
    fig = _figure(4.0 * cols, 0.6 + 2.2 * nrows)
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
