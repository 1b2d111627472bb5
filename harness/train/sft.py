"""Stage `sft`: supervised finetuning with TRL's `SFTTrainer` on conversational skill data (loss on completions)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import SFTConfig
from harness.train.common import StageResult, train_and_save, trl_common
from harness.train.datasets import sft_rows


def run(cfg: SFTConfig, init: str, out_dir: Path, seed: int, trust_remote_code: bool = False) -> StageResult:
    """Finetune `init` on the SFT mixture and save the result to `out_dir`.

    Args:
        cfg: SFT settings.
        init: starting checkpoint (folder, hub id or MLflow URI).
        out_dir: checkpoint folder to write.
        seed: data and training seed.
        trust_remote_code: passed to the loader.

    Returns:
        The stage's result.
    """
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from harness.models.load import load

    start = time.perf_counter()
    model, tokenizer = load(init, trust_remote_code=trust_remote_code)
    args = TRLSFTConfig(
        **trl_common(out_dir, seed, cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.log_every),
        max_length=128,
        completion_only_loss=True,
        packing=False,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(sft_rows(cfg.examples_per_skill, seed)),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, tokenizer, "sft", out_dir, start)
