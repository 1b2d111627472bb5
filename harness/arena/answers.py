"""Arena answers: every model answers every prompt, batched and seeded, through a cache on disk.

The chat template is applied to each prompt (a model without one is refused: arena prompts are chats). Answers are
generated in left-padded batches, greedy by default, with the torch seed set per batch. Each answer is kept as a
record: the text, its length in characters, prompt and answer token counts, and whether it stopped at the end of
turn or at the token limit.

The cache is keyed by (checkpoint content hash, prompt id and prompt hash, generation settings): a file
``<cache>/<checkpoint hash>/<settings hash>.jsonl`` per model and settings, appended after every batch, so answers
already generated survive a later failure and a re-run loads no model at all. The batch size is not part of the
key: with greedy decoding it changes nothing but speed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.arena.prompts import conversation, prompt_hash
from harness.errors import HarnessError


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes an answer, besides the checkpoint and the prompt."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def key(self) -> str:
        """Short hash of the settings (the cache file name)."""
        text = json.dumps({**asdict(self), "chat_template": True}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cache_file(cache_dir: Path, checkpoint_hash: str, settings: GenerationSettings) -> Path:
    return cache_dir / checkpoint_hash / f"{settings.key()}.jsonl"


def _read_cache(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash mid-write: regenerate that answer
            continue
        out[rec["prompt_id"]] = rec
    return out


def generate_batch(model, tokenizer, chats: list[list[dict]], settings: GenerationSettings) -> list[dict[str, Any]]:
    """Answer a batch of chats with one `generate` call.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer (with a chat template and a pad token).
        chats: one message list per prompt.
        settings: generation settings.

    Returns:
        Per chat: ``answer``, ``answer_chars``, ``prompt_tokens``, ``answer_tokens``, ``finish`` (stop or length).
    """
    import torch

    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sample = settings.temperature > 0
    kwargs = dict(do_sample=sample, temperature=settings.temperature, top_p=settings.top_p) if sample else {}
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **kwargs,
        )
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    records = []
    for row, ids in zip(enc["attention_mask"].tolist(), new):
        stop = tokenizer.eos_token_id in ids
        ids = ids[: ids.index(tokenizer.eos_token_id)] if stop else ids
        ids = [t for t in ids if t != tokenizer.pad_token_id]
        answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
        records.append(
            {
                "answer": answer,
                "answer_chars": len(answer),
                "prompt_tokens": int(sum(row)),
                "answer_tokens": len(ids),
                "finish": "stop" if stop else "length",
            }
        )
    return records


def device_or_default(device: str | None) -> str:
    """`device`, or cuda when torch sees a GPU, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(spec: str, trust_remote_code: bool, device: str | None = None):
    from harness.models.load import load

    model, tokenizer = load(spec, trust_remote_code=trust_remote_code, device=device_or_default(device))
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(f"model {spec!r} has no chat template; arena prompts are chats (use an instruct checkpoint)")
    model.eval()
    return model, tokenizer


def generate(
    models: dict[str, str],
    prompts: list[dict[str, Any]],
    settings: GenerationSettings,
    *,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    hashes: dict[str, str] | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Every model answers every prompt; cached answers are reused and no model is loaded when all are cached.

    Args:
        models: display name → model spec (folder, hub id or MLflow URI).
        prompts: checked prompt rows (see `harness.arena.prompts`).
        settings: generation settings.
        batch_size: prompts per `generate` call.
        cache_dir: cache folder; None disables the cache.
        trust_remote_code: passed to the loader.
        hashes: the models' content hashes when already computed (hashing a large checkpoint reads all of it).
        device: torch device (default: cuda when available, else cpu); not part of the cache key.

    Returns:
        One record per (model, prompt): ``model``, ``prompt_id``, ``prompt_hash``, ``checkpoint_hash``,
        ``settings``, the `generate_batch` fields, ``seconds`` (the batch's time per answer) and ``cached``.

    Raises:
        HarnessError: a model cannot be found or loaded (answers of the models before it stay cached).
    """
    from harness import console
    from harness.models.load import content_hash

    out: list[dict[str, Any]] = []
    with console.progress("arena answers", len(models) * len(prompts), "answers") as bar:
        for name, spec in models.items():
            ckpt = (hashes or {}).get(name) or content_hash(spec)
            path = _cache_file(Path(cache_dir), ckpt, settings) if cache_dir else None
            cached = _read_cache(path) if path else {}
            todo = [p for p in prompts if cached.get(p["id"], {}).get("prompt_hash") != prompt_hash(p)]
            bar.update(len(prompts) - len(todo))
            fresh: dict[str, dict] = {}
            if todo:
                model, tokenizer = _load(spec, trust_remote_code, device)
                for batch in [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]:
                    start = time.perf_counter()
                    recs = generate_batch(model, tokenizer, [conversation(p) for p in batch], settings)
                    per = (time.perf_counter() - start) / len(batch)
                    lines = []
                    for p, rec in zip(batch, recs):
                        rec = {"prompt_id": p["id"], "prompt_hash": prompt_hash(p), "checkpoint_hash": ckpt,
                               "settings": asdict(settings), **rec, "seconds": per}
                        fresh[p["id"]] = rec
                        lines.append(json.dumps(rec) + "\n")
                    if path:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        with path.open("a", encoding="utf-8") as fh:
                            fh.write("".join(lines))
                    bar.update(len(batch))
                del model
            for p in prompts:
                rec = fresh.get(p["id"])
                out.append({"model": name, **(rec or cached[p["id"]]), "cached": rec is None})
        if any(r["cached"] for r in out):
            bar.set(cached=sum(r["cached"] for r in out))
    return out
