"""The reproducibility fingerprint of an evaluation: what can move a score while every setting stays the same.

Greedy decoding with fixed seeds still answers differently on another batch size, backend, dtype, library version
or accelerator (lm-eval#3357), and none of these is a setting the nightly's like-with-like check refuses. So every
eval run records them, as tags ``fingerprint.<field>`` (`harness.tracking.schema.FINGERPRINT_FIELDS`):

- ``backend``: lm-eval's model type (hf, vllm, local-chat-completions); ``backend_version``: the engine's version
  (transformers for hf, vllm for vllm; absent for a served model, whose server this process cannot see);
- ``dtype``: the ``dtype`` handed to the backend, or ``auto (<the checkpoint's own>)``;
- ``batch_size``; ``chat_template``: a hash of the checkpoint's chat template (``none`` without one);
- ``lm_eval``, ``transformers``, ``torch``: package versions (read with importlib.metadata: nothing is imported);
- ``hardware``: ``<count> x <GPU name>`` on CUDA, else the CPU model, its cores and the torch threads.

A task's fingerprint is taken when its lm-eval call runs and kept in its eval-cache entry (`harness.evals.cache`),
so a run recorded from the cache says where its scores were computed, not where they were read. The run's
fingerprint is its tasks' (`combine`: a field on which they differ lists each value, ``a | b``; a cache entry
written without one, by an older harness or a sweep worker, counts as ``unknown``). The nightly names the fields
on which its two sides differ (`harness.nightly.records.fingerprint_differences`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.config import EvalConfig
from harness.tracking import schema

UNKNOWN = "unknown"
SEPARATOR = " | "


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template_hash(folder: str | os.PathLike) -> str:
    """12 hex digits of the checkpoint's chat template (``tokenizer_config.json``'s ``chat_template``, or
    ``chat_template.jinja`` / ``.json`` beside it), ``none`` without one, ``unknown`` for a model not on disk."""
    path = Path(folder)
    if not path.is_dir():
        return UNKNOWN
    template: Any = _json(path / "tokenizer_config.json").get("chat_template")
    for name in ("chat_template.jinja", "chat_template.json"):
        if template is None and (path / name).is_file():
            template = (path / name).read_text()
    if template is None:
        return "none"
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]


def _dtype(lm_args: Mapping[str, Any], target: str) -> str:
    given = lm_args.get("dtype")
    if given not in (None, "auto"):
        return str(given).removeprefix("torch.")
    config = _json(Path(target) / "config.json") if Path(target).is_dir() else {}
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    own = text.get("torch_dtype") or text.get("dtype")
    return f"auto ({own})" if own else "auto"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware(device: str | None) -> str:
    torch = sys.modules.get("torch")  # loaded by the backend that just ran; never imported here
    if torch is not None and torch.cuda.is_available() and str(device or "cuda").startswith("cuda"):
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    threads = f", {torch.get_num_threads()} torch threads" if torch is not None else ""
    return f"{_cpu_model()} ({os.cpu_count()} cores{threads})"


def take(cfg: EvalConfig, lm_name: str, lm_args: Mapping[str, Any], target: str) -> dict[str, str]:
    """This process's fingerprint for evaluating `target` with lm-eval's `lm_name` backend (see the module
    docstring); cheap: files and package metadata only.

    Args:
        cfg: the eval settings (batch size, device).
        lm_name: lm-eval's model type.
        lm_args: its ``model_args`` (``dtype``).
        target: what lm-eval loads (a folder, a hub id, a served name).

    Returns:
        field → value, every field of `schema.FINGERPRINT_FIELDS` but an unknown ``backend_version``.
    """
    from harness.evals import backends

    served = lm_name in backends.CHAT_ONLY
    engine = {"hf": "transformers", "vllm": "vllm"}.get(lm_name)
    out = {
        "backend": lm_name,
        "backend_version": _version(engine) if engine else "",
        "dtype": UNKNOWN if served else _dtype(lm_args, target),
        "batch_size": str(cfg.batch_size),
        "chat_template": UNKNOWN if served else chat_template_hash(target),
        "lm_eval": _version("lm_eval"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
        "hardware": f"served ({lm_args.get('base_url')})" if served else
        _hardware(backends.extra_arguments(cfg)["device"]),
    }
    return {k: v for k, v in out.items() if v}


def combine(fingerprints: Sequence[Mapping[str, str] | None]) -> dict[str, str]:
    """One run's fingerprint from its tasks': per field the value they share, or each distinct value joined by
    ``' | '`` (a task without a fingerprint gives ``unknown``)."""
    out = {}
    for field in schema.FINGERPRINT_FIELDS:
        values = [UNKNOWN if fp is None else fp.get(field) for fp in fingerprints]
        distinct = list(dict.fromkeys(v for v in values if v))
        if distinct:
            out[field] = SEPARATOR.join(distinct)
    return out
