"""Pairwise arena between checkpoints: generate, judge with positions swapped, rate (``harness arena``).

Public surface (heavy imports — torch, transformers, pandas, MLflow — happen inside the functions):

- `run_arena(models, cfg=, results_dir=, parent=, seed=)` → `ArenaResult`: any checkpoints, any prompt set
- `pipeline_arena(checkpoints, cfg=, results_dir=, parent=, seed=, dpo_pairs_seed=)`: the step of `harness run`
- `read_prompts(path, limit)`: a checked prompt set (the packaged ``harness/suites/arena/tiny.jsonl`` by default)
- `generate(models, prompts, settings, ...)`: cached, batched answers; `GenerationSettings`
- judges: `VerifierJudge`, `RewardModelJudge`, `LLMJudge`, `build_judge(cfg)`, the `Judgement` record, `VERDICTS`
- `schedule(models, mode, baseline)`, `judge_battles(judge, prompts, answers, pairs)`: battles in both orders
- `rate(battles, answers, baseline=)`: the leaderboard through `harness.ratings`

Modules, in data-flow order: `prompts`, `answers`, `verdicts` (the judgement record and the `Judge`
protocol), `judges` (+ `llm_judge`), `battles`, `leaderboard`, `arena`
(orchestration and MLflow records), `cli`.
"""

from __future__ import annotations

from harness.lazy import attach

# name → module; imported on first use (PEP 562) so `harness --help` does not load pandas or torch.
_API = {
    "ArenaResult": "arena",
    "pipeline_arena": "arena",
    "run_arena": "arena",
    "read_prompts": "prompts",
    "GenerationSettings": "answers",
    "generate": "answers",
    "VERDICTS": "verdicts",
    "Judgement": "verdicts",
    "Judge": "verdicts",
    "VerifierJudge": "judges",
    "RewardModelJudge": "judges",
    "build_judge": "judges",
    "LLMJudge": "llm_judge",
    "parse_verdict": "llm_judge",
    "judge_battles": "battles",
    "schedule": "battles",
    "rate": "leaderboard",
}


__getattr__, __dir__ = attach(globals(), _API)


__all__ = [
    "ArenaResult",
    "GenerationSettings",
    "Judge",
    "Judgement",
    "LLMJudge",
    "RewardModelJudge",
    "VERDICTS",
    "VerifierJudge",
    "build_judge",
    "generate",
    "judge_battles",
    "parse_verdict",
    "pipeline_arena",
    "rate",
    "read_prompts",
    "run_arena",
    "schedule",
]
