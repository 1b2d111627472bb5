"""A stage's own training data (``sft.dataset``, ``dpo.dataset``, ``rlvr.dataset``): read, columns mapped, format
checked and identified by a digest, before any training. Without a dataset a stage trains on the synthetic skills
(`harness.train.datasets`).

A dataset is a hub id (``dataset_config``, ``dataset_split``, ``dataset_revision``; offline, only the local cache is
read) or local files: a JSONL, JSON, Parquet or CSV file, or a folder of them (the files named after the split,
``train.jsonl`` / ``train-00000.parquet``, where there are such names, else every file), read with the ``datasets``
library's loaders. ``<stage>.dataset_columns`` renames your columns to the standard ones (``{prompt: question}``
reads the column ``question`` as ``prompt``). The formats are TRL's standard ones:

- SFT: ``messages`` (a conversation), or ``prompt`` and ``completion`` (conversational or plain), or ``text``;
- DPO: ``chosen`` and ``rejected`` (conversational or plain), with ``prompt`` or with the prompt implicit in both;
- RLVR: ``prompt`` plus the columns its verifier grades with (``answer`` for math and exact_match; see
  `VERIFIER_COLUMNS`), and the verifier is tried on the first row.

Every problem is one `HarnessError` line naming the dataset and the columns found. A checked dataset is kept for the
process, so the check before training and the stage read it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError, first_line
from harness.tracking import schema

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "eval")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_DIGEST = 16  # hex characters kept in params and dataset inputs, as the evals keep theirs
_CHECKED_ROWS = 100  # rows whose values are checked for the format (the columns are checked on every row)
TRL_CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig", "rlvr": "GRPOConfig"}
VERIFIER_COLUMNS = {"skills": ("skill", "answer"), "exact_match": ("answer",), "math": ("answer",),
                    "ifeval": ("instruction_id_list", "kwargs")}
_EXAMPLE = {"sft": "{prompt: question, completion: answer}", "dpo": "{chosen: preferred, rejected: dispreferred}",
            "rlvr": "{prompt: question}"}


@dataclass(frozen=True)
class StageData:
    """A checked training set: the rows in TRL's format, which format, and its MLflow dataset input."""

    dataset: Any  # datasets.Dataset
    format: str  # messages, prompt-completion, text, preference, implicit-preference, prompt
    record: schema.TaskData

    def params(self) -> dict[str, Any]:
        """The stage run's params for its data: source, digest, rows and format."""
        source = self.record.source.get("uri") or self.record.source.get("path")
        return {"dataset.source": source, "dataset.digest": self.record.digest, "dataset.rows": self.record.rows,
                "dataset.format": self.format}


_loaded: dict[tuple, StageData] = {}


def _extensions(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    return Path(name).suffix


def _split_of(path: Path) -> str | None:
    stem = path.name.split(".", 1)[0]
    return next((s for s in _SPLIT_NAMES if stem == s or re.match(rf"^{s}[-_]", stem)), None)


def _blank(path: Path) -> bool:
    """An empty file, or a text one holding only whitespace."""
    if path.stat().st_size == 0:
        return True
    if path.suffix == ".gz" or _BUILDERS[_extensions(path)] == "parquet":
        return False
    with path.open("rb") as f:
        return not f.read(1 << 16).strip() and path.stat().st_size <= 1 << 16


def _local_files(spec: str, split: str) -> list[Path] | None:
    """The files a local dataset reads, or None when `spec` is a hub id."""
    path = Path(spec).expanduser()
    if not path.exists():
        if _extensions(path) in _BUILDERS or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
            raise HarnessError(f"dataset {spec!r} not found (valid: a JSONL, JSON, Parquet or CSV file, a folder of "
                               "them, or a hub id such as openai/gsm8k)")
        return None
    if path.is_file():
        if _extensions(path) not in _BUILDERS:
            raise HarnessError(f"dataset {spec!r}: not a .jsonl, .json, .parquet or .csv file (optionally .gz)")
        return [path.resolve()]
    files = sorted(p.resolve() for p in path.rglob("*") if p.is_file() and _extensions(p) in _BUILDERS)
    if not files:
        raise HarnessError(f"dataset {spec!r}: the folder holds no .jsonl, .json, .parquet or .csv file")
    if any(_split_of(p) for p in files):
        named = [p for p in files if _split_of(p) == split]
        if not named:
            raise HarnessError(f"dataset {spec!r}: no file for split {split!r} (files: "
                               f"{', '.join(p.name for p in files[:8])}; set the stage's dataset_split)")
        files = named
    kinds = {_BUILDERS[_extensions(p)] for p in files}
    if len(kinds) > 1:
        raise HarnessError(f"dataset {spec!r}: files of several formats ({', '.join(sorted(kinds))}); keep one")
    return files


def _read(cfg: Any, files: list[Path] | None):
    import datasets
    from datasets import load_dataset

    datasets.disable_progress_bars()  # before training the terminal shows the harness's lines only

    spec = cfg.dataset
    try:
        if files is not None:
            return load_dataset(_BUILDERS[_extensions(files[0])], data_files=[str(p) for p in files], split="train")
        return load_dataset(spec, name=cfg.dataset_config, split=cfg.dataset_split, revision=cfg.dataset_revision)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (FileNotFoundError, ValueError, ArrowInvalid)
        offline = any(os.environ.get(k) == "1" for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
        what = (f"dataset {spec!r}" if files is not None else
                f"hub dataset {spec!r} (config {cfg.dataset_config}, split {cfg.dataset_split!r}, revision "
                f"{cfg.dataset_revision or 'unpinned'})")
        hint = "; offline, only the local cache is read" if files is None and offline else ""
        raise HarnessError(f"{what} could not be loaded: {type(err).__name__}: {first_line(err)}{hint}") from None


def _digest(cfg: Any, files: list[Path] | None, dataset: Any) -> str:
    h = hashlib.sha256()
    if files is None:  # a hub dataset: its identity and the fingerprint of what was read
        h.update(json.dumps([cfg.dataset, cfg.dataset_config, cfg.dataset_split, cfg.dataset_revision,
                             dataset._fingerprint]).encode())
    for path in files or []:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:_DIGEST]


def _record(cfg: Any, files: list[Path] | None, dataset: Any) -> schema.TaskData:
    digest = _digest(cfg, files, dataset)
    if files is not None:
        uri = files[0] if len(files) == 1 else Path(os.path.commonpath([str(p.parent) for p in files]))
        return schema.TaskData(schema.dataset_name(uri.name), digest, "local", {"uri": str(uri)}, rows=len(dataset))
    name = "/".join(x for x in (cfg.dataset, cfg.dataset_config, cfg.dataset_split) if x)
    return schema.TaskData(schema.dataset_name(name), digest, "hugging_face",
                           {"path": cfg.dataset, "config_name": cfg.dataset_config, "split": cfg.dataset_split,
                            "revision": cfg.dataset_revision}, rows=len(dataset))


def _mapped(cfg: Any, dataset: Any, where: str):
    """The dataset with `cfg.dataset_columns` applied (standard name: your column)."""
    for standard, yours in cfg.dataset_columns.items():
        if yours not in dataset.column_names:
            raise HarnessError(f"config key {cfg.where}.dataset_columns.{standard}: no column {yours!r} in {where} "
                               f"(columns: {', '.join(dataset.column_names)})")
    renames = {yours: standard for standard, yours in cfg.dataset_columns.items() if yours != standard}
    clashing = [c for c in renames.values() if c in dataset.column_names and c not in renames]
    return dataset.remove_columns(clashing).rename_columns(renames) if renames else dataset


def _format(stage: str, columns: list[str], verifier: str | None, where: str) -> tuple[str, tuple[str, ...]]:
    """The TRL format the columns make for the stage, and the columns it uses."""
    has = set(columns)
    if stage == "sft":
        for fmt, needed in (("messages", ("messages",)), ("prompt-completion", ("prompt", "completion")),
                            ("text", ("text",))):
            if has >= set(needed):
                return fmt, needed
        need = "messages, or prompt and completion, or text"
    elif stage == "dpo":
        if has >= {"chosen", "rejected"}:
            return ("preference", ("prompt", "chosen", "rejected")) if "prompt" in has else \
                ("implicit-preference", ("chosen", "rejected"))
        need = "chosen and rejected (and prompt, unless it is implicit in them)"
    else:
        needed = ("prompt", *VERIFIER_COLUMNS.get(verifier, ()))
        if has >= set(needed):
            return "prompt", needed
        need = f"{', '.join(needed)} (prompt, and for verifier {verifier} its columns)"
    missing = f"needs the columns {need}"
    raise HarnessError(f"{stage}.dataset {where}: {missing}; columns found: {', '.join(columns) or 'none'} (map "
                       f"yours with {stage}.dataset_columns, e.g. {_EXAMPLE[stage]})")


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def _check_values(dataset: Any, used: tuple[str, ...], where: str) -> None:
    for i, row in enumerate(dataset.select(range(min(len(dataset), _CHECKED_ROWS)))):
        kinds = set()
        for column in used:
            value = row[column]
            if column != "messages" and isinstance(value, str):
                kinds.add("plain")
            elif _is_chat(value):
                kinds.add("conversational")
            else:
                valid = "a list of {role, content} messages" if column == "messages" else \
                    "a string or a list of {role, content} messages"
                raise HarnessError(f"dataset {where} row {i} column {column!r}: {type(value).__name__} "
                                   f"{str(value)[:40]!r} (valid: {valid})")
        if len(kinds) > 1:
            raise HarnessError(f"dataset {where} row {i}: columns {', '.join(used)} mix plain text and messages "
                               "(valid: all conversational or all plain)")


def _try_verifier(verifier: str, dataset: Any, where: str) -> None:
    """The verifier grades the first row (an empty completion) as TRL will call it."""
    fn = _reward(verifier)
    row = dataset[0]
    prompt = row["prompt"]
    completion = [{"role": "assistant", "content": ""}] if isinstance(prompt, list) else ""
    columns = {k: [v] for k, v in row.items() if k != "prompt"}
    try:
        out = fn(prompts=[prompt], completions=[completion], **columns)
    except Exception as err:  # noqa: BLE001 - the user's function may raise anything
        raise HarnessError(f"config key rlvr.verifier {verifier!r} fails on row 0 of dataset {where}: "
                           f"{type(err).__name__}: {first_line(err)}") from None
    if not isinstance(out, (list, tuple)) or len(out) != 1:
        raise HarnessError(f"config key rlvr.verifier {verifier!r} returned {out!r} for one completion of dataset "
                           f"{where} (expected a list of one float or None)")


def _reward(verifier: str) -> Callable:
    if verifier == "skills":
        from harness.data.verifiers import reward

        return reward
    from harness.data.task_verifiers import verifier_by_name

    return verifier_by_name(verifier, where="config key rlvr.verifier")


def load(cfg: Any) -> StageData:
    """A stage's dataset (`cfg` is the stage's section, with ``dataset`` set), checked for its format.

    Returns:
        The rows TRL trains on (for SFT and DPO only the format's columns; for RLVR every column, as the verifier
        reads them), the format and the dataset input.

    Raises:
        HarnessError: not found, unreadable, an empty split, a mapped or needed column missing, a value that is
            neither text nor messages, or a verifier that fails on the first row.
    """
    stage = cfg.where
    verifier = getattr(cfg, "verifier", None)
    files = _local_files(cfg.dataset, cfg.dataset_split)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files or [])
    key = (stage, cfg.dataset, cfg.dataset_config, cfg.dataset_split, cfg.dataset_revision,
           tuple(sorted(cfg.dataset_columns.items())), verifier, stamp)
    if key in _loaded:
        return _loaded[key]
    where = repr(cfg.dataset) + ("" if files is not None else f" split {cfg.dataset_split!r}")
    if files is not None and all(_blank(p) for p in files):  # datasets cannot even infer the columns of these
        raise HarnessError(f"{stage}.dataset {where} has no rows (its files are empty)")
    dataset = _read(cfg, files)
    if len(dataset) == 0:
        raise HarnessError(f"{stage}.dataset {where} has no rows (columns: {', '.join(dataset.column_names)})")
    dataset = _mapped(cfg, dataset, where)
    fmt, used = _format(stage, dataset.column_names, verifier, where)
    _check_values(dataset, tuple(c for c in used if c in ("messages", "prompt", "completion", "chosen", "rejected",
                                                         "text")), where)
    if stage == "rlvr":
        _try_verifier(verifier, dataset, where)
    else:
        dataset = dataset.select_columns(list(used))
    out = StageData(dataset, fmt, _record(cfg, files, dataset))
    _loaded[key] = out
    return out


def train_dataset(cfg: Any, synthetic: Callable[[], list[dict]]):
    """What a stage trains on: its ``dataset`` when set, else the synthetic rows `synthetic()` builds."""
    if cfg.dataset:
        return load(cfg).dataset
    from datasets import Dataset

    return Dataset.from_list(synthetic())
