"""Wall time and peak memory of the quick and the default pipeline (`harness run`), each in a fresh process.

Targets on a 2-core CPU machine: quick ≤ 2 min, default ≤ 10 min, peak RSS ≤ 4 GB. Run:

    python benchmarks/pipeline.py [--only quick|default] [--repeats N]

It first times `harness --help` (target ≤ 1 s) beside a bare interpreter start.

Each pipeline runs in a child process (its own peak RSS from `os.wait4`), with its own results folder, offline. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {"quick": (120.0, 4.0), "default": (600.0, 4.0)}  # seconds, GB
HELP_TARGET = 1.0  # seconds for `harness --help`


def _help_seconds(repeats: int = 5) -> float:
    """Median wall time of `harness --help` in a fresh interpreter (heavy libraries must stay unimported)."""
    return statistics.median(_timed([sys.executable, "-m", "harness.cli", "--help"]) for _ in range(repeats))


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _one(preset: str) -> tuple[float, float]:
    """Run one pipeline in a child process; return (wall seconds, that child's peak RSS in GB)."""
    with tempfile.TemporaryDirectory() as results, tempfile.TemporaryFile("w+") as log:
        cmd = [sys.executable, "-m", "harness.cli", "run", "--results", results]
        if preset == "quick":
            cmd.append("--quick")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            log.seek(0)
            sys.exit(f"{preset} pipeline failed (status {status}):\n{log.read()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TARGETS))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}")
    baseline = statistics.median(_timed([sys.executable, "-c", "pass"]) for _ in range(5))
    h = _help_seconds()
    print(f"harness --help median {h:.2f} s (bare interpreter {baseline:.2f} s; target ≤ {HELP_TARGET:.0f} s, "
          f"ratio {h / HELP_TARGET:.2f})", flush=True)
    for preset in [args.only] if args.only else ["quick", "default"]:
        times, peaks = [], []
        for i in range(args.repeats):
            seconds, peak = _one(preset)
            times.append(seconds)
            peaks.append(peak)
            print(f"{preset:8s} run {i + 1}: {seconds:7.1f} s  peak RSS {peak:5.2f} GB", flush=True)
        t_target, m_target = TARGETS[preset]
        t, m = statistics.median(times), max(peaks)
        print(
            f"{preset:8s} median {t:7.1f} s (target ≤ {t_target:.0f} s, ratio {t / t_target:.2f}); "
            f"peak RSS {m:.2f} GB (target ≤ {m_target:.0f} GB, ratio {m / m_target:.2f})"
        )


if __name__ == "__main__":
    main()
