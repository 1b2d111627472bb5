"""Run a `harness` command in a subprocess and stop it with a signal at a precise point, from outside the product.

The subprocess runs a small wrapper script instead of the console script. Before calling `harness.cli.main` exactly
as the console script does, the wrapper patches lm-eval and MLflow-facing code (never harness's eval code):

- it counts the requests that reach lm-eval's hf model (``HFLM.generate_until`` / ``HFLM.loglikelihood``: what the
  model computes, after the request cache took what it had) into a JSON file;
- ``at="generate_until"`` / ``"loglikelihood"``: the signal is sent right after the model has answered its
  `after`-th request of that type (lm-eval's own progress bar advances once per answer: mid-batch unless `after`
  is a multiple of the batch size);
- ``at="log_artifact"``: the signal is sent when the eval run uploads its artifacts (its params and metrics are
  logged, the run is RUNNING);
- ``at="optimizer_step"``: the signal is sent right after the `after`-th optimizer step of the process (torch's
  global step hook: pretraining's loop and TRL's trainers alike), so mid-training, never at a stage's edge.

SIGKILL leaves no handler a chance (the process dies at once); SIGTERM and SIGHUP go through harness's handlers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = r'''
import json, os, signal, sys

spec = json.loads(open(sys.argv[1]).read())
from lm_eval.models import huggingface

counts = {}


def write_counts():
    with open(spec["counts"] + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(spec["counts"] + ".tmp", spec["counts"])


def counted(name):
    real = getattr(huggingface.HFLM, name)

    def method(self, requests, *args, **kwargs):
        counts[name] = counts.get(name, 0) + len(requests)
        write_counts()
        return real(self, requests, *args, **kwargs)

    setattr(huggingface.HFLM, name, method)


for name in ("generate_until", "loglikelihood"):
    counted(name)
write_counts()


def stop():
    os.kill(os.getpid(), getattr(signal, spec["signal"]))


if spec["at"] in ("generate_until", "loglikelihood"):
    class Bar(huggingface.tqdm):
        def update(self, n=1):
            shown = super().update(n)
            if str(self.desc) == "Running %s requests" % spec["at"] and self.n == spec["after"]:
                stop()
            return shown

    huggingface.tqdm = Bar
elif spec["at"] == "optimizer_step":
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = [0]

    def after_step(optimizer, args, kwargs):
        steps[0] += 1
        if steps[0] == spec["after"]:
            stop()

    register_optimizer_step_post_hook(after_step)
elif spec["at"] == "log_artifact":
    from harness.tracking import store

    real = store.Run.log_artifact

    def log_artifact(self, *args, **kwargs):
        stop()
        return real(self, *args, **kwargs)

    store.Run.log_artifact = log_artifact

from harness.cli import main

sys.argv = ["harness", *sys.argv[2:]]
sys.exit(main())
'''


@dataclass
class Stopped:
    """What a stopped (or finished) command left: its exit code, stderr and the requests its model computed."""

    returncode: int
    stderr: str
    computed: dict[str, int]


def run(tmp_path: Path, argv: list[str], *, at: str | None = None, after: int = 1, signal: str = "SIGKILL",
        timeout: float = 600) -> Stopped:
    """Run ``harness ARGV`` in a subprocess, stopped by `signal` at `at` (None: not stopped).

    Returns:
        The exit code (``-9`` for SIGKILL), stderr and the requests computed by type.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    wrapper = tmp_path / "stop_at_wrapper.py"
    wrapper.write_text(_WRAPPER)
    n = len(list(tmp_path.glob("stop_at_spec_*.json")))  # one spec and one counts file per command
    counts = tmp_path / f"stop_at_counts_{n}.json"
    spec = tmp_path / f"stop_at_spec_{n}.json"
    spec.write_text(json.dumps({"at": at, "after": after, "signal": signal, "counts": str(counts)}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, str(wrapper), str(spec), *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout, check=False)
    computed = json.loads(counts.read_text()) if counts.exists() else {}
    return Stopped(done.returncode, done.stderr, computed)
