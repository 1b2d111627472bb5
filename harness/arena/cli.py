"""`harness arena`: rate checkpoints against each other on a prompt set with a chosen judge."""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register `harness arena`."""
    from typing import get_args

    from harness.config import ArenaMode, JudgeKind  # light: the config's choices, no heavy library

    p = sub.add_parser(
        "arena",
        help="pairwise arena between checkpoints: generate, judge with positions swapped, rate",
        description="Every model answers every prompt (cached); a judge compares each pair twice with positions "
        "swapped; Bradley-Terry ratings with bootstrap CIs, win rates and win probabilities are printed and logged "
        "to MLflow. Settings: defaults < --config FILE (its arena: section) < --set < the flags below.",
    )
    p.add_argument("--models", nargs="+", required=True, metavar="M",
                   help="models to rate: a folder, hub id or MLflow URI, optionally named NAME=SPEC")
    p.add_argument("--prompts", metavar="FILE",
                   help="prompt set (JSONL: id, prompt or messages, optional reference, skill); default: the "
                   "packaged harness/suites/arena/tiny.jsonl")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N prompts (default: arena.prompts)")
    p.add_argument("--judge", choices=get_args(JudgeKind), help="the judge (default: arena.judge)")
    p.add_argument("--baseline", metavar="M", help="measure every model against this one (win rate, LC win rate)")
    p.add_argument("--mode", choices=get_args(ArenaMode),
                   help="round-robin (every pair; the default) or baseline (every model against --baseline only)")
    p.add_argument("--reward-model", metavar="SPEC",
                   help="reward model for --judge reward-model (HF id or folder; arena.reward_model.path)")
    p.add_argument("--judge-base-url", metavar="URL",
                   help="OpenAI-compatible endpoint for --judge llm (arena.llm.base_url)")
    p.add_argument("--judge-model", metavar="NAME", help="judge model name for --judge llm (arena.llm.model)")
    p.add_argument("--judge-api-key-env", metavar="VAR",
                   help="NAME of the environment variable holding the judge's API key (arena.llm.api_key_env, default "
                   "OPENAI_API_KEY)")
    p.add_argument("--config", metavar="FILE", help="YAML experiment config (run: and arena: sections are used)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set arena.max_new_tokens=64 (repeatable)")
    p.add_argument("--results", metavar="DIR", help="output folder: caches and the default MLflow store")
    p.add_argument("--no-cache", action="store_true", help="generate and judge everything again")
    p.set_defaults(func=_run)


def _named(specs: list[str]) -> dict[str, str]:
    from pathlib import Path

    from harness.errors import HarnessError

    models: dict[str, str] = {}
    for item in specs:
        name, spec = item.split("=", 1) if "=" in item and not item.startswith(("models:/", "runs:/")) else ("", item)
        if not name:
            name = spec if spec.startswith(("models:/", "runs:/")) else (Path(spec.rstrip("/")).name or spec)
        if name in models:
            raise HarnessError(f"two models are named {name!r}; name them apart with NAME=SPEC")
        models[name] = spec
    return models


def _run(args: argparse.Namespace) -> int:
    from harness.config import load_config

    # The flags are config keys too: the whole config is checked before any library or model loads.
    limit = 0 if args.prompts and args.limit is None else args.limit  # a named prompt file is used whole by default
    flags = {
        "run": {"results": args.results},
        "arena": {
            "prompt_file": args.prompts, "prompts": limit, "judge": args.judge, "baseline": args.baseline,
            "mode": args.mode, "cache": False if args.no_cache else None,
            "reward_model": {"path": args.reward_model},
            "llm": {"base_url": args.judge_base_url, "model": args.judge_model, "api_key_env": args.judge_api_key_env},
        },
    }
    cfg = load_config(args.config, args.overrides, flags=flags)
    models = _named(args.models)
    from harness import storage

    storage.writable_dir(cfg.run.results, "results folder")
    if cfg.arena.cache:
        storage.writable_dir(f"{cfg.run.results}/cache/arena", "arena cache")

    import torch

    from harness import capture, console
    from harness.arena.arena import run_arena
    from harness.models.load import check_device

    check_device(cfg.arena.device, "arena.device")
    capture.log_to(cfg.run.results)
    torch.set_num_threads(cfg.run.threads)
    result = run_arena(models, cfg=cfg.arena, results_dir=cfg.run.results, seed=cfg.run.seed,
                       experiment=cfg.run.experiment, trust_remote_code=cfg.model.trust_remote_code)
    from harness.tracking.schema import ARENA_BATTLES

    console.result(f"MLflow run {result.run_id}; battles in its artifact {ARENA_BATTLES.path}")
    return 0
