"""Files shipped inside the package — suites, task data and hooks, the arena prompt set, config presets, report
templates — found through `importlib.resources`, so that a wheel works wherever it is installed.

- `resource("suites", "tiny.yaml")`: a packaged file or folder to read (`read_text`, `iterdir`, ...).
- `resource_path("suites")`: the same as a real filesystem path, for code that needs one (lm-eval's task
  ``include_path``, ``!function`` hooks that import ``utils.py`` by file path).
"""

from __future__ import annotations

import atexit
import contextlib
from functools import cache
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

_EXTRACTED = contextlib.ExitStack()  # temporary copies made by as_file, kept until the process exits
atexit.register(_EXTRACTED.close)


def resource(*parts: str) -> Traversable:
    """A file or folder inside the installed ``harness`` package.

    Args:
        parts: path components below the package, e.g. ``("suites", "arena", "tiny.jsonl")``.

    Returns:
        An `importlib.resources` Traversable (it need not exist; check with ``is_file()`` / ``is_dir()``).
    """
    return files("harness").joinpath(*parts)


@cache
def resource_path(*parts: str) -> Path:
    """A real filesystem path to a packaged file or folder.

    An installed wheel or a checkout is a plain folder, so this is the file itself. A package imported from a zip is
    extracted once to a temporary location kept for the life of the process (folders need Python ≥ 3.12 there).

    Args:
        parts: path components below the package, e.g. ``("suites",)``.

    Returns:
        The path; it need not exist.
    """
    item = resource(*parts)
    if isinstance(item, Path):
        return item
    return _EXTRACTED.enter_context(as_file(item))
