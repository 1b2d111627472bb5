"""Stage `dpo`: preference finetuning with TRL's `DPOTrainer` (chosen = correct and compliant)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.config import DPOConfig
from harness.train.common import StageResult, train_and_save, trl_common
from harness.train.datasets import dpo_rows


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
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from harness.models.load import load

    start = time.perf_counter()
    model, tokenizer = load(init, trust_remote_code=trust_remote_code)
    args = TRLDPOConfig(
        **trl_common(out_dir, seed, cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.log_every),
        beta=cfg.beta,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, cfg.sft_weight],
        max_length=128,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(dpo_rows(cfg.pairs, seed, cfg.arithmetic_fraction)), processing_class=tokenizer
    )
    return train_and_save(trainer, tokenizer, "dpo", out_dir, start)
