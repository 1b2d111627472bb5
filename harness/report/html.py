"""HTML pages: the Jinja2 environment over the packaged templates, and the table and figure models templates show
(cells formatted by `harness.report.tables`' formatters, as in the terminal and Markdown tables).

Templates are package data in ``harness/report/templates/``, loaded with `jinja2.PackageLoader` (so an installed
wheel renders anywhere): ``base.html`` is the page (``style.css`` inlined, no scripts, no web fonts),
``macros.html`` draws tables and figures, ``dashboard.html`` and ``nightly.html`` are the two pages.

Autoescaping is always on and no value built from data is ever marked safe: the code here hands templates plain
strings and plain dataclasses, never HTML. A model name or a generation holding ``<script>`` or ``{{ 7*7 }}`` is
shown as that text (Jinja does not evaluate template syntax inside values). Figures are PNGs, embedded as data URIs
(one self-contained file, as MLflow's artifact viewer shows it) or saved beside the page.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from harness.report.tables import interval, number

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@cache
def environment() -> jinja2.Environment:
    """The templates' environment: packaged templates, autoescaping on for every template, undefined names fail."""
    return jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def page(template: str, *, title: str, subtitle: str = "", nav: Mapping[str, str] | None = None,
         footer: str = "", **context: Any) -> str:
    """A whole page from one of the packaged templates.

    Args:
        template: the template's file name (``dashboard.html``, ``nightly.html``).
        title: page title; subtitle: a line under it; footer: a line at the bottom.
        nav: anchor id → link text, for the table of contents.
        context: the template's own variables.

    Returns:
        The page text.
    """
    return environment().get_template(template).render(title=title, subtitle=subtitle, nav=dict(nav or {}),
                                                       footer=footer, **context)


# --- what templates show ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, ``num`` (right-aligned) or ``text`` (free text: wrapped, monospaced), and the CSS
    class of a badge drawn around the text (verdicts)."""

    text: str
    kind: str | None = None
    badge: str | None = None


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    css: str | None = None


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Image:
    """A figure: ``src`` is a path relative to the page or a ``data:`` URI."""

    src: str
    caption: str


def table(frame: "pd.DataFrame", columns: Mapping[str, str] | None = None, *,
          formats: Mapping[str, Callable[[Any], str]] | None = None, numeric: Iterable[str] = (),
          text: Iterable[str] = (), badges: Mapping[str, Callable[[Any], str]] | None = None,
          row_class: Callable[[Any], str | None] | None = None) -> Table:
    """The table model of `frame`.

    Args:
        frame: the rows.
        columns: column → header, in display order (default: every column under its own name).
        formats: column → function of the cell value giving its text (default: `number` for floats, else ``str``).
        numeric: columns aligned right.
        text: columns of free text (model outputs): wrapped, monospaced.
        badges: column → function of the cell value giving the CSS class of a badge around it.
        row_class: function of the row (a pandas Series) giving its CSS class.
    """
    columns = dict(columns or {c: c for c in frame.columns})
    formats, badges, numeric, text = dict(formats or {}), dict(badges or {}), set(numeric), set(text)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            value = row[col] if col in row.index else None
            shown = formats[col](value) if col in formats else number(value) if isinstance(value, float) else value
            cells.append(Cell("" if shown is None else str(shown), "num" if col in numeric else
                              "text" if col in text else None, badges[col](value) if col in badges else None))
        rows.append(Row(cells, row_class(row) if row_class else None))
    return Table([str(h) for h in columns.values()], rows)


def ratings_table(board: "pd.DataFrame") -> Table:
    """An arena leaderboard with 95% CIs, and the columns against the baseline when it has them."""
    columns = {"rank": "rank", "model": "model", "rating": "rating", "ci": "95% CI", "battles": "battles",
               "win_rate": "win rate"}
    for col, name in (("win_rate_vs_baseline", "win rate vs baseline"), ("p_win_vs_baseline", "P(win) vs baseline")):
        if col in board:
            columns[col] = name
    shown = board.assign(ci=[interval(lo, hi, 0) for lo, hi in zip(board["ci_low"], board["ci_high"])])
    return table(shown, columns, formats={"rating": lambda v: number(v, 0)},
                 numeric=[c for c in columns if c != "model"])


def reliability_table(report: Any) -> Table:
    """A judge's reliability (`harness.ratings.reliability.Reliability`): statistic, estimate [CI], n."""
    import pandas as pd

    rows = pd.DataFrame(report.display(), columns=["statistic", "estimate", "n"])
    return table(rows, {"statistic": "statistic", "estimate": f"estimate [{report.level:.0%} CI]", "n": "n"},
                 numeric=["estimate", "n"])


def embedded(fig: "Figure", caption: str) -> Image:
    """A figure embedded in the page as a base64 PNG data URI."""
    from harness.report.figures import png

    return Image("data:image/png;base64," + base64.b64encode(png(fig)).decode("ascii"), caption)


def saved(fig: "Figure", folder: Path, name: str, caption: str) -> Image:
    """A figure saved as ``<folder>/img/<name>.png`` and shown from there."""
    from harness.report.figures import png

    path = folder / "img" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(fig))
    return Image(f"img/{name}.png", caption)
