"""Stage `pretrain`: build the embedded tiny base model and train it briefly on the synthetic corpus.

A plain torch loop (next-token prediction on packed text) is all a base model this small needs; SFT, DPO and RLVR
go through TRL. Produces a Hugging Face folder with the tokenizer and chat template.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from harness import console
from harness.config import ModelConfig, PretrainConfig
from harness.data import skills
from harness.models import tiny
from harness.train.common import StageResult


def run(cfg: PretrainConfig, model_cfg: ModelConfig, out_dir: Path, seed: int) -> StageResult:
    """Train the tiny base model and save it to `out_dir`.

    Args:
        cfg: pretraining settings.
        model_cfg: architecture of the tiny model.
        out_dir: checkpoint folder to write.
        seed: seed for the corpus, the initialisation and the batch order.

    Returns:
        The stage's result: checkpoint, per-step history, tokens processed and parameter count.
    """
    import torch

    start = time.perf_counter()
    corpus = skills.pretraining_corpus(cfg.corpus_lines, seed)
    tokenizer = tiny.build_tokenizer(corpus, vocab_size=model_cfg.vocab_size)
    model = tiny.build_model(tokenizer, model_cfg.hidden_size, model_cfg.layers, model_cfg.heads, seed=seed)

    # Pack "line<|end|>" documents into one stream and cut it into fixed-length rows.
    ids: list[int] = []
    for line_ids in tokenizer(corpus, add_special_tokens=False)["input_ids"]:
        ids.extend(line_ids + [tokenizer.eos_token_id])
    n_rows = len(ids) // cfg.seq_len
    data = torch.tensor(ids[: n_rows * cfg.seq_len]).view(n_rows, cfg.seq_len)

    optim = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    warmup = max(1, cfg.steps // 20)
    history: list[tuple[int, dict[str, float]]] = []
    tokens = 0
    model.train()
    with console.progress("train base", cfg.steps, "steps") as bar:
        for step in range(1, cfg.steps + 1):
            lr = cfg.learning_rate * min(step / warmup, 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
            for group in optim.param_groups:
                group["lr"] = lr
            batch = data[torch.randint(0, n_rows, (cfg.batch_size,), generator=gen)]
            loss = model(input_ids=batch, labels=batch).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            tokens += batch.numel()
            if step % cfg.log_every == 0 or step == cfg.steps:
                history.append((step, {"loss": loss.item(), "learning_rate": lr}))
                bar.set(loss=history[-1][1]["loss"])
            bar.update()
    model.eval()
    tiny.save(model, tokenizer, out_dir)
    return StageResult(
        stage="base",
        checkpoint=out_dir,
        history=history,
        tokens=tokens,
        seconds=time.perf_counter() - start,
        parameters=sum(p.numel() for p in model.parameters()),
        trainer_config={"steps": cfg.steps, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "optimizer": "AdamW"},
    )
