"""What a nightly found: `NightlyResult` (the verdict, every comparison, the report's material) and the arena's
`ArenaSummary`. Shared by the nightly run that builds it, the report that shows it and the history that trends it.

Exit codes (`NightlyResult.exit_code`): 0 pass, 1 regression (an A/A check: infrastructure drift), 2 cannot
compare.
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
    from harness.ratings.reliability import Reliability

EXIT_CODES = {"pass": 0, "fail": 1, "cannot-compare": 2}


@dataclass
class ArenaSummary:
    """Candidate against baseline in an arena: ratings with CIs, Elo delta, predicted win probability, and the
    judge's reliability (`harness.ratings.reliability.Reliability`; by default the one the arena put on its
    leaderboard's ``attrs["reliability"]``)."""

    leaderboard: "pd.DataFrame"
    win_prob: "pd.DataFrame"
    elo_delta: float
    p_win: float
    judge: str
    run_id: str | None
    reliability: "Reliability | None" = None

    def __post_init__(self) -> None:
        if self.reliability is None:
            self.reliability = getattr(self.leaderboard, "attrs", {}).get("reliability")


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
    fingerprint: list[str] = field(default_factory=list)  # fingerprint fields on which the sides were computed apart
    aa: bool = False  # an A/A check: the baseline's checkpoint evaluated again, cache bypassed, against its record
    drift: list[str] = field(default_factory=list)  # A/A: the metrics whose own scores moved beyond noise
    drift_tolerance: float = 0.01  # A/A: the share of changed items allowed before a metric drifts
    power: float = 0.8  # the power each comparison's minimum detectable effect is reported at

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    def metric_key(self, c: Comparison) -> str:
        """The MLflow metric name of a comparison, as the eval runs name it: ``<skill>/<task>/<metric>``."""
        return schema.task_metric(self.skills.get(c.task, "task"), c.task, c.metric)
