"""Sweep wall time on a Ray cluster of one node against two: the same `harness sweep`, in the same run.

    python benchmarks/sweep.py [--models 4] [--limit 100] [--repeats 3] [--cpus 1]

Builds `--models` tiny checkpoints of the embedded default size (width 128, 4 layers, different seeds) in a
temporary folder, then starts two real Ray clusters on this machine (`tests/ray_cluster.py`): one of a single node
and one of two nodes, every node with `--cpus` CPUs. Each repeat runs the same sweep (every checkpoint × the tiny
suite, `--limit` items per task, an empty eval cache and MLflow store each time) on both clusters, in alternating
order so that drift on a shared machine hits both alike; the time counts everything a sweep does (connecting to the
cluster, starting workers, the lm-eval calls, writing the cache, recording one eval run per checkpoint).

Prints each repeat, then the medians and the speedup (one node / two nodes), paired (the median of the per-repeat
ratios) and as the ratio of the medians. `figures()` returns the same numbers as a dict, for another script.
With as many CPUs on the machine as on the two nodes, the ideal speedup is 2 less the serial part (the records).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test suite's Ray cluster helper


def _checkpoints(folder: Path, n: int) -> list[str]:
    from harness.data import skills
    from harness.models import tiny

    tok = tiny.build_tokenizer(skills.pretraining_corpus(4000, seed=0), vocab_size=512)
    out = []
    for seed in range(n):
        tiny.save(tiny.build_model(tok, hidden_size=128, layers=4, heads=4, seed=seed), tok, folder / f"m{seed}")
        out.append(str(folder / f"m{seed}"))
    return out


def figures(models: int = 4, limit: int = 100, repeats: int = 3, cpus: int = 1, out=None) -> dict:
    """Time the same sweep on a one-node and a two-node Ray cluster (see the module docstring).

    Args:
        models: tiny checkpoints swept.
        limit: items per task of the tiny suite.
        repeats: sweeps on each cluster.
        cpus: CPUs of each node (and of each task).
        out: where each repeat's line goes (default stdout).

    Returns:
        ``{"one_node_s": [...], "two_nodes_s": [...], "one_node_median_s", "two_nodes_median_s",
        "speedup_of_medians", "speedup_paired", "models", "limit", "cpus"}``.
    """
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    import torch

    from harness.config import EvalConfig, SweepConfig
    from harness.evals.sweep import sweep
    from ray_cluster import ray_cluster

    torch.set_num_threads(1)
    out = out or sys.stdout
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    cfg = EvalConfig(limit=limit, device="cpu")
    resources = SweepConfig(cpus_per_task=cpus)
    times: dict[str, list[float]] = {"one_node_s": [], "two_nodes_s": []}
    try:
        checkpoints = _checkpoints(work, models)
        token = work / "ray_auth_token"  # both clusters take this process's one token
        token.write_text(secrets.token_hex(32))
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})
        with ray_cluster(nodes=1, cpus=cpus, token=token) as one, ray_cluster(nodes=2, cpus=cpus, token=token) as two:
            clusters = [("one_node_s", one), ("two_nodes_s", two)]
            for i in range(repeats):
                for name, cluster in clusters if i % 2 == 0 else clusters[::-1]:
                    results = work / f"results-{name}-{i}"
                    start = time.perf_counter()
                    sweep(checkpoints, "tiny", cfg=cfg, resources=resources, results_dir=results,
                          address=cluster.address)
                    times[name].append(time.perf_counter() - start)
                    shutil.rmtree(results)
                print(f"repeat {i + 1}: one node {times['one_node_s'][-1]:.1f} s, two nodes "
                      f"{times['two_nodes_s'][-1]:.1f} s", file=out, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = (statistics.median(times[k]) for k in ("one_node_s", "two_nodes_s"))
    return {**times, "one_node_median_s": one, "two_nodes_median_s": two, "speedup_of_medians": one / two,
            "speedup_paired": statistics.median(a / b for a, b in zip(times["one_node_s"], times["two_nodes_s"])),
            "models": models, "limit": limit, "cpus": cpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4, help="tiny checkpoints swept (default 4)")
    parser.add_argument("--limit", type=int, default=100, help="items per task of the tiny suite (default 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per node and per task (default 1)")
    args = parser.parse_args()
    f = figures(args.models, args.limit, args.repeats, args.cpus)
    print(f"\n{args.models} checkpoints × tiny suite, limit {args.limit}, {args.repeats} repeats, {args.cpus} CPU(s) "
          f"per node and task")
    print(f"one node:  median {f['one_node_median_s']:.1f} s")
    print(f"two nodes: median {f['two_nodes_median_s']:.1f} s")
    print(f"speedup (one / two nodes): paired {f['speedup_paired']:.2f}, of medians {f['speedup_of_medians']:.2f}")


if __name__ == "__main__":
    main()
