"""Arena figures: the ratings and win-probability plots of `harness.ratings.plots`, plus win rate against the baseline.

Figures use matplotlib's object API on the Agg canvas (no display); `harness.arena` logs them to MLflow.
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


def plot_win_rate_vs_baseline(board: pd.DataFrame, baseline: str):
    """Win rate of each model against `baseline` with its 95% interval, the LC win rate as a second marker.

    Args:
        board: the arena leaderboard (``model, win_rate_vs_baseline, win_rate_ci_low, win_rate_ci_high,
            lc_win_rate_vs_baseline``).
        baseline: the baseline's name (its own row is left out).

    Returns:
        A matplotlib `Figure`.
    """
    frame = board[board["model"] != baseline].sort_values("win_rate_vs_baseline")
    y = np.arange(len(frame))
    fig = _figure(7.0, 1.4 + 0.3 * len(frame))
    ax = fig.add_subplot()
    rate = frame["win_rate_vs_baseline"].to_numpy(dtype=float)
    err = np.vstack([rate - frame["win_rate_ci_low"].to_numpy(dtype=float),
                     frame["win_rate_ci_high"].to_numpy(dtype=float) - rate])
    ax.errorbar(rate, y, xerr=err, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, label="win rate (95% CI)")
    ax.plot(frame["lc_win_rate_vs_baseline"].to_numpy(dtype=float), y, "x", color="tab:orange", label="LC win rate")
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set_xlim(0.0, 1.0)
    ax.set_yticks(y, frame["model"].tolist())
    ax.set_xlabel(f"win rate against {baseline}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def arena_figures(board: pd.DataFrame, win_prob: pd.DataFrame, judge: str) -> dict:
    """The arena's figures by name: ``ratings``, ``win_prob`` and, with a baseline, ``win_rate_vs_baseline``."""
    from harness.ratings.plots import plot_ratings, plot_win_matrix

    figures = {
        "ratings": plot_ratings(board, title=f"Arena ratings, judge {judge}"),
        "win_prob": plot_win_matrix(win_prob),
    }
    baseline = board.attrs.get("baseline")
    if baseline and "win_rate_vs_baseline" in board.columns and len(board) > 1:
        figures["win_rate_vs_baseline"] = plot_win_rate_vs_baseline(board, baseline)
    return figures
