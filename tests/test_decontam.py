"""Decontamination (`harness.evals.decontam`, ``harness decontam``): planted overlaps found at the expected rate in
every training-file format, GSM8K's train split against its test split, the --json format, and bad input.

Real data: ``../shared/data/benchmarks`` (GSM8K; skipped when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.evals import decontam
from harness.evals.decontam import EvalItems, overlap, read_train

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
SUITES = Path(__file__).resolve().parents[1] / "harness" / "suites"


def _sentences(count: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"word{i}" for i in range(5000)]
    return [" ".join(rng.choice(vocab, size=words)) for _ in range(count)]


@pytest.fixture
def planted() -> tuple[EvalItems, list[str]]:
    """10 eval items, of which 3 (ids q2, q5, q7) are copied into a training set of 200 unrelated lines."""
    items = EvalItems("quiz", [f"q{i}" for i in range(10)], _sentences(10, 30, seed=1))
    train = _sentences(200, 40, seed=2)
    for line, item in ((11, 2), (50, 5), (199, 7)):
        train[line] = f"Please answer: {items.texts[item].upper()}!"  # case and punctuation do not hide it
    return items, train


def _check_planted(report: decontam.Report, dataset: str) -> None:
    row = next(r for r in report.rows if r.dataset == dataset)
    assert (row.contaminated, row.total, row.rate) == (3, 10, 0.3)
    if dataset != decontam.ALL:  # the pooled rows count; the pairs are each dataset's
        assert {(p["item_id"], p["train_index"]) for p in row.pairs} == {("q2", 11), ("q5", 50), ("q7", 199)}
        assert all(p["score"] == 1.0 and p["shared_ngrams"] == 23 for p in row.pairs)  # 30 tokens: 23 8-grams
    from scipy.stats import binomtest

    ci = binomtest(3, 10).proportion_ci(method="wilson")
    assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high)) and row.ci_low < 0.3 < row.ci_high
    assert report.to_json() == {"quiz": {"contaminated": 3, "total": 10, "rate": 0.3}}


def test_planted_overlap_in_every_file_format(tmp_path, planted):
    items, train = planted
    files = {"messages.jsonl": None, "pairs.parquet": None, "prompts.csv": None, "text.jsonl.gz": None}
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}], "id": i}
            for i, t in enumerate(train)]
    pd.DataFrame(rows).to_json(tmp_path / "messages.jsonl", orient="records", lines=True)
    pd.DataFrame({"prompt": ["p"] * 200, "chosen": train, "rejected": ["no"] * 200}).to_parquet(
        tmp_path / "pairs.parquet")
    pd.DataFrame({"prompt": train, "completion": ["fine"] * 200}).to_csv(tmp_path / "prompts.csv", index=False)
    pd.DataFrame({"text": train}).to_json(tmp_path / "text.jsonl.gz", orient="records", lines=True,
                                          compression="gzip")
    datasets = {name: read_train(tmp_path / name) for name in files}
    report = overlap(datasets, [items])
    for name in files:
        _check_planted(report, name)
    _check_planted(report, decontam.ALL)
    assert len(report.pairs()) == 3 * len(files)


def test_threshold_short_items_and_field_boundaries(planted):
    items, train = planted
    half = items.texts[0].split()
    train = [*train, " ".join(half[:12])]  # 12 of its 30 tokens: a share of 0.4
    rows = {t: overlap({"d": [[line] for line in train]}, [items], threshold=t).rows[0] for t in (0.5, 0.3, 0.0)}
    assert [rows[t].contaminated for t in (0.5, 0.3, 0.0)] == [3, 4, 4]
    assert next(p for p in rows[0.3].pairs if p["item_id"] == "q0")["score"] == 0.4

    short = EvalItems("short", ["s"], ["one two three"])  # fewer than n tokens: no n-gram, never flagged
    assert overlap({"d": [["one two three"]]}, [short]).rows[0].contaminated == 0
    assert overlap({"d": [["one two three"]]}, [short], n=3).rows[0].contaminated == 1
    # an n-gram never spans two fields of one example, nor two examples
    split = EvalItems("split", ["x"], ["a b c d"])
    assert overlap({"d": [["a b", "c d"]]}, [split], n=3, threshold=0).rows[0].contaminated == 0
    assert overlap({"d": [["a b"], ["c d"]]}, [split], n=3, threshold=0).rows[0].contaminated == 0
    assert overlap({"d": [["z a b c"]]}, [split], n=3, threshold=0).rows[0].contaminated == 1


def test_json_format_on_the_tiny_suite(tmp_path, capsys):
    prompts = [json.loads(line)["prompt"] for line in (SUITES / "tiny" / "safety" / "eval.jsonl").read_text()
               .splitlines()]
    train = tmp_path / "safety.jsonl"
    train.write_text("".join(json.dumps({"prompt": p, "completion": "Sure."}) + "\n" for p in prompts))
    out, pairs = tmp_path / "decontam.json", tmp_path / "pairs.jsonl"
    code = main(["decontam", "--train", str(train), "--suite", "tiny", "--n", "4", "--json", str(out),
                 "--pairs", str(pairs)])
    assert code == 0
    got = json.loads(out.read_text())
    assert set(got) == {"tiny_arithmetic_gen", "tiny_format_gen", "tiny_format_ifeval", "tiny_knowledge_mc",
                        "tiny_knowledge_gen", "tiny_safety_mc", "tiny_safety_gen"}
    assert all(set(v) == {"contaminated", "total", "rate"} for v in got.values())
    assert got["tiny_safety_gen"] == {"contaminated": 200, "total": 200, "rate": 1.0}
    assert got["tiny_safety_mc"] == {"contaminated": 200, "total": 200, "rate": 1.0}
    assert got["tiny_arithmetic_gen"] == {"contaminated": 0, "total": 200, "rate": 0.0}
    assert got["tiny_knowledge_gen"]["contaminated"] == 0 and got["tiny_format_gen"]["contaminated"] == 0
    lines = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(lines) == 400 and {p["task"] for p in lines} == {"tiny_safety_mc", "tiny_safety_gen"}
    first = next(p for p in lines if p["task"] == "tiny_safety_gen" and p["train_index"] == 0)
    assert first["item_id"] == "safety-break-kasusu"  # the id field of the eval record
    table = capsys.readouterr().out
    assert "tiny_safety_gen" in table and "[0.9812, 1.0000]" in table  # Wilson interval of 200/200


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"shared benchmark data not found at {BENCHMARKS}")
def test_gsm8k_train_against_test(tmp_path, capsys):
    suite = tmp_path / "math.yaml"
    suite.write_text(f"data_dir: {BENCHMARKS}\nlm_eval_tasks: true\nskills:\n  math: [gsm8k]\n")
    out = tmp_path / "out.json"
    train = BENCHMARKS / "openai" / "gsm8k" / "main" / "train.jsonl"
    assert main(["decontam", "--train", str(train), "--suite", str(suite), "--json", str(out)]) == 0
    got = json.loads(out.read_text())["gsm8k"]
    print(f"GSM8K train (7473) vs test (1319), 8-grams, > 50% of tokens: {got}")
    # measured: 3 of 1319 test questions (items 581, 602, 632) are templated near-copies of training questions
    assert got == {"contaminated": 3, "total": 1319, "rate": 3 / 1319}
    assert "[0.0008, 0.0067]" in capsys.readouterr().out


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert "training file" in _one_line_error(capsys, ["decontam", "--train", str(missing), "--suite", "tiny"])
    no_text = tmp_path / "ids.jsonl"
    no_text.write_text('{"id": 1, "score": 0.5}\n{"id": 2, "score": 0.7}\n')
    err = _one_line_error(capsys, ["decontam", "--train", str(no_text), "--suite", "tiny"])
    assert "has no text" in err and "columns: id, score" in err
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert "not .jsonl, .json, .parquet or .csv" in _one_line_error(
        capsys, ["decontam", "--train", str(other), "--suite", "tiny"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{not json\n')
    assert "line 2: not JSON" in _one_line_error(capsys, ["decontam", "--train", str(broken), "--suite", "tiny"])
    assert "threshold 1.5 is out of range" in _one_line_error(
        capsys, ["decontam", "--train", str(broken), "--suite", "tiny", "--threshold", "1.5"])
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "fine"}\n')
    assert "unknown suite 'nosuch'" in _one_line_error(capsys, ["decontam", "--train", str(good), "--suite", "nosuch"])
