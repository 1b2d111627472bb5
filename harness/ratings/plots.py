"""Figures for ratings: ratings with interval bars, and a win-probability heatmap.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot state, no display needed); save them
with `figure.savefig(path)` or hand them to `harness.tracking.store.Run.log_figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_ratings(board: pd.DataFrame, *, title: str = "Ratings", column: str = "rating"):
    """Horizontal dot plot of ratings with their interval bars, best at the top.

    Args:
        board: a leaderboard table (`model`, the rating column and `ci_low`/`ci_high`; the CI columns may be NaN).
        title: figure title (the confidence level is added when `board.attrs` has it).
        column: which rating column to draw (`rating` or `style_rating`).

    Returns:
        A matplotlib `Figure`.
    """
    prefix = "style_" if column.startswith("style_") else ""
    frame = board.sort_values(column, ascending=True)
    y = np.arange(len(frame))
    fig = _figure(7.0, 1.2 + 0.28 * len(frame))
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


def plot_win_matrix(matrix: pd.DataFrame, *, title: str = "Predicted win probability\n(row model beats column model)"):
    """Heatmap of a square win-probability (or win-rate) matrix; cells are labelled when there are ≤ 25 models.

    Args:
        matrix: square DataFrame, rows and columns = models.
        title: figure title.

    Returns:
        A matplotlib `Figure`.
    """
    n = len(matrix)
    label = 0.075 * max((len(str(m)) for m in matrix.index), default=0)  # inches taken by the tick labels
    cells = min(0.5 * n, 28.0)
    fig = _figure(max(6.0, cells + label + 2.0), max(4.5, cells + label + 1.0))
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
