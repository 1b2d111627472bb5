"""Stage `dpo`: preference finetuning with TRL's `DPOTrainer` (chosen = correct and compliant)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import DPOConfig
from harness.train import lora, user_data
from harness.train.common import StageResult, stage_args, train_and_save
from harness.train.datasets import dpo_rows


def trainer_args(cfg: DPOConfig, out_dir: Path, seed: int):
    """The stage's `trl.DPOConfig` (its own settings < ``dpo.trl``), built by TRL's class."""
    from trl import DPOConfig as TRLDPOConfig

    return stage_args(TRLDPOConfig, cfg, out_dir, seed, beta=cfg.beta, loss_type=["sigmoid", "sft"],
                      loss_weights=[1.0, cfg.sft_weight], max_length=cfg.max_length,
                      include_num_input_tokens_seen="non_padding")


def run(cfg: DPOConfig, init: str, out_dir: Path, seed: int, trust_remote_code: bool = False) -> StageResult:
    """Preference-tune `init` on the DPO pairs and save the result to `out_dir`.

    The reference model is a frozen copy of `init` (TRL's default). The loss is DPO's sigmoid loss plus, weighted by
    `cfg.sft_weight`, the NLL of the chosen answer (RPO), which keeps the chosen answers' likelihood from sinking.

    Args:
        cfg: DPO settings.
        init: starting checkpoint (folder, hub id or MLflow URI).
        out_dir: checkpoint folder to write.
        seed: data and training seed.
        trust_remote_code: passed to the loader.

    Returns:
        The stage's result.
    """
    from trl import DPOTrainer

    start = time.perf_counter()
    model, tokenizer = lora.load_for(cfg, init, trust_remote_code=trust_remote_code)
    trainer = DPOTrainer(
        model=model, args=trainer_args(cfg, out_dir, seed),
        train_dataset=user_data.train_dataset(cfg, lambda: dpo_rows(cfg.pairs, seed, cfg.arithmetic_fraction)),
        processing_class=tokenizer, peft_config=lora.peft_config(cfg.lora),
    )
    return train_and_save(trainer, tokenizer, "dpo", out_dir, start)
