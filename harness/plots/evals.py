"""Eval plots: per-skill scores of the pipeline's stages as grouped bars with 95% CI error bars (matplotlib, Agg)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def stage_skill_figure(long: "pd.DataFrame", title: str = "Skill scores by stage (95% CI)") -> "Figure":
    """Grouped bar chart: one group per skill, one bar per stage, error bars from ``ci_low``/``ci_high``.

    Args:
        long: rows ``stage, skill, value, ci_low, ci_high`` (`harness.evals.table.long_table`).
        title: figure title.

    Returns:
        A matplotlib Figure (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    stages = list(dict.fromkeys(long.stage))
    skills = list(dict.fromkeys(long.skill))
    fig = Figure(figsize=(max(6.0, 1.3 * len(skills) * max(1, len(stages)) / 2), 4.0), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(stages))
    x = np.arange(len(skills))
    for i, stage in enumerate(stages):
        rows = long[long.stage == stage].set_index("skill").reindex(skills)
        values = rows.value.to_numpy(dtype=float)
        low = np.where(np.isfinite(rows.ci_low), values - rows.ci_low, 0.0)
        high = np.where(np.isfinite(rows.ci_high), rows.ci_high - values, 0.0)
        ax.bar(x + (i - (len(stages) - 1) / 2) * width, np.nan_to_num(values), width, label=stage,
               yerr=np.vstack([low, high]), capsize=3)
    ax.set_xticks(x, skills)
    top = max([v for v in long.ci_high.tolist() + long.value.tolist() if isinstance(v, float) and math.isfinite(v)],
              default=1.0)
    ax.set_ylim(0, max(1.0, top * 1.05))
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(title="stage", fontsize="small")
    return fig
