"""Verifiers for real tasks (`harness.data.task_verifiers`): hand-written completions graded by math-verify, IFEval's
instruction checks and a user's own function; the same functions as TRL rewards and as lm-eval metric hooks.

Real data: GSM8K and IFEval rows from ``../shared/data/benchmarks`` (skipped when absent).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.data import task_verifiers as tv
from harness.errors import HarnessError

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
GSM8K = BENCHMARKS / "openai" / "gsm8k" / "main" / "test.jsonl"
IFEVAL = BENCHMARKS / "google" / "IFEval" / "train.jsonl"
needs_data = pytest.mark.skipif(not GSM8K.is_file(), reason=f"shared benchmark data not found at {BENCHMARKS}")


def _rows(path: Path, n: int | None = None) -> list[dict]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in (lines[:n] if n else lines)]


def _columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_math_verify_equivalence_on_hand_written_completions():
    completions = ["So the probability is \\boxed{1/2}.", "0.5", "The answer is $\\frac{2}{4}$",
                   "I get \\boxed{0.6}", "", [{"role": "assistant", "content": "Therefore $x = \\frac{1}{2}$."}]]
    answer = ["0.5", "\\frac{1}{2}", "0.5", "0.5", "0.5", "1/2"]
    assert tv.math(completions, answer=answer) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert tv.math(["\\boxed{1/2}"], answer=[None]) == [None]  # a row without gold: not this verifier's
    # TRL passes its own arguments beside the dataset columns
    assert tv.math(prompts=["q"], completions=["\\boxed{1/2}"], completion_ids=[[1, 2]], trainer_state=None,
                   answer=["0.5"], question=["q"]) == [1.0]


@needs_data
def test_math_verify_on_real_gsm8k_answers():
    rows = _rows(GSM8K, 20)
    gold_numbers = [r["answer"].rsplit("####", 1)[1].strip() for r in rows]
    assert gold_numbers[:3] == ["18", "3", "70000"]
    cols = _columns(rows)
    # the reference solutions graded against themselves; then hand-written answers, right and wrong
    assert tv.math([r["answer"] for r in rows], **cols) == [1.0] * 20
    written = ["She sells 9 eggs at $2 each, so she makes \\boxed{18} dollars.",
               "2 + 1 = 3 bolts.\n#### 3",
               "The profit is $70,000.",
               "#### 19"]
    assert tv.math(written, **{k: v[:4] for k, v in cols.items()}) == [1.0, 1.0, 1.0, 0.0]
    assert tv.exact_match(written, **{k: v[:4] for k, v in cols.items()}) == [0.0, 1.0, 0.0, 0.0]


def test_exact_match_normalises():
    assert tv.normalise("The  $1,000.") == "1000"
    assert tv.normalise("3.5 Apples!") == "3.5 apples"
    completions = ["#### 1,000", "Paris.", "the Eiffel tower", "72 apples", "7.2"]
    answer = ["1000", "paris", ["Eiffel Tower", "la tour Eiffel"], "72", "72"]
    assert tv.exact_match(completions, answer=answer) == [1.0, 1.0, 1.0, 0.0, 0.0]


@needs_data
def test_ifeval_checks_on_real_instructions_agree_with_lm_eval():
    rows = {r["key"]: r for r in _rows(IFEVAL)}
    one = rows[1001]  # punctuation:no_comma
    assert one["instruction_id_list"] == ["punctuation:no_comma"]
    lower = rows[1019]  # change_case:english_lowercase
    assert tv.ifeval(["Dear Sir I quit", "Dear Sir, I quit"], **_columns([one, one])) == [1.0, 0.0]
    assert tv.ifeval(["i am writing to you all in lowercase letters today.", "I Am Not."],
                     **_columns([lower, lower])) == [1.0, 0.0]
    assert tv.ifeval(["x"], instruction_id_list=[[]], kwargs=[[]]) == [None]
    with pytest.raises(HarnessError, match="unknown instruction 'no:such'"):
        tv.ifeval(["x"], instruction_id_list=[["no:such"]], kwargs=[[{}]])

    from lm_eval.tasks.ifeval.utils import process_results

    # lm-eval draws a random letter where a row's letter_frequency "letter" is not one (rows 1122: "#", 1129: "!"),
    # so its own grade of those rows varies; ours is drawn from the row and is the same every time
    odd = [r for r in rows.values() if any(i == "keywords:letter_frequency" and not k["letter"].isalpha()
                                           for i, k in zip(r["instruction_id_list"], r["kwargs"]))]
    assert sorted(r["key"] for r in odd) == [1122, 1129]
    for r in odd:
        assert len({tuple(tv.ifeval([r["prompt"]] * 5, **_columns([r] * 5)))}) == 1
    sample = [r for r in list(rows.values())[:40] if r not in odd]
    for make in (lambda r: r["prompt"], lambda r: r["prompt"].lower().replace(",", ""), lambda r: "ok"):
        completions = [make(r) for r in sample]
        ours = tv.ifeval(completions, **_columns(sample))
        theirs = [float(process_results(r, [c])["prompt_level_strict_acc"]) for r, c in zip(sample, completions)]
        assert ours == theirs
        assert 0 < sum(ours) < len(ours) or make(sample[0]) == "ok"


def test_user_function_resolves_and_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def length_penalty(completions, **columns):
            return [1.0 - min(len(c), 10) / 10 for c in completions]
        NOT_A_FUNCTION = 3
        def no_kwargs(completions):
            return [0.0 for _ in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = tv.verifier_by_name("my_rewards:length_penalty")
    assert fn(["", "abcde", "x" * 20], prompts=["p"] * 3) == [1.0, 0.5, 0.0]
    by_file = tv.verifier_by_name(f"{tmp_path / 'my_rewards.py'}:length_penalty")
    assert by_file(["abcde"]) == [0.5]
    assert tv.score(fn, {"answer": "a"}, "abcde") == 0.5
    assert tv.verifier_by_name("math") is tv.math and tv.verifier_by_name("ifeval") is tv.ifeval

    for spec, expected in [
        ("no_such_module_here:f", "module 'no_such_module_here' does not import (ModuleNotFoundError"),
        ("my_rewards:missing", "has no 'missing'"),
        ("my_rewards:NOT_A_FUNCTION", "is a int, not a function"),
        ("my_rewards:no_kwargs", "does not take TRL's reward arguments"),
        ("sympy_please", "is not a verifier (valid: exact_match, math, ifeval, or module:function"),
        (f"{tmp_path / 'absent.py'}:f", "does not import (FileNotFoundError"),
    ]:
        with pytest.raises(HarnessError) as err:
            tv.verifier_by_name(spec, where="config key rlvr.verifier")
        message = str(err.value)
        assert expected in message and "\n" not in message and message.startswith("config key rlvr.verifier")


def test_broken_user_module_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_rewards.py").write_text("import no_such_dependency\ndef f(completions, **kw): return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HarnessError, match=r"module 'broken_rewards' does not import \(ModuleNotFoundError: No "
                                           r"module named 'no_such_dependency'"):
        tv.verifier_by_name("broken_rewards:f")


GSM8K_MATH_VERIFY = """
task: gsm8k_math_verify
dataset_path: openai/gsm8k
dataset_name: main
output_type: generate_until
test_split: test
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["Question:"], do_sample: false}
process_results: !function harness.evals.lm_tasks.math_verify_results
metric_list:
  - metric: math_verify
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@needs_data
def test_lm_eval_task_scored_by_math_verify(tmp_path):
    """A GSM8K task YAML whose process_results is the math verifier, built by lm-eval on the real test split."""
    from lm_eval.tasks import TaskManager

    from harness.evals import local_data

    (tmp_path / "gsm8k_math_verify.yaml").write_text(GSM8K_MATH_VERIFY)
    tm = TaskManager(include_path=[str(tmp_path)], include_defaults=False)
    found = local_data.sources(tm, "gsm8k_math_verify", root=BENCHMARKS)
    with local_data.redirect(found):
        task = tm.load(["gsm8k_math_verify"])["tasks"]["gsm8k_math_verify"]
    docs = list(task.eval_docs)
    assert len(docs) == 1319
    graded = [task.process_results(docs[0], ["9 eggs at $2: \\boxed{18}"]),
              task.process_results(docs[1], ["#### 3"]),
              task.process_results(docs[2], ["His profit is $7 \\cdot 10^4$ dollars."]),
              task.process_results(docs[3], ["#### 539"])]  # the gold is 540
    assert graded == [{"math_verify": 1.0}, {"math_verify": 1.0}, {"math_verify": 1.0}, {"math_verify": 0.0}]
    # the eval metric is the reward: the same function on the same rows
    assert [g["math_verify"] for g in graded] == tv.math(
        ["9 eggs at $2: \\boxed{18}", "#### 3", "His profit is $7 \\cdot 10^4$ dollars.", "#### 539"],
        answer=[d["answer"] for d in docs[:4]])
