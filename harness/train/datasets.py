"""Training sets for the TRL stages, built from the synthetic skills (train split only), as TRL expects them.

- SFT: conversational prompt/completion rows over arithmetic, format, knowledge and safe how-to requests (never an
  unsafe one: refusing is what preference tuning adds).
- DPO: conversational preference pairs; chosen is correct and compliant, rejected is wrong or non-compliant. Safety
  pairs (refuse the unsafe, answer the safe), format pairs (right content, constraint broken) and, if asked for,
  arithmetic pairs (right number, wrong number).
- RLVR: arithmetic prompts with the columns the verifier needs (``skill``, ``answer``).

With reasoning delimiters (``model.think``), arithmetic SFT answers carry their worked steps inside them
(`harness.data.skills.think_answer`); the other skills answer directly, and the default rows are unchanged.
"""

from __future__ import annotations

import random

from harness.data import skills


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def sft_rows(per_skill: int, seed: int, think=None) -> list[dict]:
    """Prompt/completion conversations, `per_skill` of each trained skill, shuffled; with `think` (the
    `harness.reasoning.Delimiters`), arithmetic answers in the think format."""
    rows = []
    for skill in ("arithmetic", "format", "knowledge"):
        for item in skills.sample(skill, "train", per_skill, seed):
            answer = skills.think_answer(item, think.start, think.end) if think and skill == "arithmetic" \
                else item["answer"]
            rows.append({"prompt": _user(item["prompt"]), "completion": _assistant(answer)})
    safe = [i for i in skills.split("safety", "train") if not i["unsafe"]]
    random.Random(seed).shuffle(safe)
    rows += [{"prompt": _user(i["prompt"]), "completion": _assistant(i["answer"])} for i in safe[:per_skill]]
    random.Random(seed).shuffle(rows)
    return rows


def _broken_format(item: dict, rng: random.Random) -> str:
    other = rng.choice([c for c in skills.CONSTRAINTS if c != item["constraint"]])
    wrong = skills.format_answer(item["word"], other)
    return wrong if wrong != item["answer"] else item["word"].capitalize()


def dpo_rows(n_pairs: int, seed: int, arithmetic_fraction: float = 0.0) -> list[dict]:
    """Preference pairs: safety (refuse unsafe / answer safe), a quarter format compliance (constraint broken), and
    `arithmetic_fraction` arithmetic (right number over a wrong one).

    The default leaves arithmetic out: preference tuning then costs some arithmetic (an alignment tax the embedded
    pipeline shows), which RLVR's verifiable reward wins back.
    """
    rng = random.Random(seed)
    rows = []
    n_format, n_arith = n_pairs // 4, int(n_pairs * arithmetic_fraction)
    for item in skills.sample("arithmetic", "train", n_arith, seed):
        wrong = int(item["answer"]) + rng.choice([-10, -2, -1, 1, 2, 10])
        rows.append(
            {"prompt": _user(item["prompt"]), "chosen": _assistant(item["answer"]), "rejected": _assistant(str(wrong))}
        )
    for item in skills.sample("safety", "train", n_pairs - n_format - n_arith, seed):
        helpful = item["choices"][1]
        chosen, rejected = (skills.REFUSAL, helpful) if item["unsafe"] else (helpful, skills.REFUSAL)
        rows.append({"prompt": _user(item["prompt"]), "chosen": _assistant(chosen), "rejected": _assistant(rejected)})
    for item in skills.sample("format", "train", n_format, seed):
        rows.append(
            {
                "prompt": _user(item["prompt"]),
                "chosen": _assistant(item["answer"]),
                "rejected": _assistant(_broken_format(item, rng)),
            }
        )
    rng.shuffle(rows)
    return rows


def rlvr_rows(n_prompts: int, seed: int) -> list[dict]:
    """Arithmetic prompts with the verifier's columns."""
    return [
        {"prompt": _user(i["prompt"]), "skill": i["skill"], "answer": i["answer"]}
        for i in skills.sample("arithmetic", "train", n_prompts, seed)
    ]
