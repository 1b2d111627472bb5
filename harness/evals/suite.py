"""Eval suites: a YAML file that names lm-eval tasks, grouped by skill, with their few-shot, limit and chat settings.

A suite is ``<name>.yaml`` in the suites folder (``$HARNESS_SUITES``, else the packaged ``harness/suites/``, read
through `harness.resources`) or any YAML file given by path::

    description: The embedded pipeline's skills, offline.
    task_paths: [tiny]          # folders of lm-eval task YAML, relative to this file
    lm_eval_tasks: false        # also index lm-eval's built-in tasks (gsm8k, mmlu, ...; a few seconds)
    data_dir: /mirror           # lm-eval's own tasks read <data_dir>/<dataset_path>[/<dataset_name>]/<split>.jsonl
                                # (else $HARNESS_DATA_DIR, else the hub; see harness.evals.local_data)
    defaults: {num_fewshot: 0, apply_chat_template: true}
    skills:
      arithmetic:
        - tiny_arithmetic_gen                 # a task (or group) name, with the defaults
        - {task: tiny_arithmetic_gen, limit: 50, metric: "verifier,strict-match"}
      math:
        - {task: gsm8k, data: {test: gsm8k/test.jsonl, train: gsm8k/train.jsonl}}   # one task's own files
      code:
        - {task: humaneval, repeats: 5, pass_at: [1, 5], gen_kwargs: {do_sample: true, temperature: 0.8},
           confirm_run_unsafe_code: true}

Unknown keys, unknown task names and missing files are `HarnessError`s naming what was wrong and what is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.config_base import parse_yaml
from harness.errors import HarnessError
from harness.resources import resource_path


@dataclass(frozen=True)
class Entry:
    """One task of a suite with the settings it runs under."""

    skill: str
    task: str = field(metadata={"help": "lm-eval task, group or tag name."})
    num_fewshot: int | None = field(default=None, metadata={"help": "Few-shot examples (None: the task's own)."})
    limit: int | None = field(default=None, metadata={"help": "At most this many items (None: EvalConfig.limit)."})
    apply_chat_template: bool = field(default=False, metadata={"help": "Render prompts with the chat template."})
    fewshot_as_multiturn: bool = field(default=True, metadata={"help": "Few-shot examples as chat turns."})
    metric: str | None = field(default=None, metadata={"help": "Headline metric, lm-eval key (None: the first)."})
    confirm_run_unsafe_code: bool = field(default=False, metadata={"help": "Allow code-execution tasks."})
    data: dict[str, str] | None = field(default=None, metadata={
        "help": "Split → local data file (jsonl, json, parquet, csv, optionally .gz; relative to the suite file) "
                "for this one task, instead of the hub."})
    repeats: int = field(default=1, metadata={"help": "Samples per item: k lm-eval runs with seeds 0..k-1 (set "
                                                     "gen_kwargs to sample, e.g. {do_sample: true, temperature: 0.8})."})
    gen_kwargs: dict[str, Any] | None = field(default=None, metadata={
        "help": "Generation settings passed to lm-eval for generate_until tasks (temperature, do_sample, top_p...)."})
    pass_at: tuple[int, ...] = field(default=(), metadata={"help": "Report pass@k for each k (at most repeats)."})

    def settings(self) -> dict[str, Any]:
        """The settings that change a score (for cache keys and MLflow params). Local data files are identified by
        their content digest (`harness.evals.local_data`), not their path, so a moved copy is the same task."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in {"skill", "task", "metric", "data"}}


ENTRY_KEYS = [f.name for f in dataclasses.fields(Entry) if f.name != "skill"]
SUITE_KEYS = ["name", "description", "task_paths", "lm_eval_tasks", "data_dir", "defaults", "skills"]


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    path: Path
    description: str
    task_paths: tuple[Path, ...]
    lm_eval_tasks: bool
    entries: tuple[Entry, ...]
    data_dir: Path | None = None  # a hub-like mirror of datasets (`harness.evals.local_data`); else $HARNESS_DATA_DIR

    @property
    def skills(self) -> list[str]:
        """Skill names in file order."""
        return list(dict.fromkeys(e.skill for e in self.entries))


def suites_dir() -> Path:
    """The folder of suite files: ``$HARNESS_SUITES``, else the suites packaged in ``harness/suites/``."""
    env = os.environ.get("HARNESS_SUITES")
    if env:
        return Path(env).expanduser().resolve()
    return resource_path("suites")


def available() -> list[str]:
    """Names of the suites in `suites_dir()`."""
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def find(suite: str) -> Path:
    """The file of a suite given by name (``tiny``) or by path (``my_suite.yaml``)."""
    path = Path(suite).expanduser()
    if path.suffix in {".yaml", ".yml"} or os.sep in suite:
        if not path.is_file():
            raise HarnessError(f"suite file {suite!r} not found")
        return path.resolve()
    path = suites_dir() / f"{suite}.yaml"
    if not path.is_file():
        names = ", ".join(available()) or "none"
        raise HarnessError(f"unknown suite {suite!r}; available: {names} (in {suites_dir()})")
    return path


def _check_keys(data: Any, valid: list[str], where: str) -> dict:
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in valid:
            raise HarnessError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")
    return data


# Generation settings that lm-eval passes to the model as they are: checked here, before any model work.
_GEN_KWARGS = {
    "max_gen_toks": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1"),
    "temperature": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf"),
                    "a number >= 0"),
    "top_p": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1, "a number in (0, 1]"),
    "top_k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "until": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(u, str) for u in v)),
              "a string or a list of strings"),
}


def _check_gen_kwargs(gen_kwargs: dict, where: str) -> None:
    for key, value in gen_kwargs.items():
        ok, valid = _GEN_KWARGS.get(key, (lambda v: True, ""))
        if not ok(value):
            raise HarnessError(f"{where}: gen_kwargs.{key} must be {valid}, got {value!r}")


def _entry(skill: str, raw: Any, defaults: dict, where: str, folder: Path) -> Entry:
    if isinstance(raw, str):
        raw = {"task": raw}
    data = {**defaults, **_check_keys(raw, ENTRY_KEYS, where)}
    if not isinstance(data.get("task"), str) or not data["task"]:
        raise HarnessError(f"{where}: each entry needs a task name")
    where = f"{where} task {data['task']!r}"
    for key, kinds in {"num_fewshot": int, "limit": int, "metric": str}.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise HarnessError(f"{where}: {key} must be {kinds.__name__} or null, got {value!r}")
    if data.get("limit") is not None and data["limit"] < 1:
        raise HarnessError(f"{where}: limit must be at least 1 (or null for all items), got {data['limit']}")
    if data.get("num_fewshot") is not None and data["num_fewshot"] < 0:
        raise HarnessError(f"{where}: num_fewshot must be at least 0 (or null for the task's own), got "
                           f"{data['num_fewshot']}")
    for key in ("apply_chat_template", "fewshot_as_multiturn", "confirm_run_unsafe_code"):
        if key in data and not isinstance(data[key], bool):
            raise HarnessError(f"{where}: {key} must be true or false, got {data[key]!r}")
    repeats = data.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise HarnessError(f"{where}: repeats must be a whole number >= 1, got {repeats!r}")
    pass_at = data.get("pass_at") or []
    if not isinstance(pass_at, list) or any(not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= repeats
                                            for k in pass_at):
        raise HarnessError(f"{where}: pass_at must be a list of whole numbers from 1 to repeats ({repeats}), "
                           f"got {pass_at!r}")
    data["pass_at"] = tuple(sorted(set(pass_at)))
    if data.get("gen_kwargs") is not None and not isinstance(data["gen_kwargs"], dict):
        raise HarnessError(f"{where}: gen_kwargs must be a mapping (e.g. {{do_sample: true, temperature: 0.8}}), "
                           f"got {data['gen_kwargs']!r}")
    _check_gen_kwargs(data.get("gen_kwargs") or {}, where)
    if data.get("data") is not None:
        files = data["data"]
        if not isinstance(files, dict) or not files or not all(isinstance(k, str) and isinstance(v, str)
                                                              for k, v in files.items()):
            raise HarnessError(f"{where}: data must map each split to a file, e.g. {{test: data/test.jsonl}}, "
                               f"got {files!r}")
        data["data"] = {split: str((folder / Path(file).expanduser()).resolve()) for split, file in files.items()}
    return Entry(skill=skill, **data)


def load(suite: str) -> Suite:
    """Parse and check a suite file (keys and types; task names are checked by `check_tasks`).

    Args:
        suite: a suite name in `suites_dir()` or a path to a suite YAML file.

    Returns:
        The `Suite`.
    """
    path = find(suite)
    data = parse_yaml(path, "suite file") or {}
    where = f"suite file {str(path)!r}"
    _check_keys(data, SUITE_KEYS, where)
    for key, kind, valid in (("name", str, "a string"), ("description", str, "a string"),
                             ("lm_eval_tasks", bool, "true or false")):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise HarnessError(f"{where}: {key} must be {valid}, got {data[key]!r}")
    paths = data.get("task_paths")
    if paths is not None and not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        raise HarnessError(f"{where}: task_paths must be a list of folders (relative to the suite file), e.g. "
                           f"[tiny], got {paths!r}")
    defaults = _check_keys(data.get("defaults") or {}, [k for k in ENTRY_KEYS if k != "task"], f"{where} defaults")
    skills = data.get("skills") or {}
    if not isinstance(skills, dict):
        raise HarnessError(f"{where}: skills must map each skill to a list of tasks")
    entries = []
    for skill, items in skills.items():
        if not isinstance(items, list) or not items:
            raise HarnessError(f"{where}: skill {skill!r} needs a list of tasks")
        entries += [_entry(str(skill), raw, defaults, f"{where} skill {skill!r}", path.parent) for raw in items]
    if not entries:
        raise HarnessError(f"{where}: no tasks (expected skills: {{skill: [task, ...]}})")
    seen = [e.task for e in entries]
    if len(set(seen)) != len(seen):
        raise HarnessError(f"{where}: task {next(t for t in seen if seen.count(t) > 1)!r} is listed twice")
    task_paths = []
    for rel in data.get("task_paths") or []:
        folder = (path.parent / rel).resolve()
        if not folder.is_dir():
            raise HarnessError(f"{where}: task_paths folder {str(folder)!r} not found")
        task_paths.append(folder)
    data_dir = None
    if data.get("data_dir") is not None:
        if not isinstance(data["data_dir"], str):
            raise HarnessError(f"{where}: data_dir must be a folder path, got {data['data_dir']!r}")
        data_dir = (path.parent / Path(data["data_dir"]).expanduser()).resolve()
        if not data_dir.is_dir():
            raise HarnessError(f"{where}: data_dir folder {str(data_dir)!r} not found")
    return Suite(
        name=str(data.get("name") or path.stem),
        path=path,
        description=str(data.get("description") or ""),
        task_paths=tuple(task_paths),
        lm_eval_tasks=bool(data.get("lm_eval_tasks", not task_paths)),
        entries=tuple(entries),
        data_dir=data_dir,
    )


@lru_cache(maxsize=8)
def _task_manager(task_paths: tuple[Path, ...], lm_eval_tasks: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in task_paths] or None, include_defaults=lm_eval_tasks)


def task_manager(suite: Suite):
    """lm-eval's `TaskManager` over the suite's task folders (and the built-in tasks if the suite uses them).

    Built once per process for each set of folders: indexing lm-eval's own tasks takes seconds.
    """
    return _task_manager(suite.task_paths, suite.lm_eval_tasks)


def check_tasks(suite: Suite) -> None:
    """Raise a `HarnessError` naming every task of `suite` that lm-eval's index does not know: with the parse error
    of a task YAML under the suite's task_paths that the index skipped, if one is there, else close matches."""
    from harness.evals.task_index import broken_yaml

    known = set(task_manager(suite).all_tasks)
    for entry in suite.entries:
        if entry.task not in known:
            broken = broken_yaml(suite.task_paths, entry.task)
            close = difflib.get_close_matches(entry.task, known, n=3)
            hint = f"; {broken}" if broken else f"; did you mean {', '.join(close)}?" if close else ""
            raise HarnessError(f"suite {suite.name!r}: unknown task {entry.task!r} (not in lm-eval's task index){hint}")
