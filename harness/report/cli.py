"""``harness dashboard``: a static HTML dashboard of an MLflow experiment.

    harness dashboard --experiment harness --out site/

Only argparse is imported here; pandas, matplotlib and MLflow load when the command runs.
"""

from __future__ import annotations

import argparse

from harness.arguments import count as _count


def add_parsers(sub) -> None:
    """Register ``dashboard`` on `sub` (argparse subparsers)."""
    d = sub.add_parser(
        "dashboard",
        help="write a static HTML dashboard of an MLflow experiment",
        description="Build DIR/index.html from the MLflow store alone: leaderboard across checkpoints, per-skill "
        "comparison plots, stage progression base -> SFT -> DPO -> RLVR, arena ratings with CIs, cost per stage, "
        "decontamination of the eval tasks by the training data, "
        "nightly verdicts and sample generations. No scripts; images beside the page.",
    )
    d.add_argument("--experiment", default="harness", help="MLflow experiment (default: harness)")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder (index.html and img/)")
    d.add_argument("--results", metavar="DIR", help="results folder of the default sqlite store (default: results)")
    d.add_argument("--samples", type=_count, default=3, metavar="N",
                   help="sample generations shown per task, >= 0 (default 3)")
    d.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.report.dashboard import build_dashboard

    index = build_dashboard(args.experiment, args.out, results_dir=args.results or "results", samples=args.samples)
    print(f"dashboard: {index}")
    return 0
