"""`SuiteResult`: one checkpoint's scores on one suite, built from lm-eval's output as plain pandas tables.

- ``scores``: one row per (task, metric) that lm-eval reported, with its stderr, a 95% CI (value ± 1.96·stderr,
  clipped to [0, 1] for proportions) and the item count.
- ``samples``: per task, one row per item: ``doc_id``, ``item_id`` and ``id_field`` (the document's own id field
  where it has one, else the doc index), ``doc_hash`` (the document's content, `harness.evals.items`), ``prompt``,
  ``target``, ``response`` and one column per lm-eval metric key with the item's score (a list-valued score, such
  as IFEval's instruction-level ones, as its fraction, with the list's length in ``n/<metric>/<filter>``).
- ``skills``: per skill, the mean of its tasks' headline metrics (the suite entry's ``metric``, else the task's
  first), with stderr √(Σ se²)/k assuming independent tasks; the last row, ``overall``, averages the skills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.evals import items
from harness.tracking.schema import lm_eval_stderr as stderr_key

if TYPE_CHECKING:
    import pandas as pd

    from harness.evals.suite import Entry

Z95 = 1.959963984540054
SCORE_COLUMNS = ["skill", "task", "metric", "value", "stderr", "ci_low", "ci_high", "n"]
SKILL_COLUMNS = ["skill", "value", "stderr", "ci_low", "ci_high", "n", "tasks"]
# Metrics that are proportions even where no per-item scores show it (lm-eval's group aggregates).
_PROPORTIONS = {"acc", "acc_norm", "exact_match", "mc1", "mc2", "f1", "em", "pass@1", "verifier"}


@dataclass
class SuiteResult:
    """Scores of one checkpoint on one suite (see the module docstring for the tables)."""

    model: str
    suite: str
    label: str | None
    run_id: str | None
    scores: "pd.DataFrame"
    samples: dict[str, "pd.DataFrame"] = field(default_factory=dict)
    skills: "pd.DataFrame | None" = None
    lm_eval: dict = field(default_factory=dict, repr=False)  # the merged lm-eval output, samples left out
    cached: list[str] = field(default_factory=list)  # suite tasks read from the cache
    sources: dict[str, str] = field(default_factory=dict)  # leaf task → where its documents came from
    digests: dict[str, str] = field(default_factory=dict)  # leaf task → content digest of what it read

    def skill(self, name: str) -> float:
        """The aggregate value of skill `name` (``overall`` for the mean over skills)."""
        return float(self.skills.set_index("skill").loc[name, "value"])

    def to_dict(self) -> dict:
        """JSON-ready: lm-eval's output (``results``, ``versions``, ``n-shot``...) plus ``scores`` and ``skills``."""

        def records(frame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                    for row in frame.to_dict(orient="records")]

        return {
            "model": self.model,
            "suite": self.suite,
            "label": self.label,
            "run_id": self.run_id,
            **self.lm_eval,
            "scores": records(self.scores),
            "skills": {row.pop("skill"): row for row in records(self.skills)},
            "cached": self.cached,
        }

    def summary(self) -> str:
        """Per-skill scores with 95% CIs, then every task metric, as aligned text for the terminal."""
        from harness.report.tables import interval, number, render

        cached = f" (cached: {', '.join(self.cached)})" if self.cached else ""
        rows = [(r.skill, "", "score", number(r.value), interval(r.ci_low, r.ci_high), str(r.n))
                for r in self.skills.itertuples()]
        rows += [(r.skill, r.task, r.metric, number(r.value), interval(r.ci_low, r.ci_high), str(r.n))
                 for r in self.scores.itertuples()]
        table = render(rows, ["skill", "task", "metric", "value", "95% CI", "n"])
        return f"{self.model} on suite {self.suite}{cached}\n{table}"


def metric_keys(row: dict) -> list[str]:
    """lm-eval metric keys (``metric,filter``) of one task's results, stderr keys left out, in lm-eval's order."""
    return [k for k in row if "," in k and "_stderr," not in k]


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, (bool, int, float)) for v in value):
        return float(sum(value)) / len(value)  # IFEval's instruction-level lists: the item's fraction
    return math.nan


def ci(value: float, stderr: float, proportion: bool) -> tuple[float, float]:
    """95% normal interval, clipped to [0, 1] for a proportion; NaN where the stderr is unknown."""
    if not (math.isfinite(value) and math.isfinite(stderr)):
        return math.nan, math.nan
    low, high = value - Z95 * stderr, value + Z95 * stderr
    return (max(low, 0.0), min(high, 1.0)) if proportion else (low, high)


def _leaves(output: dict, task: str) -> list[str]:
    subtasks = output.get("group_subtasks", {}).get(task) or []
    if not subtasks:
        return [task]
    return [leaf for sub in subtasks for leaf in _leaves(output, sub)]


def sample_tables(output: dict) -> dict[str, "pd.DataFrame"]:
    """Per task, one row per item: its identity and content hash (`harness.evals.items`), prompt, target,
    response and per-metric scores (a list-valued score as its fraction, with its length in a count column)."""
    import pandas as pd

    tables = {}
    for task, samples in output.get("samples", {}).items():
        docs = {s["doc_id"]: s.get("doc") for s in samples}
        id_field = items.identity_field(docs.values())
        rows: dict[int, dict] = {}
        for s in samples:
            row = rows.get(s["doc_id"])
            if row is None:
                doc = docs[s["doc_id"]]
                row = rows[s["doc_id"]] = {
                    items.INDEX: s["doc_id"],
                    items.ITEM_ID: str(s["doc_id"] if id_field == items.INDEX else doc[id_field]),
                    items.ID_FIELD: id_field,
                    items.DOC_HASH: items.doc_hash(doc) if doc is not None else str(s.get("doc_hash", "")),
                    "prompt": _prompt(s),
                    "target": str(s.get("target")),
                    "response": _response(s),
                }
            for metric in s.get("metrics", []):
                key, value = f"{metric},{s['filter']}", s.get(metric)
                row[key] = _number(value)
                if isinstance(value, list) and math.isfinite(row[key]):
                    row[items.count_column(key)] = len(value)
        tables[task] = pd.DataFrame(list(rows.values()))
    return tables


def _prompt(sample: dict) -> str:
    args = sample.get("arguments") or [[""]]
    return str(args[0][0]) if args and args[0] else ""


def _response(sample: dict) -> str:
    """The raw generation; for log-likelihood tasks the choice with the highest log-likelihood."""
    resps = sample.get("resps") or []
    if not resps or not resps[0]:
        return ""
    first = resps[0][0]
    if isinstance(first, str):
        return first
    args = sample.get("arguments") or []
    if len(args) > 1 and len(args) == len(resps):
        best = max(range(len(resps)), key=lambda i: resps[i][0][0])
        return str(args[best][1]).strip()
    return str(first[0] if isinstance(first, list) else first)


def _is_proportion(output: dict, samples: dict, task: str, metric: str, value: float) -> bool:
    if not 0.0 <= value <= 1.0:
        return False
    table = samples.get(task)
    if table is not None and metric in table:
        col = table[metric].dropna()
        return bool(len(col)) and bool(((col >= 0) & (col <= 1)).all())
    leaves = [t for t in _leaves(output, task) if t != task]
    if leaves:
        return all(_is_proportion(output, samples, t, metric, 0.5) for t in leaves)
    return metric.partition(",")[0] in _PROPORTIONS


def score_table(output: dict, owners: dict[str, "Entry"], samples: dict[str, "pd.DataFrame"]) -> "pd.DataFrame":
    """One row per (task, metric) of lm-eval's results; `owners` maps each task to the suite entry that ran it."""
    import pandas as pd

    rows = []
    n_samples = output.get("n-samples", {})
    for task, row in output.get("results", {}).items():
        n = sum(n_samples.get(t, {}).get("effective", 0) for t in _leaves(output, task))
        for metric in metric_keys(row):
            value = _number(row[metric])
            if not math.isfinite(value):
                continue  # "N/A" and friends are not scores
            stderr = _number(row.get(stderr_key(metric)))
            low, high = ci(value, stderr, _is_proportion(output, samples, task, metric, value))
            rows.append([owners[task].skill, task, metric, value, stderr, low, high, n])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def headline(scores: "pd.DataFrame", entry: "Entry", output: dict, samples: dict) -> tuple[float, float, int, bool]:
    """``(value, stderr, n, is_proportion)`` of a suite entry's headline metric (a tag: the mean over its tasks)."""
    from harness.errors import HarnessError

    tasks = [entry.task] if entry.task in output.get("results", {}) else _leaves(output, entry.task)
    values, errors, n, proportion = [], [], 0, True
    for task in tasks:
        rows = scores[scores.task == task]
        if rows.empty:
            continue
        metric = entry.metric or rows.metric.iloc[0]
        pick = rows[rows.metric == metric]
        if pick.empty:
            raise HarnessError(f"task {task!r} reports no metric {metric!r}; it reports {', '.join(rows.metric)}")
        values.append(float(pick.value.iloc[0]))
        errors.append(float(pick.stderr.iloc[0]))
        n += int(pick.n.iloc[0])
        proportion = proportion and _is_proportion(output, samples, task, metric, values[-1])
    if not values:
        return math.nan, math.nan, 0, False
    return sum(values) / len(values), math.sqrt(sum(e * e for e in errors)) / len(errors), n, proportion


def _mean_row(skill: str, parts: list[tuple[float, float, int, bool]]) -> list:
    """Mean of ``(value, stderr, n, is_proportion)`` parts; stderr √(Σ se²)/k, as for independent estimates."""
    parts = [p for p in parts if math.isfinite(p[0])]
    if not parts:
        return [skill, math.nan, math.nan, math.nan, math.nan, 0, 0]
    value = sum(p[0] for p in parts) / len(parts)
    stderr = math.sqrt(sum(p[1] ** 2 for p in parts)) / len(parts)
    low, high = ci(value, stderr, all(p[3] for p in parts))
    return [skill, value, stderr, low, high, sum(p[2] for p in parts), len(parts)]


def skill_table(scores: "pd.DataFrame", entries: list["Entry"], output: dict, samples: dict) -> "pd.DataFrame":
    """Per-skill aggregates in suite order, then ``overall`` (the mean of the skills)."""
    import pandas as pd

    by_skill: dict[str, list] = {}
    for entry in entries:
        by_skill.setdefault(entry.skill, []).append(headline(scores, entry, output, samples))
    rows = [_mean_row(skill, parts) for skill, parts in by_skill.items()]
    overall = _mean_row("overall", [(r[1], r[2], r[5], all(p[3] for p in by_skill[r[0]])) for r in rows])
    overall[6] = sum(r[6] for r in rows)
    return pd.DataFrame(rows + [overall], columns=SKILL_COLUMNS)
