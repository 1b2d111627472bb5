"""The views package: model text stays text on both pages (autoescaping, no template evaluation of data), the table
renderer's text and Markdown output, and every figure drawn through the one figure helper."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report import figures, html, tables
from harness.tracking import schema, store

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
HOSTILE = "<script>document.title='pwned'</script>{{ 7*7 }}{% if 1 %}x{% endif %}"


def _assert_text_only(page: str, at_least: int) -> None:
    """`HOSTILE` shows up as text `at_least` times: no tag opened, template syntax printed as written."""
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;{{ 7*7 }}{% if 1 %}x{% endif %}"
    assert page.count(escaped) >= at_least, page


# --- autoescaping ---------------------------------------------------------------------------------------------


def test_environment_escapes_everything_and_marks_nothing_safe():
    env = html.environment()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    templates = PACKAGE / "report" / "templates"
    assert {"base.html", "style.css", "macros.html", "dashboard.html", "nightly.html"} <= {
        p.name for p in templates.iterdir()}
    for path in templates.iterdir():
        assert not re.search(r"\|\s*safe|autoescape\s+false", path.read_text()), path.name
    for path in (PACKAGE / "report").glob("*.py"):
        assert "Markup" not in path.read_text(), path.name  # nothing built from data is ever marked safe


def _nightly_result():
    from harness.nightly.result import ArenaSummary, NightlyResult
    from harness.nightly.sides import Side
    from harness.nightly.stats import PairedScores, compare_suite

    base = np.repeat([1.0, 0.0], [300, 100])
    cand = base.copy()
    cand[:60] = 0.0
    result = NightlyResult(
        verdict="fail", suite="tiny", suite_version="0" * 12, candidate=Side(HOSTILE, f"/ckpt/{HOSTILE}", HOSTILE),
        baseline=Side("champion", "models:/harness-embedded@champion", "champion"),
        comparisons=compare_suite([PairedScores("tiny_arithmetic_gen", "verifier,none", cand, base)]),
        skills={"tiny_arithmetic_gen": "arithmetic"}, run_id="0" * 32)
    result.examples[("tiny_arithmetic_gen", "verifier,none")] = pd.DataFrame({
        "item_id": ["a-1"], "prompt": [HOSTILE], "target": ["3"], "response_candidate": [HOSTILE],
        "score_candidate": [0.0], "response_baseline": ["3"], "score_baseline": [1.0]})
    board = pd.DataFrame({"rank": [1, 2], "model": [HOSTILE, "baseline"], "rating": [1010.0, 990.0],
                          "ci_low": [1000.0, 980.0], "ci_high": [1020.0, 1000.0], "battles": [20, 20],
                          "win_rate": [0.6, 0.4]})
    win_prob = pd.DataFrame([[np.nan, 0.53], [0.47, np.nan]], index=board.model, columns=board.model)
    result.arena = ArenaSummary(board, win_prob, elo_delta=20.0, p_win=0.53, judge="verifier", run_id="a" * 32)
    return result


def test_nightly_page_and_markdown_keep_model_text_as_text():
    from harness.report import nightly

    page = nightly.html_page(_nightly_result())
    # subtitle, title-less facts, the prompt and the answer of the regressed item, the arena table
    _assert_text_only(page, at_least=5)
    assert page.count("data:image/png;base64,") == 3  # deltas, ratings, win probabilities
    assert '<tr class="regression">' in page and 'class="verdict fail"' in page
    md = nightly.markdown(_nightly_result())
    assert f"- candidate: `/ckpt/{HOSTILE}`" in md
    assert "| arithmetic | tiny_arithmetic_gen | verifier,none | 400 |" in md


def _hostile_store(results: Path) -> None:
    """One eval run, one arena run and one nightly run whose model names and generations are `HOSTILE`."""
    task = "tiny_arithmetic_gen"
    skills = pd.DataFrame([["arithmetic", 0.5, 0.05, 0.4, 0.6, 10, 1], ["overall", 0.5, 0.05, 0.4, 0.6, 10, 1]],
                          columns=["skill", "value", "stderr", "ci_low", "ci_high", "n", "tasks"])
    with store.run("eval-hostile", schema.Kind.EVAL, results_dir=results,
                   tags=schema.tags(model=f"/ckpt/{HOSTILE}", model_hash="0" * 16, suite="tiny")) as run:
        run.write(schema.SKILLS, skills)
        run.write(schema.LM_EVAL_RESULTS, {"n-samples": {task: {"original": 1, "effective": 1}}})
        run.write(schema.samples(task), pd.DataFrame({"doc_id": [0], "item_id": ["a-1"], "prompt": [HOSTILE],
                                                      "target": ["3"], "response": [HOSTILE]}))
    board = pd.DataFrame({"rank": [1, 2], "model": [HOSTILE, "base"], "rating": [1010.0, 990.0],
                          "ci_low": [1000.0, 980.0], "ci_high": [1020.0, 1000.0], "battles": [20, 20],
                          "win_rate": [0.6, 0.4]})
    with store.run("arena-hostile", schema.Kind.ARENA, results_dir=results, tags=schema.tags(judge=HOSTILE)) as run:
        run.write(schema.leaderboard(), board)
        run.write(schema.matrix("win_prob"), pd.DataFrame({"model": [HOSTILE, "base"], HOSTILE: [np.nan, 0.47],
                                                           "base": [0.53, np.nan]}))
    with store.run("nightly-hostile", schema.Kind.NIGHTLY, results_dir=results,
                   tags=schema.tags(suite="tiny", candidate=HOSTILE, baseline="champion", verdict="pass")):
        pass


def test_dashboard_keeps_model_text_as_text(tmp_path, monkeypatch):
    from harness.report.dashboard import build_dashboard

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    _hostile_store(results)
    index = build_dashboard("harness", tmp_path / "site", results_dir=results)
    page = index.read_text()
    # leaderboard model column, sample prompt and answer, ratings table, judge, nightly candidate
    _assert_text_only(page, at_least=5)
    assert '<span class="verdict pass">pass</span>' in page
    for section in ("leaderboard-tiny", "ratings", "nightlies", "samples-tiny"):
        assert f'<section id="{section}">' in page and f'href="#{section}"' in page
    shown = {m.group(1) for m in re.finditer(r'<img src="([^"]+)"', page)}
    assert {"img/tiny-skill-overall.png", "img/tiny-skill-arithmetic.png", "img/arena-ratings.png",
            "img/arena-win-prob.png"} <= shown
    assert all((index.parent / src).is_file() for src in shown)


# --- tables ---------------------------------------------------------------------------------------------------


ROWS = [{"model": "a|b", "rating": 1012.4, "n": 7, "note": None},
        {"model": "long name", "rating": float("nan"), "n": 12, "note": "two\nlines"}]


def test_text_table_aligns_numbers_right_and_text_left():
    text = tables.render(ROWS, {"model": "model", "rating": "rating", "n": "battles", "note": "note"},
                         digits={"rating": 1}, missing="-")
    assert text.splitlines() == [
        "model      rating  battles  note",
        "---------  ------  -------  ---------",
        "a|b        1012.4        7  -",
        "long name       -       12  two lines",
    ]
    assert tables.render(ROWS, ["model", "n"], align={"n": "left"}).splitlines()[2] == "a|b        7"


def test_markdown_table_escapes_pipes_and_marks_alignment():
    md = tables.render(pd.DataFrame(ROWS), ["model", "rating", "n"], format="markdown", digits=0)
    assert md.splitlines() == [
        "| model | rating | n |",
        "|---|---:|---:|",
        "| a\\|b | 1012 | 7 |",
        "| long name |  | 12 |",
    ]
    rows = [["x", "0.500 [0.400, 0.600]"]]  # sequences: the columns are their headers
    assert tables.render(rows, ["skill", "score"], format="markdown").splitlines()[2] == "| x | 0.500 [0.400, 0.600] |"
    with pytest.raises(ValueError, match="unknown table format"):
        tables.render(rows, ["skill", "score"], format="html")


def test_cell_formatters():
    assert tables.estimate(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert tables.estimate(0.1, 0.0, 0.2, signed=True) == "+0.100 [+0.000, +0.200]"
    assert tables.estimate(0.5, float("nan"), 0.6) == "0.500" and tables.estimate(float("nan"), 0, 1) == "-"
    assert tables.pvalue(3.1e-7) == "3.1e-07" and tables.pvalue(0.04) == "0.0400"


# --- figures --------------------------------------------------------------------------------------------------


def _figure_calls() -> dict:
    """Every figure function of `harness.report.figures`, called on small inputs."""
    from harness.nightly.stats import PairedScores, compare_suite

    long = pd.DataFrame([(st, sk, v, v - 0.05, v + 0.05) for st in ("base", "sft") for sk, v in
                         (("arithmetic", 0.3), ("overall", 0.4))], columns=["stage", "skill", "value", "ci_low",
                                                                             "ci_high"])
    board = pd.DataFrame({"checkpoint": ["a", "b"], "overall": [0.5, 0.6], "overall ci_low": [0.4, 0.5],
                          "overall ci_high": [0.6, 0.7]})
    ratings = pd.DataFrame({"model": ["x", "base"], "rating": [1050.0, 950.0], "ci_low": [1040.0, 940.0],
                            "ci_high": [1060.0, 960.0], "win_rate_vs_baseline": [0.7, np.nan],
                            "win_rate_ci_low": [0.6, np.nan], "win_rate_ci_high": [0.8, np.nan],
                            "lc_win_rate_vs_baseline": [0.65, np.nan]})
    ratings.attrs.update(level=0.95, baseline="base")
    matrix = pd.DataFrame([[np.nan, 0.6], [0.4, np.nan]], index=["x", "base"], columns=["x", "base"])
    scores = np.r_[np.ones(30), np.zeros(10)]
    trend = pd.DataFrame({"task": ["t"] * 2, "metric": ["m"] * 2, "run_id": ["r1", "r2"], "value": [0.5, 0.6],
                          "verdict": ["pass", "fail"], "current": [False, True]})
    return {
        "stage_skill_figure": lambda: figures.stage_skill_figure(long),
        "skill_comparison_figure": lambda: figures.skill_comparison_figure(board, "overall"),
        "stage_progression_figure": lambda: figures.stage_progression_figure(long, ["base", "sft"]),
        "cost_figure": lambda: figures.cost_figure(pd.DataFrame({"stage": ["base"], "usd": [0.1], "seconds": [9.0]})),
        "scaling_figure": lambda: figures.scaling_figure(pd.DataFrame(
            {"label": ["sft", "sft"], "budget": [4, 8], "value": [0.3, 0.6], "ci_low": [0.2, 0.5], "ci_high": [0.4, 0.7],
             "tokens_mean": [5.0, 9.0], "tokens_ci_low": [4.5, 8.5], "tokens_ci_high": [5.5, 9.5]})),
        "delta_figure": lambda: figures.delta_figure(compare_suite([PairedScores("t", "m", scores, scores)])),
        "trend_figure": lambda: figures.trend_figure(trend),
        "ratings_figure": lambda: figures.ratings_figure(ratings),
        "win_matrix_figure": lambda: figures.win_matrix_figure(matrix),
        "win_rate_vs_baseline_figure": lambda: figures.win_rate_vs_baseline_figure(ratings, "base"),
        "arena_figures": lambda: figures.arena_figures(ratings, matrix, "verifier"),
    }


def test_every_figure_is_drawn_on_the_one_helper(monkeypatch):
    made = []
    helper = figures.figure

    def spy(width: float, height: float):
        made.append(helper(width, height))
        return made[-1]

    monkeypatch.setattr(figures, "figure", spy)
    calls = _figure_calls()
    public = {name for name, fn in inspect.getmembers(figures, inspect.isfunction)
              if fn.__module__ == figures.__name__ and name.endswith(("_figure", "_figures"))}
    assert public == set(calls), "a figure function without a case here"
    for name, call in calls.items():
        before = len(made)
        out = call()
        returned = list(out.values()) if isinstance(out, dict) else [out]
        assert returned == made[before:], name  # every figure it returns came from the helper, and only those
        assert all(f.canvas.__class__.__name__ == "FigureCanvasAgg" for f in returned), name
    assert figures.png(made[0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_other_module_makes_a_figure():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "report" / "figures.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n.startswith(("matplotlib.pyplot", "matplotlib.backends")) for n in names) or \
                        (isinstance(node, ast.ImportFrom) and node.module == "matplotlib.figure"
                         and not _under_type_checking(path, node)):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def _under_type_checking(path: Path, target: ast.AST) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            if any(getattr(n, "lineno", None) == target.lineno for b in node.body for n in ast.walk(b)):
                return True
    return False
