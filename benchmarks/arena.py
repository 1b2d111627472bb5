"""Arena generation throughput: batched against one prompt at a time, on the tiny model.

    python benchmarks/arena.py [--checkpoint DIR] [--prompts 64] [--batch-size 16] [--max-new-tokens 16] [--repeats 3]

Without ``--checkpoint`` a tiny model of the embedded default size (width 128, 4 layers) is built in a temporary
folder (untrained: it answers until the token limit, the worst case for batching). Prints answers per second, the
median of the repeats, for both ways and their ratio. One torch thread, as the harness runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _tiny(folder: Path) -> Path:
    from harness.data import skills
    from harness.models import tiny

    tok = tiny.build_tokenizer(skills.pretraining_corpus(4000, seed=0), vocab_size=512)
    tiny.save(tiny.build_model(tok, hidden_size=128, layers=4, heads=4, seed=0), tok, folder / "tiny")
    return folder / "tiny"


def _rate(model, tok, chats, settings, batch_size: int) -> float:
    from harness.arena.answers import generate_batch

    start = time.perf_counter()
    for i in range(0, len(chats), batch_size):
        generate_batch(model, tok, chats[i : i + batch_size], settings)
    return len(chats) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model folder (default: build a tiny one)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers

    from harness.arena.answers import GenerationSettings
    from harness.arena.prompts import conversation, read_prompts
    from harness.models.load import load

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = load(args.checkpoint or str(_tiny(Path(tmp))))
    model.eval()
    chats = [conversation(p) for p in read_prompts(limit=args.prompts)]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    _rate(model, tok, chats[: args.batch_size], settings, args.batch_size)  # warm-up
    batched = [_rate(model, tok, chats, settings, args.batch_size) for _ in range(args.repeats)]
    single = [_rate(model, tok, chats, settings, 1) for _ in range(args.repeats)]
    b, s = statistics.median(batched), statistics.median(single)
    print(f"arena generation, {len(chats)} prompts, {args.max_new_tokens} new tokens max, "
          f"median of {args.repeats}, 1 torch thread")
    print(f"  batched (batch {args.batch_size}): {b:8.1f} answers/s")
    print(f"  one by one:          {s:8.1f} answers/s")
    print(f"  speed-up:            {b / s:8.2f}x")


if __name__ == "__main__":
    main()
