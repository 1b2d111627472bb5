"""``harness eval``, ``harness import`` and ``harness compare``.

    harness eval --model results/sft --suite tiny [--json scores.json] [--label sft] [--limit 50]
    harness eval --model models:/harness-embedded/3 --suite tulu3_dev --set eval.backend=vllm
    harness import lm-eval out/ --suite tiny   # what `lm_eval --output_path out/ --log_samples` wrote
    harness compare base sft dpo rlvr          # runs by id, model, stage or run name; deltas to the first

Only argparse is imported here; lm-eval, torch and MLflow load when a command runs.
"""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register ``eval``, ``import`` and ``compare`` on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "eval",
        help="score a checkpoint on an eval suite through lm-eval and record it in MLflow",
        description="Score a checkpoint on an eval suite through lm-eval (cached per task) and log one MLflow run.",
    )
    p.add_argument("--model", required=True, help="Hugging Face folder, hub id or MLflow model URI (models:/name/3)")
    p.add_argument("--suite", help="suite name (packaged, or $HARNESS_SUITES/<name>.yaml) or suite YAML file "
                   "(default: eval.suite)")
    p.add_argument("--json", metavar="OUT", help="also write lm-eval's results plus our aggregates to this JSON file")
    p.add_argument("--label", help="stage label, tagged harness.stage (base, sft, dpo, rlvr)")
    p.add_argument("--limit", type=int, help="at most this many items per task (a suite's own limit wins)")
    p.add_argument("--no-cache", action="store_true", help="re-run every task even if a cached result exists")
    _common(p)
    p.add_argument("--config", help="experiment YAML file (its run and eval sections apply)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set eval.backend=vllm (repeatable)")
    p.set_defaults(func=_eval)

    i = sub.add_parser(
        "import",
        help="record what lm_eval --output_path DIR --log_samples wrote as an eval run in MLflow",
        description="Read lm-eval's results_<timestamp>.json and samples_<task>_<timestamp>.jsonl (in DIR or its "
        "model subfolder; the newest run) and log them as one eval run, with the metrics, params, artifacts and "
        "links of a harness eval of the same model and settings, so that harness compare, harness nightly "
        "(--baseline run:<id>) and the dashboard read it as one. Nothing is re-scored.",
    )
    i.add_argument("source", choices=["lm-eval"], help="what wrote the output (lm-eval)")
    i.add_argument("dir", metavar="DIR", help="lm-eval's --output_path folder, its model subfolder or a results "
                   "JSON file")
    i.add_argument("--suite", help="the suite the tasks belong to (its skills, data and headline metrics; the "
                   "imported tasks must be exactly its tasks). Without it every top-level task or group is a skill "
                   "of its own, named after it, in a suite called 'lm-eval' (which a nightly of a real suite will "
                   "not compare with)")
    i.add_argument("--label", help="stage label, tagged harness.stage (base, sft, dpo, rlvr)")
    _common(i)
    i.set_defaults(func=_import)

    c = sub.add_parser(
        "compare",
        help="eval runs side by side with 95%% CIs and deltas to the first",
        description="Compare eval runs (MLflow run ids, or model / stage / run names): scores with 95%% CIs and "
        "each run's delta to the first. Printed and logged as a compare run.",
    )
    c.add_argument("refs", nargs="+", metavar="RUN", help="MLflow run id, model, stage label or run name")
    c.add_argument("--suite", help="only match eval runs of this suite")
    c.add_argument("--json", metavar="OUT", help="also write the comparison table to this JSON file")
    c.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    _common(c)
    c.set_defaults(func=_compare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="results folder: eval cache and MLflow store (default: run.results)")
    p.add_argument("--experiment", help="MLflow experiment (default: run.experiment)")


def _eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness.config import load_config

    flags = {"eval": {"limit": args.limit, "cache": False if args.no_cache else None},
             "run": {"results": args.results, "experiment": args.experiment}}
    cfg = load_config(args.config, args.set, flags=flags)  # checked whole before lm-eval, torch or MLflow load
    from harness import storage

    storage.writable_dir(cfg.run.results, "results folder")  # the --json file is checked by harness.cli
    storage.writable_dir(Path(cfg.run.results) / "eval_cache", "eval cache")
    import torch

    from harness.models.load import check_device

    check_device(cfg.eval.device, "eval.device")
    torch.set_num_threads(cfg.run.threads)
    from harness import capture, console
    from harness.evals import evaluate

    capture.log_to(cfg.run.results)
    result = evaluate(
        args.model,
        args.suite or cfg.eval.suite,
        cfg=cfg.eval,
        results_dir=cfg.run.results,
        label=args.label,
        experiment=cfg.run.experiment,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    console.result(f"{result.summary()}\nMLflow run: {result.run_id}")
    if args.json:
        storage.write_text(args.json, json.dumps(result.to_dict(), indent=2, default=str), "--json file")
    return 0


def _import(args: argparse.Namespace) -> int:
    from harness import capture, console, storage
    from harness.config import RunConfig
    from harness.evals.importer import import_lm_eval

    defaults = RunConfig()
    results = args.results or defaults.results
    storage.writable_dir(results, "results folder")
    capture.log_to(results)
    result = import_lm_eval(args.dir, suite=args.suite, label=args.label, results_dir=results,
                            experiment=args.experiment or defaults.experiment)
    console.result(f"{result.summary()}\nMLflow run: {result.run_id}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from harness.config import RunConfig
    from harness.evals.compare import compare, format_compare

    defaults = RunConfig()
    table = compare(args.refs, results_dir=args.results or defaults.results,
                    experiment=args.experiment or defaults.experiment, suite=args.suite, log=not args.no_log)
    print(format_compare(table))
    if args.json:
        from harness import storage

        storage.write_text(args.json, table.to_json(orient="records", indent=2), "--json file")
    return 0
