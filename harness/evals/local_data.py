"""Local data for lm-eval's own tasks: where a task's documents come from, and the digest of what it reads.

A task keeps its lm-eval name, version, prompts, filters and metrics; only its documents are read from local files
instead of the hub. Two ways to say where they are:

- a folder laid out like the hub — ``<data_dir>/<dataset_path>[/<dataset_name>]/<split>.<ext>`` with ``ext`` one
  of ``jsonl``, ``json``, ``parquet``, ``csv``, optionally ``.gz`` (e.g. ``openai/gsm8k/main/test.jsonl``,
  ``SaylorTwift/bbh/navigate/test.jsonl``) — given as a suite's ``data_dir:`` or, for a whole cluster, the
  ``HARNESS_DATA_DIR`` environment variable (the suite's wins); it serves every task of the suite, group subtasks
  included;
- an entry's ``data: {split: file}`` for one task.

`sources(tm, task, ...)` finds, without building anything, what every leaf task under a suite entry reads and the
content digest of it — the one answer to that question, used by the eval cache key, the nightly's suite version,
the eval run's params and its MLflow dataset inputs (`Source.task_data`):

- ``mirror`` / ``entry``: the files found in the data_dir or given by ``data:``, for each split the task names
  (test, validation, training, few-shot);
- ``data_files``: a task config whose ``dataset_kwargs.data_files`` are files on disk (lm-eval loads them itself);
- ``hooks``: a task that loads its documents through a ``custom_dataset`` hook (the ``tiny`` suite): the data files
  beside its YAML;
- ``hub``: anything else keeps the hub; its digest hashes the dataset's identity and the commit its revision
  resolves to on the hub (`hub_revision`; offline, the revision as given).

Digests hash the decompressed content, so a file re-compressed with the same rows keeps its digest and an edited
one changes exactly the tasks that read it. `redirect(sources)` then serves the mirror and entry files when lm-eval
builds the tasks: lm-eval calls ``datasets.load_dataset(path=dataset_path, name=dataset_name)``, and inside the
context that call for a mirrored (path, name) loads the local files through datasets' own json, parquet or csv
builders instead.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from harness.errors import HarnessError
from harness.tracking import schema

ENV = "HARNESS_DATA_DIR"
FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_HOOK_DATA = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt"}  # files a hook may read
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")
_DIGEST = 16  # hex characters kept in params and dataset inputs (MLflow keeps at most 36)


@dataclass(frozen=True)
class Source:
    """What one leaf task reads (see the module docstring for the kinds)."""

    task: str
    kind: Literal["mirror", "entry", "data_files", "hooks", "hub"]
    dataset_path: str | None
    dataset_name: str | None
    files: Mapping[str, str] = field(default_factory=dict)  # split (or file name, for hooks) → local file
    digest: str = ""  # sha256 of the content (files) or of the identity (hub)
    revision: str | None = None  # a hub dataset's pinned revision, when the task names one
    split: str | None = None  # the split it evaluates

    @property
    def redirected(self) -> bool:
        """Served by `redirect` (lm-eval would otherwise ask the hub)."""
        return self.kind in ("mirror", "entry")

    def describe(self) -> str:
        """One line for logs and params: the files, or the hub dataset and its revision."""
        if self.files:
            return ", ".join(f"{split}={path}" for split, path in self.files.items())
        name = f"{self.dataset_path}" + (f"/{self.dataset_name}" if self.dataset_name else "")
        return f"hub:{name}@{self.revision or 'unpinned'}"

    def task_data(self) -> schema.TaskData:
        """The MLflow dataset input of this task (`harness.tracking.schema.TaskData`)."""
        name, digest = schema.dataset_name(self.task), self.digest[:_DIGEST]
        if self.files:
            paths = [Path(p) for p in self.files.values()]
            uri = paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p.parent) for p in paths]))
            return schema.TaskData(name, digest, "local", {"uri": str(uri)}, rows=_rows(paths))
        return schema.TaskData(name, digest, "hugging_face", {"path": self.dataset_path,
                                                              "config_name": self.dataset_name,
                                                              "split": self.split, "revision": self.revision})


def _rows(files: list[Path]) -> int | None:
    """Rows of the evaluated JSONL file(s) (non-empty lines); None for other formats."""
    if not all(p.suffix == ".jsonl" for p in files):
        return None
    return sum(sum(1 for line in p.open("rb") if line.strip()) for p in files)


def data_dir(suite_dir: str | os.PathLike | None) -> Path | None:
    """The mirror folder in force: the suite's ``data_dir``, else ``$HARNESS_DATA_DIR``, else None."""
    chosen = suite_dir or os.environ.get(ENV)
    return Path(chosen).expanduser().resolve() if chosen else None


def candidates(root: Path, dataset_path: str, dataset_name: str | None, split: str) -> list[Path]:
    """The files that may hold a split, in the order they are tried."""
    folders = [root / dataset_path / dataset_name] if dataset_name else []
    folders.append(root / dataset_path)
    return [folder / f"{split}{ext}{gz}" for folder in folders for ext in FORMATS for gz in ("", ".gz")]


def digest(files: Mapping[str, str | os.PathLike]) -> str:
    """sha256 over each split's name and its decompressed bytes: a re-compressed file with the same content has the
    same digest, an edited one another."""
    h = hashlib.sha256()
    for split in sorted(files):
        path = Path(files[split])
        h.update(split.encode() + b"\0")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _splits(cfg: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(cfg[k] for k in SPLIT_KEYS if cfg.get(k)))


def _leaf_source(task: str, cfg: Mapping[str, Any], root: Path | None, entry_data: Mapping[str, str] | None,
                 folder: Path | None) -> Source:
    path, name = cfg.get("dataset_path"), cfg.get("dataset_name")
    kwargs = cfg.get("dataset_kwargs") or {}
    needed = _splits(cfg)
    common = {"task": task, "dataset_path": path, "dataset_name": name, "revision": kwargs.get("revision"),
              "split": needed[0] if needed else None}
    label = f"{path}{'/' + name if name else ''}"
    if entry_data:
        files = {}
        for split, file in entry_data.items():
            p = Path(file).expanduser().resolve()
            if not p.is_file():
                raise HarnessError(f"task {task!r}: data file for split {split!r} not found: {p}")
            if _format(p) is None:
                raise HarnessError(f"task {task!r}: data file {p} is not one of {', '.join(FORMATS)} (or .gz)")
            files[split] = str(p)
        if needed and needed[0] not in files:
            raise HarnessError(f"task {task!r} evaluates split {needed[0]!r}; its data: maps only "
                               f"{', '.join(files)} (splits it reads: {', '.join(needed)})")
        return Source(kind="entry", files=files, digest=digest(files), **common)
    on_disk = _data_files(kwargs.get("data_files"), folder)
    if on_disk:
        return Source(kind="data_files", files=on_disk, digest=digest(on_disk), **common)
    if (cfg.get("custom_dataset") or not path) and folder is not None:
        hooks = {p.name: str(p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in _HOOK_DATA}
        return Source(kind="hooks", files=hooks, digest=digest(hooks), **common)
    if root is not None and path and not Path(path).is_absolute() and not os.path.isdir(path):
        files, tried = {}, []
        for split in needed:
            options = candidates(root, path, name, split)
            found = next((p for p in options if p.is_file()), None)
            if found is not None:
                files[split] = str(found)
            tried += [p for p in options if p.suffix == ".jsonl"]
        if not files:
            raise HarnessError(f"task {task!r}: dataset {label} not found in data_dir {root} (tried "
                               f"{', '.join(str(p) for p in tried)}, also as .json, .parquet, .csv and .gz)")
        if needed[0] not in files:
            options = [p for p in candidates(root, path, name, needed[0]) if p.suffix == ".jsonl"]
            raise HarnessError(f"task {task!r}: split {needed[0]!r} of dataset {label} not found in data_dir "
                               f"{root} (tried {', '.join(str(p) for p in options)}, also .json, .parquet, .csv)")
        return Source(kind="mirror", files=files, digest=digest(files), **common)
    revision = hub_revision(path, kwargs.get("revision")) if path else kwargs.get("revision")
    identity = {"path": path, "name": name, "data_files": kwargs.get("data_files"),
                "data_dir": kwargs.get("data_dir"), "revision": revision}
    ident = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return Source(kind="hub", digest=ident, **{**common, "revision": revision})


@functools.lru_cache(maxsize=256)
def hub_revision(dataset_path: str, revision: str | None) -> str | None:
    """The commit a hub dataset's `revision` (None: its main branch) resolves to, so that a dataset updated on the
    hub changes the cache key; offline (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) or unreachable, the revision as
    given (the data then come from the local datasets cache, which does not change by itself)."""
    if any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(dataset_path, revision=revision, timeout=10).sha or revision
    except Exception:  # noqa: BLE001 - no network, no such dataset, a gated one: keep what the task names
        return revision


def _data_files(data_files: Any, folder: Path | None) -> dict[str, str]:
    """A config's ``dataset_kwargs.data_files`` when every one is a file on disk (beside the YAML or from the working
    folder), by split; empty for hub or URL data."""
    if isinstance(data_files, dict):
        named = {str(k): v for k, v in data_files.items()}
    elif data_files:
        named = {"data": data_files}
    else:
        return {}
    out = {}
    for split, value in named.items():
        for i, file in enumerate(value if isinstance(value, list) else [value]):
            options = [Path(str(file))] + ([folder / str(file)] if folder is not None else [])
            found = next((p for p in options if p.is_file()), None)
            if found is None:
                return {}
            out[split if i == 0 else f"{split}[{i}]"] = str(found.resolve())
    return out


def _format(path: Path) -> str | None:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return FORMATS.get(suffixes[0]) if suffixes else None


def sources(task_manager, task: str, *, root: Path | None, entry_data: Mapping[str, str] | None = None
            ) -> dict[str, Source]:
    """Every leaf task under `task` (a task, group or tag of lm-eval's index) → its `Source`.

    Raises:
        HarnessError: `entry_data` given for a group (name the subtask instead), a file missing, or a dataset that
            is in neither `entry_data` nor the mirror when a mirror is given.
    """
    from harness.evals import task_index

    if entry_data and task_index.kind(task_manager, task) not in (None, "TASK"):
        raise HarnessError(f"suite entry {task!r} is a {task_index.kind(task_manager, task).lower()}: its data: "
                           "mapping needs one task; give the subtasks as entries of their own, or use the suite's "
                           "data_dir")
    return {name: _leaf_source(name, cfg, root, entry_data if name == task else None, folder)
            for name, (cfg, folder) in task_index.leaves(task_manager, task).items()}


@contextmanager
def redirect(found: Mapping[str, Source]) -> Iterator[None]:
    """While open, lm-eval's ``datasets.load_dataset(path, name)`` for a dataset with local files loads them."""
    import datasets

    table = {(s.dataset_path, s.dataset_name): s for s in found.values() if s.redirected}
    if not table:
        yield
        return
    original = datasets.load_dataset

    def load_dataset(path=None, name=None, *args, **kwargs):
        source = table.get((path, name))
        if source is None:
            return original(path, name, *args, **kwargs)
        return datasets.DatasetDict({split: original(_format(Path(file)), data_files={split: file}, split=split)
                                     for split, file in source.files.items()})

    datasets.load_dataset = load_dataset
    try:
        yield
    finally:
        datasets.load_dataset = original
