"""What every config of the harness shares: fields that explain themselves, checked as they are set, and loading.

- `option(default, help, gt=, ge=, lt=, le=)`: a field with its help string and, for a number, its valid range.
- `nested(cls, help)`: a section inside a section (``arena.llm``).
- `Section`: the base of every config dataclass. A value is checked the moment it is set — from YAML, ``--set``,
  a command-line flag or code: its type (int → float widening allowed), its choices (a ``typing.Literal`` field)
  and its range; a float is always finite. Rules between fields sit in the section's `check()`, which runs when the
  section is built and, for a whole config, in `validate`.
- `apply_yaml`, `apply_overrides` (``section.key=value``, nested sections take more dots), `apply_flags` (a
  command's own flags as a nested mapping), then `validate` once everything is applied.

Every error is one `HarnessError` line naming the key, the value and what is valid, e.g.
``config key sft.epochs: -1 is out of range (valid: > 0)`` or
``config key arena.judge: 'foo' is not one of verifier, reward-model, llm``; an unknown key names the valid ones, and a
key a section has `removed` says why.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar, Literal

from harness.errors import HarnessError, not_utf8

_BOUNDS = {"gt": (">", operator.gt), "ge": (">=", operator.ge), "lt": ("<", operator.lt), "le": ("<=", operator.le)}


def option(default: Any, help: str, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Any:
    """A dataclass field with its help string and, for a number (or a mapping's values), its valid range.

    Args:
        default: the default value (a list or dict is copied per instance).
        help: what the field means, with the meaning of special values (``0: all``).
        gt, ge, lt, le: bounds the value must respect (> , >=, <, <=); None values (``int | None``) always pass.
    """
    bounds = {name: limit for name, limit in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if limit is not None}
    metadata = {"help": help, "range": bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def nested(cls: type, help: str, **changes: Any) -> Any:
    """A section inside a section, as a dataclass field: a fresh ``cls(**changes)`` per parent."""
    return field(default_factory=lambda: cls(**changes), metadata={"help": help})


class Section:
    """Base of the config dataclasses: every value is checked as it is set; `check()` holds the cross-field rules."""

    where: ClassVar[str] = ""  # the section's key in its config ("arena.llm"); "" for a top-level config
    removed: ClassVar[dict[str, str]] = {}  # keys taken out → why, so that an old config is told, not "unknown"

    def __setattr__(self, name: str, value: Any) -> None:
        spec = getattr(type(self), "__dataclass_fields__", {}).get(name)
        if spec is not None:
            value = _coerce(value, _hints(type(self))[name], self.key(name), spec.metadata.get("range"))
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        self.check()

    def key(self, name: str) -> str:
        """The full config key of the field `name`, e.g. ``arena.llm.timeout_s``."""
        return f"{self.where}.{name}" if self.where else name

    def check(self) -> None:
        """Rules between this section's fields; raise `HarnessError` naming the keys (none by default)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _show(value: Any) -> str:
    """A value as the user wrote it: ``-1`` for the float -1.0, ``'foo'`` for a string, ``nan``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def _typed(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against the annotation `tp`: unions, literals, mappings, scalars, sections."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _typed(value, arg, where)
                except HarnessError:
                    pass
        raise HarnessError(f"config key {where}: expected {' or '.join(map(_type_name, args))}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise HarnessError(f"config key {where}: {_show(value)} is not one of {', '.join(map(str, choices))}")
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise HarnessError(f"config key {where}: expected a mapping, got {value!r}")
        if origin is None:
            return value
        key_type, value_type = typing.get_args(tp)
        return {_typed(k, key_type, where): _typed(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise HarnessError(f"config key {where}: expected {tp.__name__}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and not isinstance(value, tp):
        raise HarnessError(f"config key {where}: expected a {tp.__name__} section, got {value!r}")
    return value


def _in_range(value: Any, bounds: dict[str, float], where: str, nullable: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    valid = " and ".join(f"{_BOUNDS[name][0]} {_show(limit)}" for name, limit in bounds.items())
    if valid and nullable:
        valid += ", or null"
    if isinstance(value, float) and not math.isfinite(value):
        raise HarnessError(f"config key {where}: {_show(value)} is not a finite number"
                           + (f" (valid: {valid})" if valid else ""))
    if not all(_BOUNDS[name][1](value, limit) for name, limit in bounds.items()):
        raise HarnessError(f"config key {where}: {_show(value)} is out of range (valid: {valid})")


def _coerce(value: Any, tp: Any, where: str, bounds: dict[str, float] | None = None) -> Any:
    """`value` checked against the annotation `tp` and the range `bounds`; raise naming `where`."""
    value = _typed(value, tp, where)
    nullable = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    if isinstance(value, dict):
        for k, v in value.items():
            _in_range(v, bounds or {}, f"{where}.{k}", nullable=False)
    else:
        _in_range(value, bounds or {}, where, nullable)
    return value


def validate(cfg: Section) -> None:
    """Check a whole config: every value again (a mapping may have been edited in place), then the cross-field rules
    of every section, innermost first.

    Raises:
        HarnessError: the first bad key, its value and what is valid.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Section):
            validate(value)
        else:
            setattr(cfg, f.name, value)  # setting checks it
    cfg.check()


def _apply(obj: Any, data: Any, where: str) -> None:
    if data is None and where:  # an empty section in YAML
        return
    valid = [f.name for f in dataclasses.fields(obj)]
    if not isinstance(data, dict):
        if where:
            raise HarnessError(f"config key {where}: a section, expected a mapping of its keys ({', '.join(valid)}), "
                               f"got {data!r}")
        raise HarnessError(f"config file: expected a mapping of keys, got {type(data).__name__}")
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key in getattr(obj, "removed", {}):
            raise HarnessError(f"config key {name} was removed: {obj.removed[key]}; delete it from the config")
        if key not in valid:
            raise HarnessError(f"unknown config key {name!r}; valid keys{' in ' + where if where else ''}: {', '.join(valid)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, name)
        else:
            setattr(obj, key, value)  # a Section checks the value as it is set


def parse_yaml(path: Path, what: str) -> Any:
    """The YAML document in `path` (None when empty); text that is not UTF-8 or not YAML is one `HarnessError`
    naming `what` (``"config file"``, ``"suite file"``), the file and the line."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise not_utf8(what, path, err) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise HarnessError(f"{what} {str(path)!r} is not valid YAML{line}") from None


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise HarnessError(f"config file {str(path)!r} is a folder; name a YAML file")
    if not path.is_file():
        raise HarnessError(f"config file {str(path)!r} not found")
    return parse_yaml(path, "config file") or {}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"sft.learning_rate=1e-4"`` → ``(["sft", "learning_rate"], 0.0001)`` (the value parsed as a YAML scalar)."""
    import yaml

    if "=" not in text:
        raise HarnessError(f"--set {text!r}: expected section.key=value, e.g. --set sft.epochs=2")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and value.lower() in {"none", "null"}:
        value = None
    return key.strip().split("."), value


def apply_yaml(cfg: Any, path: str | Path) -> None:
    """Apply a YAML file's keys to the config dataclass `cfg` (unknown keys and bad values raise)."""
    _apply(cfg, _read_yaml(Path(path)), "")


def apply_overrides(cfg: Any, overrides: list[str] | None) -> None:
    """Apply ``section.key=value`` strings (``arena.llm.model=m`` for a nested section) to `cfg`, in order."""
    for text in overrides or []:
        keys, value = parse_override(text)
        nested_value: Any = value
        for k in reversed(keys):
            nested_value = {k: nested_value}
        _apply(cfg, nested_value, "")


def resolve(cfg: Section, *files: str | Path | None, overrides: list[str] | None = None,
            flags: dict | None = None) -> Any:
    """`cfg` after its layers, then checked whole: YAML `files` in order (None skipped) < ``--set`` `overrides` <
    a command's `flags`. The one loader of every config of the harness: the same checks and the same messages."""
    for path in files:
        if path is not None:
            apply_yaml(cfg, path)
    apply_overrides(cfg, overrides)
    apply_flags(cfg, flags)
    validate(cfg)
    return cfg


def to_dict(cfg: Section) -> dict:
    """A config as plain nested dicts (for YAML artifacts and MLflow params)."""
    return dataclasses.asdict(cfg)


def apply_flags(cfg: Any, flags: dict | None) -> None:
    """Apply a command's flags, a nested mapping such as ``{"arena": {"judge": "llm"}}``; None means not given."""

    def given(d: dict) -> dict:
        return {k: given(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    _apply(cfg, given(flags or {}), "")
