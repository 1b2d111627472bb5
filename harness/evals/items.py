"""What an item of an eval is: its identity, its content hash, and how lm-eval pools its per-item metric values.

- Identity: the document's own id field where the dataset has one — the first of `ID_FIELDS` that every document
  of the task carries and that is unique across them (IFEval's ``key``, HumanEval's ``task_id``, ``id``,
  ``question_id``) — else lm-eval's doc index (``doc_id``). The samples table records the field it used
  (``id_field``) and the identity itself (``item_id``, a string).
- Content: ``doc_hash``, a hash of the document exactly as lm-eval logged it in the sample's ``doc`` (keys sorted,
  so the hash does not depend on key order). Two runs agree on an item only if they agree on its hash: that is what
  makes pairing by id safe against edited data and pairing by index safe against reordered data.
- Pooling: lm-eval aggregates each metric with the function its task config names (``metric_list[].aggregation``,
  else lm-eval's default for the metric, else a mean). Two are reproduced from per-item values: ``mean`` (and
  ``nanmean``) pools the items' values with equal weights; ``agg_inst_level_acc`` (IFEval's instruction-level
  accuracy) flattens each item's list of booleans, which is the mean of the items' fractions weighted by their list
  lengths. For a list-valued metric the samples table holds the fraction in the metric's column and the length in
  `count_column` (``n/<metric>/<filter>``: no comma, so it is never mistaken for an lm-eval metric key). Any other
  aggregation (corpus BLEU, F1, perplexity, median...) is not a function of per-item values alone; `pooling` says so
  with None.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

ID_FIELDS = ("key", "task_id", "id", "question_id")
INDEX = "doc_id"  # lm-eval's position of the document in the task's evaluation split
ITEM_ID = "item_id"
ID_FIELD = "id_field"
DOC_HASH = "doc_hash"
REPEAT = "repeat"  # which run of a repeated task (`harness.evals.repeats`) a row comes from
COLUMNS = (INDEX, ITEM_ID, ID_FIELD, DOC_HASH, REPEAT)  # identity columns: never metrics
_COUNT = "n/"

MEAN, FLATTEN = "mean", "flatten"
# lm-eval aggregation name → how per-item values pool into it.
_POOLING = {"mean": MEAN, "nanmean": MEAN, "agg_inst_level_acc": FLATTEN}
_FUNCTION = re.compile(r"(?:^|\s)def\s+(\w+)\s*\(|<function\s+([\w.]+)")


def identity_field(docs: Iterable[Any]) -> str:
    """The id field of a task's documents: the first of `ID_FIELDS` present in all of them and unique, else
    `INDEX`."""
    docs = list(docs)
    if not docs or not all(isinstance(d, Mapping) for d in docs):
        return INDEX
    for name in ID_FIELDS:
        values = [d.get(name) for d in docs]
        if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) and \
                len({str(v) for v in values}) == len(values):
            return name
    return INDEX


def doc_hash(doc: Any) -> str:
    """A 16-hex-digit hash of a document as lm-eval logged it (JSON with sorted keys)."""
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def count_column(metric: str) -> str:
    """The column holding how many values a list-valued metric (``metric,filter``) had for each item."""
    return _COUNT + metric.replace(",", "/")


def is_count_column(column: str) -> bool:
    """True for a `count_column`."""
    return column.startswith(_COUNT)


def aggregation_name(task_config: Mapping[str, Any] | None, metric: str) -> str:
    """The name of the function lm-eval aggregates `metric` (``name,filter``) with, read from the task's config as
    lm-eval logged it (a registered name or a function's source); else lm-eval's default for the metric; else
    ``mean`` (lm-eval's own fallback)."""
    name = metric.partition(",")[0]
    for spec in (task_config or {}).get("metric_list") or []:
        if isinstance(spec, Mapping) and spec.get("metric") == name and spec.get("aggregation") is not None:
            value = str(spec["aggregation"]).strip()
            found = _FUNCTION.search(value)
            return (found.group(1) or found.group(2).rpartition(".")[2]) if found else value
    try:
        import lm_eval.api.metrics  # noqa: F401 - registers lm-eval's metrics and their default aggregations
        from lm_eval.api.registry import metric_agg_registry

        default = metric_agg_registry.get(name) if name in metric_agg_registry else None
    except Exception:  # noqa: BLE001 - an lm-eval without this registry: its documented fallback is the mean
        default = None
    return getattr(default, "__name__", MEAN) if default is not None else MEAN


def pooling(task_config: Mapping[str, Any] | None, metric: str) -> str | None:
    """How per-item values of `metric` pool into lm-eval's number: `MEAN`, `FLATTEN`, or None when lm-eval's
    aggregation is not a function of per-item values alone."""
    return _POOLING.get(aggregation_name(task_config, metric))
