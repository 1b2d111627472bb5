"""The eval cache: one JSON file per (checkpoint, task, settings) under ``<results>/eval_cache/``.

The key hashes the checkpoint's content hash, the task's name, version and resolved lm-eval config (prompts,
generation settings, filters, metrics), the suite entry's settings (few-shot, limit, chat template), the backend
and its arguments, and the lm-eval version. A finished task is written at once (atomically), so re-evaluating an
unchanged checkpoint does no model work and an interrupted suite resumes at the first unfinished task.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of functions carry memory addresses: not part of a key


def _jsonable(obj: Any) -> Any:
    """JSON fallback for what lm-eval keeps in results: numpy scalars, sets, functions."""
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return _ADDRESS.sub("", str(obj))


def normalise(data: Any) -> Any:
    """`data` as it reads back from JSON, so fresh and cached results are the same objects."""
    return json.loads(json.dumps(data, default=_jsonable))


def task_material(tasks: dict) -> dict[str, Any]:
    """What identifies lm-eval tasks for the cache: ``{name: {"version", "config"}}`` for every leaf task."""
    return {
        name: {"version": task.VERSION, "config": normalise(task.dump_config())}
        for name, task in sorted(tasks.items())
    }


def key(material: dict[str, Any]) -> str:
    """The cache key of `material` (a JSON-able dict), a sha256 hex digest."""
    text = json.dumps(normalise(material), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _path(results_dir: str | os.PathLike, cache_key: str) -> Path:
    return Path(results_dir) / "eval_cache" / f"{cache_key}.json"


def load(results_dir: str | os.PathLike, cache_key: str) -> dict | None:
    """The cached lm-eval output for `cache_key`, or None (an unreadable file counts as a miss)."""
    path = _path(results_dir, cache_key)
    try:
        return json.loads(path.read_text())["output"]
    except (OSError, ValueError, KeyError):
        return None


def save(results_dir: str | os.PathLike, cache_key: str, material: dict, output: dict) -> None:
    """Write one task's lm-eval output; the rename makes it all-or-nothing even if the process dies mid-write."""
    path = _path(results_dir, cache_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": material, "output": output}, default=_jsonable))
    os.replace(tmp, path)
