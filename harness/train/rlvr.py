"""Stage `rlvr`: GRPO (TRL's `GRPOTrainer`) with the verifier as the reward — the function the eval suites grade with."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import RLVRConfig
from harness.data.verifiers import reward
from harness.train.common import StageResult, train_and_save, trl_common
from harness.train.datasets import rlvr_rows


def run(
    cfg: RLVRConfig, init: str, out_dir: Path, seed: int, trust_remote_code: bool = False, reward_fn=reward
) -> StageResult:
    """Reinforce `init` on arithmetic prompts rewarded by `harness.data.verifiers.reward`; save to `out_dir`.

    Args:
        cfg: GRPO settings.
        init: starting checkpoint (folder, hub id or MLflow URI).
        out_dir: checkpoint folder to write.
        seed: data, sampling and training seed.
        trust_remote_code: passed to the loader.
        reward_fn: the reward (TRL contract); the verifier unless a caller has a reason to swap it.

    Returns:
        The stage's result; its history holds reward mean, KL (when beta > 0), loss and learning rate per step.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from harness.models.load import load

    start = time.perf_counter()
    model, tokenizer = load(init, trust_remote_code=trust_remote_code)
    args = GRPOConfig(
        **trl_common(out_dir, seed, cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.log_every),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_fn,
        args=args,
        train_dataset=Dataset.from_list(rlvr_rows(cfg.prompts, seed)),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, tokenizer, "rlvr", out_dir, start)
