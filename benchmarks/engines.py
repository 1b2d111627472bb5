"""Serving engines: vLLM against hf throughput on the same prompts and suite, measured in the same run.

    DIR/bin/python benchmarks/engines.py [--checkpoint DIR] [--prompts 64] [--max-new-tokens 64] [--repeats 3]

Run it with the Python of the vLLM environment (``bash scripts/vllm-env.sh DIR``). Two figures, each vLLM beside hf:

- arena answers (`harness.arena.engines`: the same chats, greedy, ``--max-new-tokens``): generated tokens per
  second, the median of ``--repeats`` (each engine loaded once, warmed up on one batch first);
- ``harness eval`` of the ``tiny`` suite (``--limit`` items per task, the eval cache off): generated plus scored
  tokens are not comparable across backends, so the figure is the wall time of the whole eval and its ratio.

Without ``--checkpoint`` a tiny model (width 128, 4 heads: vLLM's CPU attention needs a head size of 32 or more) is
built in a temporary folder. Then, if ``benchmarks/sweep.py`` is there, its ``figures()`` (sweep wall time on 1 vs
2 Ray nodes) are printed too. On CPU set ``VLLM_CPU_KVCACHE_SPACE`` (GiB) to what the machine can spare.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tiny(folder: Path) -> Path:
    from harness.data import skills
    from harness.models import tiny

    tok = tiny.build_tokenizer(skills.pretraining_corpus(4000, seed=0), vocab_size=512)
    tiny.save(tiny.build_model(tok, hidden_size=128, layers=4, heads=4, seed=0), tok, folder / "tiny")
    return folder / "tiny"


def _tokens_per_s(engine, chats, settings, batch_size: int) -> float:
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(chats), batch_size):
        tokens += sum(r["answer_tokens"] for r in engine.answer(chats[i : i + batch_size], settings))
    return tokens / (time.perf_counter() - start)


def _arena(checkpoint: str, args) -> dict[str, float]:
    from harness.arena import engines
    from harness.arena.answers import GenerationSettings
    from harness.arena.prompts import conversation, read_prompts

    chats = [conversation(p) for p in read_prompts(limit=args.prompts)]
    rates = {}
    for name in ("hf", "vllm"):
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, engine=name)
        engine = engines.load(checkpoint, settings)
        _tokens_per_s(engine, chats[: args.batch_size], settings, args.batch_size)  # warm-up
        rates[name] = statistics.median(_tokens_per_s(engine, chats, settings, args.batch_size)
                                        for _ in range(args.repeats))
        engine.close()
    return rates


def _eval_seconds(checkpoint: str, backend: str, limit: int, results: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--model", checkpoint, "--suite", "tiny",
                    "--limit", str(limit), "--no-cache", "--results", str(results), "--set",
                    f"eval.backend={backend}"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model folder (default: build a tiny one)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=50, help="eval items per task of the tiny suite")
    parser.add_argument("--no-sweep", action="store_true", help="skip benchmarks/sweep.py's Ray figures")
    args = parser.parse_args()
    if importlib.util.find_spec("vllm") is None:
        sys.exit("benchmarks/engines.py needs vLLM: run it with the Python of bash scripts/vllm-env.sh DIR")
    for key, value in {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
                       "OMP_NUM_THREADS": "1"}.items():
        os.environ.setdefault(key, value)

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or str(_tiny(Path(tmp)))
        rates = _arena(checkpoint, args)
        evals = {name: _eval_seconds(checkpoint, name, args.limit, Path(tmp) / f"r-{name}") for name in ("hf", "vllm")}
    print(f"arena answers, {args.prompts} prompts, {args.max_new_tokens} new tokens max, batch {args.batch_size}, "
          f"greedy, median of {args.repeats}")
    print(f"  hf:   {rates['hf']:9.1f} tokens/s")
    print(f"  vllm: {rates['vllm']:9.1f} tokens/s")
    print(f"  ratio vllm / hf: {rates['vllm'] / rates['hf']:6.2f}x")
    print(f"harness eval, tiny suite, {args.limit} items per task, no cache (wall time, model load included)")
    print(f"  hf:   {evals['hf']:7.1f} s")
    print(f"  vllm: {evals['vllm']:7.1f} s")
    print(f"  ratio hf / vllm: {evals['hf'] / evals['vllm']:6.2f}x")

    if args.no_sweep:
        return
    if (HERE / "sweep.py").is_file():  # sweep wall time on 1 vs 2 Ray nodes (benchmarks/sweep.py's own figures)
        sys.path.insert(0, str(HERE))
        import sweep

        sweep.figures()
    else:
        print("sweep wall time on 1 vs 2 Ray nodes: needs benchmarks/sweep.py and harness[ray]")


if __name__ == "__main__":
    main()
