"""Terminal and Markdown tables: the one renderer behind every table the harness prints or logs as text.

    render(rows, columns, format="text" | "markdown", align=..., digits=...)

``text`` is for the terminal: columns two spaces apart, a dashed rule under the header, trailing blanks stripped.
``markdown`` is a GitHub table: ``|`` in a cell is escaped and newlines become spaces, so no cell breaks its row.
Numbers are right-aligned (``---:`` in Markdown) and everything else left-aligned, unless `align` says otherwise.
The cell formatters (`number`, `interval`, `estimate`, `pvalue`) are shared with the HTML pages.
Only the standard library is imported; a pandas DataFrame is read through its own methods.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

FORMATS = ("text", "markdown")
DIGITS = 3  # decimals of a float cell unless `digits` says otherwise

Align = Literal["left", "right"]


def _columns(rows: Any, columns: Sequence[str] | Mapping[str, str] | None) -> tuple[list, list[str], list[list]]:
    """(keys, headers, rows as lists of values) of a DataFrame, a list of mappings or a list of sequences."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        records, default = rows.to_dict(orient="records"), list(rows.columns)
    else:
        records = list(rows)
        default = list(records[0]) if records and isinstance(records[0], Mapping) else []
    if columns is None:
        keys, headers = default, [str(c) for c in default]
    elif isinstance(columns, Mapping):
        keys, headers = list(columns), [str(h) for h in columns.values()]
    else:
        keys, headers = list(columns), [str(c) for c in columns]
    if records and not isinstance(records[0], Mapping):  # sequences: the columns are their headers, in order
        return headers, headers, [list(r) for r in records]
    return keys, headers, [[r.get(k) for k in keys] for r in records]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _cell(value: Any, digits: int, missing: str) -> str:
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return missing
    if _is_number(value) and isinstance(value, numbers.Integral):
        return str(int(value))
    if _is_number(value) and isinstance(value, numbers.Real):
        return f"{float(value):.{digits}f}"
    return " ".join(str(value).splitlines())  # one line per row, whatever the cell holds


def render(rows: Any, columns: Sequence[str] | Mapping[str, str] | None = None, *,
           format: Literal["text", "markdown"] = "text", align: Mapping[Any, Align] | None = None,
           digits: int | Mapping[Any, int] = DIGITS, missing: str = "") -> str:
    """A table as aligned text or Markdown.

    Args:
        rows: a pandas DataFrame, a list of mappings, or a list of sequences (then `columns` are their headers).
        columns: which columns to show, in order: keys, or a mapping key → header (default: all, under their names).
        format: ``text`` (terminal) or ``markdown``.
        align: column key → ``left`` or ``right``; other columns are right-aligned when every value is a number
            (NaN included) and left-aligned otherwise.
        digits: decimals of float cells, one number or per column key (others get `DIGITS`).
        missing: what None and NaN show as.

    Returns:
        The table, without a trailing newline.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown table format {format!r}; valid: {', '.join(FORMATS)}")
    keys, headers, values = _columns(rows, columns)
    places = [digits.get(k, DIGITS) if isinstance(digits, Mapping) else digits for k in keys]
    cells = [[_cell(v, d, missing) for v, d in zip(row, places)] for row in values]
    right = []
    for i, key in enumerate(keys):
        column = [row[i] for row in values]
        inferred = bool(column) and all(_is_number(v) or v is None for v in column) and any(map(_is_number, column))
        right.append((align or {}).get(key, "right" if inferred else "left") == "right")
    if format == "markdown":
        def line(row: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
        return "\n".join([line(headers), rule, *map(line, cells)])
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, cells)])


# --- cell formatters, shared by the terminal, Markdown and HTML tables ---------------------------------------------


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A float with `digits` decimals (``+`` for positive when `signed`); ``-`` for NaN and None."""
    if _absent(value):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def pvalue(value: Any) -> str:
    """A p-value: 4 decimals, or 2 significant digits below 0.001 (``3.1e-07``)."""
    if isinstance(value, float) and math.isfinite(value) and 0 < value < 1e-3:
        return f"{value:.2g}"
    return number(value, 4)


def interval(low: Any, high: Any, digits: int = 3, signed: bool = False) -> str:
    """``[low, high]``; ``-`` when an end is unknown."""
    if _absent(low) or _absent(high):
        return "-"
    return f"[{number(low, digits, signed)}, {number(high, digits, signed)}]"


def estimate(value: Any, low: Any, high: Any, digits: int = 3, signed: bool = False) -> str:
    """``value [low, high]`` (the interval left out when unknown); ``-`` when the value is."""
    if _absent(value):
        return "-"
    ci = interval(low, high, digits, signed)
    return number(value, digits, signed) + ("" if ci == "-" else f" {ci}")
