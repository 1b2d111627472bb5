"""Pairwise ratings: Bradley-Terry on the Elo scale with bootstrap CIs, win rates, style and length control.

Modules, in data-flow order:

- `battles`: read and check battle files (Chatbot Arena format), aggregate them to per-pair counts.
- `elo`: the Elo scale (margin ↔ win probability), predicted win-probability matrices, online Elo.
- `bt`: Bradley-Terry maximum likelihood (Newton on pair counts), identifiability checks, anchoring.
- `intervals`: Poisson-bootstrap percentile CIs with vectorised warm-started refits, CI-aware ranks and rank intervals.
- `sandwich`: sandwich (Huber-White) standard errors of the fit, clustered by prompt; rank intervals from any CIs.
- `arena_hard`: Arena-Hard's scoring (each position game a battle, a strong verdict three) and its win rates.
- `style`: style control (Bradley-Terry with response-length and markdown covariates).
- `tables`: the leaderboard and the win-rate / battle-count matrices.
- `alpaca`: AlpacaEval win rate, standard error and length-controlled win rate from annotations files.
- `simulate`: battle logs drawn from known ratings (tests, benchmarks).
- `report`: output formats and MLflow logging (figures are `harness.report.figures`); `cli`: `harness elo | rate |
  winrate`.
"""

from __future__ import annotations

from harness.lazy import attach

# The public API: name → the module that defines it. Imports are lazy (PEP 562) so that `harness.ratings.cli`,
# which lives in this package, loads without numpy, pandas or scipy and `harness --help` stays fast.
_API = {
    "alpaca_winrate": "alpaca",
    "read_annotations": "alpaca",
    "winrate_metrics": "alpaca",
    "PairCounts": "battles",
    "aggregate": "battles",
    "read_battles": "battles",
    "expand_verdicts": "arena_hard",
    "BootstrapResult": "intervals",
    "bootstrap": "intervals",
    "ci_ranks": "intervals",
    "NotIdentifiableError": "bt",
    "check_identifiable": "bt",
    "fit_bt": "bt",
    "margin_for": "elo",
    "online_elo": "elo",
    "win_prob": "elo",
    "win_prob_matrix": "elo",
    "average_win_rate": "tables",
    "battle_count_matrix": "tables",
    "empirical_win_rate_matrix": "tables",
    "leaderboard": "tables",
    "model_totals": "tables",
    "simulate_battles": "simulate",
    "SandwichResult": "sandwich",
    "sandwich": "sandwich",
    "StyleFit": "style",
    "fit_style_bt": "style",
    "style_bootstrap": "style",
    "style_features": "style",
}


__getattr__, __dir__ = attach(globals(), _API)


__all__ = [
    "BootstrapResult",
    "NotIdentifiableError",
    "PairCounts",
    "SandwichResult",
    "StyleFit",
    "aggregate",
    "alpaca_winrate",
    "average_win_rate",
    "battle_count_matrix",
    "bootstrap",
    "check_identifiable",
    "ci_ranks",
    "empirical_win_rate_matrix",
    "expand_verdicts",
    "fit_bt",
    "fit_style_bt",
    "leaderboard",
    "margin_for",
    "model_totals",
    "online_elo",
    "read_annotations",
    "read_battles",
    "sandwich",
    "simulate_battles",
    "style_bootstrap",
    "style_features",
    "win_prob",
    "win_prob_matrix",
    "winrate_metrics",
]
