"""`harness run`: the main job (train → evaluate → arena, tracked in MLflow)."""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register `harness run`."""
    p = sub.add_parser(
        "run",
        help="train and evaluate base → SFT → DPO → RLVR (the embedded tiny default, or your checkpoints)",
        description="Run the pipeline: defaults < CONFIG file < --set overrides. MLFLOW_TRACKING_URI picks the "
        "store (default: sqlite mlflow.db in the results folder).",
    )
    p.add_argument("config", nargs="?", help="YAML experiment config (default: the packaged embedded default)")
    p.add_argument("--quick", action="store_true", help="reduced preset for tests and CI (about a minute)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set sft.learning_rate=1e-4 (repeatable)")
    p.add_argument("--results", metavar="DIR", help="output folder (default: results)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from harness import capture, console
    from harness.config import load_config
    from harness.runner import run_pipeline, summary

    cfg = load_config(args.config, args.overrides, quick=args.quick, flags={"run": {"results": args.results}})
    capture.log_to(cfg.run.results)
    result = run_pipeline(cfg)
    console.result(summary(result))
    return 0
