"""``harness nightly``.

    harness nightly --candidate models:/harness-embedded/4 --baseline champion --suite tiny --promote
    harness nightly --candidate /ckpt/step-9000 --baseline last-pass --config nightly.yaml --html report.html
    harness nightly --candidate /ckpt/step-9000 --baseline run:<eval run id>   # e.g. imported lm-eval output
    harness nightly --candidate /ckpt/step-9000 --baseline champion --ray 10.0.0.1:6379   # both sides on Ray
    harness nightly --aa --baseline champion      # A/A: the champion evaluated again, cache bypassed: drift?
    harness power --accuracy 0.7 --effect 0.03 --disagreement 0.06 --metrics 10   # items needed
    harness power --accuracy 0.7 --items 1000 --disagreement 0.06                 # the drop detectable there

``harness nightly`` exits 0 on a pass, 1 on a regression (with --aa: on drift), 2 when it cannot compare or on bad
input. Only argparse is imported here; lm-eval, torch, pandas and MLflow load when the command runs (``harness
power`` needs scipy only). ``harness dashboard`` is `harness.report.cli`.
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
    p.add_argument("--candidate", metavar="MODEL",
                   help="checkpoint to judge: folder, hub id (org/name), models:/NAME/VERSION, an alias, or "
                   "run:<eval run id> (an eval run already in the store, e.g. from harness import lm-eval); "
                   "required unless --aa")
    p.add_argument("--aa", action="store_true",
                   help="A/A check (drift alarm): evaluate the baseline's checkpoint again with the eval cache "
                   "bypassed and compare it with its recorded scores; exit 1 when they moved beyond noise (a "
                   "significant metric, or more than drift_tolerance of a metric's items changed). The only way to "
                   "compare a checkpoint with itself"),
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
    p.add_argument("--budget", type=int, metavar="N", help="compare both sides at a thinking budget of N tokens "
                   "(the reasoning forced closed at N; config key budget)")
    p.add_argument("--html", metavar="FILE", help="also write the HTML report to this file")
    p.add_argument("--ray", metavar="ADDRESS", help="evaluate both sides on this Ray cluster (HOST:PORT of its head, "
                   "as `ray start --head` prints it), every suite entry a task with the resources of the sweep "
                   "section (harness sweep)")
    p.add_argument("--results", metavar="DIR", help="results folder: eval cache and the default MLflow store")
    p.add_argument("--experiment", help="MLflow experiment (default: harness)")
    p.set_defaults(func=_nightly)
    _add_power(sub)


def _add_power(sub) -> None:
    p = sub.add_parser(
        "power",
        help="items a nightly task needs to catch a drop, or the drop a task of n items can catch (paired McNemar)",
        description="Power of the nightly's paired test on 0/1 scores (exact McNemar, two-sided as the nightly runs "
        "it): give --effect for the items needed to catch that drop, or --items for the smallest drop caught there "
        "(the minimum detectable effect). Only the items the two checkpoints score differently carry information: "
        "--disagreement is their share (a nightly reports it per metric); without it the two checkpoints' answers "
        "are taken as independent given the accuracy, the worst case.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--effect", type=float, metavar="DROP",
                      help="the drop in accuracy to catch, in score units (0.03: three points)")
    what.add_argument("--items", type=int, metavar="N", help="items the task has (both sides score the same ones)")
    p.add_argument("--accuracy", type=float, required=True, help="the baseline's accuracy on the task (0..1)")
    p.add_argument("--disagreement", type=float, metavar="SHARE",
                   help="share of items the two checkpoints score differently (default: independent answers)")
    p.add_argument("--alpha", type=float, default=0.05, help="familywise error of the nightly (default 0.05)")
    p.add_argument("--metrics", type=int, default=1, metavar="M",
                   help="metrics the nightly compares at once: each is tested at alpha / M, as Holm's first step "
                   "(default 1)")
    p.add_argument("--power", type=float, default=0.8, help="probability of catching the drop (default 0.8)")
    p.add_argument("--sided", default="two", choices=["two", "one"],
                   help="two-sided test at alpha (the nightly's; default) or one-sided")
    p.set_defaults(func=_power)


def _power(args: argparse.Namespace) -> int:
    import math

    from harness import console
    from harness.nightly.power import design

    found = design(accuracy=args.accuracy, effect=args.effect, items=args.items, disagreement=args.disagreement,
                   alpha=args.alpha, power=args.power, sided=args.sided, metrics=args.metrics)
    level = f"alpha {args.alpha:g}" + (f" / {args.metrics} metrics = {found['level']:.3g}" if args.metrics > 1 else "")
    d = found["used_disagreement"]
    given = "given" if args.disagreement is not None else "independent answers assumed"
    lines = [f"paired 0/1 scores, exact McNemar test ({found['sided']}-sided, {level}), baseline accuracy "
             f"{args.accuracy:g}"]
    if args.effect is not None:
        lines += [f"drop {args.effect:g} (to {args.accuracy - args.effect:g}); items scored differently: {d:.2%} "
                  f"({given})",
                  f"items needed for {args.power:.0%} power: {found['items']:,} (exact power there "
                  f"{found['power']:.3f}; the normal approximation says {found['normal_items']:,})"]
    elif math.isinf(found["effect"]):
        lines.append(f"no drop is caught with {args.power:.0%} power on {args.items:,} items at that level: too few "
                     "items for the test to reject")
    else:
        lines += [f"smallest drop caught with {args.power:.0%} power on {args.items:,} items: {found['effect']:.4f} "
                  f"(exact power there {found['power']:.3f})",
                  f"items scored differently at that drop: {d:.2%} ({given})"]
    console.result("\n".join(lines))
    return 0


def _nightly(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from harness.nightly.config import load_nightly_config

    flags = {"suite": args.suite, "registered_model": args.registered_model, "results": args.results,
             "experiment": args.experiment, "arena": {"enabled": True if args.arena else None},
             "budget": args.budget}
    cfg = load_nightly_config(args.config, args.overrides, flags=flags)  # checked whole before any model work
    if args.candidate is None and not args.aa:
        from harness.errors import HarnessError

        raise HarnessError("--candidate is required: the checkpoint to judge (or --aa, to check the baseline against "
                           "itself)")
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
    result = run_nightly(args.candidate, args.baseline, cfg, promote=args.promote, ray=args.ray, aa=args.aa)
    console.result(markdown(result))
    if args.html:
        storage.write_text(args.html, html_page(result), "--html file")
    return result.exit_code
