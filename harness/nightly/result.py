"""What a nightly found: `NightlyResult` (the verdict, every comparison, the report's material) and the arena's
`ArenaSummary`. Shared by the nightly run that builds it, the report that shows it and the history that trends it.

Exit codes (`NightlyResult.exit_code`): 0 pass, 1 regression, 2 cannot compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.nightly.sides import Side
from harness.nightly.stats import Comparison
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.decontam import Recorded

EXIT_CODES = {"pass": 0, "fail": 1, "cannot-compare": 2}


@dataclass
class ArenaSummary:
    """Candidate against baseline in an arena: ratings with CIs, Elo delta, predicted win probability."""

    leaderboard: "pd.DataFrame"
    win_prob: "pd.DataFrame"
    elo_delta: float
    p_win: float
    judge: str
    run_id: str | None


@dataclass
class NightlyResult:
    """A nightly's verdict and everything its report shows."""

    verdict: str  # pass, fail or cannot-compare
    suite: str
    suite_version: str
    candidate: Side
    baseline: Side
    comparisons: list[Comparison] = field(default_factory=list)
    skills: dict[str, str] = field(default_factory=dict)  # task → skill
    reasons: list[str] = field(default_factory=list)  # why it cannot compare
    examples: dict[tuple[str, str], "pd.DataFrame"] = field(default_factory=dict)  # regressed items per metric
    trend: "pd.DataFrame | None" = None  # history.trend(): one row per (nightly, task, metric)
    arena: ArenaSummary | None = None
    correction: str = "holm"
    alpha: float = 0.05
    run_id: str | None = None
    promoted: str | None = None  # "models:/<name>@<alias> → version <v>" after --promote on a pass
    contamination: "Recorded | None" = None  # the candidate's training pipeline's decontamination, when flagged
    contamination_run: str | None = None  # that pipeline run

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    def metric_key(self, c: Comparison) -> str:
        """The MLflow metric name of a comparison, as the eval runs name it: ``<skill>/<task>/<metric>``."""
        return schema.task_metric(self.skills.get(c.task, "task"), c.task, c.metric)
