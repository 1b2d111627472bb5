"""The nightly report: Markdown for the terminal and a self-contained HTML page for MLflow, from a `NightlyResult`.

Both show the verdict, why it could not compare (when so), every compared metric's delta with its 95% CI and raw and
adjusted p-values, the share of items the two sides score differently and the minimum detectable effect, the
fingerprint fields on which the sides were computed differently (a warning), an A/A check's drift, the regressed
items, each metric's trend over the last nightlies, the eval tasks the candidate's
training data contaminates (when the pipeline that trained it recorded them) and, when an arena ran, the ratings
with CIs, the Elo delta, the win probability and the judge's reliability. The HTML page adds the figures (deltas, trends, ratings,
win-probability heatmap) as embedded PNGs and escapes every model text; its template is
``templates/nightly.html``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report import html as h
from harness.report.tables import estimate, interval, number, pvalue, render

if TYPE_CHECKING:
    import pandas as pd

    from harness.nightly.result import ArenaSummary, NightlyResult

TITLES = {"pass": "PASS", "fail": "FAIL: regression", "cannot-compare": "CANNOT COMPARE"}
AA_TITLES = {"pass": "A/A PASS: no drift", "fail": "A/A FAIL: infrastructure drift", "cannot-compare": "CANNOT COMPARE"}


def title(result: "NightlyResult") -> str:
    """The verdict as the report's heading says it (an A/A check's in its own words)."""
    return (AA_TITLES if result.aa else TITLES)[result.verdict]
_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _headline(result: "NightlyResult") -> str:
    if result.verdict == "cannot-compare":
        return "the two sides were not scored alike, so no verdict on quality"
    if result.aa:
        if result.drift:
            return (f"the baseline's own scores moved beyond noise in {len(result.drift)} of "
                    f"{len(result.comparisons)} metrics when evaluated again")
        changed = max((c.discordant for c in result.comparisons), default=0.0)
        return (f"the baseline's own scores held in {len(result.comparisons)} metrics when evaluated again (at most "
                f"{changed:.1%} of a metric's items changed)")
    if result.verdict == "fail":
        dropped = ", ".join(f"{c.task} {c.metric} {c.delta:+.3f}" for c in result.regressions)
        return f"{len(result.regressions)} of {len(result.comparisons)} metrics dropped: {dropped}"
    better = sum(c.verdict == "improvement" for c in result.comparisons)
    return f"no significant drop in {len(result.comparisons)} metrics ({better} improved)"


def _method(result: "NightlyResult") -> str:
    return (f"paired per item (exact McNemar for 0/1 scores, sign-flip permutation and paired bootstrap otherwise); "
            f"{_CORRECTIONS.get(result.correction, result.correction)} across {len(result.comparisons)} "
            f"metric{'s' if len(result.comparisons) != 1 else ''} at "
            f"alpha {result.alpha}; a verdict also needs |delta| >= the metric's minimum effect. disagree: share "
            f"of items the two sides score differently; MDE: the smallest drop caught with {result.power:.0%} power at "
            f"its n, that disagreement and alpha / metrics (harness power)")


def _fingerprint_note(result: "NightlyResult") -> str:
    return ("warning: the two sides were computed differently (reproducibility fingerprint): "
            + "; ".join(result.fingerprint) + ". Scores can move with these even where no setting changed")


def _drift_note(result: "NightlyResult") -> str:
    return (f"drift: a metric whose difference is significant after the correction, or on which more than "
            f"{result.drift_tolerance:.1%} of the items changed score"
            + (", with the fingerprint differences above as the likely cause" if result.fingerprint else ""))


def comparison_frame(result: "NightlyResult") -> "pd.DataFrame":
    """One row per compared metric with the report's columns."""
    import pandas as pd

    return pd.DataFrame([{
        "skill": result.skills.get(c.task, ""), "task": c.task, "metric": c.metric, "n": c.n,
        "baseline": c.baseline_mean, "candidate": c.candidate_mean, "delta": c.delta, "ci_low": c.ci_low,
        "ci_high": c.ci_high, "p": c.p_value, "p_adj": c.p_adjusted, "min_effect": c.min_effect, "test": c.test,
        "discordant": c.discordant, "discordant_ci_low": c.discordant_ci_low,
        "discordant_ci_high": c.discordant_ci_high, "mde": c.mde, "verdict": c.verdict} for c in result.comparisons])


def _trend_text(result: "NightlyResult") -> list[tuple[str, str, str]]:
    trend = result.trend
    if trend is None or trend.empty:
        return []
    out = []
    for (task, metric), rows in trend.groupby(["task", "metric"], sort=False):
        out.append((task, metric, " → ".join(f"{v:.3f}" for v in rows["value"])))
    return out


def _facts(result: "NightlyResult", code: str = "") -> list[str]:
    """The report's opening lines (`code` quotes model names in Markdown)."""
    cand, base = result.candidate, result.baseline
    cand_run = f" (eval run {cand.eval_run})" if cand.eval_run else ""
    base_run = f", eval run {base.eval_run}" if base.eval_run else ""
    facts = [f"candidate: {code}{cand.model}{code}{cand_run}",
             f"baseline: {code}{base.model}{code} ({base.label}{base_run})",
             f"suite: {result.suite}, version {result.suite_version}", f"MLflow run: {result.run_id}"]
    facts += [f"promoted: {result.promoted}"] if result.promoted else []
    return facts + ([_fingerprint_note(result)] if result.fingerprint else [])


def _contamination_note(result: "NightlyResult") -> str:
    tasks = ", ".join(result.contamination.flagged)
    return (f"the candidate's training data (pipeline run {result.contamination_run}) overlaps the items of {tasks}: "
            "their scores may be inflated")


def _contamination_frame(result: "NightlyResult") -> "pd.DataFrame":
    """One row per (dataset, flagged task) with contaminated items."""
    import pandas as pd

    rec = result.contamination
    return pd.DataFrame([{"task": r.task, "dataset": r.dataset, "items": f"{r.contaminated}/{r.total}",
                          "rate": estimate(r.rate, r.ci_low, r.ci_high)}
                         for r in rec.rows if r.task in rec.flagged and r.contaminated],
                        columns=["task", "dataset", "items", "rate"])


_CONTAMINATION_COLUMNS = {"task": "task", "dataset": "dataset", "items": "contaminated / items",
                          "rate": "rate [95% CI]"}


def _arena_line(arena: "ArenaSummary") -> str:
    return (f"Elo delta candidate − baseline: {arena.elo_delta:+.0f}; predicted win probability of the candidate "
            f"over the baseline: {arena.p_win:.3f}")


def markdown(result: "NightlyResult") -> str:
    """The report as Markdown (printed by ``harness nightly`` and logged as ``nightly/report.md``)."""
    lines = [f"# Nightly {result.suite}: {title(result)}", "", f"**{_headline(result)}**", "",
             *(f"- {fact}" for fact in _facts(result, code="`"))]
    if result.reasons:
        lines += ["", "## Cannot compare", ""] + [f"- {r}" for r in result.reasons]
    if result.aa and result.comparisons:
        lines += ["", "## Infrastructure drift", "", _drift_note(result), ""] + \
            ([f"- {d}" for d in result.drift] or ["- none: every metric held"])
    if result.contamination:
        lines += ["", "## Contaminated eval tasks", "", _contamination_note(result), "",
                  render(_contamination_frame(result), _CONTAMINATION_COLUMNS, format="markdown",
                         align={"items": "right", "rate": "right"})]
    if result.comparisons:
        rows = [[r.skill, r.task, r.metric, r.n, r.baseline, r.candidate,
                 estimate(r.delta, r.ci_low, r.ci_high, signed=True), pvalue(r.p), pvalue(r.p_adj), r.min_effect,
                 estimate(r.discordant, r.discordant_ci_low, r.discordant_ci_high), number(r.mde),
                 r.verdict.upper() if r.verdict != "no change" else "-"] for r in comparison_frame(result).itertuples()]
        lines += ["", "## Per-metric comparison", "", _method(result), "",
                  render(rows, ["skill", "task", "metric", "n", "baseline", "candidate", "delta [95% CI]", "p",
                                "p adj", "min effect", "disagree [95% CI]", "MDE", "verdict"], format="markdown",
                         missing="-", align={"delta [95% CI]": "right", "p": "right", "p adj": "right",
                                             "disagree [95% CI]": "right", "MDE": "right"})]
    for (task, metric), items in result.examples.items():
        if len(items):
            lines += ["", f"### Regressed items: {task} {metric}", "",
                      render(items, {"item_id": "item", "target": "target", "response_baseline": "baseline answer",
                                     "response_candidate": "candidate answer"}, format="markdown")]
    trend = _trend_text(result)
    if trend:
        runs = result.trend["run_id"].nunique()
        lines += ["", f"## Trend over the last {runs} nightlies (candidate score, oldest first)", "",
                  render(trend, ["task", "metric", "scores"], format="markdown")]
    if result.arena:
        a = result.arena
        board = a.leaderboard.assign(ci=[interval(lo, hi, 0) for lo, hi in zip(a.leaderboard.ci_low,
                                                                                a.leaderboard.ci_high)])
        lines += ["", f"## Arena (judge {a.judge})", "", _arena_line(a), "",
                  render(board, {"model": "model", "rating": "rating", "ci": "95% CI", "battles": "battles",
                                 "win_rate": "win rate"}, format="markdown", digits={"rating": 0},
                         align={"ci": "right"}, missing="-")]
        if a.reliability is not None:
            lines += ["", "### Judge reliability", "", _reliability_note(a.reliability), "",
                      render(a.reliability.display(), {"statistic": "statistic", "estimate": "estimate [95% CI]",
                                                       "n": "n"}, format="markdown", align={"estimate": "right"})]
    return "\n".join(lines)


def html_page(result: "NightlyResult") -> str:
    """The report as one self-contained HTML page (figures embedded), logged as ``nightly/report.html``."""
    from harness.report.figures import delta_figure, trend_figure

    cand, base = result.candidate, result.baseline
    context = {"verdict": result.verdict, "verdict_title": title(result), "headline": _headline(result),
               "facts": _facts(result), "reasons": result.reasons, "deltas": None, "examples": [], "trend": None,
               "arena": None, "contamination": None, "drift": None}
    nav = {"verdict": "Verdict", "reasons": "Cannot compare"} if result.reasons else {"verdict": "Verdict"}
    if result.aa and result.comparisons:
        context["drift"] = {"note": _drift_note(result), "lines": result.drift}
        nav["drift"] = "Drift"
    if result.contamination:
        context["contamination"] = {"note": _contamination_note(result),
                                    "table": h.table(_contamination_frame(result), _CONTAMINATION_COLUMNS,
                                                     numeric=["items", "rate"])}
        nav["contamination"] = "Contamination"
    if result.comparisons:
        context["deltas"] = {
            "method": _method(result), "table": _comparison_table(comparison_frame(result)),
            "figure": h.embedded(delta_figure(result.comparisons),
                                 "delta per metric with its 95% CI; red: regression, green: improvement")}
        nav["deltas"] = "Deltas"
    text = ["prompt", "target", "response_baseline", "response_candidate"]
    context["examples"] = [
        (f"{task} {metric}", h.table(items, {"item_id": "item", "prompt": "prompt", "target": "target",
                                             "response_baseline": "baseline answer",
                                             "response_candidate": "candidate answer"}, text=text))
        for (task, metric), items in result.examples.items() if len(items)]
    if context["examples"]:
        nav["examples"] = "Regressed items"
    if result.trend is not None and not result.trend.empty:
        import pandas as pd

        context["trend"] = {
            "runs": result.trend["run_id"].nunique(),
            "table": h.table(pd.DataFrame(_trend_text(result), columns=["task", "metric", "scores"])),
            "figure": h.embedded(trend_figure(result.trend), "candidate score per nightly; dot colour: that "
                                                             "nightly's verdict; ringed: this one")}
        nav["trend"] = "Trend"
    if result.arena:
        context["arena"] = _arena_section(result.arena)
        nav["arena"] = "Arena"
    return h.page("nightly.html", title=f"Nightly {result.suite}: {title(result)}", nav=nav,
                  subtitle=f"candidate {cand.label} against baseline {base.label}",
                  footer=f"harness nightly; MLflow run {result.run_id}", **context)


def _comparison_table(frame: "pd.DataFrame") -> h.Table:
    shown = frame.assign(ci=[interval(lo, hi, signed=True) for lo, hi in zip(frame.ci_low, frame.ci_high)],
                         disagree=[estimate(d, lo, hi) for d, lo, hi in zip(frame.discordant, frame.discordant_ci_low,
                                                                            frame.discordant_ci_high)])
    return h.table(
        shown,
        {"skill": "skill", "task": "task", "metric": "metric", "n": "n", "baseline": "baseline",
         "candidate": "candidate", "delta": "delta", "ci": "95% CI", "p": "p", "p_adj": "p adjusted",
         "min_effect": "min effect", "disagree": "disagree [95% CI]", "mde": "MDE", "test": "test",
         "verdict": "verdict"},
        formats={"delta": lambda v: number(v, signed=True), "p": pvalue, "p_adj": pvalue, "mde": number},
        numeric=["n", "baseline", "candidate", "delta", "ci", "p", "p_adj", "min_effect", "disagree", "mde"],
        row_class=lambda r: r["verdict"].replace(" ", "-"))


def _reliability_note(report) -> str:
    """What the judge-reliability table rests on, and what it could not measure."""
    missing = report.missing_text()
    return ("the judge's verdicts on these battles: position flips between the two orders, biases from a logistic "
            "fit with per-model strengths, CIs clustered by prompt" + (f"; {missing}" if missing else ""))


def _arena_section(arena: "ArenaSummary") -> dict:
    from harness.report.figures import ratings_figure, win_matrix_figure

    return {"summary": f"{_arena_line(arena)} (judge {arena.judge}, arena run {arena.run_id})",
            "table": h.ratings_table(arena.leaderboard),
            "reliability": None if arena.reliability is None else {
                "note": _reliability_note(arena.reliability), "table": h.reliability_table(arena.reliability)},
            "figures": [h.embedded(ratings_figure(arena.leaderboard, title="Arena ratings"), "ratings with 95% CIs"),
                        h.embedded(win_matrix_figure(arena.win_prob), "predicted win probability, row over column")]}
