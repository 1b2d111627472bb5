"""Decontamination: the share of each eval task's items whose n-grams appear in a training dataset.

    harness decontam --train sft.jsonl prefs.parquet --suite tulu3_dev [--n 8] [--threshold 0.5] [--json OUT]

What is measured follows open-instruct's ``decontamination/search.py``, the check of Tulu 3 (Lambert et al. 2024),
which ran it with 8-grams: an eval item's token counts as matched when it lies in one of the item's n-grams that
also occurs in a training example, the item's score is the share of its tokens matched, and with a threshold the
item counts as contaminated when its score is above it; a dataset's rate is the share of contaminated items. Text
is lowercased and split on everything but letters and digits (open-instruct tokenises with spaCy). One difference:
open-instruct counts the tokens matched by the single training example that matches most of them, here the matches
of all the dataset's examples pool, which is never lower (a copied item scores 1.0 either way). An item shorter than
n tokens has no n-gram and is never flagged.

How, in one pass: the eval items are the small side, so their n-grams are the index (64-bit hashes, sorted); each
training file streams through once in chunks, every n-gram of it hashed with numpy (a polynomial rolling hash over
the tokens' 64-bit hashes, n-grams never crossing a field or an example) and looked up with `numpy.searchsorted`.
For each eval n-gram the first training example holding it is kept, which gives each contaminated item its
training example (the one sharing most of its n-grams) for the pairs artifact. Token hashes are Python's (salted
per process: both sides are hashed in the same one). Hash collisions are possible in principle (two different
n-grams, one 64-bit hash: odds about 5e-6 over 1e6 eval × 1e8 training n-grams).

Training files: JSONL, JSON, Parquet or CSV, each row's text fields read by `harness.data.train_text`. Eval items: the documents of the suite's tasks as lm-eval builds them (the suite's data_dir or the entries'
files, `harness.evals.local_data`), each item's text being its prompt (``doc_to_text``), identified as the eval
record identifies it (`harness.evals.items`). No model is loaded.

In the pipeline (``eval.decontam``, `harness.runner`) the stage datasets are measured before training and the report
is recorded on the pipeline run (`log_report`: metrics per (dataset, task), the pairs artifact, the flagged-tasks
tag); the views read it back with `read_report`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.train_text import check_train, read_train, texts_of
from harness.errors import HarnessError, first_line

N = 8
THRESHOLD = 0.5
_PRIME = np.uint64(0x100000001B3)  # FNV's 64-bit prime: odd, so the rolling hash is a bijection per step
_CHUNK = 100_000  # training rows hashed at a time
_NONE = np.iinfo(np.int64).max
_SEP = " \x01 "  # between the texts of one batch: a token of its own
_NON_ASCII = re.compile(r"[^\x00-\x7f\w]+")  # non-ASCII punctuation and symbols
# ASCII letters and digits stay, any other ASCII byte splits words; UTF-8 bytes of non-ASCII letters stay
_BYTES = bytes(c if c >= 0x80 or c == 1 or chr(c).isalnum() else 0x20 for c in range(256))


def _words(text: str) -> list[bytes]:
    """Words of `text`: lowercased, split on everything but letters and digits. Bytes of one C pass each (a regex
    per text is ten times slower on a million lines)."""
    text = text.lower()
    if not text.isascii():
        text = _NON_ASCII.sub(" ", text)
    return text.encode().translate(_BYTES).split()


def tokens(text: str) -> list[str]:
    """Lowercase words and numbers of `text` (split on everything else)."""
    return [w.decode() for w in _words(text.replace("\x01", " "))]


def ngram_hashes(texts: Sequence[str], n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 64-bit hashes of every n-gram of `texts` (none crossing from one text into the next).

    Returns:
        ``(hashes, owner, start, lengths)``: per n-gram its hash (uint64), the index of its text and its first
        token's position there; per text its number of tokens.
    """
    joined = _SEP.join(texts)
    if joined.count("\x01") != max(len(texts) - 1, 0):
        joined = _SEP.join(t.replace("\x01", " ") for t in texts)
    words = _words(joined)
    flat = np.fromiter(map(hash, words), dtype=np.int64, count=len(words))
    seps = np.flatnonzero(flat == hash(b"\x01"))
    lengths = np.diff(np.concatenate([[-1], seps, [len(flat)]])) - 1 if texts else np.empty(0, np.int64)
    flat = np.delete(flat, seps).view(np.uint64)
    m = len(flat) - n + 1
    if m <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64), lengths
    h = flat[:m].copy()
    for k in range(1, n):
        h *= _PRIME
        h += flat[k:k + m]
    ends = np.cumsum(lengths)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[:m]
    start = np.arange(m, dtype=np.int64) - (ends - lengths)[owner]
    keep = start + n <= lengths[owner]
    return h[keep], owner[keep], start[keep], lengths


@dataclass
class EvalItems:
    """One eval task's items: ids and the text that is checked."""

    task: str
    ids: list[str]
    texts: list[str]


@dataclass
class _Task:
    items: EvalItems
    unique: np.ndarray  # position in the index of each of the task's n-grams
    owner: np.ndarray
    start: np.ndarray
    lengths: np.ndarray  # tokens per item


@dataclass
class Overlap:
    """Contamination of one eval task by one training dataset (``dataset`` is ``"all"`` for the files pooled)."""

    dataset: str
    task: str
    contaminated: int
    total: int
    ci_low: float
    ci_high: float
    pairs: list[dict] = field(default_factory=list)  # {item_id, train_index, score, shared_ngrams}

    @property
    def rate(self) -> float:
        return self.contaminated / self.total if self.total else float("nan")


@dataclass
class Report:
    """Every (dataset, task) overlap, the pooled ``all`` rows last, and the settings."""

    n: int
    threshold: float
    rows: list[Overlap]

    def to_json(self) -> dict[str, dict[str, float]]:
        """``{task: {"contaminated": n, "total": m, "rate": n/m}}`` over all training datasets."""
        return {r.task: {"contaminated": r.contaminated, "total": r.total, "rate": r.rate if r.total else None}
                for r in self.rows if r.dataset == ALL}

    def pairs(self) -> list[dict]:
        """The overlapping (training example, eval item) pairs of every contaminated item, per dataset and task."""
        return [{"dataset": r.dataset, "task": r.task, **p} for r in self.rows if r.dataset != ALL for p in r.pairs]

    def table(self) -> str:
        """The report as a text table: contaminated items, total, rate and its 95% Wilson interval."""
        head = ("dataset", "task", "contaminated", "total", "rate", "95% CI")
        body = [(r.dataset, r.task, str(r.contaminated), str(r.total), f"{r.rate:.4f}",
                 f"[{r.ci_low:.4f}, {r.ci_high:.4f}]") for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in [head, *body]]
        return "\n".join(lines + [f"{self.n}-grams; an item is contaminated when more than {self.threshold:g} of "
                                  "its tokens lie in n-grams found in the training data"])


ALL = "all"


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (scipy's); NaN for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _check_settings(n: int, threshold: float) -> None:
    if not isinstance(n, int) or n < 1:
        raise HarnessError(f"decontamination n-gram length {n!r} is out of range (valid: a whole number >= 1)")
    if not 0 <= threshold < 1:
        raise HarnessError(f"decontamination threshold {threshold!r} is out of range (valid: 0 <= threshold < 1; "
                           "an item is contaminated when more than this share of its tokens match)")


def overlap(train: Mapping[str, Iterable[Sequence[str]]], evals: Sequence[EvalItems], *, n: int = N,
            threshold: float = THRESHOLD) -> Report:
    """Contamination of every eval task by every training dataset, in one pass over each dataset.

    Args:
        train: dataset name → its examples, each a sequence of text fields (`read_train` gives these).
        evals: the eval tasks' items.
        n: n-gram length in tokens.
        threshold: an item is contaminated when the share of its tokens in matched n-grams is above this.

    Returns:
        The `Report`.
    """
    _check_settings(n, threshold)
    tasks, hashes = [], []
    for items in evals:
        h, owner, start, lengths = ngram_hashes(items.texts, n)
        tasks.append(_Task(items, np.empty(0, np.int64), owner, start, lengths))
        hashes.append(h)
    index, inverse = np.unique(np.concatenate(hashes) if hashes else np.empty(0, np.uint64), return_inverse=True)
    offsets = np.cumsum([0] + [len(h) for h in hashes])
    for i, task in enumerate(tasks):
        task.unique = inverse[offsets[i]:offsets[i + 1]]
    firsts = {name: _first_hits(index, examples, n) for name, examples in train.items()}
    rows = [_score(name, task, first, n, threshold) for name, first in firsts.items() for task in tasks]
    if firsts:
        pooled = np.min(np.stack(list(firsts.values())), axis=0)
        rows += [_score(ALL, task, pooled, n, threshold, pairs=False) for task in tasks]
    return Report(n=n, threshold=threshold, rows=rows)


def _first_hits(index: np.ndarray, examples: Iterable[Sequence[str]], n: int) -> np.ndarray:
    """For each n-gram of the index, the first training example holding it (`_NONE` if none does)."""
    first = np.full(len(index), _NONE, dtype=np.int64)
    if not len(index):  # no eval n-gram to look for; the file is still read, so that a broken one is reported
        for _ in examples:
            pass
        return first
    texts: list[str] = []
    example_of: list[int] = []
    for number, fields in enumerate(examples):
        texts += fields
        example_of += [number] * len(fields)
        if len(texts) >= _CHUNK:
            _lookup(index, first, texts, example_of, n)
            texts, example_of = [], []
    if texts:
        _lookup(index, first, texts, example_of, n)
    return first


def _lookup(index: np.ndarray, first: np.ndarray, texts: list[str], example_of: list[int], n: int) -> None:
    h, owner, _, _ = ngram_hashes(texts, n)
    at = np.searchsorted(index, h)
    at[at == len(index)] = 0
    hit = index[at] == h
    examples = np.asarray(example_of, dtype=np.int64)[owner[hit]]
    np.minimum.at(first, at[hit], examples)  # chunks come in example order: a later chunk never lowers a first hit


def _score(dataset: str, task: _Task, first: np.ndarray, n: int, threshold: float, pairs: bool = True) -> Overlap:
    matched = first[task.unique] != _NONE
    items = task.items
    found = np.bincount(task.owner[matched], minlength=len(items.texts))
    contaminated, out = 0, []
    bounds = np.searchsorted(task.owner, np.arange(len(items.texts) + 1))  # n-grams come in item order
    for i in np.flatnonzero(found):
        mine = slice(bounds[i], bounds[i + 1])
        hits = matched[mine]
        covered = np.zeros(task.lengths[i], dtype=bool)
        for s in task.start[mine][hits]:
            covered[s:s + n] = True
        share = covered.sum() / task.lengths[i]
        if share > threshold:
            contaminated += 1
            if pairs:
                sources, counts = np.unique(first[task.unique[mine][hits]], return_counts=True)
                out.append({"item_id": items.ids[i], "train_index": int(sources[np.argmax(counts)]),
                            "score": round(float(share), 4), "shared_ngrams": int(counts.max())})
    low, high = wilson(contaminated, len(items.texts))
    return Overlap(dataset, items.task, contaminated, len(items.texts), low, high, out)


# The suite's eval documents.

def suite_items(suite: str, limit: int | None = None) -> list[EvalItems]:
    """The items of every leaf task of a suite, as lm-eval builds its documents: an entry's limit applies, else
    `limit` (``eval.limit``, as the eval scores them).

    Raises:
        HarnessError: an unknown suite or task, or data that cannot be found (as for ``harness eval``).
    """
    from harness.evals import local_data, offline
    from harness.evals import suite as suites

    spec = suites.load(suite)
    suites.check_tasks(spec)
    tm = suites.task_manager(spec)
    root = local_data.data_dir(spec.data_dir)
    offline.punkt_tab()  # IFEval's module downloads it when lm-eval builds the task
    quiet = logging.getLogger("lm_eval")  # its warnings while building (few-shot, metadata) concern a model run
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return [items for entry in spec.entries
                for items in _entry_items(tm, entry, root, entry.limit if entry.limit is not None else limit)]
    finally:
        quiet.setLevel(level)


def _entry_items(tm, entry, root: Path | None, limit: int | None) -> list[EvalItems]:
    from harness.evals import items as item_ids
    from harness.evals import local_data

    found = local_data.sources(tm, entry.task, root=root, entry_data=entry.data)
    try:
        with local_data.redirect(found):
            loaded = tm.load([entry.task])["tasks"]
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken task YAML or data file raises anything; name the task
        raise HarnessError(f"task {entry.task!r} could not be loaded: {first_line(err)}") from None
    out = []
    for name, task in loaded.items():
        docs = list(task.eval_docs)[:limit]
        id_field = item_ids.identity_field(docs)
        ids = [str(d[id_field]) if id_field != item_ids.INDEX else str(i) for i, d in enumerate(docs)]
        out.append(EvalItems(name, ids, [_doc_text(task, d) for d in docs]))
    return out


def _doc_text(task, doc: Mapping[str, Any]) -> str:
    """The prompt lm-eval shows for a document; its string fields when the task's prompt is not a string."""
    text = task.doc_to_text(doc)
    return text if isinstance(text, str) else "\n".join(texts_of(dict(doc)))


def decontaminate(train_files: Sequence[str], suite: str, *, n: int = N, threshold: float = THRESHOLD) -> Report:
    """`overlap` of the training files (each a dataset, named by its path) with the suite's eval items.

    The files are checked (present, known format) before the suite's tasks are built.
    """
    _check_settings(n, threshold)
    for file in train_files:
        check_train(file)
    evals = suite_items(suite)
    return overlap({str(f): read_train(f) for f in train_files}, evals, n=n, threshold=threshold)


# The record: a pipeline run's report, written and read back (`harness.tracking.schema` names it).

@dataclass
class Recorded:
    """A run's decontamination as read back: every (dataset, task) row (Wilson CIs recomputed from the counts, no
    pairs) and the tasks flagged contaminated."""

    rows: list[Overlap]
    flagged: list[str]

    def notes(self) -> dict[str, str]:
        """Flagged task → ``sft 3/5 items, 0.600 [0.231, 0.882]``, one part per dataset that contaminates it."""
        out: dict[str, list[str]] = {}
        for r in self.rows:
            if r.task in self.flagged and r.dataset != ALL and r.contaminated:
                out.setdefault(r.task, []).append(f"{r.dataset} {r.contaminated}/{r.total} items, "
                                                  f"{r.rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]")
        return {task: "; ".join(parts) for task, parts in out.items()}


def flagged_tasks(report: Report, flag_rate: float) -> list[str]:
    """The tasks whose rate is above `flag_rate` for some dataset (the pooled rate is never lower than one
    dataset's, so the pooled rows decide), in suite order."""
    pooled = [r for r in report.rows if r.dataset == ALL] or report.rows
    return list(dict.fromkeys(r.task for r in pooled if r.total and r.rate > flag_rate))


def log_report(run: Any, report: Report, *, flag_rate: float, sources: Mapping[str, str]) -> list[str]:
    """Log `report` on `run` (a `harness.tracking.store.Run`): per (dataset, task) the metrics
    ``decontam/<dataset>/<task>/{contaminated,total,rate}`` (the pooled ``all`` rows only when there are several
    datasets), every contaminated pair as ``decontam/pairs.jsonl`` (with its dataset's `sources` entry), and the
    flagged tasks as the tag ``harness.contaminated``.

    Returns:
        The flagged tasks.
    """
    import pandas as pd

    from harness.tracking import schema

    several = len({r.dataset for r in report.rows if r.dataset != ALL}) > 1
    metrics: dict[str, float] = {}
    for r in report.rows:
        if r.dataset == ALL and not several:
            continue
        values = {"contaminated": r.contaminated, "total": r.total, "rate": r.rate}
        metrics.update({schema.decontam_metric(r.dataset, r.task, k): v for k, v in values.items()})
    run.log_metrics(metrics)
    pairs = [{"dataset": p["dataset"], "source": sources.get(p["dataset"], p["dataset"]),
              **{k: v for k, v in p.items() if k != "dataset"}} for p in report.pairs()]
    columns = ["dataset", "source", "task", "item_id", "train_index", "score", "shared_ngrams"]
    run.write(schema.DECONTAM_PAIRS, pd.DataFrame(pairs, columns=columns))
    flagged = flagged_tasks(report, flag_rate)
    run.set_tags(schema.tags(contaminated=flagged or None))
    return flagged


def read_report(run_id: str, results_dir: Any = None) -> Recorded | None:
    """The decontamination a run recorded (`log_report`), from its metrics and tag; None when it has none."""
    from harness.tracking import schema, store

    found = store.find_run(run_id, results_dir)
    if found is None:
        return None
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in found["metrics"].items():
        parsed = schema.parse_decontam_metric(name)
        if parsed:
            counts.setdefault(parsed[:2], {})[parsed[2]] = value
    if not counts:
        return None
    rows = []
    for (dataset, task), got in counts.items():
        k, total = int(got.get("contaminated", 0)), int(got.get("total", 0))
        rows.append(Overlap(dataset, task, k, total, *wilson(k, total)))
    rows.sort(key=lambda r: (r.dataset == ALL, r.dataset, r.task))
    return Recorded(rows, list(schema.RunTags.from_tags(found["tags"]).contaminated))
