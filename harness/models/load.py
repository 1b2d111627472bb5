"""Loading checkpoints: a Hugging Face id, a local Hugging Face folder, or an MLflow model URI.

Only safetensors weights are loaded and `trust_remote_code` stays off unless the caller turns it on. Offline
(``HF_HUB_OFFLINE=1``) a hub id loads only from the local cache. Every failure to find or read a model is a
`HarnessError` naming the model and what was expected; a local folder is checked when it is resolved, before any
model work: its ``config.json`` must be a JSON object and every ``*.safetensors`` file must hold its whole header
and the tensors the header lists (a truncated copy fails here, naming the file). `content_hash` identifies a
checkpoint by its bytes, for the eval and generation caches (hashed once per process while its files are unchanged).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys
from pathlib import Path

from harness.errors import HarnessError, first_line

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def resolve(spec: str) -> str:
    """Turn a model spec into something `from_pretrained` takes: a local folder or a hub id.

    Args:
        spec: a local folder, a hub id (``org/name``), or an MLflow URI (``models:/name/3``, ``models:/name@alias``,
            ``runs:/<id>/checkpoint``), downloaded from the tracking store.

    Returns:
        The local folder path, or the hub id unchanged.

    Raises:
        HarnessError: the folder is missing or holds no model, or the spec is neither a path nor a hub id.
    """
    if spec.startswith(_MLFLOW_SCHEMES):
        from harness.tracking.store import download_model

        return download_model(spec)
    path = Path(spec).expanduser()
    looks_local = path.exists() or spec.startswith((".", "/", "~")) or os.sep in spec.rstrip("/").split("/", 1)[-1]
    if path.exists() or (looks_local and not _HUB_ID.match(spec)):
        if not path.is_dir():
            raise HarnessError(f"model {spec!r}: no such folder (expected a Hugging Face model folder or hub id)")
        if not (path / "config.json").is_file():
            raise HarnessError(f"model {spec!r}: not a model folder (no config.json)")
        if not any(path.glob("*.safetensors")):
            raise HarnessError(f"model {spec!r}: no *.safetensors weights (only safetensors checkpoints are loaded)")
        _check_files(spec, path)
        return str(path.resolve())
    if _HUB_ID.match(spec):
        return spec
    raise HarnessError(f"model {spec!r}: not a folder, a hub id (org/name) or an MLflow models:/ or runs:/ URI")


def _check_files(spec: str, folder: Path) -> None:
    """A model folder's config.json parses and its safetensors files are whole (headers only are read)."""
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise HarnessError(f"model {spec!r}: {config} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise HarnessError(f"model {spec!r}: {config} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"model {spec!r}: {config} is not a JSON object")
    for weights in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem:
            raise HarnessError(f"model {spec!r}: weights file {weights} is truncated or corrupt: {problem}")


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be whole, from its size and header (8-byte header length, JSON header, then the
    tensors' bytes at the offsets the header lists); None when it can."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            return f"{size} bytes, but its header alone needs {8 + length}"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or []) == 2]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        return f"{size} bytes, but its header lists tensors up to byte {needed}"
    return None


_GPU_DRIVERS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd")  # NVIDIA's and ROCm's


def default_device() -> str:
    """The device a model goes to when the config names none: cuda where torch sees a GPU, else cpu.

    Without a GPU driver on the machine torch cannot see a GPU, so the answer is cpu without importing torch: that
    import takes seconds, more than a cached eval's whole work.
    """
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _GPU_DRIVERS):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads for the model work about to start (None leaves torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def check_device(device: str | None, key: str) -> None:
    """Before any model work: this machine has the torch `device` that the config key `key` names (None, cpu and
    meta always pass). lm-eval would otherwise fall back to the CPU without a word, or torch fail mid-command.

    Raises:
        HarnessError: no such device here, naming what there is.
    """
    if device in (None, "cpu", "meta"):
        return
    import torch

    kind, _, index = device.partition(":")
    count = {"cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
             "mps": lambda: int(torch.backends.mps.is_available()),
             "xpu": lambda: torch.xpu.device_count() if hasattr(torch, "xpu") and torch.xpu.is_available() else 0,
             }.get(kind)
    if count is None:  # a device of a torch plugin (npu, hpu): torch says when the model moves there
        return
    n = count()
    if n == 0 or (index and int(index) >= n):
        found = ", ".join(["cpu"] + [f"{kind}:{i}" for i in range(n)])
        raise HarnessError(f"config key {key}: {device!r}, but this machine has no such device (found: {found}; "
                           "null picks cuda when there is one, else cpu)")


def load(spec: str, *, trust_remote_code: bool = False, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM and its tokenizer.

    Args:
        spec: see `resolve`.
        trust_remote_code: allow code shipped with the checkpoint to run (off by default).
        dtype: torch dtype name for the weights.
        device: torch device.

    Returns:
        `(model, tokenizer)`; the tokenizer has a pad token (eos when it had none).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except Exception as err:  # noqa: BLE001 - corrupt files raise OSError, ValueError, SafetensorError, ...
        first = first_line(err)
        raise HarnessError(f"model {spec!r} could not be loaded: {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


_HASHED = {".json", ".safetensors", ".model", ".txt", ".jinja"}
_hashes: dict[tuple, str] = {}  # (folder, its hashed files' names, sizes and mtimes) → content hash


def content_hash(spec: str) -> str:
    """A short hash of a checkpoint's config, weights and tokenizer bytes (the hub id itself for a remote model).

    Hashed once per process while the folder's files keep their sizes and modification times (a nightly checks
    that its two sides differ, then evaluates them, without reading a large checkpoint twice)."""
    source = resolve(spec)
    path = Path(source)
    if not path.is_dir():
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    files = [f for f in sorted(path.iterdir()) if f.is_file() and f.suffix in _HASHED]
    stamp = (source, tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _hashes:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _hashes[stamp] = h.hexdigest()[:16]
    return _hashes[stamp]
