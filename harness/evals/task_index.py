"""lm-eval's task index, read without building a task: the leaf tasks under a task, group or tag name (with their
indexed YAML config and folder), and why a task YAML is missing from the index (the parse error lm-eval skips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import first_line


def leaves(task_manager, name: str) -> dict[str, tuple[Mapping[str, Any], Path | None]]:
    """Every leaf task under `name` (a task, group or tag of lm-eval's index) → ``(config, folder)``: its indexed YAML
    config (includes merged, ``!function`` hooks as unresolved paths) with a group's inline overrides applied, and
    the folder of its YAML (None for an inline task the index does not know)."""
    index = task_manager.task_index
    out: dict[str, tuple[Mapping[str, Any], Path | None]] = {}

    def visit(item: Any) -> None:
        if isinstance(item, dict):  # an inline task or subgroup in a group's config
            if "group" in item:
                for child in members(item):
                    visit(child)
                return
            task = item.get("task")
            known = index.get(task) if isinstance(task, str) else None
            out.setdefault(str(task), ({**((known.cfg or {}) if known else {}), **item}, folder(known)))
            return
        entry = index.get(item)
        if entry is None:
            return
        if entry.kind.name == "GROUP":
            for child in members(entry.cfg or {}):
                visit(child)
        elif entry.kind.name == "TAG":
            for child in sorted(entry.tags):
                visit(child)
        else:
            out.setdefault(item, (entry.cfg or {}, folder(entry)))

    visit(name)
    return out


def kind(task_manager, name: str) -> str | None:
    """``TASK``, ``GROUP`` or ``TAG`` for a name of the index; None when the index does not know it."""
    entry = task_manager.task_index.get(name)
    return entry.kind.name if entry is not None else None


def members(cfg: Mapping[str, Any]) -> list:
    """A group config's ``task`` list."""
    items = cfg.get("task") or []
    return items if isinstance(items, list) else [items]


def folder(entry: Any) -> Path | None:
    """The folder of an index entry's YAML."""
    return Path(entry.yaml_path).parent if entry is not None and getattr(entry, "yaml_path", None) else None


def _yaml_files(root: Path) -> list[Path]:
    """The files lm-eval's index reads under a task folder (``**/*.yaml``, caches left out), in its order."""
    skip = {"__pycache__", ".ipynb_checkpoints"}
    return sorted((p for p in root.glob("**/*.yaml") if not skip & set(p.parts)), key=lambda p: p.as_posix())


def _parse_error(path: Path, err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        where = mark.name if mark.name and not mark.name.startswith("<") else str(path)
        return f"{where} line {mark.line + 1}: {problem}" + (f" ({context})" if context else "")
    first = first_line(err)
    return f"{path}: {first}"


def broken_yaml(task_paths: Iterable[Path], missing: str) -> str | None:
    """Why a task YAML under `task_paths` is missing from lm-eval's index: the parse error of a file that failed to
    load as the index loads it (``load_yaml`` with includes), those that mention `missing` first. None when every
    file loads."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # another lm-eval layout: no hint rather than a wrong one
        return None
    failed: list[tuple[bool, str]] = []
    for root in task_paths:
        for path in _yaml_files(Path(root)):
            try:
                load_yaml(path, resolve_func=False, recursive=True)
            except Exception as err:  # noqa: BLE001 - what the index itself catches and skips
                try:
                    mentions = missing in path.read_text(errors="replace")
                except OSError:
                    mentions = False
                failed.append((not mentions, _parse_error(path, err)))
    if not failed:
        return None
    failed.sort(key=lambda f: f[0])  # stable: the files that name the task first, then lm-eval's order
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"task YAML that failed to parse, which lm-eval's index skips: {failed[0][1]}{more}"
