"""The MLflow record of one suite evaluation: one run per (checkpoint, suite), built from a `SuiteResult`.

- tags (`harness.tracking.schema.RunTags`): kind ``eval``, ``stage``, ``model``, ``model_hash``, ``suite``,
  ``cached_tasks``, the provenance tags (git commit and dirty flag, package versions, device) and the
  reproducibility fingerprint ``fingerprint.<field>`` (`harness.evals.fingerprint`);
- params: everything that changes a score: backend and its arguments, batch size, device, limit, lm-eval and
  transformers versions, and per task its skill, few-shot count, chat-template setting, limit and version;
- metrics: ``<skill>/<task>/<metric>/<filter>`` and ``..._stderr`` (lm-eval's keys through the one sanitiser in
  `harness.tracking.store`; "N/A" is never logged), ``<skill>/score`` and ``overall/score`` with ``_stderr``;
- MLflow 3 links: the checkpoint's LoggedModel as the run's model input (the train stage's, found by content hash,
  or a new one for an external checkpoint), each task's data as a dataset input (context ``eval``), and every
  metric linked to the model (its ``model_id``), task metrics also to their task's dataset;
- artifacts: ``lm_eval_results.json`` (lm-eval's output without samples), ``scores.csv``, ``skills.csv``,
  ``samples/<task>.jsonl`` (one row per item) and the suite file.

A server that stops answering while the run is logged: the same record goes to the outbox
(`harness.tracking.outbox`), for ``harness sync``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.config import EvalConfig
from harness.evals import backends
from harness.evals.result import SuiteResult
from harness.evals.suite import Suite
from harness.tracking import schema

if TYPE_CHECKING:
    from harness.tracking import outbox
    from harness.tracking.store import Run


def _params(result: SuiteResult, spec: Suite, cfg: EvalConfig, model_hash: str, lm_name: str,
            lm_args: dict) -> dict[str, Any]:
    from importlib import metadata

    params: dict[str, Any] = {
        "model": result.model,
        "model_hash": model_hash,
        "suite": spec.name,
        "suite_file": str(spec.path),
        "backend": lm_name,
        "backend_args": json.dumps({k: v for k, v in lm_args.items() if k not in {"pretrained", "model"}}),
        "batch_size": cfg.batch_size,
        "device": backends.extra_arguments(cfg)["device"] if lm_name == "hf" else cfg.device,
        "limit": cfg.limit,
        "bootstrap_iters": cfg.bootstrap_iters,
        "lm_eval_version": metadata.version("lm_eval"),
        "transformers_version": metadata.version("transformers"),
    }
    n_shot = result.lm_eval.get("n-shot", {})
    for entry in spec.entries:
        params[schema.task_param(entry.task, "skill")] = entry.skill
        params[schema.task_param(entry.task, "apply_chat_template")] = entry.apply_chat_template
        params[schema.task_param(entry.task, "fewshot_as_multiturn")] = entry.fewshot_as_multiturn
        params[schema.task_param(entry.task, "limit")] = entry.limit if entry.limit is not None else cfg.limit
        params[schema.task_param(entry.task, "num_fewshot")] = n_shot.get(entry.task, entry.num_fewshot)
        if entry.gen_kwargs:
            params[schema.task_param(entry.task, "gen_kwargs")] = json.dumps(entry.gen_kwargs, sort_keys=True)
        if entry.repeats > 1:
            params[schema.task_param(entry.task, "repeats")] = entry.repeats
            params[schema.task_param(entry.task, "pass_at")] = ",".join(map(str, entry.pass_at))
    for task, version in result.lm_eval.get("versions", {}).items():
        params[schema.task_param(task, "version")] = version
    for task, source in result.sources.items():
        params[schema.task_param(task, "data_source")] = source
        params[schema.task_param(task, "data_digest")] = result.digests.get(task, "")
    return params


def _task_metrics(result: SuiteResult) -> dict[str, dict[str, float]]:
    """Each task's metrics (and their standard errors), by task."""
    metrics: dict[str, dict[str, float]] = {}
    for row in result.scores.itertuples():
        task = metrics.setdefault(row.task, {})
        task[schema.task_metric(row.skill, row.task, row.metric)] = row.value
        if math.isfinite(row.stderr):
            task[schema.task_stderr(row.skill, row.task, row.metric)] = row.stderr
    return metrics


def _skill_metrics(result: SuiteResult) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for row in result.skills.itertuples():
        metrics[schema.skill_metric(row.skill)] = row.value
        metrics[schema.skill_stderr(row.skill)] = row.stderr
    return metrics


@lru_cache(maxsize=1)
def _provenance() -> tuple[tuple[str, str], ...]:
    """Git commit and dirty flag, package versions, device: read once per process (the code that runs is the code
    that was imported), not once per evaluated checkpoint."""
    from harness import provenance

    return tuple(provenance.tags().items())


def record(result: SuiteResult, spec: Suite, cfg: EvalConfig, model_hash: str, lm_name: str, lm_args: dict,
           parent: Run | None, results_dir: str | os.PathLike, experiment: str,
           datasets: Sequence[schema.TaskData] = (), *, params: Mapping[str, Any] | None = None,
           tags: Mapping[str, str] | None = None, fingerprint: Mapping[str, str] | None = None,
           metrics: Mapping[str, float] | None = None) -> str:
    """Log `result` as one MLflow run (nested under `parent` if given), linked to the checkpoint's LoggedModel and
    to `datasets` (the data of each task), and return its id.

    `params` are logged over the ones derived here and `tags` beside them: what an imported lm-eval run says of
    itself (its lm-eval version, batch size, results file) rather than this process's settings. `fingerprint`
    (`harness.evals.fingerprint`: where the scores were computed) is tagged ``fingerprint.<field>``. `metrics` are
    logged beside the scores, linked to the model (the thinking accounting, `harness.evals.run.thinking_metrics`).

    If the tracking server stops answering, the same record is kept in ``<results>/outbox/`` and
    `ServerUnreachable` names it (`harness.tracking.outbox`; ``harness sync`` records it later).
    """
    from harness.tracking import outbox, store

    budget = schema.RunTags.from_tags(tags or {}).budget  # a budget-forced run: on a curve, not a stage's run
    tags = {**dict(_provenance()), **schema.tags(model=result.model, model_hash=model_hash, suite=spec.name,
                                                   cached_tasks=result.cached,
                                                   stage=result.label or None if budget is None else None,
                                                   curve=result.label or None if budget is not None else None),
            **schema.fingerprint_tags(fingerprint or {}), **(tags or {})}
    label = result.label or Path(result.model.rstrip("/")).name
    name = schema.eval_run_name(label, spec.name, budget)
    params = {**_params(result, spec, cfg, model_hash, lm_name, lm_args), **(params or {})}

    def keep(entry: outbox.Entry) -> None:  # the server gone mid-record: the same record, kept for `harness sync`
        _log(entry, entry.eval_model, result, spec, model_hash, label, params, datasets, metrics)

    with outbox.run(name, schema.Kind.EVAL, experiment=experiment, results_dir=results_dir, parent=parent,
                    tags=tags, keep=keep) as run:
        _log(run, partial(store.eval_model, run), result, spec, model_hash, label, params, datasets, metrics)
        return run.run_id


def _log(run: Run | outbox.Entry, eval_model, result: SuiteResult, spec: Suite, model_hash: str, label: str,
         params: Mapping[str, Any], datasets: Sequence[schema.TaskData],
         extra: Mapping[str, float] | None = None) -> None:
    """Write the record into `run`: an MLflow run, or an outbox entry (`eval_model` links the checkpoint's
    LoggedModel: `store.eval_model` on that run, or the entry's own)."""
    run.log_params(params)
    model_id = eval_model(model=result.model, model_hash=model_hash, name=label, stage=result.label or None)
    run.log_datasets(datasets, schema.EVAL_CONTEXT)
    by_task = {d.name: d for d in datasets}
    for task, metrics in _task_metrics(result).items():
        run.log_metrics(metrics, model_id=model_id, dataset=by_task.get(schema.dataset_name(task)))
    run.log_metrics(_skill_metrics(result), model_id=model_id)
    if extra:
        run.log_metrics(dict(extra), model_id=model_id)
    with tempfile.TemporaryDirectory() as tmp:  # every file first, then one upload: fewer store round trips
        folder = Path(tmp)
        (folder / schema.LM_EVAL_RESULTS.path).write_text(json.dumps(result.lm_eval, indent=2, default=str))
        (folder / schema.SUITE_FOLDER).mkdir()
        shutil.copy(spec.path, folder / schema.SUITE_FOLDER / spec.path.name)
        result.scores.to_csv(folder / schema.SCORES.path, index=False)
        result.skills.to_csv(folder / schema.SKILLS.path, index=False)
        for task, table in result.samples.items():
            path = folder / schema.samples(task).path
            path.parent.mkdir(exist_ok=True)
            table.to_json(path, orient="records", lines=True, force_ascii=False)
        run.log_artifact(folder)
