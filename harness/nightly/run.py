"""`run_nightly`: evaluate a candidate, compare it per item with a baseline, and record the verdict in MLflow.

The recipe, in order:

1. load the suite, check the ``min_effects`` keys against its metrics and hash its version; resolve both sides
   (`harness.nightly.sides`; a checkpoint against itself, by spec, registered version or content hash, is refused
   unless this is an A/A check) and, with ``--promote``, the version to promote, so that bad input fails before
   any model work;
2. open one MLflow run (tags ``harness.kind=nightly``, ``harness.suite``, ``harness.suite_version``,
   ``harness.candidate``, ``harness.baseline``); evaluate the candidate and the baseline as nested eval runs
   (cached by checkpoint hash, so an unchanged baseline costs no model work), unless a side is already an eval run
   (the last passing nightly's, or one given as ``run:<id>``, e.g. imported from lm-eval); with ``--ray`` the
   sides' suite entries are computed on a Ray cluster first (`harness.evals.sweep`), then recorded the same way;
3. read both eval runs back (`harness.nightly.records`); if they differ in what changes a score, the verdict is
   ``cannot-compare`` with the reasons; else compare every metric per item (`harness.nightly.stats`) with
   Holm or Benjamini-Hochberg control across all of them: ``fail`` when any metric dropped significantly by at
   least its minimum effect, else ``pass``; each metric also reports the share of items the sides score
   differently and its minimum detectable effect (`harness.nightly.power`), and the verdict names the
   reproducibility fingerprint fields on which the sides were computed differently (`harness.evals.fingerprint`:
   backend, dtype, batch size, chat template, library versions, hardware); when a pipeline here trained the
   candidate and its training data contaminates eval tasks (`harness.evals.decontam`), the report lists them;
4. with ``arena.enabled``, an arena of candidate against baseline (Elo delta, win probability);
5. the trend of every metric over the last nightlies of the same suite version (`harness.nightly.history`);
6. log metrics named as the eval runs name them (``<skill>/<task>/<metric>`` for the candidate, plus
   ``baseline/``, ``delta/``, ``p_adjusted/`` ...), the report (Markdown and a self-contained HTML page) and the
   verdict tag; with ``--promote`` and a pass, point the alias at the candidate's version. A tracking server that
   goes away meanwhile: the nightly's record is kept in the outbox for ``harness sync`` (`harness.tracking.outbox`).

An A/A nightly (``aa``, ``harness nightly --aa``) is the drift alarm: its candidate is the baseline's own
checkpoint, evaluated again with the eval cache bypassed (read nothing, write the fresh output) after the baseline
was read as recorded (from the eval cache, or its eval run); with ``--ray`` the fresh evaluation runs on the cluster,
its workers reading no cache either. Infrastructure drift is any metric whose paired
difference is significant after the correction, or on which more than ``drift_tolerance`` of the items changed
score (`harness.nightly.stats.drift`); it is tagged ``harness.drift``, logged as ``nightly/drift`` and is the
verdict ``fail``, with the fingerprint differences as the likely cause.

Exit codes (`NightlyResult.exit_code`): 0 pass, 1 regression (or drift), 2 cannot compare (and 2 for bad input).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness import console
from harness.errors import HarnessError
from harness.nightly import history, records, sides
from harness.config_base import to_dict
from harness.nightly.config import NightlyConfig
from harness.nightly.result import ArenaSummary, NightlyResult
from harness.nightly.stats import Comparison, compare_suite, drift, overall_verdict
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.tracking import outbox
    from harness.tracking.store import Run

EXAMPLES = 3  # regressed items shown per regressed metric


def run_nightly(candidate: str | None, baseline: str | None, cfg: NightlyConfig, *, promote: bool = False,
                out: TextIO | None = None, ray: str | None = None, aa: bool = False) -> NightlyResult:
    """Run one nightly (see the module docstring) and record it in MLflow.

    Args:
        candidate: the checkpoint to judge: folder, hub id, MLflow URI or alias; with `aa`, None (the baseline's
            checkpoint) or the same checkpoint as the baseline.
        baseline: an alias, a model or ``last-pass``; None takes ``cfg.baseline``.
        cfg: the nightly configuration.
        promote: on a pass, point ``cfg.alias`` of ``cfg.registered_model`` at the candidate's version.
        out: where progress lines go (default stderr).
        ray: a Ray cluster's ``HOST:PORT``: both sides' suite entries are computed there first
            (`harness.evals.sweep`), then evaluated (from the cache) and recorded here as without it.
        aa: an A/A check (see the module docstring): the baseline's checkpoint evaluated again, cache bypassed,
            against its recorded scores (with `ray`, computed again on the cluster); drift is the verdict ``fail``.

    Returns:
        The `NightlyResult` (its `exit_code` is the command's).

    Raises:
        HarnessError: bad input (suite, models, config); nothing is evaluated when the sides do not resolve.
    """
    from harness import provenance
    from harness.evals import suite as suites
    from harness.tracking import outbox, store

    out = out or console.stream()
    results = Path(cfg.results).resolve()
    spec = suites.load(cfg.suite)
    suites.check_tasks(spec)
    records.check_min_effects(spec, cfg)  # a min_effects key naming no metric: before any model work
    version = records.suite_version(spec)
    where = {"registered_model": cfg.registered_model, "suite": spec.name, "experiment": cfg.experiment,
             "results_dir": results}
    if aa and promote:
        raise HarnessError("--aa checks the baseline against itself: --promote does not apply (an A/A check promotes "
                           "nothing)")
    if candidate is None and not aa:
        raise HarnessError("--candidate is required: the checkpoint to judge (or --aa, to check the baseline "
                           "against itself)")
    base = sides.resolve(baseline or cfg.baseline, role="baseline", suite_version=version, **where)
    cand = sides.resolve(candidate, role="candidate", **where) if candidate else base
    if aa:
        cand = sides.again(cand)
    promote_to = sides.promotion_version(cand, cfg.registered_model, results) if promote else None
    sides.check_distinct(cand, base, results, aa=aa, promote=promote)  # a checkpoint against itself: only A/A

    tags = {**provenance.tags(cfg.seed), **schema.tags(suite=spec.name, suite_version=version, candidate=cand.model,
                                                      baseline=base.model, aa="true" if aa else None)}
    kept: list[NightlyResult] = []  # the result once computed: if the server goes away, kept in the outbox
    with outbox.run(schema.nightly_run_name(spec.name, cand.label), schema.Kind.NIGHTLY, experiment=cfg.experiment,
                    results_dir=results, tags=tags, keep=lambda entry: _keep(entry, kept, cfg)) as run:
        run.write(schema.NIGHTLY_CONFIG, to_dict(cfg))
        result = NightlyResult(verdict="cannot-compare", suite=spec.name, suite_version=version, candidate=cand,
                               baseline=base, correction=cfg.correction, alpha=cfg.alpha, run_id=run.run_id, aa=aa,
                               drift_tolerance=cfg.drift_tolerance, power=cfg.power)
        print(f"nightly {spec.name} (version {version}): candidate {cand.label}, baseline {base.label}",
              file=out, flush=True)
        if aa and base.eval_run is None:  # the recorded scores first: the fresh eval replaces them in the cache
            if ray:
                _sweep([base], cfg, results, ray)  # computes only what the cache lacks
            base.eval_run = _evaluate(base, cfg, run, results, swept=bool(ray))
        if ray:
            _sweep([side for side in (cand, base) if side.eval_run is None], cfg, results, ray, fresh=aa)
        if cand.eval_run is None:  # else an eval run given as run:<id>
            cand.eval_run = _evaluate(cand, cfg, run, results, swept=bool(ray), fresh=aa)
        if base.eval_run is None:
            base.eval_run = _evaluate(base, cfg, run, results, swept=bool(ray))
        c_rec = records.load_record(cand.eval_run, results)
        b_rec = records.load_record(base.eval_run, results)
        result.skills = dict(zip(c_rec.scores.task, c_rec.scores.skill))
        result.fingerprint = records.fingerprint_differences(c_rec, b_rec)
        result.contamination_run, result.contamination = _contamination(c_rec, cfg, results)
        if base.suite_version and base.suite_version != version:
            result.reasons.append(f"the last passing nightly ({base.nightly_run}) ran suite version "
                                  f"{base.suite_version}, this one runs {version}")
        result.reasons += records.incomparable(c_rec, b_rec)
        if not result.reasons:
            pairs = records.paired_metrics(spec, c_rec, b_rec, cfg)
            result.comparisons = compare_suite(pairs, correction=cfg.correction, alpha=cfg.alpha,
                                               rounds=cfg.rounds, seed=cfg.seed, power=cfg.power)
            result.verdict = overall_verdict(result.comparisons)
            if aa:
                result.drift = drift(result.comparisons, alpha=cfg.alpha, tolerance=cfg.drift_tolerance)
                result.verdict = "fail" if result.drift else "pass"
            result.examples = _examples(result.regressions, c_rec, b_rec)
            if cfg.arena.enabled and not aa:  # an arena of a checkpoint against itself measures its judge only
                result.arena = _arena(cand, base, cfg, run, results, out)
        result.trend = history.trend(result, results_dir=results, experiment=cfg.experiment, last=cfg.history)
        kept.append(result)
        _log_results(run, result, cfg)
        if promote_to and result.verdict == "pass":
            store.set_alias(run.uri, cfg.registered_model, cfg.alias, promote_to)
            result.promoted = f"models:/{cfg.registered_model}@{cfg.alias} → version {promote_to}"
            # Read back: a nightly promoting at the same moment may have moved it since (the last one wins), so each
            # run records what it did and what it found.
            now = store.model_aliases(cfg.registered_model, results).get(cfg.alias)
            if now != promote_to:
                result.promoted += f" (then moved to version {now} by another promotion)"
            run.set_tags(schema.tags(promoted_version=promote_to, promotion_held=str(now == promote_to).lower()))
        _log_report_and_verdict(run, result)
    return result


def _keep(entry: "outbox.Entry", kept: list[NightlyResult], cfg: NightlyConfig) -> None:
    """The nightly's record, written into an outbox entry (the server went away while it was logged): nothing
    until the comparison is done. The report names the entry, as the run it was logged in is gone."""
    if kept:
        result = replace(kept[0], run_id=f"(outbox entry {entry.id})")
        entry.write(schema.NIGHTLY_CONFIG, to_dict(cfg))
        _log_results(entry, result, cfg)
        _log_report_and_verdict(entry, result)


def _sweep(todo: list[sides.Side], cfg: NightlyConfig, results: Path, address: str, fresh: bool = False) -> None:
    """The sides' suite entries computed on the Ray cluster at `address`, into the eval cache; `fresh`: every entry
    computed again, the cache neither read nor kept by the workers' request caches (the outputs replace the
    entries)."""
    from harness.evals import sweep

    if todo:
        settings = replace(cfg.eval, cache=False) if fresh else cfg.eval
        sweep.compute([side.model for side in todo], cfg.suite, cfg=settings, resources=cfg.sweep,
                      results_dir=results, address=address, trust_remote_code=cfg.trust_remote_code,
                      threads=cfg.threads)


def _evaluate(side: sides.Side, cfg: NightlyConfig, run: "Run", results: Path, swept: bool = False,
              fresh: bool = False) -> str:
    """Evaluate one side as an eval run nested under the nightly's; `fresh`: read no cache (the output computed
    now replaces the eval cache's entry, `harness.evals.cache`); `swept`: every entry is in the eval cache already
    (computed again there by a fresh sweep), so it is read."""
    from harness.evals import evaluate

    settings = cfg.eval
    if swept or fresh:
        settings = replace(cfg.eval, cache=swept or not fresh)
    evaluated = evaluate(side.model, cfg.suite, cfg=settings, results_dir=results, parent=run,
                         experiment=cfg.experiment, trust_remote_code=cfg.trust_remote_code, budget=cfg.budget)
    return evaluated.run_id


def _contamination(cand: records.EvalRecord, cfg: NightlyConfig, results: Path):
    """``(pipeline run, its decontamination)`` when the candidate was trained by a pipeline here whose training
    data contaminates some eval task (`harness.evals.decontam`); else ``(None, None)``."""
    from harness.evals.decontam import read_report
    from harness.tracking import store

    pipeline = store.trained_by(cand.model_hash, cfg.experiment, results) if cand.model_hash else None
    recorded = read_report(pipeline, results) if pipeline else None
    return (pipeline, recorded) if recorded is not None and recorded.flagged else (None, None)


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
        console.warn(f"arena skipped: {err}")
        return None
    arena_cfg = replace(cfg.arena, baseline="baseline", mode="baseline")
    arena = run_arena(models, cfg=arena_cfg, results_dir=results, parent=run, seed=cfg.seed,
                      experiment=cfg.experiment, run_name=schema.NIGHTLY_ARENA_RUN_NAME, out=out,
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
    counts = schema.NIGHTLY_COUNTS
    metrics: dict[str, float] = {
        counts["metrics"]: len(result.comparisons),
        counts["regressions"]: len(result.regressions),
        counts["improvements"]: sum(c.verdict == "improvement" for c in result.comparisons),
        counts["pass"]: float(result.verdict == "pass"),
    }
    if result.aa:
        metrics.update({counts["drift"]: float(bool(result.drift)), counts["drifted"]: len(result.drift)})
    for c in result.comparisons:
        key = result.metric_key(c)
        metrics[key] = c.candidate_mean
        values = (c.baseline_mean, c.delta, c.ci_low, c.ci_high, c.p_value, c.p_adjusted, c.mde, c.discordant,
                  c.discordant_ci_low, c.discordant_ci_high)
        metrics.update({schema.nightly_metric(prefix, key): v for prefix, v in zip(schema.NIGHTLY_PREFIXES, values)})
    if result.arena:
        metrics.update({"arena/elo_delta": result.arena.elo_delta, "arena/p_win": result.arena.p_win})
    run.log_metrics(metrics)
    if result.comparisons:
        table = pd.DataFrame([asdict(c) for c in result.comparisons])
        table.insert(0, "skill", [result.skills.get(c.task, "") for c in result.comparisons])
        run.write(schema.NIGHTLY_COMPARISONS, table)
    if result.reasons:
        run.write(schema.NIGHTLY_REASONS, "\n".join(result.reasons) + "\n")


def _log_report_and_verdict(run: "Run", result: NightlyResult) -> None:
    """The report and, last, the verdict tag: a nightly that died before it has none, so it never counts as a pass."""
    from harness.report import nightly as report

    run.write(schema.NIGHTLY_REPORT_MD, report.markdown(result) + "\n")
    run.write(schema.NIGHTLY_REPORT_HTML, report.html_page(result))
    cand, base = result.candidate, result.baseline
    run.set_tags(schema.tags(candidate_eval_run=cand.eval_run, baseline_eval_run=base.eval_run,
                             regressions=sorted({c.task for c in result.regressions}), verdict=result.verdict,
                             candidate_version="/".join(cand.registered) if cand.registered else None,
                             promoted=result.promoted,
                             drift=str(bool(result.drift)).lower() if result.aa and result.comparisons else None))
