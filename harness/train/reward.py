"""The reward model: train the tiny one with TRL's `RewardTrainer`, load any one, score answers, measure accuracy.

The embedded pipeline trains its reward model on the same preference pairs as DPO (`dpo_rows`): a sequence-
classification head (one logit) on top of a causal checkpoint, Bradley-Terry loss on chosen vs rejected. A fifth
of the pairs is held out, by item, and the model's accuracy on them (chosen scored above rejected) is reported.
A real reward model is any sequence-classification checkpoint with one label (a HF id or a folder).

Scores are computed exactly as TRL trains them: the chat template applied to the prompt plus the answer.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, first_line
from harness.train.common import StageResult, quiet_progress, trainer_history, trl_common
from harness.train.datasets import dpo_rows

HELDOUT_FRACTION = 0.2


def split_pairs(n_pairs: int, seed: int) -> tuple[list[dict], list[dict]]:
    """The preference pairs, split into training and held-out parts (distinct items: `dpo_rows` never repeats one)."""
    rows = dpo_rows(n_pairs, seed)
    n_held = max(1, int(round(len(rows) * HELDOUT_FRACTION)))
    return rows[n_held:], rows[:n_held]


def load_reward_model(spec: str, *, trust_remote_code: bool = False):
    """Load a sequence-classification reward model and its tokenizer.

    Args:
        spec: a folder, HF id or MLflow URI (see `harness.models.load.resolve`).
        trust_remote_code: allow code shipped with the checkpoint to run.

    Returns:
        `(model, tokenizer)`, the model in eval mode with `config.pad_token_id` set.

    Raises:
        HarnessError: the model cannot be found or loaded, or it has more than one output label.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.models.load import resolve

    source = resolve(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        first = first_line(err)
        raise HarnessError(f"reward model {spec!r} could not be loaded: {first}") from None
    if model.config.num_labels != 1:
        raise HarnessError(f"reward model {spec!r} has {model.config.num_labels} labels; a reward model has one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def score(model, tokenizer, chats: list[list[dict]], batch_size: int = 16) -> list[float]:
    """Reward of each full chat (prompt turns plus the assistant's answer), in batches.

    Args:
        model: a sequence-classification model with one label.
        tokenizer: its tokenizer.
        chats: message lists ending with the assistant's answer.
        batch_size: chats per forward pass.

    Returns:
        One float per chat.
    """
    import torch

    out: list[float] = []
    for i in range(0, len(chats), batch_size):
        batch = chats[i : i + batch_size]
        ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in batch]
        width = max(len(x) for x in ids)
        # Right padding: the classifier reads the last non-pad token, as in training.
        input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids], device=model.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits
        out += logits[:, 0].float().tolist()
    return out


def accuracy(model, tokenizer, pairs: list[dict[str, Any]]) -> float:
    """Fraction of preference pairs whose chosen answer scores above the rejected one."""
    chosen = score(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs])
    rejected = score(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(pairs))


def train(
    init: str,
    out_dir: Path,
    *,
    pairs: int,
    seed: int,
    epochs: float = 2.0,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    log_every: int = 5,
) -> StageResult:
    """Train a tiny reward model from `init` on the preference pairs and save it to `out_dir`.

    Args:
        init: the causal checkpoint whose body the reward head sits on.
        out_dir: folder to write (a standard sequence-classification checkpoint).
        pairs: preference pairs to draw (a fifth held out).
        seed: the pairs' seed (use the DPO stage's to train on the pipeline's own preference data) and training seed.
        epochs, batch_size, learning_rate, log_every: training settings.

    Returns:
        The stage's result; ``extra_metrics`` holds ``reward_model/heldout_accuracy`` (and the training accuracy).
    """
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from transformers import AutoTokenizer

    from harness.models.load import resolve

    start = time.perf_counter()
    train_rows, held = split_pairs(pairs, seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve(init))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = RewardConfig(
        **trl_common(out_dir, seed, epochs, batch_size, learning_rate, log_every),
        max_length=128,
        include_num_input_tokens_seen="non_padding",
        model_init_kwargs={"dtype": "float32", "use_safetensors": True},
    )
    try:
        trainer = RewardTrainer(
            model=resolve(init), args=args, train_dataset=Dataset.from_list(train_rows), processing_class=tokenizer
        )
    except (OSError, ValueError) as err:
        first = first_line(err)
        raise HarnessError(f"reward model init {init!r} could not be loaded: {first}") from None
    with quiet_progress(trainer, "train reward model"):
        trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
    model = trainer.model.eval()
    return StageResult(
        stage="reward",
        checkpoint=out_dir,
        history=trainer_history(trainer),
        tokens=int(trainer.state.num_input_tokens_seen),
        seconds=time.perf_counter() - start,
        parameters=sum(p.numel() for p in model.parameters()),
        trainer_config=args.to_dict(),
        extra_metrics={
            "reward_model/heldout_accuracy": accuracy(model, tokenizer, held),
            "reward_model/train_accuracy": accuracy(model, tokenizer, train_rows[: len(held)]),
            "reward_model/heldout_pairs": float(len(held)),
        },
    )
