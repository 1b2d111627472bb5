"""Reasoning models: the thinking block kept apart from the answer, thinking tokens counted, budgets forced.

A reasoning model writes a block of thinking (``<think>…</think>`` or a model-specific pair) before its answer.
Only the answer is graded: lm-eval's filters and metrics, the verifier and the RLVR reward, and the arena's judges
all see `split(...).answer`; the per-sample rows keep the reasoning beside it.

- `Delimiters`: the pair, and an optional answer lead-in written after the end delimiter when a budget forces it.
  From config (``model.reasoning``, ``eval.reasoning``, ``arena.reasoning``: ``{start, end, answer}``; ``{}`` turns
  reasoning off) or, when the config leaves it unset, from the checkpoint's chat template (`from_checkpoint`, which
  knows the pairs in `KNOWN`).
- `split(text, delimiters, opened=False)`: ``(reasoning, answer, terminated)``. A block that never closes is no
  answer (``answer == ""``, ``terminated`` false); a block that closes with nothing after it is an empty answer;
  text without delimiters is all answer. `opened` says the prompt itself opened the block (a chat template that
  ends its generation prompt with ``<think>``, as DeepSeek-R1's and Qwen3's do).
- Budget forcing (s1, Muennighoff et al. 2025): reasoning is generated for at most N tokens, stopping at the end
  delimiter; `forced(delimiters)` is what is then appended (the end delimiter and the answer lead-in) before the
  answer is generated. The lm-eval hook is `harness.evals.request_cache.thinking`; the arena's is in
  `harness.arena.engines`.
- Accounting: `token_stats` (mean with its standard error, median, 90th percentile) and `rate` (a share with its
  standard error) of per-item counts, `sample_metrics` of one eval task's rows.

This module is pure (no torch, no lm-eval): the callers tokenize.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.errors import HarnessError

# Pairs that chat templates of open reasoning models declare (DeepSeek-R1, Qwen3, QwQ: <think>; OpenThinker,
# Bespoke-Stratos: the thought markers; Kimi: its triangles).
KNOWN = (("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>"), ("◁think▷", "◁/think▷"),
         ("<reasoning>", "</reasoning>"))
_KEYS = ("start", "end", "answer")
# Per-sample columns of an eval task's rows (`annotate_samples`) and the keys of one sample's record.
COLUMNS = ("reasoning", "raw_response", "reasoning_tokens", "answer_tokens", "terminated", "forced")


@dataclass(frozen=True)
class Delimiters:
    """The reasoning block's delimiters.

    Attributes:
        start: opens the block (``<think>``).
        end: closes it (``</think>``); the answer follows.
        answer: written after `end` when a budget forces the answer (e.g. ``"Final answer:"``); "" for none.
    """

    start: str = "<think>"
    end: str = "</think>"
    answer: str = ""

    def to_dict(self) -> dict[str, str]:
        """The config form (and cache-key material)."""
        return {"start": self.start, "end": self.end, "answer": self.answer}


@dataclass(frozen=True)
class Split:
    """One completion taken apart: the reasoning, the answer (what is graded), and whether the block closed."""

    reasoning: str
    answer: str
    terminated: bool


def check(value: Any, key: str) -> None:
    """A config value for delimiters: None (from the checkpoint's chat template), ``{}`` (off) or a mapping with
    ``start`` and ``end`` (non-empty, different strings) and optionally ``answer``.

    Raises:
        HarnessError: one line naming `key`, the value and what is valid.
    """
    valid = ("valid: {start: '<think>', end: '</think>'} with an optional answer lead-in, {} for off, or null for "
             "the checkpoint's chat template")
    if value is None or value == {}:
        return
    if not isinstance(value, Mapping):
        raise HarnessError(f"config key {key}: {value!r} is not a mapping ({valid})")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise HarnessError(f"config key {key}.{unknown[0]}: unknown key ({valid})")
    for name in ("start", "end"):
        if not isinstance(value.get(name), str) or not value[name].strip():
            raise HarnessError(f"config key {key}.{name}: {value.get(name)!r} is not a delimiter ({valid})")
    if value["start"] == value["end"]:
        raise HarnessError(f"config key {key}: start and end are both {value['start']!r}; the block needs two "
                           "different delimiters")
    if not isinstance(value.get("answer", ""), str):
        raise HarnessError(f"config key {key}.answer: {value['answer']!r} is not a string ({valid})")


def check_budgets(value: Any, key: str) -> None:
    """``eval.budgets``: None (off) or a non-empty, strictly increasing list of whole numbers of tokens > 0.

    Raises:
        HarnessError: one line naming `key`, the value and what is valid.
    """
    if value is None:
        return
    valid = "valid: a strictly increasing list of thinking budgets in tokens, each >= 1, e.g. [64, 256, 1024]"
    if not isinstance(value, list):
        raise HarnessError(f"config key {key}: {value!r} is not a list ({valid}; null for none)")
    if not value:
        raise HarnessError(f"config key {key}: {value!r} is empty ({valid}; null for none)")
    for n in value:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HarnessError(f"config key {key}: {n!r} is not a positive budget ({valid})")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise HarnessError(f"config key {key}: {value!r} is not sorted ({valid})")


def from_config(value: Mapping[str, str] | None) -> Delimiters | None:
    """`Delimiters` from a checked config value; None for ``{}`` and None."""
    if not value:
        return None
    return Delimiters(value["start"], value["end"], value.get("answer", ""))


def detect(template: str | None) -> Delimiters | None:
    """The first `KNOWN` pair a chat template mentions both halves of, or None."""
    if not template:
        return None
    for start, end in KNOWN:
        if start in template and end in template:
            return Delimiters(start, end)
    return None


def chat_template(folder: str | Path) -> str | None:
    """A checkpoint folder's chat template, read from its files (no tokenizer built): ``chat_template.jinja``, else
    ``tokenizer_config.json``'s ``chat_template`` (a string, or a list of named templates joined)."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(template, list):
        return "\n".join(str(t.get("template", "")) for t in template if isinstance(t, Mapping))
    return template if isinstance(template, str) else None


def vocabulary(folder: str | Path) -> set[str]:
    """The added tokens of a checkpoint's ``tokenizer.json`` (where delimiters live as single tokens)."""
    try:
        data = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {t.get("content", "") for t in data.get("added_tokens", []) if isinstance(t, Mapping)}


_warned: set[tuple[str, str, str]] = set()


def resolve(value: Mapping[str, str] | None, folder: str | Path | None, *, where: str) -> Delimiters | None:
    """The delimiters for one checkpoint: the config's (`value`; ``{}`` is off), else its chat template's.

    Delimiters from the config that occur neither in the checkpoint's added tokens nor in its chat template are
    warned about once per checkpoint (they are probably misspelt: the model may never write them).

    Args:
        value: the checked config value (``model.reasoning``, ``eval.reasoning`` or ``arena.reasoning``).
        folder: the checkpoint's local folder (None: a served model or a hub id, nothing to read).
        where: the config key, for the warning.
    """
    local = folder is not None and Path(folder).is_dir()
    if value is None:
        return detect(chat_template(folder)) if local else None
    delimiters = from_config(value)
    if delimiters is None or not local:
        return delimiters
    template = chat_template(folder) or ""
    tokens = vocabulary(folder)
    missing = [d for d in (delimiters.start, delimiters.end) if d not in tokens and d not in template]
    mark = (str(Path(folder).resolve()), delimiters.start, delimiters.end)
    if missing and mark not in _warned:
        _warned.add(mark)
        from harness import console

        console.warn(f"{where}: {', '.join(map(repr, missing))} occurs neither in the vocabulary nor in the chat "
                     f"template of {folder}; the model may never write it, so every answer may count as unterminated")
    return delimiters


def split(text: str, delimiters: Delimiters | None, *, opened: bool = False) -> Split:
    """Take a completion apart into reasoning and answer.

    Args:
        text: the completion as generated.
        delimiters: the block's delimiters; None: all of `text` is the answer.
        opened: the prompt already opened the block (its generation prompt ends with the start delimiter).

    Returns:
        The `Split`: without a block, the whole text is the answer; a block that never closes leaves no answer
        (``""``, not terminated); otherwise the answer is what follows the first end delimiter, stripped.
    """
    text = "" if text is None else str(text)
    if delimiters is None:
        return Split("", text.strip(), True)
    start, end = text.find(delimiters.start), text.find(delimiters.end)
    if end >= 0 and (start < 0 or start > end):  # closed without an opening in the completion: opened by the prompt
        return Split(text[:end].strip(), text[end + len(delimiters.end):].strip(), True)
    if start >= 0:
        body = text[start + len(delimiters.start):]
        close = body.find(delimiters.end)
        if close < 0:
            return Split(body.strip(), "", False)
        return Split(body[:close].strip(), body[close + len(delimiters.end):].strip(), True)
    if opened:
        return Split(text.strip(), "", False)
    return Split("", text.strip(), True)


def opens(prompt: str, delimiters: Delimiters | None) -> bool:
    """Whether a rendered prompt leaves the reasoning block open (ends with the start delimiter)."""
    return delimiters is not None and str(prompt).rstrip().endswith(delimiters.start)


def opened_by(tokenizer, delimiters: Delimiters | None) -> bool:
    """Whether the tokenizer's chat template opens the reasoning block in its generation prompt (then completions
    start inside it: an unclosed one is no answer even without a start delimiter of its own)."""
    if delimiters is None or not getattr(tokenizer, "chat_template", None):
        return False
    try:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "?"}], tokenize=False,
                                               add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that needs other roles or arguments: assume it does not
        return False
    return opens(prompt, delimiters)


def forced(delimiters: Delimiters) -> str:
    """What budget forcing appends once the reasoning reached its budget: the end delimiter, then the lead-in."""
    return delimiters.end + delimiters.answer


def record(raw: str, delimiters: Delimiters | None, count: Callable[[str], int], *, opened: bool = False,
           forced_at: bool = False) -> dict[str, Any]:
    """One completion's reasoning record (the `COLUMNS`, and ``answer``): what the per-sample rows and the arena's
    answers keep.

    Args:
        raw: the completion as generated (with its reasoning).
        delimiters: the block's delimiters (None: no reasoning).
        count: tokens of a text, by the model's tokenizer.
        opened: the prompt opened the block.
        forced_at: budget forcing closed the block.
    """
    part = split(raw, delimiters, opened=opened)
    return {"answer": part.answer, "reasoning": part.reasoning, "raw_response": raw,
            "reasoning_tokens": count(part.reasoning) if part.reasoning else 0,
            "answer_tokens": count(part.answer) if part.answer else 0, "terminated": part.terminated,
            "forced": bool(forced_at)}


def add_columns(samples: Mapping[str, list[dict]], tables: dict) -> None:
    """Add the reasoning `COLUMNS` to the per-sample tables of the tasks whose lm-eval samples carry a reasoning
    record (``sample["reasoning"]``, put there by `harness.evals.request_cache.thinking`), by document.

    Args:
        samples: lm-eval's ``samples`` output, task → sample dicts.
        tables: task → per-sample `pandas.DataFrame` (``doc_id`` column), changed in place.
    """
    for task, rows in samples.items():
        notes = {s["doc_id"]: s["reasoning"] for s in rows if isinstance(s.get("reasoning"), Mapping)}
        table = tables.get(task)
        if not notes or table is None or "doc_id" not in table:
            continue
        for column in COLUMNS:
            table[column] = [notes.get(doc, {}).get(column) for doc in table["doc_id"]]


# ------------------------------------------------------------------------------------------------ accounting


def token_stats(values: Iterable[float]) -> dict[str, float]:
    """``mean``, ``stderr`` (of the mean), ``p50`` and ``p90`` of per-item token counts (NaN when there are none)."""
    import numpy as np

    data = np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))])
    if not len(data):
        return {"mean": math.nan, "stderr": math.nan, "p50": math.nan, "p90": math.nan}
    stderr = float(data.std(ddof=1) / math.sqrt(len(data))) if len(data) > 1 else math.nan
    return {"mean": float(data.mean()), "stderr": stderr, "p50": float(np.percentile(data, 50)),
            "p90": float(np.percentile(data, 90))}


def rate(flags: Iterable[bool]) -> tuple[float, float]:
    """A share of items and its standard error, √(p(1−p)/n); NaN for no items."""
    data = [bool(f) for f in flags]
    if not data:
        return math.nan, math.nan
    p = sum(data) / len(data)
    return p, math.sqrt(p * (1 - p) / len(data))


def sample_metrics(table) -> dict[str, float] | None:
    """One eval task's thinking accounting from its per-sample rows, or None for a task without them.

    Returns:
        ``reasoning_tokens_{mean,stderr,p50,p90}``, ``answer_tokens_{...}``, ``tokens_{mean,stderr}`` (both parts),
        ``unterminated_rate`` and its ``_stderr``, ``forced_rate``, and ``items``.
    """
    if table is None or "reasoning_tokens" not in getattr(table, "columns", ()):
        return None
    out: dict[str, float] = {}
    for name in ("reasoning_tokens", "answer_tokens"):
        out.update({f"{name}_{k}": v for k, v in token_stats(table[name]).items()})
    total = token_stats(table["reasoning_tokens"] + table["answer_tokens"])
    out["tokens_mean"], out["tokens_stderr"] = total["mean"], total["stderr"]
    out["unterminated_rate"], out["unterminated_rate_stderr"] = rate(~table["terminated"].astype(bool))
    out["forced_rate"] = rate(table["forced"].astype(bool))[0] if "forced" in table else 0.0
    out["items"] = float(len(table))
    return out


def cost_per_item(tokens_mean: float, usd_per_mtok: float) -> float:
    """Generated tokens per item × the price of a million tokens (USD)."""
    return tokens_mean * usd_per_mtok / 1e6
