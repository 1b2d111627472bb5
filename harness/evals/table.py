"""The stage × skill table: each pipeline stage's per-skill score with its 95% CI, for the terminal and MLflow.

`stage_skill_table` returns rows = stages (in the order given), columns = a (skill, statistic) MultiIndex with
statistics ``value``, ``stderr``, ``ci_low``, ``ci_high``; skills in suite order, then ``overall``.
`log_stage_skill_table` logs it as a long CSV (stage, skill, value, stderr, ci_low, ci_high, n), the terminal
text, and a bar chart with CI error bars. A skill with a task the pipeline's training data contaminates
(`harness.evals.decontam`, read back from the pipeline run) is marked ``*`` in the text, with a footnote naming the
task, the dataset and its contaminated items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.decontam import Recorded
    from harness.evals.result import SuiteResult
    from harness.tracking.store import Run

STATS = ["value", "stderr", "ci_low", "ci_high"]


def long_table(results: Mapping[str, "SuiteResult"]) -> "pd.DataFrame":
    """One row per (stage, skill): ``stage, skill, value, stderr, ci_low, ci_high, n``."""
    import pandas as pd

    frames = [r.skills.assign(stage=stage) for stage, r in results.items()]
    if not frames:
        return pd.DataFrame(columns=["stage", "skill", *STATS, "n"])
    return pd.concat(frames, ignore_index=True)[["stage", "skill", *STATS, "n"]]


def stage_skill_table(results: Mapping[str, "SuiteResult"]) -> "pd.DataFrame":
    """Stages × skills with value, stderr and 95% CI per cell.

    Args:
        results: stage label → its `SuiteResult`, in pipeline order (base, sft, dpo, rlvr).

    Returns:
        A DataFrame indexed by stage with (skill, statistic) columns.
    """
    import pandas as pd

    long = long_table(results)
    skills = list(dict.fromkeys(long.skill))
    wide = long.pivot(index="stage", columns="skill", values=STATS)
    wide = wide.swaplevel(0, 1, axis=1)
    columns = pd.MultiIndex.from_product([skills, STATS], names=["skill", "stat"])
    return wide.reindex(index=list(results), columns=columns)


def contaminated_skills(results: Mapping[str, "SuiteResult"], recorded: "Recorded | None") -> dict[str, list[str]]:
    """Skill → ``task (dataset k/n items, rate [CI])`` for each flagged task of the skill (empty without a
    record)."""
    if recorded is None or not recorded.flagged:
        return {}
    skill_of: dict[str, str] = {}
    for r in results.values():
        skill_of.update(zip(r.scores.task, r.scores.skill))
    notes = recorded.notes()
    out: dict[str, list[str]] = {}
    for task in recorded.flagged:
        if task in skill_of:
            out.setdefault(skill_of[task], []).append(f"{task} ({notes.get(task, 'contaminated')})")
    return out


def format_stage_skill_table(table: "pd.DataFrame", contaminated: Mapping[str, Sequence[str]] | None = None) -> str:
    """The table as aligned text, one cell per skill: ``value [ci_low, ci_high]``; skills in `contaminated`
    (`contaminated_skills`) marked ``*`` with a footnote."""
    from harness.report.tables import estimate, render

    contaminated = contaminated or {}
    skills = list(dict.fromkeys(table.columns.get_level_values(0)))
    rows = [[str(stage), *(estimate(row[(s, "value")], row[(s, "ci_low")], row[(s, "ci_high")]) for s in skills)]
            for stage, row in table.iterrows()]
    text = render(rows, ["stage", *(f"{s}*" if s in contaminated else s for s in skills)])
    text += "\n(95% CIs: value ± 1.96·stderr, clipped to [0, 1] for proportions)"
    notes = [note for s in skills for note in contaminated.get(s, [])]
    if notes:
        text += "\n* contaminated: training data overlaps the eval items: " + "; ".join(notes)
    return text


def log_stage_skill_table(run: "Run", results: Mapping[str, "SuiteResult"],
                          contaminated: Mapping[str, Sequence[str]] | None = None) -> "pd.DataFrame":
    """Log the stage × skill table to `run`: ``stage_skill.csv``, ``stage_skill.txt`` (skills in `contaminated`
    marked) and ``stage_skill.png``.

    Returns:
        The table (as `stage_skill_table`).
    """
    from harness.report.figures import stage_skill_figure
    from harness.tracking import schema

    long = long_table(results)
    table = stage_skill_table(results)
    run.write(schema.STAGE_SKILL_TABLE, long)
    run.write(schema.STAGE_SKILL_TEXT, format_stage_skill_table(table, contaminated) + "\n")
    run.write(schema.STAGE_SKILL_FIGURE, stage_skill_figure(long))
    return table
