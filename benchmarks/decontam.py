"""Decontamination speed: 1M training lines against 10k eval items, against a plain Python-set implementation.

    python benchmarks/decontam.py [--train-lines 1000000] [--eval-items 10000] [--baseline-lines 50000] [--n 8]

Synthetic text: words drawn from a Zipf-like vocabulary of 20k words, training lines of 10 to 60 words in a JSONL
file (``{"prompt": ..., "completion": ...}``: two text fields a line), eval items of 20 to 80 words, 1% of them
planted into training lines. Timed: `harness.evals.decontam.overlap` reading the file end to end (writing it is
not timed). The baseline is what one writes first: the training n-grams as Python tuples in a set, then each eval
item's n-grams looked up; it runs on the first ``--baseline-lines`` lines and its time is scaled linearly to the
full file (its memory would not hold 1M lines' n-grams as tuples). Both must flag the same items on the
subsample. Target: ≤ 60 s for 1M × 10k on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _words(rng: np.random.Generator, vocab: np.ndarray, p: np.ndarray, low: int, high: int) -> str:
    return " ".join(vocab[rng.choice(len(vocab), size=int(rng.integers(low, high)), p=p)])


def _data(train_lines: int, eval_items: int, seed: int) -> tuple[list[str], list[tuple[str, str]], set[int]]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    evals = [_words(rng, vocab, p, 20, 80) for _ in range(eval_items)]
    planted = set(rng.choice(eval_items, size=eval_items // 100, replace=False).tolist())
    at = dict(zip(rng.choice(train_lines, size=len(planted), replace=False).tolist(), sorted(planted)))
    # training lines drawn in bulk (one choice call), split into words per line
    sizes = rng.integers(10, 60, size=train_lines)
    flat = vocab[rng.choice(len(vocab), size=int(sizes.sum()), p=p)]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    train = []
    for i in range(train_lines):
        words = flat[bounds[i]:bounds[i + 1]]
        half = len(words) // 2
        prompt, completion = " ".join(words[:half]), " ".join(words[half:])
        train.append((evals[at[i]] if i in at else prompt, completion))
    return evals, train, planted


def _baseline(evals: list[str], train: list[tuple[str, str]], n: int, threshold: float) -> set[int]:
    from harness.evals.decontam import tokens

    seen: set[tuple[str, ...]] = set()
    for fields in train:
        for text in fields:
            words = tokens(text)
            seen.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    flagged = set()
    for j, text in enumerate(evals):
        words = tokens(text)
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            if tuple(words[i:i + n]) in seen:
                covered[i:i + n] = [True] * n
        if words and sum(covered) / len(words) > threshold:
            flagged.add(j)
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-lines", type=int, default=1_000_000)
    parser.add_argument("--eval-items", type=int, default=10_000)
    parser.add_argument("--baseline-lines", type=int, default=50_000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from harness.evals.decontam import EvalItems, overlap, read_train

    start = time.perf_counter()
    evals, train, planted = _data(args.train_lines, args.eval_items, args.seed)
    items = EvalItems("synthetic", [str(i) for i in range(len(evals))], evals)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        with path.open("w") as f:
            for prompt, completion in train:
                f.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
        print(f"data: {args.train_lines} training lines ({path.stat().st_size / 1e6:.0f} MB), {len(evals)} eval items, "
              f"{len(planted)} planted ({time.perf_counter() - start:.1f} s to make)")

        start = time.perf_counter()
        report = overlap({"train": read_train(path)}, [items], n=args.n)
        fast = time.perf_counter() - start
        row = report.rows[0]
        flagged = {int(p["item_id"]) for p in row.pairs}
        print(f"harness: {fast:.1f} s for {args.train_lines} × {len(evals)}; contaminated {row.contaminated} "
              f"(planted {len(planted)}, all found: {planted <= flagged})")

        sub = train[:args.baseline_lines]
        start = time.perf_counter()
        naive = _baseline(evals, sub, args.n, report.threshold)
        slow = (time.perf_counter() - start) * args.train_lines / len(sub)
        check = overlap({"sub": sub}, [items], n=args.n).rows[0]
        agree = naive == {int(p["item_id"]) for p in check.pairs}
        print(f"baseline (Python set of n-gram tuples): {slow:.1f} s scaled from {len(sub)} lines; "
              f"same items flagged on them: {agree}")
    print(f"speed-up {slow / fast:.1f}x; target <= 60 s: {'met' if fast <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
