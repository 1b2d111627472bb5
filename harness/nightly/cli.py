"""``harness nightly`` and ``harness dashboard``.

    harness nightly --candidate models:/harness-embedded/4 --baseline champion --suite tiny --promote
    harness nightly --candidate /ckpt/step-9000 --baseline last-pass --config nightly.yaml --html report.html
    harness dashboard --experiment harness --out site/

``nightly`` exits 0 on a pass, 1 on a regression, 2 when it cannot compare or on bad input. Only argparse is
imported here; lm-eval, torch, pandas and MLflow load when a command runs.
"""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register ``nightly`` and ``dashboard`` on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "nightly",
        help="evaluate a candidate against a baseline per item, with multiple-comparison control; exit 1 on a "
        "regression",
        description="Evaluate the candidate on a pinned suite, compare it per item and paired with the baseline "
        "(exact McNemar for 0/1 scores, permutation/bootstrap otherwise; Holm or Benjamini-Hochberg across all "
        "metrics; a minimum effect per metric), print a Markdown report and log the verdict, the report and an "
        "HTML page to MLflow. Settings: defaults < --config FILE < --set < the flags below. Exit codes: 0 pass, "
        "1 regression, 2 cannot compare or bad input.",
    )
    p.add_argument("--candidate", required=True, metavar="MODEL",
                   help="checkpoint to judge: folder, hub id (org/name), models:/NAME/VERSION or an alias")
    p.add_argument("--baseline", metavar="MODEL|ALIAS",
                   help="an alias of the registered model (champion), a model (folder, hub id, models:/ URI) or "
                   "'last-pass' (the latest passing nightly of the same suite version); default: baseline in the "
                   "config (champion)")
    p.add_argument("--suite", help="suite name (suites/<name>.yaml) or suite YAML file (default: suite in the config)")
    p.add_argument("--config", metavar="FILE", help="nightly YAML file (nightly keys, eval: and arena: sections)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set alpha=0.01 or --set eval.limit=200 (repeatable)")
    p.add_argument("--promote", action="store_true",
                   help="on a pass, point the alias (champion) of the registered model at the candidate's version")
    p.add_argument("--registered-model", metavar="NAME",
                   help="registered model whose aliases name baselines (default: harness-embedded)")
    p.add_argument("--arena", action="store_true", help="also run an arena of candidate against baseline")
    p.add_argument("--html", metavar="FILE", help="also write the HTML report to this file")
    p.add_argument("--results", metavar="DIR", help="results folder: eval cache and the default MLflow store")
    p.add_argument("--experiment", help="MLflow experiment (default: harness)")
    p.set_defaults(func=_nightly)

    d = sub.add_parser(
        "dashboard",
        help="write a static HTML dashboard of an MLflow experiment",
        description="Build DIR/index.html from the MLflow store alone: leaderboard across checkpoints, per-skill "
        "comparison plots, stage progression base -> SFT -> DPO -> RLVR, arena ratings with CIs, cost per stage, "
        "nightly verdicts and sample generations. No scripts; images beside the page.",
    )
    d.add_argument("--experiment", default="harness", help="MLflow experiment (default: harness)")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder (index.html and img/)")
    d.add_argument("--results", metavar="DIR", help="results folder of the default sqlite store (default: results)")
    d.add_argument("--samples", type=int, default=3, metavar="N", help="sample generations shown per task (default 3)")
    d.set_defaults(func=_dashboard)


def _nightly(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.nightly.config import load_nightly_config

    flags = {"suite": args.suite, "registered_model": args.registered_model, "results": args.results,
             "experiment": args.experiment}
    cfg = load_nightly_config(args.config, args.overrides)
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
    if args.arena:
        cfg.arena.enabled = True

    import torch

    torch.set_num_threads(cfg.threads)
    from harness.nightly.report import html_page, markdown
    from harness.nightly.run import run_nightly

    result = run_nightly(args.candidate, args.baseline, cfg, promote=args.promote)
    print(markdown(result))
    if args.html:
        with open(args.html, "w") as f:
            f.write(html_page(result))
    return result.exit_code


def _dashboard(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.nightly.dashboard import build_dashboard

    index = build_dashboard(args.experiment, args.out, results_dir=args.results or "results", samples=args.samples)
    print(f"dashboard: {index}")
    return 0
