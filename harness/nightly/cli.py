"""``harness nightly``.

    harness nightly --candidate models:/harness-embedded/4 --baseline champion --suite tiny --promote
    harness nightly --candidate /ckpt/step-9000 --baseline last-pass --config nightly.yaml --html report.html
    harness nightly --candidate /ckpt/step-9000 --baseline run:<eval run id>   # e.g. imported lm-eval output
    harness nightly --candidate /ckpt/step-9000 --baseline champion --ray 10.0.0.1:6379   # both sides on Ray

It exits 0 on a pass, 1 on a regression, 2 when it cannot compare or on bad input. Only argparse is imported
here; lm-eval, torch, pandas and MLflow load when the command runs. ``harness dashboard`` is `harness.report.cli`.
"""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register ``nightly`` on `sub` (argparse subparsers)."""
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
                   help="checkpoint to judge: folder, hub id (org/name), models:/NAME/VERSION, an alias, or "
                   "run:<eval run id> (an eval run already in the store, e.g. from harness import lm-eval)")
    p.add_argument("--baseline", metavar="MODEL|ALIAS",
                   help="an alias of the registered model (champion), a model (folder, hub id, models:/ URI), "
                   "run:<eval run id> or 'last-pass' (the latest passing nightly of the same suite version); "
                   "default: baseline in the config (champion)")
    p.add_argument("--suite", help="suite name (packaged, or $HARNESS_SUITES/<name>.yaml) or suite YAML file "
                   "(default: suite in the config)")
    p.add_argument("--config", metavar="FILE", help="nightly YAML file (nightly keys, eval: and arena: sections)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set alpha=0.01 or --set eval.limit=200 (repeatable)")
    p.add_argument("--promote", action="store_true",
                   help="on a pass, point the alias (champion) of the registered model at the candidate's version")
    p.add_argument("--registered-model", metavar="NAME",
                   help="registered model whose aliases name baselines (default: harness-embedded)")
    p.add_argument("--arena", action="store_true", help="also run an arena of candidate against baseline")
    p.add_argument("--html", metavar="FILE", help="also write the HTML report to this file")
    p.add_argument("--ray", metavar="ADDRESS", help="evaluate both sides on this Ray cluster (HOST:PORT of its head, "
                   "as `ray start --head` prints it), every suite entry a task with the resources of the sweep "
                   "section (harness sweep)")
    p.add_argument("--results", metavar="DIR", help="results folder: eval cache and the default MLflow store")
    p.add_argument("--experiment", help="MLflow experiment (default: harness)")
    p.set_defaults(func=_nightly)


def _nightly(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.nightly.config import load_nightly_config

    flags = {"suite": args.suite, "registered_model": args.registered_model, "results": args.results,
             "experiment": args.experiment, "arena": {"enabled": True if args.arena else None}}
    cfg = load_nightly_config(args.config, args.overrides, flags=flags)  # checked whole before any model work
    if args.ray:
        from harness.evals.sweep import check_address

        check_address(args.ray)
    from harness import storage

    storage.writable_dir(cfg.results, "results folder")  # the --html file is checked by harness.cli
    storage.writable_dir(f"{cfg.results}/eval_cache", "eval cache")

    import torch

    from harness.models.load import check_device

    from harness.evals.checks import engine_installed

    check_device(cfg.eval.device, "eval.device")
    engine_installed(cfg.eval.backend, "eval.backend")
    if cfg.arena.enabled:
        check_device(cfg.arena.device, "arena.device")
        engine_installed(cfg.arena.engine, "arena.engine")
    torch.set_num_threads(cfg.threads)
    from harness import capture, console
    from harness.report.nightly import html_page, markdown
    from harness.nightly.run import run_nightly

    capture.log_to(cfg.results)
    result = run_nightly(args.candidate, args.baseline, cfg, promote=args.promote, ray=args.ray)
    console.result(markdown(result))
    if args.html:
        storage.write_text(args.html, html_page(result), "--html file")
    return result.exit_code
