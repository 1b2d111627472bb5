"""Eval cost: `harness eval` against a direct ``lm_eval.simple_evaluate``, and a cached re-evaluation.

    python benchmarks/evals.py [--checkpoint DIR] [--suite tiny] [--limit N] [--repeats 15]

Without ``--checkpoint`` a tiny model of the embedded default size (width 128, 4 layers) is built in a temporary
folder. One warm-up evaluation first (imports, MLflow store), then, all in this one process:

- overhead: ``evaluate`` of the checkpoint with an empty eval cache (all model work, the cache written, the MLflow
  run logged into the results folder's existing store, as for a pipeline's next checkpoint) against
  ``simple_evaluate`` on the same model, tasks and settings, run back to back in alternating order; both load the
  model. Target ≤ 1.05.
- cache: that ``evaluate`` against the identical one right after it (everything from the cache). Target ≥ 20.

Each ratio is printed in wall-clock and CPU seconds (CPU counts this process and the subprocesses it waited for),
paired (the median of the per-repeat ratios, with their interquartile range) and as the ratio of the medians. The
targets are checked on the CPU paired median: on a shared machine single timings move by ±10%.

One torch thread, as the harness runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _tiny(folder: Path) -> Path:
    from harness.data import skills
    from harness.models import tiny

    tok = tiny.build_tokenizer(skills.pretraining_corpus(4000, seed=0), vocab_size=512)
    tiny.save(tiny.build_model(tok, hidden_size=128, layers=4, heads=4, seed=0), tok, folder / "tiny")
    return folder / "tiny"


def _timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of `fn()`; CPU counts this process and the subprocesses it waited for."""
    start, cpu = time.perf_counter(), os.times()
    fn()
    end = os.times()
    used = (end.user - cpu.user) + (end.system - cpu.system)
    used += (end.children_user - cpu.children_user) + (end.children_system - cpu.children_system)
    return time.perf_counter() - start, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model folder (default: build a tiny one)")
    parser.add_argument("--suite", default="tiny")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    import logging

    import lm_eval
    import torch

    from harness.config import EvalConfig
    from harness.evals import evaluate, suite

    torch.set_num_threads(1)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench_evals_"))
    try:
        model = args.checkpoint or str(_tiny(work))
        spec = suite.load(args.suite)
        entries = {(e.num_fewshot, e.limit, e.apply_chat_template, e.fewshot_as_multiturn) for e in spec.entries}
        if len(entries) != 1:
            raise SystemExit("the overhead comparison needs a suite whose tasks share one setting")
        num_fewshot, _, chat, multiturn = entries.pop()
        cfg = EvalConfig(limit=args.limit, device="cpu")
        results = work / "results"

        def harness(results_dir: Path):
            return lambda: evaluate(model, args.suite, cfg=cfg, results_dir=results_dir)

        def direct():
            lm_eval.simple_evaluate(
                model="hf", model_args={"pretrained": model}, tasks=[e.task for e in spec.entries],
                num_fewshot=num_fewshot, limit=args.limit, apply_chat_template=chat, fewshot_as_multiturn=multiturn,
                batch_size=cfg.batch_size, device="cpu", task_manager=suite.task_manager(spec),
                bootstrap_iters=cfg.bootstrap_iters, log_samples=True,
            )

        evaluate(model, args.suite, cfg=EvalConfig(limit=2, device="cpu"), results_dir=results)  # warm-up
        times: dict[str, list[tuple[float, float]]] = {"direct": [], "harness": [], "cached": []}
        for i in range(args.repeats):
            shutil.rmtree(results / "eval_cache")  # the MLflow store stays, as for a pipeline's next checkpoint
            pair = [("direct", direct), ("harness", harness(results))]
            for name, fn in pair if i % 2 == 0 else pair[::-1]:  # alternate the order: drift hits both alike
                times[name].append(_timed(fn))
            times["cached"].append(_timed(harness(results)))
            print(f"repeat {i + 1} (wall/CPU s): " + "  ".join(
                f"{k} {v[-1][0]:.2f}/{v[-1][1]:.2f}" for k, v in times.items()), flush=True)

        print(f"\nsuite {args.suite}, {len(spec.entries)} tasks, limit {args.limit}, {args.repeats} repeats")
        for name, (num, den), target, ok in (
            ("overhead: harness eval / simple_evaluate", ("harness", "direct"), "<= 1.05", lambda r: r <= 1.05),
            ("cache:    harness eval / cached re-run  ", ("harness", "cached"), ">= 20", lambda r: r >= 20),
        ):
            cells = []
            for unit, i in (("wall", 0), ("CPU", 1)):
                paired = sorted(a[i] / b[i] for a, b in zip(times[num], times[den]))
                med = statistics.median(t[i] for t in times[num]) / statistics.median(t[i] for t in times[den])
                q1, _, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
                cells.append(f"{unit} paired {statistics.median(paired):.3f} [IQR {q1:.3f}-{q3:.3f}], "
                             f"of medians {med:.3f}")
                if unit == "CPU":
                    met = "ok" if ok(statistics.median(paired)) else "MISSED"
                    verdict = f"target {target} on the CPU paired median: {met}"
            print(f"{name}  {' | '.join(cells)}  ({verdict})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
