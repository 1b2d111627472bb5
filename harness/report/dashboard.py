"""``harness dashboard``: a static HTML dashboard of one MLflow experiment, built from the MLflow store alone.

``DIR/index.html`` (no scripts) with figures in ``DIR/img/``:

- leaderboard per suite: the latest eval run of every checkpoint (by content hash), overall and per-skill scores
  with 95% CIs (each run's ``skills.csv``), best first; one comparison plot per skill;
- stage progression base → SFT → DPO → RLVR: the latest pipeline run's eval runs by ``harness.stage``;
- ratings: the latest arena run's leaderboard with CIs and win-probability heatmap (``arena/*.csv``), and its
  judge's reliability with CIs (``reliability/*`` metrics) and fingerprint (``judge.*`` params);
- cost per stage: the latest pipeline run's train runs (``cost/usd``, ``cost/seconds``, ``cost/tokens``);
- test-time scaling: the budget-forced eval runs (tag ``harness.budget``, `harness.evals.budgets`), score against
  mean tokens per item by thinking budget, one line per checkpoint, with 95% CIs (these runs stay out of the
  leaderboards, which show each checkpoint's unforced run);
- decontamination: the latest pipeline run's n-gram overlap of each stage dataset with each eval task
  (``decontam/*`` metrics and the ``harness.contaminated`` tag), contaminated tasks flagged;
- nightlies: verdicts of the latest nightly runs;
- sample generations: the first items of every task, each leaderboard checkpoint's answer side by side.

The page is ``templates/dashboard.html``; every model name and generation is escaped (`harness.report.html`).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.report import html as h
from harness.report.tables import estimate, number
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

STAGES = ["base", "sft", "dpo", "rlvr"]
MAX_CHECKPOINTS = 30  # leaderboard rows per suite
MAX_SAMPLED = 6  # checkpoints whose generations are shown side by side
MAX_NIGHTLIES = 20


def _runs(results_dir, experiment: str) -> "pd.DataFrame":
    from harness.tracking import store

    names = store.experiment_names(results_dir)
    if experiment not in names:
        raise HarnessError(f"no experiment {experiment!r} in {store.tracking_uri(results_dir)}; experiments: "
                           f"{', '.join(names) or 'none'}")
    runs = store.search_runs(store.tracking_uri(results_dir), experiment, "attributes.status = 'FINISHED'",
                             ["attributes.start_time DESC"])
    if not len(runs):
        raise HarnessError(f"experiment {experiment!r} has no finished runs to show")
    return runs


def _kind(runs: "pd.DataFrame", kind: schema.Kind) -> "pd.DataFrame":
    column = schema.column("kind")
    if column not in runs:
        return runs.iloc[0:0]
    return runs[runs[column] == kind.value]


def _tag(row, field: str, default: str = "") -> str:
    """A tag of a `search_runs` row by its `schema.RunTags` field; lists comma-joined, `default` when absent."""
    value = getattr(schema.RunTags.from_row(row), field)
    if isinstance(value, tuple):
        value = ",".join(value)
    return default if value is None else str(value)


def _checkpoint_label(row) -> str:
    return _tag(row, "stage") or os.path.basename(_tag(row, "model").rstrip("/")) or row["run_id"][:8]


def _leaderboard(evals: "pd.DataFrame", results_dir) -> "pd.DataFrame":
    """One row per checkpoint (latest eval run per model hash): scores with CIs per skill, best overall first."""
    import pandas as pd

    from harness.tracking import store

    evals = evals.assign(_hash=[_tag(r, "model_hash") or r["run_id"] for _, r in evals.iterrows()])
    latest = evals.drop_duplicates("_hash").head(MAX_CHECKPOINTS)  # runs come newest first
    rows = []
    for _, run in latest.iterrows():
        schema.check_version(schema.row_tags(run), run["run_id"])
        skills = store.read(run["run_id"], schema.SKILLS, results_dir)
        row = {"checkpoint": _checkpoint_label(run), "model": _tag(run, "model"),
               "model_hash": run["_hash"], "run_id": run["run_id"], "evaluated": run["start_time"]}
        for s in skills.itertuples():
            row.update({s.skill: s.value, f"{s.skill} ci_low": s.ci_low, f"{s.skill} ci_high": s.ci_high})
        rows.append(row)
    board = pd.DataFrame(rows)
    duplicated = board["checkpoint"].duplicated(keep=False)
    board.loc[duplicated, "checkpoint"] = board.loc[duplicated, "checkpoint"] + "@" + board.loc[duplicated,
                                                                                                "model_hash"].str[:6]
    if "overall" in board:
        board = board.sort_values("overall", ascending=False, na_position="last")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.reset_index(drop=True)


def _skills_of(board: "pd.DataFrame") -> list[str]:
    return [c for c in board.columns if f"{c} ci_low" in board.columns]


def _leaderboard_section(suite: str, board: "pd.DataFrame", out: Path) -> dict:
    from harness.report.figures import skill_comparison_figure

    skills = _skills_of(board)
    shown = board.assign(**{f"{s} [95% CI]": [estimate(v, lo, hi) for v, lo, hi in
                                               zip(board[s], board[f"{s} ci_low"], board[f"{s} ci_high"])]
                            for s in skills})
    ordered = ["overall", *[s for s in skills if s != "overall"]]
    columns = {"rank": "rank", "checkpoint": "checkpoint", **{f"{s} [95% CI]": s for s in ordered if s in skills},
               "model": "model", "evaluated": "evaluated", "run_id": "eval run"}
    table = h.table(shown, columns, formats={"evaluated": lambda t: t.strftime("%Y-%m-%d %H:%M")},
                    numeric=[c for c in columns if c.endswith("[95% CI]")])
    figures = [h.saved(skill_comparison_figure(board, skill), out, f"{suite}-skill-{skill}", f"{suite}: {skill}")
               for skill in skills]
    return {"suite": suite, "table": table, "figures": figures}


def _latest_pipeline(runs: "pd.DataFrame") -> "pd.Series | None":
    pipelines = _kind(runs, schema.Kind.PIPELINE)
    return None if pipelines.empty else pipelines.iloc[0]


def _children(runs: "pd.DataFrame", parent: str, kind: schema.Kind) -> "pd.DataFrame":
    rows = _kind(runs, kind)
    column = f"tags.{schema.PARENT_TAG}"
    if column not in rows:
        return rows.iloc[0:0]
    return rows[rows[column] == parent]


def _progression_section(runs: "pd.DataFrame", pipeline, results_dir, out: Path) -> dict | None:
    import pandas as pd

    from harness.report.figures import stage_progression_figure
    from harness.tracking import store

    evals = _children(runs, pipeline["run_id"], schema.Kind.EVAL)
    frames = []
    stage_column = schema.column("stage")
    for stage in STAGES:
        rows = evals[evals[stage_column] == stage] if stage_column in evals else evals.iloc[0:0]
        if len(rows):
            frames.append(store.read(rows.iloc[0]["run_id"], schema.SKILLS, results_dir).assign(stage=stage))
    if not frames:
        return None
    long = pd.concat(frames, ignore_index=True)
    stages = list(dict.fromkeys(long["stage"]))
    skills = list(dict.fromkeys(long["skill"]))
    cells = long.assign(cell=[estimate(v, lo, hi) for v, lo, hi in zip(long["value"], long["ci_low"],
                                                                        long["ci_high"])])
    table = cells.pivot(index="stage", columns="skill", values="cell").reindex(index=stages, columns=skills)
    return {"run_id": pipeline["run_id"], "run_name": pipeline.get(f"tags.{schema.RUN_NAME_TAG}"),
            "table": h.table(table.reset_index(), numeric=skills),
            "figure": h.saved(stage_progression_figure(long, stages), out, "stage-progression",
                              "skill scores by stage, 95% CIs")}


def _arena_section(runs: "pd.DataFrame", results_dir, out: Path) -> dict | None:
    from harness.report.figures import ratings_figure, win_matrix_figure
    from harness.tracking import store

    arenas = _kind(runs, schema.Kind.ARENA)
    for _, run in arenas.iterrows():
        try:
            board = store.read(run["run_id"], schema.leaderboard(), results_dir)
            win_prob = store.read(run["run_id"], schema.matrix("win_prob"), results_dir).set_index("model")
        except HarnessError:
            continue  # an arena without ratings (every judgement failed): try the one before
        board.attrs["level"] = 0.95
        figures = [h.saved(ratings_figure(board, title="Arena ratings"), out, "arena-ratings",
                           "Bradley-Terry ratings (Elo scale) with 95% bootstrap CIs"),
                   h.saved(win_matrix_figure(win_prob), out, "arena-win-prob",
                           "predicted win probability, row model over column model")]
        return {"run_id": run["run_id"], "judge": _tag(run, "judge"), "table": h.ratings_table(board),
                "figures": figures, "reliability": _reliability(run)}
    return None


def _reliability(run) -> dict | None:
    """The arena judge's reliability and fingerprint, read back from the run's metrics and params."""
    from harness.ratings.reliability import Reliability

    report = Reliability.from_metrics(run)
    if report is None:
        return None
    fingerprint = [f"{name} {run.get(f'params.{schema.judge_param(name)}')}" for name in schema.JUDGE_FINGERPRINT
                   if isinstance(run.get(f"params.{schema.judge_param(name)}"), str)]
    return {"fingerprint": ", ".join(fingerprint), "table": h.reliability_table(report)}


def _cost_section(runs: "pd.DataFrame", pipeline, out: Path) -> dict | None:
    import pandas as pd

    from harness.report.figures import cost_figure

    train = _children(runs, pipeline["run_id"], schema.Kind.TRAIN)
    cost = {name: f"metrics.{metric}" for name, metric in schema.COST.items()}
    if train.empty or cost["usd"] not in train:
        return None
    rows = []
    for stage in STAGES:
        pick = train[train[schema.column("stage")] == stage]
        if len(pick):
            r = pick.iloc[0]
            rows.append({"stage": stage, **{name: r.get(column) for name, column in cost.items()}})
    if not rows:
        return None
    costs = pd.DataFrame(rows)
    table = h.table(costs, {"stage": "stage", "usd": "USD", "seconds": "seconds", "tokens": "tokens",
                            "flops": "FLOPs"},
                    formats={"usd": lambda v: number(v, 5), "seconds": lambda v: number(v, 1),
                             "tokens": lambda v: number(v, 0), "flops": lambda v: f"{v:.3g}"},
                    numeric=["usd", "seconds", "tokens", "flops"])
    return {"table": table, "figure": h.saved(cost_figure(costs), out, "cost-per-stage",
                                              "cost and wall time per training stage")}


def _scaling_section(forced: "pd.DataFrame", out: Path) -> dict | None:
    """Test-time scaling from the budget-forced eval runs (newest per checkpoint and budget), or None."""
    from harness.evals.budgets import read_scaling
    from harness.report.figures import scaling_figure

    curve = read_scaling(forced)
    if curve.empty:
        return None
    table = h.table(curve.assign(score=[estimate(v, lo, hi) for v, lo, hi in zip(curve.value, curve.ci_low,
                                                                                  curve.ci_high)],
                                 tokens=[estimate(v, lo, hi, 1) for v, lo, hi in
                                         zip(curve.tokens_mean, curve.tokens_ci_low, curve.tokens_ci_high)]),
                    {"label": "checkpoint", "budget": "budget", "score": "score [95% CI]",
                     "tokens": "tokens/item [95% CI]", "reasoning_tokens_mean": "reasoning tokens",
                     "unterminated_rate": "unterminated", "run_id": "eval run"},
                    formats={"reasoning_tokens_mean": lambda v: number(v, 1), "unterminated_rate": number},
                    numeric=["budget", "score", "tokens", "reasoning_tokens_mean", "unterminated_rate"])
    return {"table": table, "figure": h.saved(scaling_figure(curve), out, "scaling",
                                              "score against mean generated tokens by thinking budget")}


def _decontam_section(pipeline, results_dir) -> dict | None:
    import pandas as pd

    from harness.evals.decontam import read_report

    recorded = read_report(pipeline["run_id"], results_dir)
    if recorded is None:
        return None
    rows = [{"dataset": r.dataset, "task": r.task, "items": f"{r.contaminated}/{r.total}",
             "rate": estimate(r.rate, r.ci_low, r.ci_high),
             "flag": "contaminated" if r.task in recorded.flagged and r.contaminated else ""} for r in recorded.rows]
    table = h.table(pd.DataFrame(rows), {"dataset": "dataset", "task": "task", "items": "contaminated / items",
                                         "rate": "rate [95% CI]", "flag": "flag"},
                    numeric=["items", "rate"], badges={"flag": lambda v: "verdict fail" if v else None})
    return {"run_id": pipeline["run_id"], "flagged": recorded.flagged, "table": table}


def _nightly_section(runs: "pd.DataFrame") -> dict | None:
    import pandas as pd

    nightlies = _kind(runs, schema.Kind.NIGHTLY).head(MAX_NIGHTLIES)
    if nightlies.empty:
        return None
    rows = [{"started": r["start_time"].strftime("%Y-%m-%d %H:%M"), "suite": _tag(r, "suite"),
             "version": _tag(r, "suite_version"), "candidate": _tag(r, "candidate"),
             "baseline": _tag(r, "baseline"),
             "check": "A/A (drift)" if _tag(r, "aa") == "true" else "candidate",
             "verdict": _tag(r, "verdict", "unfinished"),
             "regressed tasks": _tag(r, "regressions"), "run": r["run_id"]} for _, r in nightlies.iterrows()]
    table = h.table(pd.DataFrame(rows), badges={"verdict": lambda v: f"verdict {v}"}, text=["candidate", "baseline"])
    return {"table": table, "report": schema.NIGHTLY_REPORT_HTML.path}


def _samples_section(suite: str, board: "pd.DataFrame", results_dir, per_task: int) -> dict | None:
    from harness.tracking import store

    if per_task <= 0:
        return None
    picked = board.head(MAX_SAMPLED)
    tasks: dict[str, "pd.DataFrame"] = {}
    for _, row in picked.iterrows():
        lm_eval = store.read(row["run_id"], schema.LM_EVAL_RESULTS, results_dir)
        for task in lm_eval.get("n-samples") or {}:
            table = store.read(row["run_id"], schema.samples(task), results_dir).head(per_task)
            table["item_id"] = table["item_id"].astype(str)
            answers = table[["item_id", "response"]].rename(columns={"response": row["checkpoint"]})
            if task not in tasks:
                tasks[task] = table[["item_id", "prompt", "target"]]
            tasks[task] = tasks[task].merge(answers, on="item_id", how="left")
    if not tasks:
        return None
    return {"suite": suite, "per_task": per_task, "checkpoints": len(picked),
            "tasks": [(task, h.table(frame, text=list(frame.columns))) for task, frame in tasks.items()]}


def build_dashboard(experiment: str, out_dir: str | os.PathLike, *, results_dir: str | os.PathLike = "results",
                    samples: int = 3) -> Path:
    """Write ``<out_dir>/index.html`` (and ``img/``) for one MLflow experiment (see the module docstring).

    Args:
        experiment: the MLflow experiment.
        out_dir: output folder; its ``img/`` is replaced.
        results_dir: results folder of the default sqlite store (``MLFLOW_TRACKING_URI`` wins).
        samples: sample generations shown per task (0: none).

    Returns:
        The path of ``index.html``.

    Raises:
        HarnessError: no such experiment, or nothing in it to show.
    """
    from harness.tracking import store

    out = Path(out_dir).resolve()
    runs = _runs(results_dir, experiment)
    shutil.rmtree(out / "img", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    evals = _kind(runs, schema.Kind.EVAL)
    budget_column = schema.column("budget")
    forced = evals[evals[budget_column].notna()] if budget_column in evals else evals.iloc[0:0]
    evals = evals[evals[budget_column].isna()] if budget_column in evals else evals
    suite_column = schema.column("suite")
    boards = {suite: _leaderboard(evals[evals[suite_column] == suite], results_dir)
              for suite in (dict.fromkeys(evals[suite_column]) if len(evals) else [])}
    pipeline = _latest_pipeline(runs)
    sections = {
        "leaderboards": [_leaderboard_section(suite, board, out) for suite, board in boards.items()],
        "progression": _progression_section(runs, pipeline, results_dir, out) if pipeline is not None else None,
        "ratings": _arena_section(runs, results_dir, out),
        "cost": _cost_section(runs, pipeline, out) if pipeline is not None else None,
        "scaling": _scaling_section(forced, out),
        "decontam": _decontam_section(pipeline, results_dir) if pipeline is not None else None,
        "nightlies": _nightly_section(runs),
        "samples": [part for suite, board in boards.items()
                    if (part := _samples_section(suite, board, results_dir, samples)) is not None],
    }
    nav = {f"leaderboard-{b['suite']}": f"Leaderboard {b['suite']}" for b in sections["leaderboards"]}
    nav.update({anchor: name for anchor, name in (("progression", "Stages"), ("ratings", "Ratings"), ("cost", "Cost"),
                                                  ("scaling", "Scaling"), ("decontam", "Decontamination"),
                                                  ("nightlies", "Nightlies"))
                if sections[anchor] is not None})
    nav.update({f"samples-{part['suite']}": f"Samples {part['suite']}" for part in sections["samples"]})
    if not nav:
        raise HarnessError(f"experiment {experiment!r} has no eval, arena, pipeline or nightly runs to show")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    uri = store.tracking_uri(results_dir)
    index = out / "index.html"
    from harness import storage

    page = h.page("dashboard.html", title=f"harness: {experiment}", nav=nav,
                  subtitle=f"{len(runs)} finished runs in MLflow experiment {experiment!r}",
                  footer=f"built {now} from {uri}; open the runs with: mlflow ui --backend-store-uri {uri}", **sections)
    storage.write_text(index, page, "dashboard page")  # all or nothing: a full disk keeps the last whole page
    return index
