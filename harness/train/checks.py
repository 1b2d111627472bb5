"""Checks before any training, for every enabled TRL stage: its dataset reads and has the columns its format needs
(`harness.train.user_data`), TRL's own config class accepts its settings and ``trl`` mapping, and its LoRA targets
exist in the model it will train (QLoRA: bitsandbytes and a GPU are there). Each failure is one `HarnessError` line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

TRL_STAGES = ("sft", "dpo", "rlvr")


def check_stages(cfg: Any) -> None:
    """Check what each enabled stage of the config `cfg` will read and build, before any stage runs.

    The model a stage trains is its ``init``, else the previous stage's output, whose architecture is that of the
    stage before (the tiny Llama when pretraining builds it): LoRA targets are looked up there, on the meta device.

    Raises:
        HarnessError: the first problem, in one line naming the config key or the dataset.
    """
    from harness.models.load import resolve
    from harness.train import dpo, lora, rlvr, sft, user_data

    modules = {"sft": sft, "dpo": dpo, "rlvr": rlvr}
    source: str | None = None  # None: the tiny model pretraining builds
    with tempfile.TemporaryDirectory() as tmp:
        for stage in TRL_STAGES:
            section = getattr(cfg, stage)
            if not section.enabled:
                continue
            if section.init:
                source = resolve(section.init)
            if section.dataset:
                user_data.load(section)
            modules[stage].trainer_args(section, Path(tmp), cfg.run.seed)
            if section.lora.r:
                lora.check_quantize(section.lora)
                lora.check_targets(section.lora, source, cfg.model, cfg.model.trust_remote_code)
