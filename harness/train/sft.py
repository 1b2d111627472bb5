"""Stage `sft`: supervised finetuning with TRL's `SFTTrainer` on conversational skill data (loss on completions).

In the think format (``model.think``) the model first gets the reasoning delimiters as tokens
(`harness.models.tiny.add_reasoning_tokens`) and its arithmetic answers carry worked steps inside them."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import SFTConfig
from harness.train import lora, user_data
from harness.train.common import StageResult, stage_args, train_and_save
from harness.train.datasets import sft_rows


def trainer_args(cfg: SFTConfig, out_dir: Path, seed: int):
    """The stage's `trl.SFTConfig` (its own settings < ``sft.trl``), built by TRL's class."""
    from trl import SFTConfig as TRLSFTConfig

    return stage_args(TRLSFTConfig, cfg, out_dir, seed, max_length=cfg.max_length, completion_only_loss=True,
                      packing=cfg.packing, include_num_input_tokens_seen="non_padding")


def run(cfg: SFTConfig, init: str, out_dir: Path, seed: int, trust_remote_code: bool = False,
        think=None) -> StageResult:
    """Finetune `init` on the SFT mixture (or ``cfg.dataset``) and save the result to `out_dir`.

    Args:
        cfg: SFT settings.
        init: starting checkpoint (folder, hub id or MLflow URI).
        out_dir: checkpoint folder to write.
        seed: data and training seed.
        trust_remote_code: passed to the loader.
        think: the `harness.reasoning.Delimiters` of the think format, or None.

    Returns:
        The stage's result.
    """
    from trl import SFTTrainer

    start = time.perf_counter()
    model, tokenizer = lora.load_for(cfg, init, trust_remote_code=trust_remote_code)
    if think is not None:
        from harness.models.tiny import add_reasoning_tokens

        add_reasoning_tokens(model, tokenizer, think)
    trainer = SFTTrainer(
        model=model, args=trainer_args(cfg, out_dir, seed),
        train_dataset=user_data.train_dataset(cfg, lambda: sft_rows(cfg.examples_per_skill, seed, think)),
        processing_class=tokenizer, peft_config=lora.peft_config(cfg.lora),
    )
    return train_and_save(trainer, tokenizer, "sft", out_dir, start)
