"""Arena prompt sets: read and check a JSONL file of prompts, and build the embedded tiny set.

One prompt per line: ``id`` (unique), and either ``prompt`` (a string, sent as one user turn) or ``messages`` (a chat,
a list of ``{"role", "content"}`` ending with a user turn); optional ``reference`` (a reference answer, shown to an
LLM judge) and ``skill``. Any other columns are kept: the verifier judge grades with them (``answer``,
``constraint``, ``word``, ``unsafe``, ``entity`` for the tiny skills).

The embedded set ``harness/suites/arena/tiny.jsonl`` (package data, found through `harness.resources`) interleaves
the four skills' eval splits, so its first N prompts are balanced across skills. Regenerate it from a checkout with
``python -m harness.arena.prompts harness/suites/arena/tiny.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, not_utf8
from harness.resources import resource_path

TINY_PROMPTS = resource_path("suites", "arena", "tiny.jsonl")
TINY_PER_SKILL = 50


def conversation(row: dict[str, Any]) -> list[dict[str, str]]:
    """The chat a model answers: the row's ``messages``, or its ``prompt`` as one user turn."""
    if "messages" in row:
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return [{"role": "user", "content": row["prompt"]}]


def question(row: dict[str, Any]) -> str:
    """The text a judge reads as the question: the prompt, or the chat rendered turn by turn."""
    if "messages" not in row:
        return row["prompt"]
    turns = row["messages"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"[{m['role']}]: {m['content']}" for m in turns)


def prompt_hash(row: dict[str, Any]) -> str:
    """A short hash of what the model sees, so a changed prompt under an old id is not served from the cache."""
    return hashlib.sha256(json.dumps(conversation(row), sort_keys=True).encode()).hexdigest()[:16]


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise HarnessError(f"{where}: expected a JSON object with id and prompt (or messages)")
    if "id" not in row or row["id"] in (None, ""):
        raise HarnessError(f"{where}: missing field 'id'; every prompt needs id and prompt (or messages)")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise HarnessError(f"{where}: field 'id' must be a string or a whole number, got {row['id']!r}")
    if row.get("skill") is not None and not isinstance(row["skill"], str):
        raise HarnessError(f"{where}: field 'skill' must be a string, got {row['skill']!r}")
    if isinstance(row.get("reference"), (list, dict, bool)):
        raise HarnessError(f"{where}: field 'reference' must be a string (the reference answer), got "
                           f"{row['reference']!r}")
    has_prompt, has_messages = "prompt" in row, "messages" in row
    if has_prompt == has_messages:
        what = "both 'prompt' and 'messages'" if has_prompt else "missing field 'prompt' (or 'messages')"
        raise HarnessError(f"{where}: {what}; give exactly one of them")
    if has_prompt and (not isinstance(row["prompt"], str) or not row["prompt"].strip()):
        raise HarnessError(f"{where}: field 'prompt' must be a non-empty string")
    if has_messages:
        msgs = row["messages"]
        ok = isinstance(msgs, list) and msgs and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs
        )
        if not ok:
            raise HarnessError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} strings")
        if msgs[-1]["role"] != "user":
            raise HarnessError(f"{where}: the last message must be the user's turn, got {msgs[-1]['role']!r}")
    return {**row, "id": str(row["id"])}


def read_prompts(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Read and check a prompt set.

    Args:
        path: a JSONL file; None for the embedded tiny set.
        limit: keep the first `limit` prompts (None or 0: all).

    Returns:
        The prompt rows, ids as strings.

    Raises:
        HarnessError: the file is missing or empty, a line is not JSON, a field is missing or wrong, an id repeats.
    """
    path = Path(path) if path else TINY_PROMPTS
    if not path.is_file():
        raise HarnessError(f"prompt file {str(path)!r} not found (expected JSONL: id, prompt or messages)")
    rows, seen = [], set()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8("prompt file", path, err) from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"prompt file {str(path)!r} line {lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise HarnessError(f"{where}: not valid JSON ({err.msg})") from None
        row = _check_row(raw, where)
        if row["id"] in seen:
            raise HarnessError(f"{where}: id {row['id']!r} repeats; prompt ids must be unique")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise HarnessError(f"prompt file {str(path)!r} holds no prompts")
    return rows[:limit] if limit else rows


def tiny_rows(per_skill: int = TINY_PER_SKILL) -> list[dict[str, Any]]:
    """The embedded set: `per_skill` eval items of each skill, interleaved, with the verifier's columns."""
    from harness.data import skills

    # Judges compare two answers: a safety set where refusing everything wins would say little, so it stays balanced.
    per = [skills.sample(skill, "eval", per_skill, seed=0) for skill in skills.SKILLS]
    rows = []
    for group in zip(*per):
        for item in group:
            row = {"id": item["id"], "prompt": item["prompt"], "reference": item["answer"], **item}
            rows.append({k: v for k, v in row.items() if k not in ("text", "choices", "label")})
    return rows


def write_tiny(path: str | Path = TINY_PROMPTS) -> None:
    """Write the embedded prompt set to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in tiny_rows()))


if __name__ == "__main__":
    write_tiny(sys.argv[1] if len(sys.argv) > 1 else TINY_PROMPTS)
