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
    p.add_argument("--resume", action="store_true",
                   help="continue the newest unfinished (killed, failed) pipeline run of run.name under its own "
                   "parent run, at its first unfinished stage; the config must be the same")
    p.set_defaults(func=_run)


def _preflight(cfg) -> None:
    """What the pipeline reads only after training, read before it: the eval suite and its task names, the arena's
    prompt set and, for the verifier judge, the columns it grades with; the reward model a judge names; each TRL
    stage's dataset, trainer settings and LoRA targets."""
    from harness.train.checks import check_stages

    check_stages(cfg)
    if cfg.eval.enabled:
        from harness.evals import suite as suites

        suites.check_tasks(suites.load(cfg.eval.suite))  # lm-eval's task index, built once: the evals reuse it
    if cfg.eval.during_training:
        from harness.evals import suite as suites

        suites.check_tasks(suites.load(cfg.eval.during_training.get("suite") or cfg.eval.suite))
    if cfg.arena.enabled:
        from harness.arena.prompts import read_prompts

        prompts = read_prompts(cfg.arena.prompt_file, cfg.arena.prompts)
        if cfg.arena.judge == "verifier":
            from harness.arena.judges import VerifierJudge

            VerifierJudge().check(prompts)
        elif cfg.arena.judge == "reward-model" and cfg.arena.reward_model.path:
            from harness.models.load import resolve

            resolve(cfg.arena.reward_model.path)


def _run(args: argparse.Namespace) -> int:
    from harness import capture, console
    from harness.config import load_config
    from harness.runner import run_pipeline, summary

    cfg = load_config(args.config, args.overrides, quick=args.quick, flags={"run": {"results": args.results}})
    from harness import storage

    storage.writable_dir(cfg.run.results, "results folder")  # checkpoints, caches, logs: before any training
    if cfg.eval.enabled:
        storage.writable_dir(f"{cfg.run.results}/eval_cache", "eval cache")
    from harness.models.load import check_device

    from harness.evals.checks import engine_installed

    for section, engine in (("eval", "backend"), ("arena", "engine")):
        if getattr(cfg, section).enabled:
            check_device(getattr(cfg, section).device, f"{section}.device")
            engine_installed(getattr(getattr(cfg, section), engine), f"{section}.{engine}")
    _preflight(cfg)
    capture.log_to(cfg.run.results)
    result = run_pipeline(cfg, resume=args.resume)
    console.result(summary(result))
    return 0
