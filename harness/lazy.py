"""Lazy public APIs (PEP 562): a package lists its public names and the modules that define them; each module is
imported on first use, so `import harness` and `harness --help` load no heavy library."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def attach(namespace: dict[str, Any], api: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """Module-level `__getattr__` and `__dir__` for a package whose public names live in its submodules.

    Args:
        namespace: the package's `globals()`; a resolved name is cached there.
        api: public name → ``"module"`` (a submodule of the package, or a full ``harness....`` path), optionally
            ``"module:attribute"`` when the attribute is named differently.

    Returns:
        `(__getattr__, __dir__)` to assign in the package.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name not in api:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = api[name].partition(":")
        full = module if module.startswith("harness") else f"{package}.{module}"
        value = getattr(importlib.import_module(full), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(api))

    return __getattr__, __dir__
