"""What a nightly compares: two eval runs read back from MLflow, checked to be like with like, paired per item.

An `EvalRecord` is one eval run as `harness.evals` logged it: its params (the settings that change a score), its
``scores.csv``, lm-eval's ``lm_eval_results.json`` (task versions, higher-is-better) and its per-item
``samples/<task>.jsonl``. Both sides of a nightly are read this way, the freshly evaluated candidate as well as a
baseline taken from an earlier nightly, so MLflow stays the single record and both sides go through the same code.

`fingerprint_differences` names what differed where the two sides were computed (backend and engine version,
dtype, batch size, chat template, library versions, hardware): a warning in the verdict, not a refusal.
`incomparable` lists why two records cannot be compared (task versions, chat template, few-shot, limit, backend,
lm-eval version, the items scored and their content); `paired_metrics` turns two comparable records into the
`PairedScores` of `harness.nightly.stats`: every scored task's metric, items paired by document identity, and every
group of the suite (an entry that is an lm-eval group, or a group inside one) on its own aggregate, its subtasks'
items pooled, all in one family for the multiple-comparison control (`harness.nightly.pairing` says how items pair
and pool, exactly as lm-eval aggregates them).

`suite_version` is a short hash of what defines a suite's scores: its entries with their settings and, for every
task, lm-eval's indexed config (``metadata.version``, prompts, filters, metrics), the bytes of the files beside it
(hooks) and the content digest of the data it reads (`harness.evals.local_data`, wherever the files live), with the
folder the suite lives in left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness import console
from harness.errors import HarnessError
from harness.evals import items
from harness.nightly import pairing
from harness.nightly.stats import PairedScores
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.suite import Entry, Suite
    from harness.nightly.config import NightlyConfig

# Params of an eval run that change per-item scores, and how a reason names them (task params: task.<name>.<key>).
_RUN_SETTINGS = {"backend": "backend", "backend_args": "backend arguments", "lm_eval_version": "lm-eval version",
                 "reasoning.budget": "thinking budget", "reasoning.start": "reasoning start delimiter",
                 "reasoning.end": "reasoning end delimiter", "reasoning.answer": "forced answer lead-in"}
_TASK_SETTINGS = {"version": "task version", "num_fewshot": "few-shot", "apply_chat_template": "chat template",
                  "fewshot_as_multiturn": "few-shot as multi-turn", "limit": "item limit",
                  "data_digest": "data (content digest)", "repeats": "repeats", "gen_kwargs": "generation settings"}
_NOT_METRICS = {*items.COLUMNS, "prompt", "target", "response"}


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
    fingerprint: dict[str, str] = field(default_factory=dict)  # where its scores were computed (tags fingerprint.*)

    def metric_columns(self, task: str) -> list[str]:
        """The per-item metric keys of a task's samples, in lm-eval's order."""
        return [c for c in self.samples[task].columns if c not in _NOT_METRICS and not items.is_count_column(c)]


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

    found = store.read_run(run_id, results_dir, kind=schema.Kind.EVAL, finished=True)
    tags = found["schema"]
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
        for column in (items.ITEM_ID, items.DOC_HASH):
            if column in table:
                table[column] = table[column].astype(str)
        samples[task] = table
    return EvalRecord(run_id=run_id, model=tags.model or params.get("model", ""),
                      model_hash=tags.model_hash or params.get("model_hash", ""),
                      suite=tags.suite or params.get("suite", ""), settings=settings,
                      scores=store.read(run_id, schema.SCORES, results_dir), lm_eval=lm_eval, samples=samples,
                      fingerprint=schema.parse_fingerprint(found["tags"]))


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
        lm-eval version, the items scored, or their content (`harness.nightly.pairing.item_problems`).
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
        reasons += pairing.item_problems(task, candidate, baseline)
    return reasons


def fingerprint_differences(candidate: EvalRecord, baseline: EvalRecord) -> list[str]:
    """The reproducibility fingerprint fields (`harness.evals.fingerprint`) on which the two sides' scores were
    computed differently, one ``field: candidate value (candidate) vs baseline value (baseline)`` each. Not a
    reason to refuse the comparison (the like-with-like check is `incomparable`), but what may move scores with no
    setting changed; fields that either side did not record, or recorded as unknown, are not compared."""
    from harness.evals.fingerprint import UNKNOWN

    out = []
    for name in schema.FINGERPRINT_FIELDS:
        a, b = candidate.fingerprint.get(name), baseline.fingerprint.get(name)
        if a and b and UNKNOWN not in (a, b) and a != b:
            out.append(f"{name}: {a} (candidate) vs {b} (baseline)")
    return out


def headline_metrics(spec: "Suite", record: EvalRecord) -> dict[str, str]:
    """Each scored task → its headline metric: the suite entry's ``metric``, else the task's first metric."""
    out = {}
    for entry in spec.entries:
        for leaf in pairing.leaves(record.lm_eval, entry.task):
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


def check_min_effects(spec: "Suite", cfg: "NightlyConfig") -> None:
    """Before any model work: every ``min_effects`` key names a metric the nightly can compare, as lm-eval's task
    index declares the suite's metrics (a task's ``metric_list`` under each of its ``filter_list`` names, else
    lm-eval's defaults for its output type; a group's ``aggregate_metric_list``). ``task/metric`` needs a task or
    group of the suite that has that metric; a bare metric key needs some task that has it; with ``metrics:
    headline`` the metric must be the suite entry's headline ``metric`` where the entry names one. A task whose
    metrics the index cannot tell (a metric given as a function) is not held against a key: `paired_metrics`
    checks every key again against what ran.

    Raises:
        HarnessError: the first key that names no metric, with the valid ones.
    """
    if not cfg.min_effects:
        return
    from harness.evals import suite as suites

    declared: dict[str, set[str] | None] = {}  # task or group → its metric keys (None: not known before it runs)
    headline: dict[str, str] = {}  # task or group → the entry's headline metric, where the entry names one
    tm = suites.task_manager(spec)
    for entry in spec.entries:
        for name, keys in _declared_metrics(tm, entry.task).items():
            declared.setdefault(name, keys)
            if entry.metric:
                headline.setdefault(name, entry.metric)
    known = set().union(*(keys for keys in declared.values() if keys is not None))
    unsure = any(keys is None for keys in declared.values())
    for key in cfg.min_effects:
        task, sep, metric = key.partition("/")
        if sep:
            if task not in declared:
                raise HarnessError(f"min_effects key {key!r}: {task!r} is not a task or group of suite {spec.name!r} "
                                   f"(its tasks: {', '.join(declared)})")
            keys = declared[task]
            if keys is not None and metric not in keys:
                raise HarnessError(f"min_effects key {key!r}: task {task!r} has no metric {metric!r} (its metrics: "
                                   f"{', '.join(sorted(keys)) or 'none'})")
            if cfg.metrics == "headline" and headline.get(task, metric) != metric:
                raise HarnessError(f"min_effects key {key!r}: with metrics: headline, task {task!r} is compared on "
                                   f"{headline[task]!r} only (set metrics: all to compare its other metrics)")
        elif not unsure and key not in known:
            raise HarnessError(f"min_effects key {key!r} is not a metric of suite {spec.name!r} (its metrics: "
                               f"{', '.join(sorted(known))}; or name one task's: 'task/metric')")


def _declared_metrics(task_manager, name: str) -> dict[str, set[str] | None]:
    """Every task and group at or under `name` → the ``metric,filter`` keys lm-eval's index declares for it (None
    when a metric is a function, whose name only shows once it runs)."""
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    from harness.evals import task_index

    out: dict[str, set[str] | None] = {}
    for task, (config, _) in task_index.leaves(task_manager, name).items():
        metrics = [m.get("metric") if isinstance(m, dict) else m for m in config.get("metric_list") or []] or \
            DEFAULT_METRIC_REGISTRY.get(config.get("output_type"), [])
        filters = [f.get("name") for f in config.get("filter_list") or [] if isinstance(f, dict)] or ["none"]
        plain = all(isinstance(m, str) and m.isidentifier() for m in metrics) and metrics
        out[task] = {f"{m},{f}" for m in metrics for f in filters} if plain else None

    def visit(item) -> None:
        config = item if isinstance(item, dict) else None
        if config is None:
            entry = task_manager.task_index.get(item)
            if entry is None or entry.kind.name != "GROUP":
                return
            config = {"group": item, **(entry.cfg or {})}
        if "group" not in config:
            return
        keys = set()
        for agg in config.get("aggregate_metric_list") or []:
            if isinstance(agg, dict) and isinstance(agg.get("metric"), str):
                filters = agg.get("filter_list") or ["none"]
                keys |= {f"{agg['metric']},{f}" for f in ([filters] if isinstance(filters, str) else filters)}
        out[str(config["group"])] = keys
        for child in task_index.members(config):
            visit(child)

    visit(name)
    return out


def _group_headline(entry: "Entry", group: str, reported: list[str]) -> str:
    """A group's headline: the suite entry's ``metric`` where the group reports it, else its first aggregate."""
    if entry.metric in reported:
        return entry.metric
    if entry.metric and group == entry.task:
        raise HarnessError(f"group {group!r} reports no aggregate {entry.metric!r} (the suite's headline); it reports "
                           f"{', '.join(reported)}")
    return reported[0]


def paired_metrics(spec: "Suite", candidate: EvalRecord, baseline: EvalRecord, cfg: "NightlyConfig"
                   ) -> list[PairedScores]:
    """The per-item scores of both models for every compared metric, paired by item, in suite order.

    Each suite entry gives its tasks' metrics, then those of every group at or under it (innermost first), a group
    being its leaves' items pooled and weighted to its lm-eval score (`harness.nightly.pairing`).

    Args:
        spec: the suite (its headline metrics, and lm-eval's index for how its groups aggregate).
        candidate: the candidate's record.
        baseline: the baseline's record; `incomparable` must have found no difference.
        cfg: which metrics (headline or all), minimum effects.

    Returns:
        One `PairedScores` per (task or group, metric). Items whose score is missing on either side are left out.
        With ``metrics: all``, metrics that lm-eval does not aggregate from per-item scores are left out (with a
        warning).

    Raises:
        HarnessError: items that cannot be paired, a headline metric that cannot be compared per item, a pooled
            value that differs from lm-eval's, a ``min_effects`` key that names no compared metric, or nothing to
            compare.
    """
    headline = headline_metrics(spec, candidate)
    pairs, names, skipped, done = [], set(), [], set()

    def add(name: str, metric: str, paired: pairing.Paired | None) -> None:
        if paired is not None:
            pairs.append(PairedScores(task=name, metric=metric, candidate=paired.candidate, baseline=paired.baseline,
                                      weights=paired.weights,
                                      higher_is_better=pairing.higher_is_better(candidate, name, metric),
                                      min_effect=min_effect_for(cfg, name, metric)))

    for entry in spec.entries:
        for task in pairing.leaves(candidate.lm_eval, entry.task):
            if task not in headline or task not in baseline.samples or task in done:
                continue
            done.add(task)
            problems = pairing.item_problems(task, candidate, baseline)
            if problems:
                raise HarnessError(problems[0])
            shared = [m for m in candidate.metric_columns(task) if m in baseline.samples[task].columns]
            for metric in shared if cfg.metrics == "all" else [headline[task]]:
                names.update({f"{task}/{metric}", metric})
                why = pairing.not_per_item(candidate, task, metric) if cfg.metrics == "all" else None
                if why:
                    skipped.append(why)
                    continue
                add(task, metric, pairing.leaf(task, metric, candidate, baseline))
        found = pairing.groups(candidate.lm_eval, entry.task)
        aggregations = pairing.group_aggregations(spec, entry.task) if found else {}
        for group in found:
            reported = pairing.reported_metrics(candidate.lm_eval, group)
            for metric in reported if cfg.metrics == "all" else [_group_headline(entry, group, reported)]:
                names.update({f"{group}/{metric}", metric})
                rules = aggregations.get(group, [])
                why = pairing.not_per_item(candidate, group, metric, rules) if cfg.metrics == "all" else None
                if why:
                    skipped.append(why)
                    continue
                add(group, metric, pairing.group(group, metric, candidate, baseline, rules))
    if skipped:
        console.warn(f"not compared (no per-item form of lm-eval's aggregate): {'; '.join(skipped)}")
    unknown = sorted(set(cfg.min_effects) - names)
    if unknown:
        raise HarnessError(f"min_effects names no compared metric: {', '.join(unknown)}; compared: "
                           f"{', '.join(sorted(n for n in names if '/' in n))}")
    if not pairs:
        raise HarnessError(f"suite {spec.name!r}: no per-item scores to compare")
    return pairs


def scored_items(record: EvalRecord, task: str, metric: str) -> "pd.DataFrame":
    """``item_id, prompt, target, response, score`` of one task and metric, or of a group's leaves with ids
    ``<task>/<item id>`` (for the report's examples)."""
    return pairing.scored_items(record, task, metric)
