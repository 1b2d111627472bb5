"""`harness run --resume`: what a stopped pipeline already finished, so that it continues under its own parent run.

The pipeline to continue is the newest pipeline run of the experiment named ``run.name`` that did not finish
(KILLED, FAILED; one left RUNNING by a dead process is ended KILLED first, by every command's reaper). Its config
(the ``config.yaml`` artifact) must equal the one given now: resuming with other settings would mix two
experiments under one run, so a difference is one line naming the keys.

A stage is done when its train run under that parent FINISHED and its checkpoint folder still holds the bytes it
recorded (content hash); its eval is done when an eval run of that stage under the parent FINISHED. Done work is
read back from the record, not redone. The first stage that is not done and everything after it run as usual (a
stage cut short mid-training starts that stage over; its KILLED train run stays in the record beside the new one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError
from harness.tracking import schema, store


@dataclass
class Finished:
    """What the stopped pipeline run `run_id` already finished."""

    run_id: str
    stages: dict = field(default_factory=dict)  # stage → its `harness.runner.StageRecord` fields
    evals: dict = field(default_factory=dict)  # stage → evals.SuiteResult
    resumed: int = 1  # how many times this pipeline has been resumed, this time included


def find(cfg, stages: Sequence[str]) -> Finished:
    """The newest unfinished pipeline run of ``cfg.run.name`` and what it finished of `stages` (the enabled ones,
    in pipeline order); `HarnessError` when there is none to continue or its config differs."""
    results = Path(cfg.run.results).resolve()
    runs = store.find_runs(cfg.run.experiment, schema.Kind.PIPELINE, results, finished=False,
                           extra=schema.where_name(schema.run_name(cfg.run.name)))
    where = f"experiment {cfg.run.experiment!r} of {store.tracking_uri(results)}"
    if runs.empty:
        raise HarnessError(f"--resume: no pipeline run named {cfg.run.name!r} in {where}; run without --resume")
    newest = runs.iloc[0]
    if newest["status"] == "FINISHED":
        raise HarnessError(f"--resume: the newest pipeline run {cfg.run.name!r} ({newest['run_id']}) in {where} "
                           "FINISHED: nothing to resume; run without --resume for a new one")
    if newest["status"] == "RUNNING":
        tags = schema.RunTags.from_row(newest)
        raise HarnessError(f"--resume: pipeline run {newest['run_id']} is still RUNNING (process {tags.pid} on "
                           f"{tags.host}); stop it first")
    run_id = str(newest["run_id"])
    _same_config(run_id, cfg, results)
    done = Finished(run_id, resumed=int(schema.RunTags.from_row(newest).resumed or 0) + 1)
    done.stages = _stages(run_id, cfg, results, stages)
    done.evals = _evals(run_id, cfg, results, set(done.stages))
    return done


def _same_config(run_id: str, cfg, results: Path) -> None:
    from harness.config import to_dict

    before = store.flatten(store.read(run_id, schema.CONFIG, results) or {})
    now = store.flatten(to_dict(cfg))
    differ = sorted(k for k in set(before) | set(now) if str(before.get(k)) != str(now.get(k)))
    if differ:
        shown = ", ".join(f"{k} ({before.get(k)!r} → {now.get(k)!r})" for k in differ[:5])
        raise HarnessError(f"--resume: the config differs from pipeline run {run_id}'s in {len(differ)} key(s): "
                           f"{shown}; resume with the same config, or run without --resume")


def _stages(run_id: str, cfg, results: Path, stages: Sequence[str]) -> dict:
    """The stages whose train run under `run_id` FINISHED and whose checkpoint is intact, in pipeline order,
    stopping at the first one that is not (a later stage trained from an earlier one that is redone is redone)."""
    from harness.models.load import content_hash

    trained = store.find_runs(cfg.run.experiment, schema.Kind.TRAIN, results, extra=schema.where_parent(run_id))
    by_stage = {}
    for _, row in trained.iterrows():  # newest first: the newest FINISHED run of each stage
        by_stage.setdefault(schema.RunTags.from_row(row).stage, row)
    records = {}
    for stage in stages:
        row = by_stage.get(stage)
        if row is None:
            break
        tags = schema.RunTags.from_row(row)
        folder = Path(tags.checkpoint or "")
        if not folder.is_dir() or not _intact(folder, tags, content_hash, results):
            break

        def cost(key: str) -> float:  # the stage's cost metrics, in its search row
            value = row.get(f"metrics.{schema.COST[key]}")
            return 0.0 if value is None or value != value else float(value)

        records[stage] = {"stage": stage, "checkpoint": str(folder), "tokens": int(cost("tokens")),
                          "seconds": cost("seconds"), "cost_usd": cost("usd"), "flops": cost("flops"),
                          "run_id": str(row["run_id"])}
    return records


def _intact(folder: Path, tags: schema.RunTags, content_hash, results: Path) -> bool:
    """Whether the checkpoint folder still holds what its train run recorded (its LoggedModel's content hash)."""
    if not tags.logged_model:
        return False
    recorded = store.logged_model_hash(tags.logged_model, results)
    return recorded is not None and recorded == content_hash(str(folder))


def _evals(run_id: str, cfg, results: Path, stages: set[str]) -> dict:
    """The FINISHED eval runs of done stages under `run_id`, read back as `SuiteResult`s."""
    from harness.evals.result import SuiteResult

    found = store.find_runs(cfg.run.experiment, schema.Kind.EVAL, results, extra=schema.where_parent(run_id))
    evals = {}
    for _, row in found.iterrows():
        tags = schema.RunTags.from_row(row)
        if tags.stage not in stages or tags.stage in evals or tags.suite != _suite_name(cfg):
            continue
        rid = str(row["run_id"])
        evals[tags.stage] = SuiteResult(
            model=tags.model or "", suite=tags.suite or "", label=tags.stage, run_id=rid,
            scores=store.read(rid, schema.SCORES, results), skills=store.read(rid, schema.SKILLS, results),
            lm_eval=store.read(rid, schema.LM_EVAL_RESULTS, results), cached=list(tags.cached_tasks))
    return evals


def _suite_name(cfg) -> str:
    from harness.evals import suite as suites

    return suites.load(cfg.eval.suite).name
