"""What every training stage shares: its result record, cost accounting, progress lines and TRL settings."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class StageResult:
    """One finished stage: its checkpoint, training curve and what it cost."""

    stage: str
    checkpoint: Path
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    parameters: int = 0
    trainer_config: dict[str, Any] = field(default_factory=dict)
    extra_metrics: dict[str, float] = field(default_factory=dict)

    def cost(self, price_per_hour: float) -> dict[str, float]:
        """Cost metrics: tokens, wall seconds, estimated FLOPs (6 · params · tokens) and USD at `price_per_hour`."""
        from harness.tracking.schema import COST

        return {
            COST["tokens"]: float(self.tokens),
            COST["seconds"]: self.seconds,
            COST["flops"]: 6.0 * self.parameters * self.tokens,
            COST["usd"]: self.seconds / 3600.0 * price_per_hour,
        }


@dataclass(frozen=True)
class Hardware:
    """Where a stage trains: ``cuda`` (bf16 mixed precision where the GPU supports it) or ``cpu`` (fp32)."""

    device: str
    bf16: bool


def train_device() -> Hardware:
    """What is there: CUDA with bf16 where supported (fp32 on a GPU without it), else the CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        return Hardware("cuda", torch.cuda.is_bf16_supported())
    return Hardware("cpu", False)


def trl_common(out_dir: Path, seed: int, epochs: float, batch_size: int, learning_rate: float, log_every: int) -> dict:
    """TRL/transformers `TrainingArguments` shared by every stage: the device and precision `train_device` picks, no
    checkpoints written mid-run."""
    hardware = train_device()
    return dict(
        output_dir=str(out_dir / "_trainer"),
        seed=seed,
        data_seed=seed,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=log_every,
        save_strategy="no",
        report_to="none",
        bf16=hardware.bf16,
        fp16=False,
        use_cpu=hardware.device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def stage_args(trl_class: type, cfg: Any, out_dir: Path, seed: int, **own: Any):
    """A stage's TRL config, built by TRL's own class: the shared settings (`trl_common`) < the stage's own (`own`)
    < its hardware fields (gradient accumulation and checkpointing) < its ``trl`` mapping.

    Raises:
        HarnessError: TRL's class refuses a value, naming the stage's ``trl`` key.
    """
    from harness.errors import HarnessError, first_line

    hardware = {"gradient_accumulation_steps": cfg.gradient_accumulation_steps}
    if not cfg.gradient_checkpointing:  # only when off (TRL's default is on): transformers warns about its name
        hardware["gradient_checkpointing"] = False
    kwargs = {**trl_common(out_dir, seed, cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.log_every), **own,
              **hardware, **cfg.trl}
    try:
        return trl_class(**kwargs)
    except (TypeError, ValueError) as err:
        raise HarnessError(f"config key {cfg.where}.trl: trl.{trl_class.__name__} refuses the stage's settings: "
                           f"{first_line(err)}") from None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def trainer_history(trainer) -> list[tuple[int, dict[str, float]]]:
    """The trainer's logged curve as `(step, {metric: value})` rows (numbers only, the summary row dropped)."""
    rows = []
    for entry in trainer.state.log_history:
        if "step" not in entry or "train_loss" in entry:  # the end-of-training summary row
            continue
        metrics = {k: _number(v) for k, v in entry.items() if k not in ("step", "epoch")}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        if metrics:
            rows.append((int(entry["step"]), metrics))
    return rows


@contextmanager
def quiet_progress(trainer, phase: str) -> Iterator[None]:
    """While training in the block, show one console progress line (steps, last loss or reward) instead of the
    trainer's own printers."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from harness import console

    with console.progress(phase, unit="steps") as bar:

        class _Line(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                bar.add(state.max_steps)

            def on_step_end(self, args, state, control, **kwargs):
                bar.update(state.global_step - bar.count)

            def on_log(self, args, state, control, logs=None, **kwargs):
                shown = {k: _number((logs or {}).get(k)) for k in ("loss", "reward")}
                bar.set(**{k: v for k, v in shown.items() if v is not None})

        line = _Line()
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(line)
        try:
            yield
        finally:
            trainer.remove_callback(line)


def train_and_save(trainer, tokenizer, stage: str, out_dir: Path, start: float) -> StageResult:
    """Train under a progress line (``train <stage>``), save model and tokenizer to `out_dir`, and describe the stage.

    Tokens are the trainer's count of non-padding input tokens or, for GRPO (which logs its own running count of
    prompt + completion tokens as ``num_tokens``), the largest ``num_tokens`` logged.
    """
    from harness.train.eval_callback import callbacks

    for callback in callbacks():  # eval during training (eval.during_training), when the runner asked for it
        trainer.add_callback(callback)
    with quiet_progress(trainer, f"train {stage}"):
        trainer.train()
    from harness.train import lora

    lora.save(trainer, out_dir)  # a LoRA stage saves its adapters merged: the next stage and the evals load a model
    if trainer.args.should_save:  # the main process, under accelerate launch
        tokenizer.save_pretrained(out_dir)
    history = trainer_history(trainer)
    tokens = int(trainer.state.num_input_tokens_seen) or int(max((m.get("num_tokens", 0) for _, m in history), default=0))
    return StageResult(
        stage=stage,
        checkpoint=out_dir,
        history=history,
        tokens=tokens,
        seconds=time.perf_counter() - start,
        parameters=sum(p.numel() for p in trainer.model.parameters()),
        trainer_config=trainer.args.to_dict(),
    )
