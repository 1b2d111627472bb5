"""`run_nightly`: evaluate a candidate, compare it per item with a baseline, and record the verdict in MLflow.

The recipe, in order:

1. load the suite and hash its version; resolve both sides (`harness.nightly.sides`) and, with ``--promote``, the
   version to promote, so that bad input fails before any model work;
2. open one MLflow run (tags ``harness.kind=nightly``, ``harness.suite``, ``harness.suite_version``,
   ``harness.candidate``, ``harness.baseline``); evaluate the candidate, and the baseline unless it is the last
   passing nightly, as nested eval runs (cached by checkpoint hash, so an unchanged baseline costs no model work);
3. read both eval runs back (`harness.nightly.records`); if they differ in what changes a score, the verdict is
   ``cannot-compare`` with the reasons; else compare every metric per item (`harness.nightly.stats`) with
   Holm or Benjamini-Hochberg control across all of them: ``fail`` when any metric dropped significantly by at
   least its minimum effect, else ``pass``;
4. with ``arena.enabled``, an arena of candidate against baseline (Elo delta, win probability);
5. the trend of every metric over the last nightlies of the same suite version (`harness.nightly.history`);
6. log metrics named as the eval runs name them (``<skill>/<task>/<metric>`` for the candidate, plus
   ``baseline/``, ``delta/``, ``p_adjusted/`` ...), the report (Markdown and a self-contained HTML page) and the
   verdict tag; with ``--promote`` and a pass, point the alias at the candidate's version.

Exit codes (`NightlyResult.exit_code`): 0 pass, 1 regression, 2 cannot compare (and 2 for bad input, raised).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.errors import HarnessError
from harness.nightly import history, records, sides
from harness.nightly.config import NightlyConfig, to_dict
from harness.nightly.stats import Comparison, compare_suite, overall_verdict

if TYPE_CHECKING:
    import pandas as pd

    from harness.tracking.store import Run

EXIT_CODES = {"pass": 0, "fail": 1, "cannot-compare": 2}
EXAMPLES = 3  # regressed items shown per regressed metric


@dataclass
class ArenaSummary:
    """Candidate against baseline in an arena: ratings with CIs, Elo delta, predicted win probability."""

    leaderboard: "pd.DataFrame"
    win_prob: "pd.DataFrame"
    elo_delta: float
    p_win: float
    judge: str
    run_id: str | None


@dataclass
class NightlyResult:
    """A nightly's verdict and everything its report shows."""

    verdict: str  # pass, fail or cannot-compare
    suite: str
    suite_version: str
    candidate: sides.Side
    baseline: sides.Side
    comparisons: list[Comparison] = field(default_factory=list)
    skills: dict[str, str] = field(default_factory=dict)  # task → skill
    reasons: list[str] = field(default_factory=list)  # why it cannot compare
    examples: dict[tuple[str, str], "pd.DataFrame"] = field(default_factory=dict)  # regressed items per metric
    trend: "pd.DataFrame | None" = None  # history.trend(): one row per (nightly, task, metric)
    arena: ArenaSummary | None = None
    correction: str = "holm"
    alpha: float = 0.05
    run_id: str | None = None
    promoted: str | None = None  # "models:/<name>@<alias> → version <v>" after --promote on a pass

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    def metric_key(self, c: Comparison) -> str:
        """The MLflow metric name of a comparison, as the eval runs name it: ``<skill>/<task>/<metric>``."""
        from harness.tracking.store import sanitize_metric_name

        return sanitize_metric_name(f"{self.skills.get(c.task, 'task')}/{c.task}/{c.metric}")


def run_nightly(candidate: str, baseline: str | None, cfg: NightlyConfig, *, promote: bool = False,
                out: TextIO | None = None) -> NightlyResult:
    """Run one nightly (see the module docstring) and record it in MLflow.

    Args:
        candidate: the checkpoint to judge: folder, hub id, MLflow URI or alias.
        baseline: an alias, a model or ``last-pass``; None takes ``cfg.baseline``.
        cfg: the nightly configuration.
        promote: on a pass, point ``cfg.alias`` of ``cfg.registered_model`` at the candidate's version.
        out: where progress lines go (default stderr).

    Returns:
        The `NightlyResult` (its `exit_code` is the command's).

    Raises:
        HarnessError: bad input (suite, models, config); nothing is evaluated when the sides do not resolve.
    """
    from harness import provenance
    from harness.evals import suite as suites
    from harness.tracking import store

    out = out or sys.stderr
    results = Path(cfg.results).resolve()
    spec = suites.load(cfg.suite)
    suites.check_tasks(spec)
    version = records.suite_version(spec)
    where = {"registered_model": cfg.registered_model, "suite": spec.name, "experiment": cfg.experiment,
             "results_dir": results}
    cand = sides.resolve(candidate, role="candidate", **where)
    base = sides.resolve(baseline or cfg.baseline, role="baseline", suite_version=version, **where)
    promote_to = sides.promotion_version(cand, cfg.registered_model, results) if promote else None

    tags = {"harness.kind": "nightly", "harness.suite": spec.name, "harness.suite_version": version,
            "harness.candidate": cand.model, "harness.baseline": base.model, **provenance.tags(cfg.seed)}
    with store.run(f"nightly-{spec.name}-{cand.label}"[:250], experiment=cfg.experiment, results_dir=results,
                   tags=tags) as run:
        run.log_dict(to_dict(cfg), "nightly/config.yaml")
        result = NightlyResult(verdict="cannot-compare", suite=spec.name, suite_version=version, candidate=cand,
                               baseline=base, correction=cfg.correction, alpha=cfg.alpha, run_id=run.run_id)
        print(f"== nightly {spec.name} (version {version}): candidate {cand.label}, baseline {base.label}",
              file=out, flush=True)
        cand.eval_run = _evaluate(cand, cfg, run, results)
        if base.eval_run is None:
            base.eval_run = _evaluate(base, cfg, run, results)
        c_rec = records.load_record(cand.eval_run, results)
        b_rec = records.load_record(base.eval_run, results)
        result.skills = dict(zip(c_rec.scores.task, c_rec.scores.skill))
        if base.suite_version and base.suite_version != version:
            result.reasons.append(f"the last passing nightly ({base.nightly_run}) ran suite version "
                                  f"{base.suite_version}, this one runs {version}")
        result.reasons += records.incomparable(c_rec, b_rec)
        if not result.reasons:
            pairs = records.paired_metrics(spec, c_rec, b_rec, cfg)
            result.comparisons = compare_suite(pairs, correction=cfg.correction, alpha=cfg.alpha,
                                               rounds=cfg.rounds, seed=cfg.seed)
            result.verdict = overall_verdict(result.comparisons)
            result.examples = _examples(result.regressions, c_rec, b_rec)
            if cfg.arena.enabled:
                result.arena = _arena(cand, base, cfg, run, results, out)
        result.trend = history.trend(result, results_dir=results, experiment=cfg.experiment, last=cfg.history)
        _log_results(run, result, cfg)
        if promote_to and result.verdict == "pass":
            store.set_alias(run.uri, cfg.registered_model, cfg.alias, promote_to)
            result.promoted = f"models:/{cfg.registered_model}@{cfg.alias} → version {promote_to}"
        _log_report_and_verdict(run, result)
    return result


def _evaluate(side: sides.Side, cfg: NightlyConfig, run: "Run", results: Path) -> str:
    from harness.evals import evaluate

    evaluated = evaluate(side.model, cfg.suite, cfg=cfg.eval, results_dir=results, parent=run,
                         experiment=cfg.experiment, trust_remote_code=cfg.trust_remote_code)
    return evaluated.run_id


def _examples(regressions: list[Comparison], cand: records.EvalRecord, base: records.EvalRecord
              ) -> dict[tuple[str, str], "pd.DataFrame"]:
    """For each regressed metric, the first items the baseline scored higher than the candidate."""
    out = {}
    for c in regressions:
        a = records.scored_items(cand, c.task, c.metric)
        b = records.scored_items(base, c.task, c.metric)[["item_id", "response", "score"]]
        both = a.merge(b, on="item_id", suffixes=("_candidate", "_baseline"))
        worse = both["score_candidate"] < both["score_baseline"] if c.higher_is_better else \
            both["score_candidate"] > both["score_baseline"]
        out[(c.task, c.metric)] = both[worse].head(EXAMPLES).reset_index(drop=True)
    return out


def _arena(cand: sides.Side, base: sides.Side, cfg: NightlyConfig, run: "Run", results: Path,
           out: TextIO) -> ArenaSummary | None:
    """Candidate against baseline in the configured arena; None (with a warning) when a checkpoint is missing."""
    from harness.arena import run_arena
    from harness.evals.run import resolve_model

    try:
        models = {"candidate": resolve_model(cand.model, cfg.eval, results)[0],
                  "baseline": resolve_model(base.model, cfg.eval, results)[0]}
    except HarnessError as err:
        print(f"harness: warning: arena skipped: {err}", file=sys.stderr)
        return None
    arena_cfg = replace(cfg.arena, baseline="baseline", mode="baseline")
    arena = run_arena(models, cfg=arena_cfg, results_dir=results, parent=run, seed=cfg.seed,
                      experiment=cfg.experiment, run_name="arena-nightly", out=out,
                      trust_remote_code=cfg.trust_remote_code)
    board = arena.leaderboard.set_index("model")
    return ArenaSummary(leaderboard=arena.leaderboard, win_prob=arena.win_prob,
                        elo_delta=float(board.loc["candidate", "rating"] - board.loc["baseline", "rating"]),
                        p_win=float(arena.win_prob.loc["candidate", "baseline"]), judge=arena.judge,
                        run_id=arena.run_id)


def _params(result: NightlyResult, cfg: NightlyConfig) -> dict[str, str]:
    """The sides and the suite as the eval runs name them; the nightly settings under ``nightly.``; ``eval.*`` and
    ``arena.*`` as the pipeline run names them."""
    import json

    from harness.tracking import store

    settings = to_dict(cfg)
    sections = {k: settings.pop(k) for k in ("eval", "arena")}
    settings["min_effects"] = json.dumps(settings["min_effects"], sort_keys=True)  # keys hold commas
    return {
        "candidate": result.candidate.model, "baseline": result.baseline.model, "suite": result.suite,
        "suite_version": result.suite_version, "candidate_eval_run": result.candidate.eval_run,
        "baseline_eval_run": result.baseline.eval_run, **store.flatten(settings, "nightly."),
        **store.flatten(sections),
    }


def _log_results(run: "Run", result: NightlyResult, cfg: NightlyConfig) -> None:
    """Params, metrics and the comparison table of the nightly run."""
    import pandas as pd

    run.log_params(_params(result, cfg))
    metrics: dict[str, float] = {
        "nightly/metrics": len(result.comparisons),
        "nightly/regressions": len(result.regressions),
        "nightly/improvements": sum(c.verdict == "improvement" for c in result.comparisons),
        "nightly/pass": float(result.verdict == "pass"),
    }
    for c in result.comparisons:
        key = result.metric_key(c)
        metrics.update({key: c.candidate_mean, f"baseline/{key}": c.baseline_mean, f"delta/{key}": c.delta,
                        f"delta_ci_low/{key}": c.ci_low, f"delta_ci_high/{key}": c.ci_high,
                        f"p_value/{key}": c.p_value, f"p_adjusted/{key}": c.p_adjusted})
    if result.arena:
        metrics.update({"arena/elo_delta": result.arena.elo_delta, "arena/p_win": result.arena.p_win})
    run.log_metrics(metrics)
    if result.comparisons:
        table = pd.DataFrame([asdict(c) for c in result.comparisons])
        table.insert(0, "skill", [result.skills.get(c.task, "") for c in result.comparisons])
        run.log_table(table, "nightly/comparisons.csv")
    if result.reasons:
        run.log_text("\n".join(result.reasons) + "\n", "nightly/reasons.txt")


def _log_report_and_verdict(run: "Run", result: NightlyResult) -> None:
    """The report and, last, the verdict tag: a nightly that died before it has none, so it never counts as a pass."""
    from harness.nightly import report

    run.log_text(report.markdown(result) + "\n", "nightly/report.md")
    run.log_text(report.html_page(result), "nightly/report.html")
    cand, base = result.candidate, result.baseline
    tags = {"harness.candidate_eval_run": cand.eval_run, "harness.baseline_eval_run": base.eval_run,
            "harness.regressions": ",".join(sorted({c.task for c in result.regressions})),
            "harness.verdict": result.verdict}
    if cand.registered:
        tags["harness.candidate_version"] = "/".join(cand.registered)
    if result.promoted:
        tags["harness.promoted"] = result.promoted
    run.set_tags(tags)
