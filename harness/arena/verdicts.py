"""What a judge says and what a judge is: the `Judgement` record on the Arena-Hard verdict scale, and the `Judge`
protocol every judge (verifier, reward model, LLM) follows. Shared by the judges, the LLM judge and the battles, so
none of them imports another for its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
SCORE_A = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}


@dataclass
class Judgement:
    """One verdict on one ordered pair of answers (answer A shown first).

    Attributes:
        verdict: one of `VERDICTS`, or None when the judgement failed.
        error: why it failed (None when it did not).
        bothbad: the tie is between two bad answers (the verifier's both-wrong).
        detail: judge-specific values (scores, the judge's reply).
        input_tokens, output_tokens, cost_usd, calls, seconds: what the judgement cost (LLM judges).
    """

    verdict: str | None
    error: str | None = None
    bothbad: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is not None and self.error is None


@runtime_checkable
class Judge(Protocol):
    """A judge: called on (prompt row, answer A, answer B) — A shown first — it returns a `Judgement`.

    Attributes:
        name: the judge kind (verifier, reward-model, llm).
        identity: what judged, e.g. ``llm:<model>`` (recorded with every battle; never a secret).
        version: changes whenever the judge's verdicts could (the judgement cache key includes it).
        concurrency: how many calls may run at once.
    """

    name: str
    identity: str
    version: str
    concurrency: int

    def check(self, prompts: list[dict[str, Any]]) -> None:
        """Raise `HarnessError` before any model work when the judge cannot grade these prompts."""

    def __call__(self, row: dict[str, Any], answer_a: str, answer_b: str) -> Judgement:
        """The verdict on one ordered pair."""


def fingerprint(judge: Judge) -> dict[str, str]:
    """The judge's fingerprint for the record (`harness.tracking.schema.JUDGE_FINGERPRINT`): its kind, its model
    (``llm:<model>`` → the model), a hash of its prompt (``prompt_version``; "none" for a judge that reads no prompt
    of its own: the verifier, a reward model) and its sampling temperature (0 for the deterministic judges)."""
    return {"kind": judge.name, "model": judge.identity.partition(":")[2] or judge.identity,
            "prompt_version": str(getattr(judge, "prompt_version", None) or "none"),
            "temperature": f"{float(getattr(judge, 'temperature', 0.0)):g}"}
