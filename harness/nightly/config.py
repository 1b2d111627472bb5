"""Nightly configuration: what to compare, how strictly, and with which eval and arena settings.

`load_nightly_config(path, overrides)` starts from the dataclass defaults, applies a YAML file, then
``--set key=value`` overrides (``--set alpha=0.01``, ``--set eval.limit=200``, ``--set arena.enabled=true``). The
file has the nightly keys at the top level and optional ``eval:`` and ``arena:`` sections with the same keys as the
experiment config (`harness.config.EvalConfig`, `harness.config.ArenaConfig`)::

    suite: tulu3_dev
    baseline: champion
    correction: holm
    min_effect: 0.01                      # 1 point of a 0..1 score, for every metric...
    min_effects:                          # ...unless named here: "task/metric", or a metric key for all tasks
      gsm8k/exact_match,strict-match: 0.02
      acc,none: 0.005
    eval: {batch_size: 16}
    arena: {enabled: true, prompts: 200}

An unknown key raises a `HarnessError` naming the key and the valid ones, as every config of the harness does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ArenaConfig, EvalConfig, apply_overrides, apply_yaml, option
from harness.errors import HarnessError

CORRECTIONS = ("holm", "bh")
METRIC_SETS = ("headline", "all")
LAST_PASS = "last-pass"


@dataclass
class NightlyConfig:
    suite: str = option("tiny", "Eval suite (suites/<name>.yaml or a YAML file); pin it: a new suite version starts a "
                            "new history.")
    baseline: str = option("champion", "Baseline when --baseline is not given: an alias of registered_model, a model "
                                   f"(folder, hub id, models:/ URI) or '{LAST_PASS}' (the latest passing nightly of "
                                   "the same suite version).")
    registered_model: str = option("harness-embedded", "Registered model whose aliases name baselines and which "
                                                   "--promote updates.")
    alias: str = option("champion", "Alias that --promote moves to the candidate when the nightly passes.")
    metrics: str = option("headline", "Metrics compared: headline (each suite entry's metric) or all (every per-item "
                                  "metric of every task).")
    correction: str = option("holm", "Multiple-comparison control across all compared metrics: holm (familywise "
                                 "error) or bh (Benjamini-Hochberg false discovery rate).")
    alpha: float = option(0.05, "Familywise error (holm) or false discovery rate (bh) of the verdicts.")
    min_effect: float = option(0.0, "Smallest drop worth an alarm, in score units (0.01 = 1 point of a 0..1 score), "
                                "for every metric not named in min_effects.")
    min_effects: dict = option({}, "Per-metric minimum effect: 'task/metric' (lm-eval key, e.g. "
                               "'gsm8k/exact_match,strict-match') or a metric key for every task ('acc,none').")
    rounds: int = option(10000, "Permutation and bootstrap rounds for continuous metrics.")
    seed: int = option(0, "Seed of the permutation test and the bootstrap.")
    history: int = option(10, "Nightlies shown in each metric's trend (this one included).")
    experiment: str = option("harness", "MLflow experiment of the nightly and its eval runs.")
    results: str = option("results", "Results folder: eval cache and the default sqlite MLflow store.")
    threads: int = option(1, "torch CPU threads.")
    trust_remote_code: bool = option(False, "Allow code shipped with a checkpoint to run.")
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Eval settings (harness.config)."})
    arena: ArenaConfig = field(default_factory=lambda: ArenaConfig(enabled=False), metadata={
        "help": "Arena of candidate against baseline (off unless enabled: Elo delta and win probability)."})


def _check(cfg: NightlyConfig) -> None:
    if cfg.correction not in CORRECTIONS:
        raise HarnessError(f"config key correction: {cfg.correction!r}; valid: {', '.join(CORRECTIONS)}")
    if cfg.metrics not in METRIC_SETS:
        raise HarnessError(f"config key metrics: {cfg.metrics!r}; valid: {', '.join(METRIC_SETS)}")
    if not 0 < cfg.alpha < 1:
        raise HarnessError(f"config key alpha: {cfg.alpha}; must be between 0 and 1, e.g. 0.05")
    if not isinstance(cfg.min_effects, dict):
        raise HarnessError(f"config key min_effects: expected a mapping of metric to minimum effect, got "
                           f"{cfg.min_effects!r}")
    for key, value in {"min_effect": cfg.min_effect, **{f"min_effects.{k}": v for k, v in cfg.min_effects.items()}
                       }.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise HarnessError(f"config key {key}: {value!r}; must be a number >= 0 in score units, e.g. 0.01")
    if cfg.rounds < 1 or cfg.history < 1:
        raise HarnessError(f"config keys rounds={cfg.rounds} and history={cfg.history} must be positive integers")


def load_nightly_config(path: str | Path | None = None, overrides: list[str] | None = None) -> NightlyConfig:
    """Resolve the nightly configuration: defaults < YAML file < ``--set`` overrides.

    Args:
        path: a nightly YAML file (see the module docstring), or None.
        overrides: ``key=value`` or ``eval.key=value`` / ``arena.key=value`` strings.

    Returns:
        The checked `NightlyConfig`.

    Raises:
        HarnessError: an unknown key, a value of the wrong type, or a value out of range.
    """
    # One loader for every config file of the harness: the same type checks and the same messages.
    cfg = NightlyConfig()
    if path is not None:
        apply_yaml(cfg, path)
    apply_overrides(cfg, overrides)
    _check(cfg)
    return cfg


def to_dict(cfg: NightlyConfig) -> dict:
    """The config as plain nested dicts (for the YAML artifact and MLflow params)."""
    return dataclasses.asdict(cfg)
