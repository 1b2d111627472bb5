"""Loading checkpoints: a Hugging Face id, a local Hugging Face folder, or an MLflow model URI.

Only safetensors weights are loaded and `trust_remote_code` stays off unless the caller turns it on. Offline
(``HF_HUB_OFFLINE=1``) a hub id loads only from the local cache. Every failure to find or read a model is a
`HarnessError` naming the model and what was expected. `content_hash` identifies a checkpoint by its bytes, for
the eval and generation caches.
"""

from __future__ import annotations

import hashlib
import os
import re
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
        return str(path.resolve())
    if _HUB_ID.match(spec):
        return spec
    raise HarnessError(f"model {spec!r}: not a folder, a hub id (org/name) or an MLflow models:/ or runs:/ URI")


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


def content_hash(spec: str) -> str:
    """A short hash of a checkpoint's config, weights and tokenizer bytes (the hub id itself for a remote model)."""
    source = resolve(spec)
    path = Path(source)
    if not path.is_dir():
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in {".json", ".safetensors", ".model", ".txt", ".jinja"}):
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]
