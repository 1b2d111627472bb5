"""Dashboard figures: checkpoints compared on one skill, skills across the pipeline's stages, cost per stage.

Figures use matplotlib's object API on the Agg canvas (no display); `harness.nightly.dashboard` saves them beside
the page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _errors(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Error-bar lengths from CI ends; 0 where an end is unknown (or, after rounding, on the wrong side)."""
    below = np.where(np.isfinite(low), values - low, 0.0)
    above = np.where(np.isfinite(high), high - values, 0.0)
    return np.clip(np.nan_to_num(np.vstack([below, above])), 0.0, None)


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
    values = frame[skill].to_numpy(dtype=float)
    y = np.arange(len(frame))
    fig = _figure(6.0, 1.2 + 0.32 * len(frame))
    ax = fig.add_subplot()
    ax.barh(y, np.nan_to_num(values), color="tab:blue", alpha=0.8,
            xerr=_errors(values, frame[f"{skill} ci_low"].to_numpy(dtype=float),
                         frame[f"{skill} ci_high"].to_numpy(dtype=float)), capsize=3)
    ax.set_yticks(y, frame["checkpoint"].astype(str).tolist(), fontsize=8)
    ax.set_xlim(0, max(1.0, float(np.nanmax(frame[f"{skill} ci_high"].to_numpy(dtype=float), initial=0.0))))
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
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(stages))
    skills = list(dict.fromkeys(long["skill"]))
    for i, skill in enumerate(skills):
        rows = long[long["skill"] == skill].set_index("stage").reindex(stages)
        values = rows["value"].to_numpy(dtype=float)
        offset = (i - (len(skills) - 1) / 2) * 0.04  # keep overlapping error bars apart
        style = {"lw": 2.5, "color": "black"} if skill == "overall" else {"lw": 1.2}
        ax.errorbar(x + offset, values, yerr=_errors(values, rows["ci_low"].to_numpy(dtype=float),
                                                     rows["ci_high"].to_numpy(dtype=float)),
                    marker="o", capsize=3, label=skill, **style)
    ax.set_xticks(x, stages)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("score (95% CI)")
    ax.set_title("Stage progression")
    ax.legend(fontsize="small", ncols=2)
    ax.grid(alpha=0.3)
    return fig


def cost_figure(costs: "pd.DataFrame") -> "Figure":
    """Cost per stage: USD and seconds side by side.

    Args:
        costs: rows ``stage, usd, seconds`` in stage order.

    Returns:
        A matplotlib Figure.
    """
    fig = _figure(8.0, 3.0)
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
