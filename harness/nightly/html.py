"""Static HTML for the nightly report and the dashboard: the page template and small escaping builders.

The page is ``dashboards/template.html`` with ``dashboards/style.css`` inlined (``$HARNESS_DASHBOARDS`` points
elsewhere), filled with `string.Template`. Every value placed in a page goes through `html.escape` unless it is
wrapped in `Raw` by the code that built it, so model names and generations (``<script>`` included) stay text.
Pages carry no JavaScript; figures are PNGs, embedded as data URIs (one self-contained file, as MLflow's artifact
viewer shows it) or saved beside the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


class Raw(str):
    """HTML built here from escaped parts: placed in a page as it is."""


def esc(value: Any) -> Raw:
    """`value` as escaped text (`Raw` values pass through)."""
    return value if isinstance(value, Raw) else Raw(html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Raw:
    return Raw("\n".join(esc(p) for p in parts))


def tag(name: str, content: Any = "", **attrs: Any) -> Raw:
    """``<name attrs>content</name>``; attribute values and content are escaped (``class_`` → ``class``)."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Raw(f"<{name}{text}>{esc(content)}</{name}>")


def dashboards_dir() -> Path:
    """The folder of the page template and CSS: ``$HARNESS_DASHBOARDS``, else ``dashboards/`` beside the package."""
    env = os.environ.get("HARNESS_DASHBOARDS")
    if env:
        return Path(env).expanduser().resolve()
    import harness

    return Path(harness.__file__).resolve().parents[1] / "dashboards"


def page(title: str, body: Iterable[Any], *, subtitle: str = "", nav: Mapping[str, str] | None = None,
         footer: str = "") -> str:
    """A whole HTML page from the template, with the CSS inlined.

    Args:
        title: page title (escaped).
        body: sections (`Raw` HTML, or text to escape).
        subtitle: a line under the title (escaped).
        nav: anchor id → link text, for a table of contents.
        footer: a line at the bottom (escaped).

    Returns:
        The page text.
    """
    folder = dashboards_dir()
    try:
        template = Template((folder / "template.html").read_text())
        css = (folder / "style.css").read_text()
    except OSError:
        raise HarnessError(f"page template not found: {folder}/template.html and style.css (set "
                           "HARNESS_DASHBOARDS to the dashboards/ folder of a harness checkout)") from None
    links = join(tag("a", text, href=f"#{anchor}") for anchor, text in (nav or {}).items())
    return template.substitute(title=esc(title), subtitle=esc(subtitle), css=css,
                               nav=tag("nav", links) if nav else "", body=join(body), footer=esc(footer))


def section(anchor: str, title: str, *parts: Any) -> Raw:
    return tag("section", join([tag("h2", title), *parts]), id=anchor)


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A float with `digits` decimals (``+`` for positive when `signed`); ``-`` for NaN and None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
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
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in (low, high)):
        return "-"
    return f"[{number(low, digits, signed)}, {number(high, digits, signed)}]"


def table(frame: "pd.DataFrame", columns: Mapping[str, str] | None = None, *,
          formats: Mapping[str, Callable[[Any], Any]] | None = None, numeric: Iterable[str] = (),
          text: Iterable[str] = (), row_class: Callable[[Any], str | None] | None = None) -> Raw:
    """An HTML table of `frame`.

    Args:
        frame: the rows.
        columns: column → header, in display order (default: every column under its own name).
        formats: column → function of the cell value giving text (escaped) or `Raw` HTML.
        numeric: columns aligned right.
        text: columns of free text (model outputs): wrapped, monospaced.
        row_class: function of the row (a pandas Series) giving its CSS class.
    """
    columns = dict(columns or {c: c for c in frame.columns})
    formats, numeric, text = dict(formats or {}), set(numeric), set(text)
    head = tag("tr", join(tag("th", h) for h in columns.values()))
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            value = row[col] if col in row.index else None
            shown = formats[col](value) if col in formats else number(value) if isinstance(value, float) else value
            kind = "num" if col in numeric else "text" if col in text else None
            cells.append(tag("td", "" if shown is None else shown, class_=kind))
        rows.append(tag("tr", join(cells), class_=row_class(row) if row_class else None))
    return tag("table", join([tag("thead", head), tag("tbody", join(rows))]))


def png(fig: "Figure") -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    fig.clf()
    return buffer.getvalue()


def figure(src: str, caption: str, alt: str | None = None) -> Raw:
    """``<figure>`` with an image (a path relative to the page, or a data URI) and its caption."""
    return tag("figure", join([Raw(f'<img src="{esc(src)}" alt="{esc(alt or caption)}">'), tag("figcaption", caption)]))


def embedded(fig: "Figure", caption: str) -> Raw:
    """A figure embedded in the page as a base64 PNG data URI."""
    return figure("data:image/png;base64," + base64.b64encode(png(fig)).decode("ascii"), caption)


def saved(fig: "Figure", folder: Path, name: str, caption: str) -> Raw:
    """A figure saved as ``<folder>/img/<name>.png`` and shown from there."""
    path = folder / "img" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(fig))
    return figure(f"img/{name}.png", caption)
