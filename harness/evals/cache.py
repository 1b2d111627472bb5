"""The eval cache: one JSON file per (checkpoint, task, settings) under ``<results>/eval_cache/``.

The key hashes the checkpoint's content hash; the task's name, and for it and every task under it the YAML config
from lm-eval's index (``metadata.version``, prompts, generation settings, filters, metrics) and a digest of the
files beside that YAML (local data, hooks); the suite entry's settings (few-shot, limit, chat template); the
backend and its arguments; and the lm-eval version. Reading the key needs no task to be built. A task's output
is written as soon as its lm-eval call ends (atomically), with the reproducibility fingerprint of where it was
computed (`harness.evals.fingerprint`), so re-evaluating an unchanged checkpoint does no model work and an
interrupted suite resumes at the first unfinished call. ``eval.cache: false`` reads nothing but still writes: the
fresh output replaces the entry (how ``harness nightly --aa`` re-evaluates a champion). ``eval_cache/requests/``
holds the request caches of calls still in progress (`harness.evals.request_cache`), which let a killed call
resume mid-call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of functions carry memory addresses: not part of a key
_TASK_FILES = {".yaml", ".yml", ".py", ".jsonl", ".json", ".txt", ".csv", ".parquet"}


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


def _folder_digest(folder: Path) -> str:
    """Hash of the files beside a task's YAML: its data, its hooks (utils.py) and its sibling configs."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _TASK_FILES):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def task_material(task_manager, name: str) -> dict[str, Any]:
    """What identifies a task, group or tag for the cache, read from lm-eval's task index without building it.

    For the name and every task under it (a group's members, a tag's tasks): its kind, its YAML config as
    indexed (``metadata.version``, prompts, generation settings, filters, metrics; includes merged) and a digest
    of the files in its YAML's folder (local data and hooks).
    """
    index = task_manager.task_index
    out: dict[str, Any] = {}

    def visit(item: Any) -> None:
        if isinstance(item, dict):  # a group's inline task or subgroup config
            label = str(item.get("task") or item.get("group"))
            out[f"inline:{label}"] = item
            children = item.get("task") if "group" in item else None
            for child in children if isinstance(children, list) else []:
                visit(child)
            return
        entry = index.get(item)
        if entry is None or item in out:
            out.setdefault(str(item), None)
            return
        out[item] = {
            "kind": entry.kind.name,
            "config": entry.cfg,
            "files": _folder_digest(entry.yaml_path.parent) if entry.yaml_path else None,
        }
        if entry.kind.name == "GROUP":
            members = (entry.cfg or {}).get("task") or []
            for child in members if isinstance(members, list) else [members]:
                visit(child)
        elif entry.kind.name == "TAG":
            for child in sorted(entry.tags):
                visit(child)

    visit(name)
    return normalise(out)


def key(material: dict[str, Any]) -> str:
    """The cache key of `material` (a JSON-able dict), a sha256 hex digest."""
    text = json.dumps(normalise(material), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _path(results_dir: str | os.PathLike, cache_key: str) -> Path:
    return Path(results_dir) / "eval_cache" / f"{cache_key}.json"


def entry(results_dir: str | os.PathLike, cache_key: str) -> tuple[dict, dict | None] | None:
    """``(lm-eval output, fingerprint)`` cached for `cache_key`, or None (an unreadable file counts as a miss). The
    fingerprint (`harness.evals.fingerprint`) says where the output was computed; None in an entry written
    without one."""
    path = _path(results_dir, cache_key)
    try:
        data = json.loads(path.read_text())
        output = data["output"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fingerprint = data.get("fingerprint")
    return output, fingerprint if isinstance(fingerprint, dict) else None


def load(results_dir: str | os.PathLike, cache_key: str) -> dict | None:
    """The cached lm-eval output for `cache_key`, or None (an unreadable file counts as a miss)."""
    found = entry(results_dir, cache_key)
    return found[0] if found else None


def save(results_dir: str | os.PathLike, cache_key: str, material: dict, output: dict,
         fingerprint: dict | None = None) -> dict:
    """Write one task's lm-eval output (and the `fingerprint` of where it was computed) and return the output as it
    reads back (`normalise`d, serialised only once).

    The write goes through a temporary file renamed into place (`harness.storage.write_text`): all-or-nothing even
    if the process dies mid-write, and a failed write (a full disk: `StorageError`) leaves no temporary file.
    """
    from harness import storage

    path = _path(results_dir, cache_key)
    text = json.dumps(output, default=_jsonable)
    extra = ', "fingerprint": ' + json.dumps(fingerprint) if fingerprint else ""
    storage.write_text(path, '{"key": ' + json.dumps(normalise(material)) + extra + ', "output": ' + text + "}",
                       "the eval cache entry")
    return json.loads(text)
