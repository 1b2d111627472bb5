"""Arena answers: every model answers every prompt, batched and seeded, through a cache on disk.

The chat template is applied to each prompt (a model without one is refused: arena prompts are chats). Answers are
generated in batches by the engine ``arena.engine`` names (`harness.arena.engines`: transformers' ``generate`` in
left-padded batches, or vLLM's offline engine), greedy by default, seeded per batch. Each answer is kept as a
record: the text, its length in characters, prompt and answer token counts, and whether it stopped at the end of
turn or at the token limit.

The cache is keyed by (checkpoint content hash, prompt id and prompt hash, generation settings: the engine and its
arguments too, except for hf, whose key is the one answers had before engines existed): a file
``<cache>/<checkpoint hash>/<settings hash>.jsonl`` per model and settings, appended after every batch, so answers
already generated survive a later failure and a re-run loads no model at all. The batch size is not part of the
key: with greedy decoding it changes nothing but speed.

A reasoning model (``arena.reasoning``, else its chat template's pair: `harness.reasoning`) has each answer split:
``answer`` is what the judges see, ``reasoning`` and ``raw_response`` what it thought and wrote, with
``reasoning_tokens`` and ``answer_tokens`` counted by its tokenizer and ``terminated`` (did the block close); with
``arena.budget`` the reasoning is forced closed at that many tokens (`harness.arena.engines`). Both settings are in
the cache key only when set, so that answers cached without them stay valid.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.arena import engines
from harness.arena.engines import device_or_default, generate_batch  # noqa: F401 - their callers import them here
from harness.arena.prompts import conversation, prompt_hash


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes an answer, besides the checkpoint and the prompt."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    engine: str = "hf"  # harness.config.ArenaEngine
    engine_args: dict = field(default_factory=dict, hash=False)  # vllm.LLM arguments (engine vllm)
    reasoning: dict | None = field(default=None, hash=False)  # the delimiters (harness.reasoning), as config
    budget: int | None = None  # thinking budget in tokens (engine hf)

    def delimiters(self):
        """The `harness.reasoning.Delimiters` of these settings, or None."""
        from harness import reasoning

        return reasoning.from_config(self.reasoning)

    def key(self) -> str:
        """Short hash of the settings (the cache file name); for the hf engine the same as before engines existed,
        and without reasoning the same as before reasoning existed, so that cached answers stay valid."""
        fields = asdict(self)
        if self.engine == "hf":
            del fields["engine"], fields["engine_args"]
        for name in ("reasoning", "budget"):
            if not fields[name]:
                del fields[name]
        text = json.dumps({**fields, "chat_template": True}, sort_keys=True)
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
        device: the hf engine's torch device (default: cuda when available, else cpu); not part of the cache key.

    Returns:
        One record per (model, prompt): ``model``, ``prompt_id``, ``prompt_hash``, ``checkpoint_hash``,
        ``settings``, the `generate_batch` fields, ``seconds`` (the batch's time per answer) and ``cached``.

    Raises:
        HarnessError: a model cannot be found or loaded, or vLLM is not installed for ``settings.engine`` vllm
            (answers of the models before it stay cached).
    """
    from harness import console
    from harness.models.load import content_hash

    base = settings
    out: list[dict[str, Any]] = []
    with console.progress("arena answers", len(models) * len(prompts), "answers") as bar:
        for name, spec in models.items():
            ckpt = (hashes or {}).get(name) or content_hash(spec)
            settings = _with_delimiters(base, spec)
            path = _cache_file(Path(cache_dir), ckpt, settings) if cache_dir else None
            cached = _read_cache(path) if path else {}
            todo = [p for p in prompts if cached.get(p["id"], {}).get("prompt_hash") != prompt_hash(p)]
            bar.update(len(prompts) - len(todo))
            fresh: dict[str, dict] = {}
            if todo:
                engine = engines.load(spec, settings, trust_remote_code=trust_remote_code, device=device)
                for batch in [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]:
                    start = time.perf_counter()
                    recs = _split(engine.answer([conversation(p) for p in batch], settings), settings, engine)
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
                engine.close()
            for p in prompts:
                rec = fresh.get(p["id"])
                out.append({"model": name, **(rec or cached[p["id"]]), "cached": rec is None})
        if any(r["cached"] for r in out):
            bar.set(cached=sum(r["cached"] for r in out))
    return out


def _with_delimiters(settings: GenerationSettings, spec: str) -> GenerationSettings:
    """The settings for one model: its delimiters from the settings, else from its chat template; a budget without
    any delimiters is a one-line error."""
    from dataclasses import replace

    from harness import reasoning
    from harness.errors import HarnessError
    from harness.models.load import resolve

    try:
        folder = resolve(spec)
    except Exception:  # noqa: BLE001 - a hub id not here: the engine reports it when it loads
        folder = None
    found = reasoning.resolve(settings.reasoning, folder, where="arena.reasoning")
    if settings.budget is not None and found is None:
        raise HarnessError(f"config key arena.budget: model {spec!r} has no reasoning delimiters (set "
                           "arena.reasoning: {start: '<think>', end: '</think>'})")
    return replace(settings, reasoning=found.to_dict() if found else None)


def _split(records: list[dict[str, Any]], settings: GenerationSettings, engine) -> list[dict[str, Any]]:
    """Each answer record taken apart into reasoning and answer (`harness.reasoning.record`) when the model reasons;
    ``answer_tokens`` stays every token generated, ``answer_only_tokens`` counts the answer part."""
    from harness import reasoning

    delimiters = settings.delimiters()
    if delimiters is None:
        return records

    def count(text: str) -> int:
        return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    opened = reasoning.opened_by(engine.tokenizer, delimiters)
    out = []
    for rec in records:
        note = reasoning.record(rec["answer"], delimiters, count, opened=opened, forced_at=bool(rec.get("forced")))
        out.append({**rec, "answer": note["answer"], "answer_chars": len(note["answer"]),
                    "reasoning": note["reasoning"], "raw_response": note["raw_response"],
                    "reasoning_tokens": rec.get("reasoning_tokens", note["reasoning_tokens"]),
                    "answer_only_tokens": note["answer_tokens"],
                    "terminated": note["terminated"], "forced": note["forced"]})
    return out
