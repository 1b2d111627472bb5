"""harness: a post-training evaluation harness — train, evaluate, rate and track checkpoints.

The public API, one name per line below; everything is imported on first use (PEP 562) so that importing
`harness` (and `harness --help`) loads no heavy library. Each package's own `__init__` indexes its details.
"""

from __future__ import annotations

from harness.lazy import attach

_API = {
    # configuration and the main job
    "Config": "harness.config",
    "load_config": "harness.config",
    "run_pipeline": "harness.runner",
    "HarnessError": "harness.errors",
    # models and data
    "load_model": "harness.models.load:load",
    "verify": "harness.data.verifiers",
    "reward": "harness.data.verifiers",
    # evaluation, arenas, ratings, nightly statistics
    "evaluate": "harness.evals",
    "import_lm_eval": "harness.evals",
    "compare": "harness.evals",
    "run_arena": "harness.arena",
    "fit_bt": "harness.ratings",
    "bootstrap": "harness.ratings",
    "leaderboard": "harness.ratings",
    "win_prob": "harness.ratings",
    "margin_for": "harness.ratings",
    "alpaca_winrate": "harness.ratings",
    "compare_suite": "harness.nightly.stats",
    # views of the record
    "build_dashboard": "harness.report.dashboard",
}

__all__ = sorted(_API)


__getattr__, __dir__ = attach(globals(), _API)
