"""Rendering ratings tables (table, csv, markdown, json) and handing them to MLflow.

Table and Markdown output go through the harness's one table renderer (`harness.report.tables`); JSON output is a
list of objects, one per row, with NaN written as null. MLflow logging goes through
`harness.tracking.store` only: per-model metrics, one per numeric leaderboard column (`rating/<model>`,
`ci_low/<model>`, the sandwich `se/<model>`, the rank interval `rank_ci_low/<model>`, …), the leaderboard as CSV
and JSON artifacts, matrices as CSV, and figures as PNG.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.tracking import schema

FORMATS = ("table", "csv", "markdown", "json")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain-Python dicts (numpy scalars converted, NaN → None)."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def render(frame: pd.DataFrame, fmt: str = "table", *, digits: int | Mapping[str, int] = 1) -> str:
    """Render a table.

    Args:
        frame: the table.
        fmt: one of table, csv, markdown, json.
        digits: decimals for floats in table and markdown output, one number or per column (default 1); csv and
            json keep full precision.

    Returns:
        The text (no trailing newline for table and markdown).
    """
    from harness.report import tables

    if fmt == "json":
        return json.dumps(records(frame), indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt in ("table", "markdown"):
        places = {c: digits.get(c, 1) if isinstance(digits, Mapping) else digits for c in frame.columns}
        align = {c: "right" if pd.api.types.is_numeric_dtype(frame[c]) else "left" for c in frame.columns}
        return tables.render(frame, format="text" if fmt == "table" else "markdown", align=align, digits=places)
    raise HarnessError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def log_ratings(
    run,
    board: pd.DataFrame,
    *,
    params: Mapping[str, Any],
    matrices: Mapping[str, pd.DataFrame] | None = None,
    figures: Mapping[str, Any] | None = None,
    prefix: str = "ratings",
) -> None:
    """Log a ratings leaderboard to an open `harness.tracking.store.Run`.

    Args:
        run: the run handle.
        board: the leaderboard (`model` column plus numeric columns).
        params: run parameters (seed, rounds, level, scale, …).
        matrices: name → square DataFrame, logged as `<prefix>/<name>.csv`.
        figures: name → matplotlib figure, logged as `<prefix>/<name>.png`.
        prefix: artifact folder.
    """
    run.log_params(dict(params))
    metrics: dict[str, Any] = {}
    value_cols = [c for c in board.columns if c != "model" and pd.api.types.is_numeric_dtype(board[c])]
    for row in board.to_dict(orient="records"):
        for col in value_cols:
            metrics[schema.ratings_metric(col, row["model"])] = row[col]
    run.log_metrics(metrics)
    run.write(schema.leaderboard(prefix), board)
    run.write(schema.leaderboard_json(prefix), records(board))
    for name, matrix in (matrices or {}).items():
        run.write(schema.matrix(name, prefix), matrix.reset_index(names="model"))
    for name, fig in (figures or {}).items():
        run.write(schema.ratings_figure(name, prefix), fig)
