"""The nightly report: Markdown for the terminal and a self-contained HTML page for MLflow, from a `NightlyResult`.

Both show the verdict, why it could not compare (when so), every compared metric's delta with its 95% CI and raw and
adjusted p-values, the regressed items, each metric's trend over the last nightlies and, when an arena ran, the
ratings with CIs, the Elo delta and the win probability. The HTML page adds the figures (deltas, trends, ratings,
win-probability heatmap) as embedded PNGs and escapes every model text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.nightly import html as h

if TYPE_CHECKING:
    import pandas as pd

    from harness.nightly.result import NightlyResult

TITLES = {"pass": "PASS", "fail": "FAIL: regression", "cannot-compare": "CANNOT COMPARE"}
_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _headline(result: "NightlyResult") -> str:
    if result.verdict == "cannot-compare":
        return "the two sides were not scored alike, so no verdict on quality"
    if result.verdict == "fail":
        dropped = ", ".join(f"{c.task} {c.metric} {c.delta:+.3f}" for c in result.regressions)
        return f"{len(result.regressions)} of {len(result.comparisons)} metrics dropped: {dropped}"
    better = sum(c.verdict == "improvement" for c in result.comparisons)
    return f"no significant drop in {len(result.comparisons)} metrics ({better} improved)"


def _method(result: "NightlyResult") -> str:
    return (f"paired per item (exact McNemar for 0/1 scores, sign-flip permutation and paired bootstrap otherwise); "
            f"{_CORRECTIONS.get(result.correction, result.correction)} across {len(result.comparisons)} "
            f"metric{'s' if len(result.comparisons) != 1 else ''} at "
            f"alpha {result.alpha}; a verdict also needs |delta| >= the metric's minimum effect")


def comparison_frame(result: "NightlyResult") -> "pd.DataFrame":
    """One row per compared metric with the report's columns."""
    import pandas as pd

    return pd.DataFrame([{
        "skill": result.skills.get(c.task, ""), "task": c.task, "metric": c.metric, "n": c.n,
        "baseline": c.baseline_mean, "candidate": c.candidate_mean, "delta": c.delta, "ci_low": c.ci_low,
        "ci_high": c.ci_high, "p": c.p_value, "p_adj": c.p_adjusted, "min_effect": c.min_effect, "test": c.test,
        "verdict": c.verdict} for c in result.comparisons])


def _trend_text(result: "NightlyResult") -> list[tuple[str, str, str]]:
    trend = result.trend
    if trend is None or trend.empty:
        return []
    out = []
    for (task, metric), rows in trend.groupby(["task", "metric"], sort=False):
        out.append((task, metric, " → ".join(f"{v:.3f}" for v in rows["value"])))
    return out


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]


def markdown(result: "NightlyResult") -> str:
    """The report as Markdown (printed by ``harness nightly`` and logged as ``nightly/report.md``)."""
    cand, base = result.candidate, result.baseline
    lines = [f"# Nightly {result.suite}: {TITLES[result.verdict]}", "",
             f"**{_headline(result)}**", "",
             f"- candidate: `{cand.model}`" + (f" (eval run {cand.eval_run})" if cand.eval_run else ""),
             f"- baseline: `{base.model}` ({base.label}" + (f", eval run {base.eval_run})" if base.eval_run else ")"),
             f"- suite: {result.suite}, version {result.suite_version}",
             f"- MLflow run: {result.run_id}"]
    if result.promoted:
        lines.append(f"- promoted: {result.promoted}")
    if result.reasons:
        lines += ["", "## Cannot compare", ""] + [f"- {r}" for r in result.reasons]
    if result.comparisons:
        lines += ["", "## Per-metric comparison", "", _method(result), ""]
        frame = comparison_frame(result)
        lines += _md_table(
            ["skill", "task", "metric", "n", "baseline", "candidate", "delta [95% CI]", "p", "p adj", "min effect",
             "verdict"],
            [[r.skill, r.task, r.metric, r.n, h.number(r.baseline), h.number(r.candidate),
              f"{h.number(r.delta, signed=True)} {h.interval(r.ci_low, r.ci_high, signed=True)}", h.pvalue(r.p),
              h.pvalue(r.p_adj), h.number(r.min_effect), r.verdict.upper() if r.verdict != "no change" else "-"]
             for r in frame.itertuples()])
    for (task, metric), items in result.examples.items():
        if len(items):
            lines += ["", f"### Regressed items: {task} {metric}", ""]
            lines += _md_table(["item", "target", "baseline answer", "candidate answer"],
                               [[r.item_id, r.target, r.response_baseline, r.response_candidate]
                                for r in items.itertuples()])
    trend = _trend_text(result)
    if trend:
        runs = result.trend["run_id"].nunique()
        lines += ["", f"## Trend over the last {runs} nightlies (candidate score, oldest first)", ""]
        lines += _md_table(["task", "metric", "scores"], [list(t) for t in trend])
    if result.arena:
        a = result.arena
        lines += ["", f"## Arena (judge {a.judge})", "",
                  f"Elo delta candidate − baseline: {a.elo_delta:+.0f}; predicted win probability of the candidate "
                  f"over the baseline: {a.p_win:.3f}", ""]
        lines += _md_table(["model", "rating", "95% CI", "battles", "win rate"],
                           [[r.model, f"{r.rating:.0f}", h.interval(r.ci_low, r.ci_high, 0), r.battles,
                             h.number(r.win_rate)] for r in a.leaderboard.itertuples()])
    return "\n".join(lines)


def html_page(result: "NightlyResult") -> str:
    """The report as one self-contained HTML page (figures embedded), logged as ``nightly/report.html``."""
    from harness.plots.nightly import delta_figure, trend_figure

    cand, base = result.candidate, result.baseline
    facts = h.tag("ul", h.join([
        h.tag("li", f"candidate: {cand.model}" + (f" (eval run {cand.eval_run})" if cand.eval_run else "")),
        h.tag("li", f"baseline: {base.model} ({base.label})" + (f" (eval run {base.eval_run})" if base.eval_run else "")),
        h.tag("li", f"suite {result.suite}, version {result.suite_version}; MLflow run {result.run_id}"),
        *([h.tag("li", f"promoted: {result.promoted}")] if result.promoted else []),
    ]))
    verdict = h.tag("p", h.join([h.tag("span", TITLES[result.verdict], class_=f"verdict {result.verdict}"),
                                  h.tag("strong", " " + _headline(result))]))
    body = [h.section("verdict", "Verdict", verdict, facts)]
    nav = {"verdict": "Verdict"}
    if result.reasons:
        body.append(h.section("reasons", "Cannot compare",
                              h.tag("ul", h.join(h.tag("li", r) for r in result.reasons), class_="reasons")))
        nav["reasons"] = "Cannot compare"
    if result.comparisons:
        frame = comparison_frame(result)
        body.append(h.section("deltas", "Per-metric comparison", h.tag("p", _method(result), class_="note"),
                              _comparison_table(frame),
                              h.tag("div", h.embedded(delta_figure(result.comparisons), "delta per metric with its "
                                                      "95% CI; red: regression, green: improvement"),
                                    class_="figures")))
        nav["deltas"] = "Deltas"
    shown = [(k, v) for k, v in result.examples.items() if len(v)]
    if shown:
        parts = []
        for (task, metric), items in shown:
            parts += [h.tag("h3", f"{task} {metric}"),
                      h.table(items, {"item_id": "item", "prompt": "prompt", "target": "target",
                                      "response_baseline": "baseline answer",
                                      "response_candidate": "candidate answer"},
                              text=["prompt", "target", "response_baseline", "response_candidate"])]
        body.append(h.section("examples", "Regressed items", h.tag("p", "items the baseline scored higher, first "
                                                                    "few per regressed metric", class_="note"), *parts))
        nav["examples"] = "Regressed items"
    if result.trend is not None and not result.trend.empty:
        runs = result.trend["run_id"].nunique()
        rows = [{"task": t, "metric": m, "scores": s} for t, m, s in _trend_text(result)]
        import pandas as pd

        body.append(h.section("trend", f"Trend over the last {runs} nightlies",
                              h.table(pd.DataFrame(rows)),
                              h.tag("div", h.embedded(trend_figure(result.trend), "candidate score per nightly; "
                                                      "dot colour: that nightly's verdict; ringed: this one"),
                                    class_="figures")))
        nav["trend"] = "Trend"
    if result.arena:
        body.append(_arena_section(result))
        nav["arena"] = "Arena"
    return h.page(f"Nightly {result.suite}: {TITLES[result.verdict]}", body, nav=nav,
                  subtitle=f"candidate {cand.label} against baseline {base.label}",
                  footer=f"harness nightly; MLflow run {result.run_id}")


def _comparison_table(frame: "pd.DataFrame") -> h.Raw:
    shown = frame.assign(ci=[h.interval(lo, hi, signed=True) for lo, hi in zip(frame.ci_low, frame.ci_high)])
    return h.table(
        shown,
        {"skill": "skill", "task": "task", "metric": "metric", "n": "n", "baseline": "baseline",
         "candidate": "candidate", "delta": "delta", "ci": "95% CI", "p": "p", "p_adj": "p adjusted",
         "min_effect": "min effect", "test": "test", "verdict": "verdict"},
        formats={"delta": lambda v: h.number(v, signed=True), "p": h.pvalue, "p_adj": h.pvalue},
        numeric=["n", "baseline", "candidate", "delta", "ci", "p", "p_adj", "min_effect"],
        row_class=lambda r: r["verdict"].replace(" ", "-"))


def _arena_section(result: "NightlyResult") -> h.Raw:
    from harness.ratings.plots import plot_ratings, plot_win_matrix

    a = result.arena
    board = a.leaderboard
    summary = h.tag("p", f"Elo delta candidate − baseline: {a.elo_delta:+.0f}; predicted win probability of the "
                         f"candidate over the baseline: {a.p_win:.3f} (judge {a.judge}, arena run {a.run_id})")
    table = h.table(board.assign(ci=[h.interval(lo, hi, 0) for lo, hi in zip(board.ci_low, board.ci_high)]),
                    {"rank": "rank", "model": "model", "rating": "rating", "ci": "95% CI", "battles": "battles",
                     "win_rate": "win rate"},
                    formats={"rating": lambda v: h.number(v, 0)}, numeric=["rating", "ci", "battles", "win_rate"])
    figures = h.tag("div", h.join([h.embedded(plot_ratings(board, title="Arena ratings"), "ratings with 95% CIs"),
                                   h.embedded(plot_win_matrix(a.win_prob), "predicted win probability, row over "
                                                                           "column")]), class_="figures")
    return h.section("arena", "Arena", summary, table, figures)
