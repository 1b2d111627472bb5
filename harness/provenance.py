"""Provenance of a run: git commit and dirty flag, package versions, device and seed (logged as MLflow tags)."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "harness", "torch", "transformers", "trl", "lm_eval", "mlflow", "datasets", "accelerate", "tokenizers",
    "numpy", "scipy", "pandas",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that change results (missing ones as ``absent``)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def device() -> str:
    """``cuda:<name>`` when a GPU is visible to torch, else ``cpu:<processor>x<torch threads>``; ``cpu:<processor>``
    when torch is not loaded on a machine with no GPU driver (a command that read all it needed from a cache): no
    thread count applies, and importing torch to ask would take seconds."""
    from harness.models.load import default_device

    if default_device() == "cpu" and "torch" not in sys.modules:
        return f"cpu:{platform.machine()}"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}"


def tags(seed: int | None = None, with_device: bool = True) -> dict[str, str]:
    """MLflow tags describing where and with what a run was made.

    Args:
        seed: the run's seed, if it has one.
        with_device: record the torch device (imports torch; CPU-only commands such as `harness rate` skip it).
    """
    status = _git("status", "--porcelain", "--untracked-files=no")
    out = {
        "git.commit": _git("rev-parse", "HEAD") or "unknown",
        "git.dirty": "unknown" if status is None else str(bool(status)).lower(),
        "python": platform.python_version(),
    }
    if with_device:
        out["device"] = device()
    out.update({f"version.{k}": v for k, v in package_versions().items()})
    if seed is not None:
        out["seed"] = str(seed)
    return out
