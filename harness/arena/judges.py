"""Judges: small callables that give a verdict for (prompt row, answer A, answer B).

Every judge returns a `Judgement` on the Arena-Hard scale ``A>>B, A>B, A=B, B>A, B>>A``, or a failed one (its
``error`` set), which the arena reports and never counts as a tie. A judge carries its identity and version, which
go into every battle record and into the judgement cache key.

- `VerifierJudge`: the verifiers the eval suites and the RLVR reward use; a correct answer beats an incorrect one,
  both right is a tie, both wrong a tie between two bad answers.
- `RewardModelJudge`: a sequence-classification reward model scores both answers; the higher score wins unless
  the difference is within the tie margin; beyond the strong margin the win is strong.
- `LLMJudge` (in `harness.arena.llm_judge`): an OpenAI-compatible chat endpoint asked for an Arena-Hard verdict.

`build_judge(cfg)` makes the one the config names.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any, get_args

from harness.arena.verdicts import Judgement
from harness.config import JudgeKind
from harness.errors import HarnessError

JUDGES = get_args(JudgeKind)  # the config's choices


class VerifierJudge:
    """Correct beats incorrect, graded by `harness.data.verifiers.verify` on the prompt row's columns."""

    name = "verifier"
    concurrency = 1

    def __init__(self) -> None:
        from harness.data import verifiers

        # The grader's own source is its version: a changed verifier must not reuse cached judgements.
        self.version = hashlib.sha256(inspect.getsource(verifiers).encode()).hexdigest()[:12]
        self.identity = "verifier"
        self._verify = verifiers.verify

    def check(self, prompts: list[dict[str, Any]]) -> None:
        """Raise `HarnessError` unless every prompt carries the columns its verifier needs."""
        from harness.data.skills import SKILLS

        need = {"arithmetic": ("answer",), "format": ("constraint", "word"), "knowledge": ("answer",),
                "safety": ("unsafe", "entity")}
        for row in prompts:
            skill = row.get("skill")
            if skill not in SKILLS:
                raise HarnessError(
                    f"prompt {row['id']!r}: the verifier judge needs a 'skill' in {', '.join(SKILLS)}, got {skill!r} "
                    "(use --judge reward-model or llm for open-ended prompts)"
                )
            missing = [c for c in need[skill] if c not in row]
            if missing:
                raise HarnessError(f"prompt {row['id']!r}: the verifier judge needs column(s) {', '.join(missing)}")

    def __call__(self, row: dict[str, Any], answer_a: str, answer_b: str) -> Judgement:
        a, b = self._verify(row, answer_a), self._verify(row, answer_b)
        verdict = "A>B" if a > b else "B>A" if b > a else "A=B"
        return Judgement(verdict, bothbad=a == b == 0.0, detail={"correct_a": a, "correct_b": b})


class RewardModelJudge:
    """The higher reward wins; within `tie_margin` it is a tie, beyond `strong_margin` a strong win."""

    name = "reward-model"
    concurrency = 1

    def __init__(self, spec: str, *, tie_margin: float = 0.05, strong_margin: float = 1.0, batch_size: int = 16,
                 trust_remote_code: bool = False, device: str | None = None) -> None:
        from harness.arena.answers import device_or_default
        from harness.models.load import content_hash
        from harness.train.reward import load_reward_model

        self.model, self.tokenizer = load_reward_model(spec, trust_remote_code=trust_remote_code)
        self.model.to(device_or_default(device))
        self.identity = f"reward-model:{spec}"
        self.version = content_hash(spec)
        self.tie_margin, self.strong_margin, self.batch_size = tie_margin, strong_margin, batch_size
        self._scores: dict[tuple[str, str], float] = {}

    def check(self, prompts: list[dict[str, Any]]) -> None:
        """Any prompt set will do."""

    def prepare(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Score many (prompt row, answer) items in batches ahead of the pairwise calls."""
        from harness.arena.prompts import conversation, prompt_hash
        from harness.train.reward import score

        todo = list({(prompt_hash(r), a): (r, a) for r, a in items if (prompt_hash(r), a) not in self._scores}.items())
        chats = [conversation(r) + [{"role": "assistant", "content": a}] for _, (r, a) in todo]
        for (key, _), value in zip(todo, score(self.model, self.tokenizer, chats, self.batch_size)):
            self._scores[key] = value

    def __call__(self, row: dict[str, Any], answer_a: str, answer_b: str) -> Judgement:
        from harness.arena.prompts import prompt_hash

        self.prepare([(row, answer_a), (row, answer_b)])
        h = prompt_hash(row)
        sa, sb = self._scores[(h, answer_a)], self._scores[(h, answer_b)]
        diff = sa - sb
        if abs(diff) <= self.tie_margin:
            verdict = "A=B"
        elif diff > 0:
            verdict = "A>>B" if diff > self.strong_margin else "A>B"
        else:
            verdict = "B>>A" if -diff > self.strong_margin else "B>A"
        return Judgement(verdict, detail={"score_a": sa, "score_b": sb})


def build_judge(cfg):
    """The judge `cfg.judge` names, built from an `ArenaConfig` (`cfg.reward_model`, `cfg.llm` hold its settings).

    Raises:
        HarnessError: a reward-model judge without a model, an LLM judge without an endpoint, model or key.
    """
    if cfg.judge == "verifier":
        return VerifierJudge()
    if cfg.judge == "reward-model":
        rm = cfg.reward_model
        if not rm.path:
            raise HarnessError("the reward-model judge needs a model: --reward-model SPEC or arena.reward_model.path "
                               "(a HF id or folder with a sequence-classification head)")
        return RewardModelJudge(rm.path, tie_margin=rm.tie_margin, strong_margin=rm.strong_margin,
                                batch_size=cfg.batch_size, device=cfg.device)
    if cfg.judge == "llm":
        from dataclasses import asdict

        from harness.arena.llm_judge import LLMJudge

        return LLMJudge(**asdict(cfg.llm))  # LLMJudgeConfig's fields are LLMJudge's arguments
    raise HarnessError(f"unknown arena judge {cfg.judge!r}; valid: {', '.join(JUDGES)}")
