"""Every view of the record: HTML pages, figures and text tables, rendered from MLflow (or from what a command just
computed) and never stored anywhere else.

Public surface (heavy imports — pandas, matplotlib, MLflow — happen on first use):

- `build_dashboard(experiment, out_dir, results_dir=, samples=)`: the static dashboard ``DIR/index.html``
- `markdown(result)`, `html_page(result)`: the nightly report of a `harness.nightly.NightlyResult`
- `render(rows, columns, format=, align=, digits=)`: terminal and Markdown tables
- `figure(width, height)`: the figure helper every plot is drawn on (`harness.report.figures` holds the plots)

Modules: `tables` (the table renderer and cell formatters), `figures` (every matplotlib figure), `html` (the Jinja2
environment over ``templates/``, table and figure models), `dashboard`, `nightly`, `cli` (``harness dashboard``).
"""

from __future__ import annotations

from harness.lazy import attach

# name → module; imported on first use (PEP 562) so that `harness --help` loads no heavy library.
_API = {
    "build_dashboard": "dashboard",
    "markdown": "nightly",
    "html_page": "nightly",
    "render": "tables",
    "figure": "figures",
}


__getattr__, __dir__ = attach(globals(), _API)


__all__ = sorted(_API)
