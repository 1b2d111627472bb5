"""Battles: which models meet, every pair judged twice with positions swapped, and the battle records.

For each prompt and each pair (model_a, model_b) the judge sees A = model_a's answer first, then the swapped order
A = model_b's answer. The two verdicts are combined from model_a's side: its score is the mean of the two games'
scores (a win counts 1, a tie 1/2), so model_a wins when the mean is above 1/2, loses when it is below, and the
battle is a tie otherwise. A judge that always prefers position A therefore produces ties, never wins.

A battle record is Chatbot Arena's ``model_a, model_b, winner`` (``model_a``, ``model_b``, ``tie`` or
``tie (bothbad)``) plus ``prompt_id, skill, judge, judge_version, verdict_ab, verdict_ba, consistent, len_a,
len_b, tokens_a, tokens_b``, where ``verdict_ba`` is the verdict as given with model_b shown first. When either
game's judgement fails, the pair is not a battle: both judgements go to the failure records with their errors.

Judgements are cached by (judge identity and version, prompt hash, answer shown first, answer shown second):
a re-run with unchanged answers calls no judge. Failed judgements are not cached, so a re-run retries them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import pandas as pd

from harness.arena.verdicts import SCORE_A, Judge, Judgement
from harness.arena.prompts import prompt_hash
from harness.config import ArenaMode
from harness.errors import HarnessError

MODES = get_args(ArenaMode)  # the config's choices


def schedule(models: list[str], mode: str = "round-robin", baseline: str | None = None) -> list[tuple[str, str]]:
    """The pairs that meet: every unordered pair (round-robin), or every model against `baseline` (model_b).

    Raises:
        HarnessError: fewer than two models, an unknown mode, or a baseline that is not one of the models.
    """
    if len(models) < 2:
        raise HarnessError(f"an arena needs at least two models, got {len(models)}: {', '.join(models) or 'none'}")
    if len(set(models)) != len(models):
        raise HarnessError(f"model names repeat: {', '.join(models)}; name each model once")
    if mode not in MODES:
        raise HarnessError(f"unknown arena mode {mode!r}; valid: {', '.join(MODES)}")
    if baseline is not None and baseline not in models:
        raise HarnessError(f"baseline {baseline!r} is not one of the models: {', '.join(models)}")
    if mode == "baseline":
        if baseline is None:
            raise HarnessError("arena mode 'baseline' needs a baseline model (--baseline M or arena.baseline)")
        return [(m, baseline) for m in models if m != baseline]
    return list(itertools.combinations(models, 2))


def combine(first: Judgement, second: Judgement) -> tuple[str, float]:
    """The winner label and model_a's mean score from the two games (model_a shown first, then second)."""
    score = (SCORE_A[first.verdict] + 1.0 - SCORE_A[second.verdict]) / 2.0
    if score > 0.5:
        return "model_a", score
    if score < 0.5:
        return "model_b", score
    return ("tie (bothbad)" if first.bothbad and second.bothbad else "tie"), score


class JudgementCache:
    """Successful judgements of one judge (identity and version), one JSON line each."""

    def __init__(self, cache_dir: str | Path | None, judge: Judge) -> None:
        self.path = None
        self.entries: dict[str, dict] = {}
        if cache_dir is None:
            return
        ident = hashlib.sha256(f"{judge.identity}@{judge.version}".encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"{ident}.jsonl"
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.entries[rec["key"]] = rec["judgement"]

    @staticmethod
    def key(row: dict[str, Any], answer_a: str, answer_b: str) -> str:
        text = json.dumps([prompt_hash(row), answer_a, answer_b])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, key: str) -> Judgement | None:
        hit = self.entries.get(key)
        return Judgement(**hit) if hit is not None else None

    def put(self, items: list[tuple[str, Judgement]]) -> None:
        good = [(k, j) for k, j in items if j.ok]
        for k, j in good:
            self.entries[k] = asdict(j)
        if self.path and good:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps({"key": k, "judgement": asdict(j)}) + "\n" for k, j in good))


def _run_jobs(judge: Judge, jobs: list[tuple[str, dict, str, str]], cache: JudgementCache) -> tuple[dict, dict]:
    """Judge every (key, row, first, second) job not in the cache; the judge's own concurrency bounds the threads.

    Returns:
        `(all judgements by key, the judgements made now by key)`.
    """
    from harness import console

    todo = {k: (row, a, b) for k, row, a, b in jobs if cache.get(k) is None}
    results: dict[str, Judgement] = {k: cache.get(k) for k, *_ in jobs if k not in todo}
    if not todo:
        console.info(f"arena judging: {len(results)} judgements, all cached")
        return results, {}
    keys, fresh = list(todo), {}
    chunk = max(1, 4 * judge.concurrency)
    with console.progress("arena judging", len(keys), "judgements") as bar, \
            ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
        if hasattr(judge, "prepare"):
            judge.prepare([(row, ans) for row, a, b in todo.values() for ans in (a, b)])
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            done = list(pool.map(lambda k: _safe_call(judge, *todo[k]), part))
            cache.put(list(zip(part, done)))
            fresh.update(zip(part, done))
            bar.update(len(part))
        if results:
            bar.set(cached=len(results))
    return {**results, **fresh}, fresh


def _safe_call(judge: Judge, row, a, b) -> Judgement:
    try:
        return judge(row, a, b)
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - one broken judgement is recorded and reported, not fatal
        return Judgement(None, error=f"{type(err).__name__}: {err}")


@dataclass
class Judged:
    """What judging produced: the battles, the failed judgements, every judgement (per call) and totals."""

    battles: pd.DataFrame
    failures: pd.DataFrame
    judgements: pd.DataFrame
    stats: dict[str, float]


def judge_battles(
    judge: Judge,
    prompts: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    pairs: list[tuple[str, str]],
    *,
    cache_dir: str | Path | None = None,
) -> Judged:
    """Judge every pair on every prompt in both orders and build the battle records.

    Args:
        judge: a judge (see `harness.arena.judges`).
        prompts: the prompt rows.
        answers: generation records (`harness.arena.answers.generate`).
        pairs: (model_a, model_b) pairs from `schedule`.
        cache_dir: judgement cache folder; None disables the cache.

    Returns:
        `Judged`: the battles DataFrame (arena format plus extra columns); one row per failed judgement
        (``model_a, model_b, prompt_id, order, judge, error``); one row per judgement with its verdict, error,
        tokens, cost, calls, seconds, whether it came from the cache, and the judge's detail (scores or reply);
        and totals (judgements, cached, failed, battles, calls, tokens, cost, position consistency).
    """
    by = {(r["model"], r["prompt_id"]): r for r in answers}
    cache = JudgementCache(cache_dir, judge)
    jobs, games = [], []
    for row in prompts:
        for a, b in pairs:
            ans_a, ans_b = by[(a, row["id"])]["answer"], by[(b, row["id"])]["answer"]
            k1, k2 = cache.key(row, ans_a, ans_b), cache.key(row, ans_b, ans_a)
            jobs += [(k1, row, ans_a, ans_b), (k2, row, ans_b, ans_a)]
            games.append((row, a, b, k1, k2))
    results, fresh = _run_jobs(judge, jobs, cache)

    battles, failures, records = [], [], []
    for row, a, b, k1, k2 in games:
        first, second = results[k1], results[k2]
        for order, key, shown_first, j in (("ab", k1, a, first), ("ba", k2, b, second)):
            records.append({"model_a": a, "model_b": b, "prompt_id": row["id"], "order": order,
                            "shown_first": shown_first, "judge": judge.identity, "judge_version": judge.version,
                            "verdict": j.verdict, "error": j.error, "bothbad": j.bothbad,
                            "input_tokens": j.input_tokens, "output_tokens": j.output_tokens,
                            "cost_usd": j.cost_usd, "calls": j.calls, "seconds": j.seconds,
                            "cached": key not in fresh, "detail": j.detail})
        if not (first.ok and second.ok):
            for order, j in (("ab", first), ("ba", second)):
                if not j.ok:
                    failures.append({"model_a": a, "model_b": b, "prompt_id": row["id"], "order": order,
                                     "judge": judge.identity, "error": j.error or "no verdict"})
            continue
        winner, score = combine(first, second)
        ra, rb = by[(a, row["id"])], by[(b, row["id"])]
        battles.append({
            "model_a": a, "model_b": b, "winner": winner, "prompt_id": row["id"], "skill": row.get("skill"),
            "judge": judge.identity, "judge_version": judge.version,
            "verdict_ab": first.verdict, "verdict_ba": second.verdict, "score_a": score,
            "consistent": SCORE_A[first.verdict] + SCORE_A[second.verdict] == 1.0,
            "len_a": ra["answer_chars"], "len_b": rb["answer_chars"],
            "tokens_a": ra["answer_tokens"], "tokens_b": rb["answer_tokens"],
        })
    made = list(fresh.values())
    stats = {
        "judgements": float(len(jobs)),
        "judgements_cached": float(sum(k not in fresh for k, *_ in jobs)),
        "judgements_failed": float(len(failures)),
        "battles": float(len(battles)),
        "battles_failed": float(len(games) - len(battles)),
        "calls": float(sum(j.calls for j in made)),
        "input_tokens": float(sum(j.input_tokens for j in made)),
        "output_tokens": float(sum(j.output_tokens for j in made)),
        "cost_usd": float(sum(j.cost_usd for j in made)),
        "position_consistency": float(sum(b["consistent"] for b in battles) / max(1, len(battles))),
    }
    cols = ["model_a", "model_b", "prompt_id", "order", "judge", "error"]
    return Judged(pd.DataFrame(battles), pd.DataFrame(failures, columns=cols), pd.DataFrame(records), stats)
