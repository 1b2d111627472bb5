"""The data each eval task reads, as the eval run's MLflow dataset inputs (`harness.tracking.schema.TaskData`).

Read from what the eval cache already gathers (`harness.evals.cache.task_material`: lm-eval's task config as
indexed) and the task's YAML folder, without building the task or loading its data:

- local data (files beside the YAML read by a ``custom_dataset`` hook, such as the ``tiny`` suite's
  ``eval.jsonl``, or ``dataset_kwargs.data_files`` found on disk): the sha256 of the files' bytes, the file (or its
  folder) as a ``local`` source, and the row count of JSONL files;
- a hub dataset (``dataset_path``, ``dataset_name``, ``dataset_kwargs.data_files`` / ``data_dir`` / ``revision``,
  the split): a digest of that identity and a ``hugging_face`` source; the bytes are the hub's, pinned as far as
  ``revision`` pins them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from harness.tracking import schema
from harness.tracking.schema import TaskData

_DATA_FILES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt"}
_DIGEST = 16  # hex characters: MLflow keeps at most 36


def task_data(task_manager, materials: Iterable[dict[str, Any]]) -> list[TaskData]:
    """The datasets of every task in `materials` (`cache.task_material` outputs), one per task, in order.

    Args:
        task_manager: the suite's lm-eval `TaskManager` (for each task's YAML folder).
        materials: one `task_material` mapping per suite entry (a group's member tasks are in it).

    Returns:
        One `TaskData` per task whose data could be identified (groups and tags themselves have none).
    """
    out: dict[str, TaskData] = {}
    for material in materials:
        for key, item in material.items():
            if not isinstance(item, dict):
                continue
            if key.startswith("inline:"):  # a group's inline task config
                if "group" in item or not isinstance(item.get("task"), str):
                    continue
                name, config, folder = item["task"], item, None
            elif item.get("kind") == "TASK":
                entry = task_manager.task_index.get(key)
                name, config = key, item.get("config") or {}
                folder = Path(entry.yaml_path).parent if entry is not None and entry.yaml_path else None
            else:
                continue
            data = _task(name, config, folder)
            if data is not None:
                out.setdefault(data.name, data)
    return list(out.values())


def _task(name: str, config: dict[str, Any], folder: Path | None) -> TaskData | None:
    kwargs = config.get("dataset_kwargs") or {}
    files = _local(kwargs.get("data_files"), folder)
    if not files and (config.get("custom_dataset") or not config.get("dataset_path")) and folder is not None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _DATA_FILES)
    if files:
        h = hashlib.sha256()
        for path in files:
            h.update(path.name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        uri = files[0] if len(files) == 1 else files[0].parent
        return TaskData(schema.dataset_name(name), h.hexdigest()[:_DIGEST], "local", {"uri": str(uri)},
                        rows=_rows(files))
    if not config.get("dataset_path"):
        return None
    source = {"path": config["dataset_path"], "config_name": config.get("dataset_name"),
              "data_dir": kwargs.get("data_dir"), "data_files": kwargs.get("data_files"),
              "split": config.get("test_split") or config.get("validation_split"), "revision": kwargs.get("revision")}
    digest = hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:_DIGEST]
    return TaskData(schema.dataset_name(name), digest, "hugging_face", source)


def _local(data_files: Any, folder: Path | None) -> list[Path]:
    """The `data_files` of a task config that are files on disk (relative ones beside the YAML or in the working
    folder); empty when any of them is not (a hub or URL dataset)."""
    if isinstance(data_files, dict):
        names = [f for v in data_files.values() for f in (v if isinstance(v, list) else [v])]
    elif isinstance(data_files, list):
        names = data_files
    elif data_files:
        names = [data_files]
    else:
        return []
    found = []
    for name in map(str, names):
        candidates = [Path(name)] + ([folder / name] if folder is not None else [])
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return []
        found.append(path.resolve())
    return sorted(set(found))


def _rows(files: list[Path]) -> int | None:
    """Rows of JSONL files (non-empty lines); None for other formats."""
    if not all(p.suffix == ".jsonl" for p in files):
        return None
    total = 0
    for path in files:
        with path.open("rb") as fh:
            total += sum(1 for line in fh if line.strip())
    return total
