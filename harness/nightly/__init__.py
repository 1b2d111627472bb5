"""Nightly regression checks with paired per-item statistics; their report is rendered by `harness.report`.

Public surface (heavy imports — lm-eval, torch, pandas, MLflow — happen on first use):

- `run_nightly(candidate, baseline, cfg, promote=)` → `NightlyResult` (`.verdict`, `.exit_code`, `.comparisons`)
- `NightlyConfig`, `load_nightly_config(path, overrides)`
- `markdown(result)`, `html_page(result)`: the nightly report (`harness.report.nightly`)
- statistics: `compare_suite`, `overall_verdict`, `PairedScores`, `Comparison`, `align_items`, `adjust_p_values`,
  `drift` (an A/A nightly's infrastructure drift)
- power (`harness power`): `mcnemar_power`, `items_needed`, `detectable_effect`

Modules, in data-flow order: `config`, `sides` (what --candidate and --baseline name), `power` (power and minimum
detectable effect of the paired tests), `records` (eval runs read
back from MLflow, like-with-like checks, the compared metrics), `pairing` (items paired by document identity and
content, pooled as lm-eval aggregates them, groups pooled over their subtasks), `stats`, `result` (what a nightly
found), `history` (trends), `run` (the nightly and its MLflow record), `cli` (``harness nightly``).
"""

from __future__ import annotations

from harness.lazy import attach

# name → module; imported on first use (PEP 562) so that `harness --help` loads no heavy library.
_API = {
    "NightlyConfig": "config",
    "load_nightly_config": "config",
    "NightlyResult": "result",
    "run_nightly": "run",
    "markdown": "harness.report.nightly",
    "html_page": "harness.report.nightly",
    "Comparison": "stats",
    "PairedScores": "stats",
    "adjust_p_values": "stats",
    "align_items": "stats",
    "compare_suite": "stats",
    "drift": "stats",
    "overall_verdict": "stats",
    "mcnemar_power": "power",
    "items_needed": "power",
    "detectable_effect": "power",
}


__getattr__, __dir__ = attach(globals(), _API)


__all__ = sorted(_API)
