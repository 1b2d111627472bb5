"""``harness watch``: evaluate the checkpoints a trainer writes into a folder, each once (`harness.watch`).

    harness watch /ckpt/run-7 --suite tiny --once                  # what is there now, then exit (cron, tests)
    harness watch /ckpt/run-7 --suite tulu3_dev --baseline champion --poll 300   # until Ctrl-C

Only argparse is imported here; lm-eval, torch and MLflow load when the command runs.
"""

from __future__ import annotations

import argparse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (valid: > 0)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: a number of seconds > 0)")
    return value


def add_parsers(sub) -> None:
    """Register ``watch`` on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "watch",
        help="evaluate each checkpoint-<step> folder a trainer writes into DIR once, charted by step on one MLflow "
        "run; with --baseline, a nightly verdict per checkpoint",
        description="Watch DIR for complete checkpoint-<step> folders (config, weights and trainer_state.json, as "
        "the Hugging Face Trainer saves them; without trainer_state.json, once no file changed for 60 s), evaluate "
        "each once through harness eval (cached; a checkpoint with a FINISHED eval run is never redone, also after "
        "a restart), nested under one watch run of DIR that logs eval/<skill>/score by step. With --baseline, "
        "compare each new checkpoint with the baseline as harness nightly does and print the verdict. Without "
        "--once, poll until Ctrl-C.",
    )
    p.add_argument("dir", metavar="DIR", help="the folder a trainer writes checkpoint-<step> folders into")
    p.add_argument("--suite", help="suite name (packaged, or $HARNESS_SUITES/<name>.yaml) or suite YAML file "
                   "(default: eval.suite)")
    p.add_argument("--baseline", metavar="MODEL|ALIAS",
                   help="compare each checkpoint with this nightly baseline: an alias of run.registered_model "
                   "(champion), a model (folder, hub id, models:/ URI), run:<eval run id> or 'last-pass'")
    p.add_argument("--once", action="store_true", help="evaluate what DIR holds now and exit (exit code: 0, or the "
                   "worst nightly's with --baseline: 1 regression, 2 cannot compare)")
    p.add_argument("--poll", type=_seconds, default=60.0, metavar="SECONDS",
                   help="seconds between two looks at DIR (default: 60)")
    p.add_argument("--results", help="results folder: eval cache and MLflow store (default: run.results)")
    p.add_argument("--experiment", help="MLflow experiment (default: run.experiment)")
    p.add_argument("--config", help="experiment YAML file (its run, model and eval sections apply)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set eval.limit=100 (repeatable)")
    p.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.config import load_config

    cfg = load_config(args.config, args.set, flags={"run": {"results": args.results, "experiment": args.experiment}})
    from harness import storage

    storage.writable_dir(cfg.run.results, "results folder")
    storage.writable_dir(Path(cfg.run.results) / "eval_cache", "eval cache")
    import torch

    from harness.evals.checks import engine_installed
    from harness.models.load import check_device

    check_device(cfg.eval.device, "eval.device")
    engine_installed(cfg.eval.backend, "eval.backend")
    torch.set_num_threads(cfg.run.threads)
    from harness import capture
    from harness.watch import watch

    capture.log_to(cfg.run.results)
    return watch(args.dir, args.suite or cfg.eval.suite, cfg=cfg, baseline=args.baseline, once=args.once,
                 poll=args.poll)
