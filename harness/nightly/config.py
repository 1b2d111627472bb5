"""Nightly configuration: what to compare, how strictly, and with which eval and arena settings.

`load_nightly_config(path, overrides, flags)` starts from the dataclass defaults, applies a YAML file, then
``--set key=value`` overrides (``--set alpha=0.01``, ``--set eval.limit=200``, ``--set arena.llm.model=m``), then the
command's flags, and checks the whole. The
file has the nightly keys at the top level and optional ``eval:`` and ``arena:`` sections with the same keys as the
experiment config (`harness.config.EvalConfig`, `harness.config.ArenaConfig`)::

    suite: tulu3_dev
    baseline: champion
    correction: holm
    min_effect: 0.01                      # 1 point of a 0..1 score, for every metric...
    min_effects:                          # ...unless named here: "task/metric", or a metric key for all tasks
      gsm8k/exact_match,strict-match: 0.02
      acc,none: 0.005
    power: 0.8                            # each metric's minimum detectable effect is reported at this power
    drift_tolerance: 0.01                 # --aa: more of a metric's items changing than this is drift
    eval: {batch_size: 16}
    arena: {enabled: true, prompts: 200, judge: llm, llm: {base_url: 'http://127.0.0.1:8000/v1', model: judge}}

The config validates itself as every config of the harness does (`harness.config_base`): ``correction`` and
``metrics`` are fixed choices, numbers are range-checked as they are set, and a bad or unknown key is one
`HarnessError` line naming the key, the value and what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import re

from harness.config import ArenaConfig, EvalConfig, SweepConfig, check_experiment, check_model_name
from harness.config_base import Section, nested, option, resolve
from harness.errors import HarnessError

LAST_PASS = "last-pass"
EVAL_RUN = "run:"  # a side given as an existing eval run: run:<MLflow run id>
# Fixed choices, defined once (harness.nightly.stats reads Correction's values).
Correction = Literal["holm", "bh"]
MetricSet = Literal["headline", "all"]


@dataclass
class NightlyConfig(Section):
    suite: str = option("tiny", "Eval suite (a suite name or a YAML file); pin it: a new suite version starts a "
                            "new history.")
    baseline: str = option("champion", "Baseline when --baseline is not given: an alias of registered_model, a model "
                                   f"(folder, hub id, models:/ URI), '{EVAL_RUN}<eval run id>' (an eval run already "
                                   f"in the store, e.g. an imported lm-eval run) or '{LAST_PASS}' (the latest passing "
                                   "nightly of the same suite version).")
    registered_model: str = option("harness-embedded", "Registered model whose aliases name baselines and which "
                                                   "--promote updates.")
    alias: str = option("champion", "Alias that --promote moves to the candidate when the nightly passes.")
    metrics: MetricSet = option("headline", "Metrics compared: headline (each suite entry's metric) or all (every "
                                            "per-item metric of every task).")
    correction: Correction = option("holm", "Multiple-comparison control across all compared metrics: holm "
                                            "(familywise error) or bh (Benjamini-Hochberg false discovery rate).")
    alpha: float = option(0.05, "Familywise error (holm) or false discovery rate (bh) of the verdicts.", gt=0, lt=1)
    min_effect: float = option(0.0, "Smallest drop worth an alarm, in score units (0.01 = 1 point of a 0..1 score), "
                                "for every metric not named in min_effects.", ge=0)
    min_effects: dict[str, float] = option({}, "Per-metric minimum effect: 'task/metric' (lm-eval key, e.g. "
                                           "'gsm8k/exact_match,strict-match') or a metric key for every task "
                                           "('acc,none').", ge=0)
    power: float = option(0.8, "Power at which each compared metric's minimum detectable effect is reported (at "
                               "alpha / metrics, with the disagreement observed; harness power).", gt=0, lt=1)
    drift_tolerance: float = option(0.01, "A/A nightly (--aa): share of a metric's items whose score may change when "
                                          "the baseline is evaluated again before that is infrastructure drift (a "
                                          "significant change is drift at any share).", ge=0, le=1)
    rounds: int = option(10000, "Permutation and bootstrap rounds for continuous metrics.", ge=1)
    seed: int = option(0, "Seed of the permutation test and the bootstrap.", ge=0)
    history: int = option(10, "Nightlies shown in each metric's trend (this one included).", ge=1)
    experiment: str = option("harness", "MLflow experiment of the nightly and its eval runs.")
    results: str = option("results", "Results folder: eval cache and the default sqlite MLflow store.")
    threads: int = option(1, "torch CPU threads.", ge=1)
    budget: int | None = option(None, "Thinking budget in tokens at which both sides are evaluated and compared "
                                      "(the reasoning forced closed at N tokens: harness.evals.budgets; needs "
                                      "reasoning delimiters, eval.reasoning or the chat template's); None: as the "
                                      "models generate.", ge=1)
    trust_remote_code: bool = option(False, "Allow code shipped with a checkpoint to run.")
    eval: EvalConfig = nested(EvalConfig, "Eval settings (harness.config).")
    sweep: SweepConfig = nested(SweepConfig, "Resources per Ray task when --ray evaluates both sides on a cluster "
                                             "(harness.config).")
    arena: ArenaConfig = nested(ArenaConfig, "Arena of candidate against baseline (off unless enabled: Elo delta and "
                                             "win probability).", enabled=False)

    def check(self) -> None:
        for key in ("suite", "baseline", "results"):
            if not getattr(self, key).strip():
                raise HarnessError(f"config key {key}: '' is empty")
        check_experiment(self.experiment, "experiment")
        check_model_name(self.registered_model, "registered_model")
        # MLflow's rules for an alias, checked here rather than when --promote sets it at the end of the nightly
        if not re.fullmatch(r"[\w\-]{1,255}", self.alias) or self.alias.lower() == "latest" or \
                re.fullmatch(r"[vV]\d+", self.alias):
            raise HarnessError(f"config key alias: {self.alias!r} is not a model alias (valid: letters, digits, _ "
                               "and -, not 'latest' nor v<number>)")


def load_nightly_config(path: str | Path | None = None, overrides: list[str] | None = None,
                        flags: dict | None = None) -> NightlyConfig:
    """Resolve the nightly configuration: defaults < YAML file < ``--set`` overrides < flags, then check it.

    Args:
        path: a nightly YAML file (see the module docstring), or None.
        overrides: ``key=value`` or ``eval.key=value`` / ``arena.key=value`` strings.
        flags: the command's own flags as a nested mapping (``{"suite": "tiny"}``); None values are not given.

    Returns:
        The checked `NightlyConfig`.

    Raises:
        HarnessError: an unknown key, a value of the wrong type, off its choices or out of range.
    """
    return resolve(NightlyConfig(), path, overrides=overrides, flags=flags)
