"""Stage `rlvr`: GRPO (TRL's `GRPOTrainer`) with the verifier as the reward — the function the eval suites grade with.

A reasoning model (``model.reasoning`` or ``model.think``) is rewarded on the answer part only
(`harness.data.verifiers.answers_only`, an unterminated block scoring as no answer), plus ``rlvr.format_reward`` for
a reasoning block that closes."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import RLVRConfig
from harness.data.verifiers import reward
from harness.train import lora, user_data
from harness.train.common import StageResult, stage_args, train_and_save
from harness.train.datasets import rlvr_rows


def trainer_args(cfg: RLVRConfig, out_dir: Path, seed: int):
    """The stage's `trl.GRPOConfig` (its own settings < ``rlvr.trl``), built by TRL's class."""
    from trl import GRPOConfig

    return stage_args(GRPOConfig, cfg, out_dir, seed, num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta)


def reward_for(cfg: RLVRConfig, reasoning=None, opened: bool = False):
    """The reward ``rlvr.verifier`` names: the synthetic skills' verifier (``skills``) or a real task's
    (`harness.data.task_verifiers.verifier_by_name`); for a reasoning model (its `harness.reasoning.Delimiters`)
    graded on the answer part, plus ``rlvr.format_reward`` for a closed block (`opened`: the prompts open it)."""
    if cfg.verifier == "skills":
        graded = reward
    else:
        from harness.data.task_verifiers import verifier_by_name

        graded = verifier_by_name(cfg.verifier, where="config key rlvr.verifier")
    if reasoning is None:
        return graded
    from harness.data.verifiers import answers_only

    return answers_only(graded, reasoning, cfg.format_reward, opened)


def run(
    cfg: RLVRConfig, init: str, out_dir: Path, seed: int, trust_remote_code: bool = False, reward_fn=None,
    reasoning=None,
) -> StageResult:
    """Reinforce `init` on arithmetic prompts (or ``cfg.dataset``) rewarded by ``cfg.verifier``; save to `out_dir`.

    Args:
        cfg: GRPO settings.
        init: starting checkpoint (folder, hub id or MLflow URI).
        out_dir: checkpoint folder to write.
        seed: data, sampling and training seed.
        trust_remote_code: passed to the loader.
        reward_fn: the reward (TRL contract); None: `reward_for(cfg)`, the verifier the evals grade with.
        reasoning: the model's `harness.reasoning.Delimiters`: the reward grades the answer part only.

    Returns:
        The stage's result; its history holds reward mean, KL (when beta > 0), loss and learning rate per step.
    """
    from trl import GRPOTrainer

    start = time.perf_counter()
    model, tokenizer = lora.load_for(cfg, init, trust_remote_code=trust_remote_code)
    if reward_fn is None:
        from harness import reasoning as thinking

        reward_fn = reward_for(cfg, reasoning, thinking.opened_by(tokenizer, reasoning))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_fn,
        args=trainer_args(cfg, out_dir, seed),
        train_dataset=user_data.train_dataset(cfg, lambda: rlvr_rows(cfg.prompts, seed)),
        processing_class=tokenizer,
        peft_config=lora.peft_config(cfg.lora),
    )
    return train_and_save(trainer, tokenizer, "rlvr", out_dir, start)
