"""``harness eval``, ``harness import``, ``harness compare`` and ``harness decontam``.

    harness eval --model results/sft --suite tiny [--json scores.json] [--label sft] [--limit 50]
    harness eval --model models:/harness-embedded/3 --suite tulu3_dev --set eval.backend=vllm
    harness import lm-eval out/ --suite tiny   # what `lm_eval --output_path out/ --log_samples` wrote
    harness compare base sft dpo rlvr          # runs by id, model, stage or run name; deltas to the first
    harness decontam --train sft.jsonl --suite tulu3_dev --json decontam.json   # train/eval n-gram overlap
    harness sweep --models ckpt/a ckpt/b --suite tiny --ray 10.0.0.1:6379   # every (model, entry) as a Ray task

Only argparse is imported here; lm-eval, torch and MLflow load when a command runs.
"""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register ``eval``, ``import``, ``compare`` and ``decontam`` on `sub` (argparse subparsers)."""
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
    c.add_argument("--budget", type=int, metavar="N", help="compare each checkpoint's eval run at thinking budget N "
                   "(eval.budgets); without it, only runs without a budget match names")
    _common(c)
    c.set_defaults(func=_compare)

    d = sub.add_parser(
        "decontam",
        help="share of each eval task's items whose n-grams appear in training files (Tulu 3's 8-gram check)",
        description="For each training file and each task of the suite, the eval items whose tokens lie, for more "
        "than the threshold share, in n-grams that also occur in the file (one pass over each file, hashed n-gram "
        "index of the eval items), with 95%% Wilson intervals. Reads only the tasks' documents: no model.",
    )
    d.add_argument("--train", nargs="+", required=True, metavar="FILE",
                   help="training files: JSONL, JSON, Parquet or CSV (.gz too); every text field of a row is read")
    d.add_argument("--suite", required=True, help="suite name or suite YAML file whose tasks' items are checked")
    d.add_argument("--n", type=int, default=8, help="n-gram length in tokens (default: 8, as Tulu 3)")
    d.add_argument("--threshold", type=float, default=0.5,
                   help="an item is contaminated when more than this share of its tokens match (default: 0.5)")
    d.add_argument("--json", metavar="OUT", help='write {task: {"contaminated": n, "total": m, "rate": n/m}} (all '
                   "training files pooled) to this file")
    d.add_argument("--pairs", metavar="OUT", help="write the contaminated items with their training example "
                   "(dataset, task, item_id, train_index, score, shared_ngrams) to this JSONL file")
    d.set_defaults(func=_decontam)

    w = sub.add_parser(
        "sweep",
        help="evaluate several checkpoints on a suite, every entry as a task (here, or on a Ray cluster with --ray); "
        "one MLflow eval run per checkpoint",
        description="Evaluate every (model, suite entry) as a task: in this process, or with --ray as Ray tasks with "
        "the resources of the sweep config section (sweep.cpus_per_task, sweep.gpus_per_task, sweep.max_retries; a "
        "worker that dies is run again). Small entries with the same settings share one task, as they share one "
        "lm-eval call in harness eval (eval.group_items; 0: a task per entry). Outputs are cached here as they "
        "arrive, then each model is recorded exactly as harness eval records it.",
    )
    w.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="Hugging Face folders, hub ids or MLflow model URIs (on a cluster: a path every node sees)")
    w.add_argument("--suite", help="suite name or suite YAML file (default: eval.suite)")
    w.add_argument("--limit", type=int, help="at most this many items per task (a suite's own limit wins)")
    w.add_argument("--ray", metavar="ADDRESS", help="HOST:PORT of a running Ray cluster's head (what `ray start "
                   "--head` prints); default: every task in this process")
    w.add_argument("--json", metavar="OUT", help="also write each model's results (as harness eval --json) to this "
                   "JSON file, a list")
    w.add_argument("--no-cache", action="store_true", help="re-run every task even if a cached result exists")
    _common(w)
    w.add_argument("--config", help="experiment YAML file (its run, eval and sweep sections apply)")
    w.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set sweep.gpus_per_task=1 (repeatable)")
    w.set_defaults(func=_sweep)


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
    from harness.models.load import check_device

    check_device(cfg.eval.device, "eval.device")
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
        threads=cfg.run.threads,  # set when a model is built: a suite read from the cache never loads torch
    )
    console.result(f"{result.summary()}\nMLflow run: {result.run_id}")
    if cfg.eval.budgets:  # one eval run per thinking budget, then the curve
        from harness.evals.budgets import evaluate_budgets, format_scaling, scaling_table

        label = args.label or Path(args.model.rstrip("/")).name
        curve = evaluate_budgets(args.model, args.suite or cfg.eval.suite, budgets=cfg.eval.budgets, cfg=cfg.eval,
                                 results_dir=cfg.run.results, label=label, experiment=cfg.run.experiment,
                                 trust_remote_code=cfg.model.trust_remote_code, threads=cfg.run.threads)
        table = scaling_table({label: curve})
        console.result(f"\nTest-time scaling by thinking budget (generation tasks; 95% CI):\n"
                       f"{format_scaling(table)}\nMLflow runs: {', '.join(map(str, table.run_id))}")
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
                    experiment=args.experiment or defaults.experiment, suite=args.suite, log=not args.no_log,
                    budget=args.budget)
    print(format_compare(table))
    if args.json:
        from harness import storage

        storage.write_text(args.json, table.to_json(orient="records", indent=2), "--json file")
    return 0


def _decontam(args: argparse.Namespace) -> int:
    import json

    from harness import console, storage
    from harness.evals.decontam import decontaminate

    if args.pairs:
        storage.output_file(args.pairs, "--pairs file")
    report = decontaminate(args.train, args.suite, n=args.n, threshold=args.threshold)
    console.result(report.table())
    if args.json:
        storage.write_text(args.json, json.dumps(report.to_json(), indent=2), "--json file")
    if args.pairs:
        storage.write_text(args.pairs, "".join(json.dumps(p) + "\n" for p in report.pairs()), "--pairs file")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness.config import load_config

    flags = {"eval": {"limit": args.limit, "cache": False if args.no_cache else None},
             "run": {"results": args.results, "experiment": args.experiment}}
    cfg = load_config(args.config, args.set, flags=flags)  # checked whole before lm-eval, torch, Ray or MLflow load
    from harness.evals.sweep import check_address, sweep

    if args.ray:
        check_address(args.ray)
    from harness import storage

    storage.writable_dir(cfg.run.results, "results folder")
    storage.writable_dir(Path(cfg.run.results) / "eval_cache", "eval cache")
    import torch

    from harness.models.load import check_device

    check_device(cfg.eval.device, "eval.device")
    torch.set_num_threads(cfg.run.threads)
    from harness import capture, console
    from harness.report.tables import interval, number, render

    capture.log_to(cfg.run.results)
    results = sweep(args.models, args.suite or cfg.eval.suite, cfg=cfg.eval, resources=cfg.sweep,
                    results_dir=cfg.run.results, address=args.ray, experiment=cfg.run.experiment,
                    trust_remote_code=cfg.model.trust_remote_code, threads=cfg.run.threads)
    overall = [r.skills.set_index("skill").loc["overall"] for r in results]
    rows = [(r.model, number(o.value), interval(o.ci_low, o.ci_high), r.run_id) for r, o in zip(results, overall)]
    console.result(f"sweep: {len(results)} eval runs recorded (suite {results[0].suite})\n"
                   + render(rows, ["model", "overall", "95% CI", "MLflow run"]))
    if args.json:
        storage.write_text(args.json, json.dumps([r.to_dict() for r in results], indent=2, default=str), "--json file")
    return 0
