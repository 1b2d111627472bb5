"""Eval cost: `harness eval` against a direct ``lm_eval.simple_evaluate``, and a cached re-evaluation.

    python benchmarks/evals.py [--checkpoint DIR] [--suite tiny] [--limit N] [--repeats 5]

Without ``--checkpoint`` a tiny model of the embedded default size (width 128, 4 layers) is built in a temporary
folder. One warm-up evaluation first (imports, MLflow store), then, all in this one process:

- overhead: ``evaluate`` with the cache off against ``simple_evaluate`` on the same model, tasks and settings, run
  back to back in alternating order; both load the model each time. Target ≤ 1.05.
- cache: a first ``evaluate`` in a fresh results folder against the second, identical one. Target ≥ 20.

Both are printed as ratios of medians and as paired ratios (the median of the per-repeat ratios), in wall-clock
and CPU seconds; on a shared machine the paired CPU ratio is the steadier figure.

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
    parser.add_argument("--repeats", type=int, default=5)
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
        cfg = EvalConfig(limit=args.limit, device="cpu", cache=False)
        results = work / "results"

        def ours(results_dir: Path, cache: bool):
            cfg.cache = cache
            return lambda: evaluate(model, args.suite, cfg=cfg, results_dir=results_dir)

        def direct():
            lm_eval.simple_evaluate(
                model="hf", model_args={"pretrained": model}, tasks=[e.task for e in spec.entries],
                num_fewshot=num_fewshot, limit=args.limit, apply_chat_template=chat, fewshot_as_multiturn=multiturn,
                batch_size=cfg.batch_size, device="cpu", task_manager=suite.task_manager(spec),
                bootstrap_iters=cfg.bootstrap_iters, log_samples=True,
            )

        warm = EvalConfig(limit=2, device="cpu", cache=False)
        evaluate(model, args.suite, cfg=warm, results_dir=results)
        times: dict[str, list[tuple[float, float]]] = {"direct": [], "harness": [], "first": [], "cached": []}
        for i in range(args.repeats):
            pair = [("direct", direct), ("harness", ours(results, cache=False))]
            for name, fn in pair if i % 2 == 0 else pair[::-1]:  # alternate the order: drift hits both alike
                times[name].append(_timed(fn))
            fresh = work / f"fresh{i}"
            fresh.mkdir()
            shutil.copy(results / "mlflow.db", fresh / "mlflow.db")  # same store state, empty eval cache
            times["first"].append(_timed(ours(fresh, cache=True)))
            times["cached"].append(_timed(ours(fresh, cache=True)))
            print(f"repeat {i + 1} (wall/CPU s): " + "  ".join(
                f"{k} {v[-1][0]:.2f}/{v[-1][1]:.2f}" for k, v in times.items()), flush=True)
        print(f"\nsuite {args.suite}, {len(spec.entries)} tasks, limit {args.limit}, {args.repeats} repeats; medians. "
              "Paired = median over repeats of the ratio within a repeat (both ran back to back), the steadier "
              "measure on a shared machine; CPU counts this process and its subprocesses.")
        for unit, i in (("wall", 0), ("CPU", 1)):
            med = {k: statistics.median(t[i] for t in v) for k, v in times.items()}
            paired_overhead = statistics.median(h[i] / d[i] for h, d in zip(times["harness"], times["direct"]))
            paired_speedup = statistics.median(f[i] / c[i] for f, c in zip(times["first"], times["cached"]))
            print(f"{unit:>4}: overhead harness eval {med['harness']:.2f}s / simple_evaluate {med['direct']:.2f}s = "
                  f"{med['harness'] / med['direct']:.3f}, paired {paired_overhead:.3f} (target <= 1.05: "
                  f"{'ok' if paired_overhead <= 1.05 else 'MISSED'});  cache first {med['first']:.2f}s / cached "
                  f"{med['cached']:.3f}s = {med['first'] / med['cached']:.1f}x, paired {paired_speedup:.1f}x "
                  f"(target >= 20: {'ok' if paired_speedup >= 20 else 'MISSED'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
