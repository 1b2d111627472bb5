"""What a nightly compares: two eval runs read back from MLflow, checked to be like with like, paired per item.

An `EvalRecord` is one eval run as `harness.evals` logged it: its params (the settings that change a score), its
``scores.csv``, lm-eval's ``lm_eval_results.json`` (task versions, higher-is-better) and its per-item
``samples/<task>.jsonl``. Both sides of a nightly are read this way, the freshly evaluated candidate as well as a
baseline taken from an earlier nightly, so MLflow stays the single record and both sides go through the same code.

`incomparable` lists why two records cannot be compared (task versions, chat template, few-shot, limit, backend,
lm-eval version, the items scored); `paired_metrics` turns two comparable records into the `PairedScores` of
`harness.nightly.stats`. `suite_version` is a short hash of what defines a suite's scores: its entries with their
settings and, for every task, lm-eval's indexed config (``metadata.version``, prompts, filters, metrics), the
bytes of the files beside it (hooks) and the content digest of the data it reads (`harness.evals.local_data`,
wherever the files live), with the folder the suite lives in left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.nightly.stats import PairedScores, align_items
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.suite import Suite
    from harness.nightly.config import NightlyConfig

# Params of an eval run that change per-item scores, and how a reason names them (task params: task.<name>.<key>).
_RUN_SETTINGS = {"backend": "backend", "backend_args": "backend arguments", "lm_eval_version": "lm-eval version"}
_TASK_SETTINGS = {"version": "task version", "num_fewshot": "few-shot", "apply_chat_template": "chat template",
                  "fewshot_as_multiturn": "few-shot as multi-turn", "limit": "item limit",
                  "data_digest": "data (content digest)", "repeats": "repeats", "gen_kwargs": "generation settings"}
_NOT_METRICS = {"doc_id", "item_id", "prompt", "target", "response"}


@dataclass
class EvalRecord:
    """One eval run, read back from MLflow."""

    run_id: str
    model: str
    model_hash: str
    suite: str
    settings: dict[str, str]
    scores: "pd.DataFrame"
    lm_eval: dict
    samples: dict[str, "pd.DataFrame"] = field(default_factory=dict)

    def metric_columns(self, task: str) -> list[str]:
        """The per-item metric keys of a task's samples, in lm-eval's order."""
        return [c for c in self.samples[task].columns if c not in _NOT_METRICS]


def load_record(run_id: str, results_dir: str | os.PathLike) -> EvalRecord:
    """Read an eval run (params, scores, lm-eval output, per-item samples) back from the MLflow store.

    Args:
        run_id: the eval run.
        results_dir: results folder of the store (or ``MLFLOW_TRACKING_URI``).

    Returns:
        The `EvalRecord`.

    Raises:
        HarnessError: no such run, or not an eval run with per-item samples.
    """
    from harness.tracking import store

    run = store.read_run(run_id, results_dir)
    tags = run["schema"]
    if tags.kind != schema.Kind.EVAL:
        raise HarnessError(f"run {run_id} is not an eval run (kind {tags.kind!r})")
    if run["status"] != "FINISHED":
        raise HarnessError(f"eval run {run_id} is {run['status']}, not FINISHED: its per-item scores are incomplete")
    params = store.run_params(run_id, results_dir)
    settings = {}
    for name, value in params.items():
        task_setting = schema.parse_task_param(name)
        if name in _RUN_SETTINGS or (task_setting and task_setting[1] in _TASK_SETTINGS):
            settings[name] = value
    lm_eval = store.read(run_id, schema.LM_EVAL_RESULTS, results_dir)
    samples = {}
    for task in lm_eval.get("n-samples") or {}:
        table = store.read(run_id, schema.samples(task), results_dir)
        table["item_id"] = table["item_id"].astype(str)
        samples[task] = table
    return EvalRecord(run_id=run_id, model=tags.model or params.get("model", ""),
                      model_hash=tags.model_hash or params.get("model_hash", ""),
                      suite=tags.suite or params.get("suite", ""), settings=settings,
                      scores=store.read(run_id, schema.SCORES, results_dir), lm_eval=lm_eval, samples=samples)


def suite_version(spec: "Suite") -> str:
    """A 12-hex-digit hash of what defines the suite's scores (see the module docstring)."""
    from harness.evals import cache, local_data
    from harness.evals import suite as suites

    tm = suites.task_manager(spec)
    root = local_data.data_dir(spec.data_dir)
    data = {e.task: {task: source.digest for task, source in
                     local_data.sources(tm, e.task, root=root, entry_data=e.data).items()} for e in spec.entries}
    material = {
        "entries": [e.settings() | {"skill": e.skill, "task": e.task, "metric": e.metric} for e in spec.entries],
        "tasks": {e.task: cache.task_material(tm, e.task) for e in spec.entries},
        "data": data,  # the content digest of every file a task reads, wherever it lives
    }
    text = json.dumps(material, sort_keys=True)
    for folder in spec.task_paths:  # the same suite copied elsewhere is the same suite
        text = text.replace(json.dumps(str(folder))[1:-1], "<suite>")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _describe(key: str) -> str:
    if key in _RUN_SETTINGS:
        return _RUN_SETTINGS[key]
    task, name = schema.parse_task_param(key)
    return f"{_TASK_SETTINGS.get(name, name)} of task {task}"


def incomparable(candidate: EvalRecord, baseline: EvalRecord) -> list[str]:
    """Why the two records cannot be compared item by item; empty when they can.

    Args:
        candidate: the candidate's eval record.
        baseline: the baseline's eval record.

    Returns:
        One sentence per difference: suite, tasks, task versions, chat template, few-shot, item limit, backend,
        lm-eval version, or the items scored.
    """
    reasons = []
    if candidate.suite != baseline.suite:
        reasons.append(f"suite {candidate.suite!r} (candidate) vs {baseline.suite!r} (baseline)")
    only_c = sorted(set(candidate.samples) - set(baseline.samples))
    only_b = sorted(set(baseline.samples) - set(candidate.samples))
    if only_c:
        reasons.append(f"tasks scored only for the candidate: {', '.join(only_c)}")
    if only_b:
        reasons.append(f"tasks scored only for the baseline: {', '.join(only_b)}")
    one_sided = set(only_c) | set(only_b)
    for key in sorted(set(candidate.settings) | set(baseline.settings)):
        if key.startswith("task.") and schema.parse_task_param(key)[0] in one_sided:
            continue  # already named as a task only one side scored
        a, b = candidate.settings.get(key, "(none)"), baseline.settings.get(key, "(none)")
        if a != b:
            reasons.append(f"{_describe(key)}: {a} (candidate) vs {b} (baseline)")
    for task in sorted(set(candidate.samples) & set(baseline.samples)):
        c_ids, b_ids = set(candidate.samples[task]["item_id"]), set(baseline.samples[task]["item_id"])
        if c_ids != b_ids:
            reasons.append(f"task {task}: different items scored ({len(c_ids - b_ids)} only for the candidate, "
                           f"{len(b_ids - c_ids)} only for the baseline)")
    return reasons


def _leaves(lm_eval: dict, task: str) -> list[str]:
    subtasks = (lm_eval.get("group_subtasks") or {}).get(task) or []
    return [leaf for sub in subtasks for leaf in _leaves(lm_eval, sub)] if subtasks else [task]


def headline_metrics(spec: "Suite", record: EvalRecord) -> dict[str, str]:
    """Each scored task → its headline metric: the suite entry's ``metric``, else the task's first metric."""
    out = {}
    for entry in spec.entries:
        for leaf in _leaves(record.lm_eval, entry.task):
            if leaf in record.samples:
                columns = record.metric_columns(leaf)
                if entry.metric and entry.metric not in columns:
                    raise HarnessError(f"task {leaf!r} has no per-item metric {entry.metric!r} (the suite's "
                                       f"headline); it has {', '.join(columns)}")
                if columns:
                    out[leaf] = entry.metric or columns[0]
    return out


def min_effect_for(cfg: "NightlyConfig", task: str, metric: str) -> float:
    """The minimum effect of one metric: ``min_effects['task/metric']``, else ``min_effects[metric]``, else the
    default ``min_effect``."""
    for key in (f"{task}/{metric}", metric):
        if key in cfg.min_effects:
            return float(cfg.min_effects[key])
    return float(cfg.min_effect)


def _item_key(*tables: "pd.DataFrame") -> str:
    """Pair by the dataset's own item id when it is unique, else by lm-eval's doc index."""
    return "item_id" if all(t["item_id"].is_unique for t in tables) else "doc_id"


def paired_metrics(spec: "Suite", candidate: EvalRecord, baseline: EvalRecord, cfg: "NightlyConfig"
                   ) -> list[PairedScores]:
    """The per-item scores of both models for every compared metric, paired by item id, in suite order.

    Args:
        spec: the suite (its headline metrics).
        candidate: the candidate's record.
        baseline: the baseline's record; `incomparable` must have found no difference.
        cfg: which metrics (headline or all), minimum effects.

    Returns:
        One `PairedScores` per (task, metric). Items whose score is missing on either side are left out.

    Raises:
        HarnessError: a ``min_effects`` key that names no compared metric, or nothing to compare.
    """
    headline = headline_metrics(spec, candidate)
    pairs, names = [], set()
    for task in headline:
        if task not in baseline.samples:
            continue
        shared = [m for m in candidate.metric_columns(task) if m in baseline.samples[task].columns]
        metrics = shared if cfg.metrics == "all" else [headline[task]]
        higher = (candidate.lm_eval.get("higher_is_better") or {}).get(task) or {}
        for metric in metrics:
            names.update({f"{task}/{metric}", metric})
            key = _item_key(candidate.samples[task], baseline.samples[task])
            c = candidate.samples[task].set_index(key)[metric]
            b = baseline.samples[task].set_index(key)[metric]
            keep = [i for i in c.index if i in b.index and math.isfinite(c[i]) and math.isfinite(b[i])]
            if not keep:
                continue
            cand, base = align_items(c.loc[keep], b.loc[keep], task=task)
            pairs.append(PairedScores(task=task, metric=metric, candidate=cand, baseline=base,
                                      higher_is_better=bool(higher.get(metric.partition(",")[0], True)),
                                      min_effect=min_effect_for(cfg, task, metric)))
    unknown = sorted(set(cfg.min_effects) - names)
    if unknown:
        raise HarnessError(f"min_effects names no compared metric: {', '.join(unknown)}; compared: "
                           f"{', '.join(sorted(n for n in names if '/' in n))}")
    if not pairs:
        raise HarnessError(f"suite {spec.name!r}: no per-item scores to compare")
    return pairs


def scored_items(record: EvalRecord, task: str, metric: str) -> "pd.DataFrame":
    """``item_id, prompt, target, response, score`` of one task and metric (for the report's examples)."""
    table = record.samples[task]
    return table[["item_id", "prompt", "target", "response", metric]].rename(columns={metric: "score"})
