"""Items of two eval records, paired for the nightly: by the document's identity with its content checked, each
metric pooled the way lm-eval aggregates it, and a group's subtasks pooled into the group's own score.

Pairing. An item is its ``item_id`` in the samples table (`harness.evals.items`): the dataset's own id field where
it has one (``key``, ``task_id``, ``id``, ``question_id``: first present and unique), else lm-eval's doc index; the
table records which (``id_field``) and each document's content hash (``doc_hash``). Both sides must identify a
task's items the same way and score the same set, and a shared item must have the same hash on both sides: under
an id field a different hash means the document was edited ("N items changed content"); under the doc index it
means the data was reordered or edited, which pairing by position would silently mis-pair. Either is a like-with-
like failure, never a comparison. A repeated task's rows (``repeat``) pool per item first.

Pooling. Each metric pools as its task config aggregates it (`harness.evals.items.pooling`): a mean gives every
item weight 1; IFEval's ``agg_inst_level_acc`` micro-averages instructions, so an item is its fraction of
instructions followed, weighted by its number of instructions. The weighted mean of the item scores is exactly
lm-eval's number, and the paired test (`harness.nightly.stats`, weighted sign-flip and bootstrap over items)
compares instructions clustered by item. An aggregation that is not a function of per-item scores (corpus BLEU,
F1, perplexity) cannot be compared per item and is named as such.

Groups. A group that reports an aggregate (``aggregate_metric_list``) is compared on that metric by pooling all
its leaf tasks' items, each keyed by (subtask, item id). lm-eval scores a group as Σ a_t·v_t / Σ a_t over its
leaves' scores v_t, with a_t the leaf's item count when ``weight_by_size`` (lm-eval's default) and 1 otherwise;
an item i of leaf t therefore weighs a_t·w_ti / Σ_i w_ti (w: its weight within the leaf), so the pooled weighted
mean is the group score and the paired mean difference is the difference of the group scores. Whether a group
weighs by size is read from lm-eval's task index for the suite.

Every pooled value that lm-eval also reported (a task's or a group's, on either side) is checked against it, so
the nightly's candidate and baseline numbers are lm-eval's under the same names. Repeated tasks are pooled over
their runs by `harness.evals.repeats` (lm-eval reports run 0 only), so they are not checked against lm-eval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harness.errors import HarnessError
from harness.evals import items

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.suite import Suite

_TOLERANCE = 1e-6  # pooled value vs lm-eval's reported one (float sums in a different order)
SIDES = ("candidate", "baseline")


class Record(Protocol):
    """What pairing reads of an eval record (`harness.nightly.records.EvalRecord`)."""

    run_id: str
    lm_eval: dict
    samples: dict[str, "pd.DataFrame"]


@dataclass
class Paired:
    """One metric's items on both sides, aligned: scores, and weights (None: equal)."""

    ids: list
    candidate: np.ndarray
    baseline: np.ndarray
    weights: np.ndarray | None


def _describe_field(field: str) -> str:
    return "doc index" if field == items.INDEX else f"field {field!r}"


def _hashes(table: "pd.DataFrame") -> "pd.Series":
    """item id → doc hash, one per item (a repeated task's runs share them)."""
    one = table.drop_duplicates(items.ITEM_ID)
    return one.set_index(one[items.ITEM_ID].astype(str))[items.DOC_HASH].astype(str)


def item_problems(task: str, candidate: Record, baseline: Record) -> list[str]:
    """Why the two sides' items of `task` cannot be paired (identity, item sets, content); empty when they can."""
    tables = {"candidate": candidate.samples[task], "baseline": baseline.samples[task]}
    runs = {"candidate": candidate.run_id, "baseline": baseline.run_id}
    for side, table in tables.items():
        if items.DOC_HASH not in table or items.ID_FIELD not in table:
            return [f"task {task}: the {side}'s eval run {runs[side]} records no document hashes (it predates them), "
                    "so its items cannot be checked against the other side's; evaluate it again"]
    fields = {side: str(t[items.ID_FIELD].iloc[0]) if len(t) else items.INDEX for side, t in tables.items()}
    if fields["candidate"] != fields["baseline"]:
        return [f"task {task}: items are identified by {_describe_field(fields['candidate'])} for the candidate and "
                f"by {_describe_field(fields['baseline'])} for the baseline, so the documents differ"]
    field = fields["candidate"]
    c, b = _hashes(tables["candidate"]), _hashes(tables["baseline"])
    reasons = []
    only_c, only_b = c.index.difference(b.index), b.index.difference(c.index)
    if len(only_c) or len(only_b):
        reasons.append(f"task {task}: different items scored ({len(only_c)} only for the candidate, "
                       f"{len(only_b)} only for the baseline)")
    shared = c.index.intersection(b.index)
    changed = int((c[shared] != b[shared]).sum())
    if changed and field == items.INDEX:
        reasons.append(f"task {task}: {changed} items changed content at the same doc index (the data has no id "
                       "field, so items pair by position: it was reordered or edited)")
    elif changed:
        reasons.append(f"task {task}: {changed} items changed content (same {field!r}, different document)")
    return reasons


def _config(record: Record, task: str) -> dict:
    return (record.lm_eval.get("configs") or {}).get(task) or {}


def _item_scores(record: Record, task: str, metric: str) -> "pd.DataFrame | None":
    """Per item (index: item id, table order): ``value`` and ``weight`` under lm-eval's aggregation of `metric`,
    repeats pooled; None when that aggregation is not a function of per-item scores."""
    import pandas as pd

    how = items.pooling(_config(record, task), metric)
    table = record.samples[task]
    if how is None or metric not in table:
        return None
    values = pd.to_numeric(table[metric], errors="coerce")
    if how == items.FLATTEN:
        column = items.count_column(metric)
        if column not in table:
            return None  # no per-item value counts: the micro-average cannot be rebuilt
        counts = pd.to_numeric(table[column], errors="coerce")
    else:
        counts = pd.Series(1.0, index=table.index)
    ok = np.isfinite(values) & np.isfinite(counts) & (counts > 0)
    frame = pd.DataFrame({"num": values[ok] * counts[ok], "den": counts[ok],
                          "id": table.loc[ok, items.ITEM_ID].astype(str)})
    sums = frame.groupby("id", sort=False)[["num", "den"]].sum()
    weight = sums["den"] if how == items.FLATTEN else pd.Series(1.0, index=sums.index)
    return pd.DataFrame({"value": sums["num"] / sums["den"], "weight": weight})


def not_per_item(record: Record, name: str, metric: str, aggregations: list[dict] | None = None
                 ) -> str | None:
    """Why `metric` of a task (or, with its `aggregations`, a group) cannot be compared item by item; None when
    it can."""
    if aggregations is not None:
        if _weight_by_size(aggregations, metric) is None:
            return f"group {name!r} metric {metric!r}: its aggregate is not a mean of its subtasks"
        for task in leaves(record.lm_eval, name):
            if task in record.samples and metric in record.samples[task]:
                why = not_per_item(record, task, metric)
                if why:
                    return why
        return None
    if _item_scores(record, name, metric) is None:
        agg = items.aggregation_name(_config(record, name), metric)
        return f"task {name!r} metric {metric!r}: lm-eval aggregates it with {agg!r}, not a mean of per-item scores"
    return None


def _check(record: Record, side: str, task: str, metric: str, value: float, what: str) -> None:
    reported = ((record.lm_eval.get("results") or {}).get(task) or {}).get(metric)
    if isinstance(reported, bool) or not isinstance(reported, (int, float)) or not math.isfinite(reported):
        return
    if abs(value - reported) > _TOLERANCE * max(1.0, abs(reported)):
        raise HarnessError(f"{what} {task!r} metric {metric!r}: the {side}'s per-item scores pool to {value:.6f}, but "
                           f"lm-eval reported {reported:.6f}; its aggregation cannot be reproduced item by item")


def _repeated(record: Record, tasks: list[str]) -> bool:
    return any(items.REPEAT in record.samples[t] for t in tasks)


def leaf(task: str, metric: str, candidate: Record, baseline: Record) -> Paired | None:
    """One task's metric, paired by item (candidate order, items scored on both sides); None when no item is.

    Raises:
        HarnessError: the metric cannot be pooled per item, the sides weigh an item differently, or a pooled value
            differs from lm-eval's.
    """
    scores = {}
    for side, record in zip(SIDES, (candidate, baseline)):
        frame = _item_scores(record, task, metric)
        if frame is None:
            raise HarnessError(f"{not_per_item(record, task, metric)}, so it cannot be compared item by item; choose "
                               "another headline metric (the suite entry's `metric`)")
        if not _repeated(record, [task]) and len(frame):
            _check(record, side, task, metric, float(np.average(frame["value"], weights=frame["weight"])), "task")
        scores[side] = frame
    c, b = scores["candidate"], scores["baseline"]
    ids = [i for i in c.index if i in b.index]
    if not ids:
        return None
    wc, wb = c.loc[ids, "weight"].to_numpy(), b.loc[ids, "weight"].to_numpy()
    if not np.array_equal(wc, wb):
        raise HarnessError(f"task {task!r} metric {metric!r}: {int((wc != wb).sum())} items have a different number of "
                           "values for the candidate and the baseline")
    weights = None if np.all(wc == 1.0) else wc
    return Paired(ids, c.loc[ids, "value"].to_numpy(), b.loc[ids, "value"].to_numpy(), weights)


def leaves(lm_eval: dict, task: str) -> list[str]:
    """The leaf tasks under a task or group (itself for a task), as lm-eval's ``group_subtasks`` nests them."""
    subtasks = (lm_eval.get("group_subtasks") or {}).get(task) or []
    return [t for sub in subtasks for t in leaves(lm_eval, sub)] if subtasks else [task]


def reported_metrics(lm_eval: dict, name: str) -> list[str]:
    """The ``metric,filter`` keys lm-eval reported for a task or group, stderr left out."""
    row = (lm_eval.get("results") or {}).get(name) or {}
    return [k for k in row if "," in k and "_stderr," not in k]


def groups(lm_eval: dict, task: str) -> list[str]:
    """The groups at and under `task` that report an aggregate, innermost first."""
    subtasks = (lm_eval.get("group_subtasks") or {}).get(task) or []
    if not subtasks:
        return []
    inner = [g for sub in subtasks for g in groups(lm_eval, sub)]
    return inner + ([task] if reported_metrics(lm_eval, task) else [])


def group_aggregations(spec: "Suite", task: str) -> dict[str, list[dict]]:
    """Each group at or under a suite entry → its ``aggregate_metric_list``, from lm-eval's task index."""
    from harness.evals import cache
    from harness.evals import suite as suites

    out = {}
    for value in cache.task_material(suites.task_manager(spec), task).values():
        config = value.get("config") if isinstance(value, dict) and "kind" in value else value
        if isinstance(config, dict) and config.get("group"):
            out[str(config["group"])] = list(config.get("aggregate_metric_list") or [])
    return out


def _weight_by_size(aggregations: list[dict], metric: str) -> bool | None:
    """lm-eval's ``weight_by_size`` for `metric` (default True); None when the group aggregates it otherwise than
    by a mean of its subtasks."""
    name, _, filt = metric.partition(",")
    for spec in aggregations:
        filters = spec.get("filter_list")
        filters = [filters] if isinstance(filters, str) else filters
        if spec.get("metric") == name and (filters is None or filt in filters):
            if str(spec.get("aggregation", "mean")) != "mean":
                return None
            return bool(spec.get("weight_by_size", True))
    return True


def group(name: str, metric: str, candidate: Record, baseline: Record,
          aggregations: list[dict]) -> Paired | None:
    """A group's metric, every leaf's items pooled (ids ``(leaf, item id)``) and weighted so that the weighted mean
    is lm-eval's group score; None when no leaf has the metric.

    Raises:
        HarnessError: the group's or a leaf's aggregation cannot be pooled per item, or a pooled value differs from
            lm-eval's group score.
    """
    by_size = _weight_by_size(aggregations, metric)
    if by_size is None:
        raise HarnessError(f"{not_per_item(candidate, name, metric, aggregations)}, so it cannot be compared item "
                           "by item; choose another headline metric (the suite entry's `metric`)")
    tasks = [t for t in leaves(candidate.lm_eval, name)
             if t in candidate.samples and t in baseline.samples and metric in candidate.samples[t]
             and metric in baseline.samples[t]]
    parts: list[tuple[str, Paired, float]] = []
    for task in tasks:
        paired = leaf(task, metric, candidate, baseline)
        if paired is not None:
            size = float(candidate.samples[task][items.ITEM_ID].nunique()) if by_size else 1.0
            parts.append((task, paired, size))
    if not parts:
        return None
    ids, cand, base, weights = [], [], [], []
    for task, paired, size in parts:
        w = np.ones(len(paired.ids)) if paired.weights is None else paired.weights
        ids += [(task, i) for i in paired.ids]
        cand.append(paired.candidate)
        base.append(paired.baseline)
        weights.append(size * w / w.sum())
    out = Paired(ids, np.concatenate(cand), np.concatenate(base), np.concatenate(weights))
    if not _repeated(candidate, tasks) and not _repeated(baseline, tasks):
        for side, record in zip(SIDES, (candidate, baseline)):
            _check(record, side, name, metric, _group_value(record, tasks, metric, by_size), "group")
    return out


def _group_value(record: Record, tasks: list[str], metric: str, by_size: bool) -> float:
    """lm-eval's group score rebuilt from one side's own items (all of them, paired or not)."""
    total, mass = 0.0, 0.0
    for task in tasks:
        frame = _item_scores(record, task, metric)
        if frame is None or not len(frame):
            continue
        size = float(record.samples[task][items.ITEM_ID].nunique()) if by_size else 1.0
        total += size * float(np.average(frame["value"], weights=frame["weight"]))
        mass += size
    return total / mass if mass else math.nan


def scored_items(record: Record, task: str, metric: str) -> "pd.DataFrame":
    """``item_id, prompt, target, response, score`` of one task's (or a group's leaves') items and metric."""
    import pandas as pd

    columns = [items.ITEM_ID, "prompt", "target", "response", metric]
    if task in record.samples:
        return record.samples[task][columns].rename(columns={metric: "score"})
    parts = [record.samples[t][columns].assign(**{items.ITEM_ID: lambda f, t=t: t + "/" + f[items.ITEM_ID]})
             for t in leaves(record.lm_eval, task) if t in record.samples and metric in record.samples[t]]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return frame.rename(columns={metric: "score"})


def higher_is_better(record: Record, name: str, metric: str) -> bool:
    """lm-eval's direction of a task's or group's metric (True when it does not say)."""
    return bool(((record.lm_eval.get("higher_is_better") or {}).get(name) or {}).get(metric.partition(",")[0], True))

