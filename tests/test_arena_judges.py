"""Arena judging without models: verdict parsing, swap consistency, the verifier judge, schedules, caches, failures."""

from __future__ import annotations

import json

import pytest

from harness.arena.battles import combine, judge_battles, schedule
from harness.arena.judges import VerifierJudge
from harness.arena.verdicts import Judgement
from harness.arena.llm_judge import MalformedVerdict, parse_verdict
from harness.arena.prompts import read_prompts, tiny_rows, TINY_PROMPTS
from harness.errors import HarnessError


class CountingJudge:
    """A judge with a fixed rule, counting its calls."""

    name = "test"
    concurrency = 1

    def __init__(self, rule, identity="test-judge"):
        self.rule, self.identity, self.version, self.calls = rule, identity, "1", 0

    def check(self, prompts):
        pass

    def __call__(self, row, answer_a, answer_b):
        self.calls += 1
        return self.rule(row, answer_a, answer_b)


def _answers(table: dict[str, dict[str, str]]) -> list[dict]:
    return [{"model": m, "prompt_id": pid, "answer": a, "answer_chars": len(a), "answer_tokens": len(a.split())}
            for m, by in table.items() for pid, a in by.items()]


PROMPTS = [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(4)]


def test_parse_verdict_is_strict():
    assert parse_verdict("Reasoning...\nMy final verdict is: [[A>>B]]") == "A>>B"
    assert parse_verdict("[[B>A]] and again [[B>A]]") == "B>A"
    for bad in ("A is better", "[[A>>>B]]", "[[A>B]] ... [[B>A]]", "[A>B]", "", "[[C>A]]"):
        with pytest.raises(MalformedVerdict):
            parse_verdict(bad)


def test_always_position_a_gives_ties_not_wins():
    judge = CountingJudge(lambda row, a, b: Judgement("A>>B"))
    answers = _answers({"x": {p["id"]: "good" for p in PROMPTS}, "y": {p["id"]: "bad" for p in PROMPTS}})
    judged = judge_battles(judge, PROMPTS, answers, [("x", "y")])
    assert list(judged.battles["winner"]) == ["tie"] * len(PROMPTS)
    assert not judged.battles["consistent"].any()
    assert judged.stats["position_consistency"] == 0.0
    assert judge.calls == 2 * len(PROMPTS)  # every pair judged twice, positions swapped
    # the second game shows model y first
    assert set(judged.judgements["shown_first"]) == {"x", "y"}


def test_consistent_judge_gives_wins_and_both_verdicts_are_kept():
    judge = CountingJudge(lambda row, a, b: Judgement("A>B" if a == "good" else "B>A"))
    answers = _answers({"x": {p["id"]: "good" for p in PROMPTS}, "y": {p["id"]: "bad" for p in PROMPTS}})
    battles = judge_battles(judge, PROMPTS, answers, [("x", "y")]).battles
    assert list(battles["winner"]) == ["model_a"] * len(PROMPTS)
    assert list(battles["verdict_ab"]) == ["A>B"] * 4 and list(battles["verdict_ba"]) == ["B>A"] * 4
    assert battles["consistent"].all()
    assert {"model_a", "model_b", "winner", "judge", "judge_version", "len_a", "len_b"} <= set(battles.columns)


def test_combine_mixed_verdicts():
    assert combine(Judgement("A>B"), Judgement("A=B")) == ("model_a", 0.75)
    assert combine(Judgement("A=B"), Judgement("A>B")) == ("model_b", 0.25)
    assert combine(Judgement("A=B", bothbad=True), Judgement("A=B", bothbad=True))[0] == "tie (bothbad)"


def test_verifier_judge_grades_with_the_shared_verifier():
    judge = VerifierJudge()
    row = {"id": "a", "skill": "arithmetic", "prompt": "What is 2 + 3?", "answer": "5"}
    assert judge(row, "5", "6").verdict == "A>B"
    assert judge(row, "7", "5").verdict == "B>A"
    both_wrong = judge(row, "7", "8")
    assert both_wrong.verdict == "A=B" and both_wrong.bothbad
    both_right = judge(row, "5", "5.")
    assert both_right.verdict == "A=B" and not both_right.bothbad
    judge.check(read_prompts(limit=8))
    with pytest.raises(HarnessError, match="needs a 'skill'"):
        judge.check([{"id": "q", "prompt": "Write a poem."}])


def test_tiny_prompt_set_is_the_checked_in_file_and_balanced():
    rows = read_prompts()
    assert rows == [{**r, "id": str(r["id"])} for r in tiny_rows()]
    assert [r["skill"] for r in rows[:4]] == ["arithmetic", "format", "knowledge", "safety"]
    assert all("reference" in r for r in rows)
    assert TINY_PROMPTS.name == "tiny.jsonl"


@pytest.mark.parametrize(
    "line, message",
    [
        ({"prompt": "hi"}, "missing field 'id'"),
        ({"id": "a"}, "missing field 'prompt'"),
        ({"id": "a", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "both"),
        ({"id": "a", "messages": [{"role": "assistant", "content": "x"}]}, "last message"),
    ],
)
def test_bad_prompt_files(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "ok", "prompt": "fine"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(HarnessError, match=message) as err:
        read_prompts(path)
    assert "line 2" in str(err.value)


def test_schedules():
    assert schedule(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert schedule(["a", "b", "c"], "baseline", "b") == [("a", "b"), ("c", "b")]
    for args, message in [((["a"],), "at least two"), ((["a", "b"], "baseline"), "needs a baseline"),
                          ((["a", "b"], "round-robin", "z"), "not one of the models"), ((["a", "b"], "swiss"), "mode")]:
        with pytest.raises(HarnessError, match=message):
            schedule(*args)


def test_judgement_cache_and_failures(tmp_path):
    def rule(row, a, b):
        if row["id"] == "p0":
            raise RuntimeError("judge exploded")
        if row["id"] == "p1":
            return Judgement(None, error="malformed verdict: no [[verdict]] label in the reply")
        return Judgement("A>B" if a == "good" else "B>A")

    judge = CountingJudge(rule)
    answers = _answers({"x": {p["id"]: "good" for p in PROMPTS}, "y": {p["id"]: "bad" for p in PROMPTS}})
    judged = judge_battles(judge, PROMPTS, answers, [("x", "y")], cache_dir=tmp_path)
    # failed judgements are recorded and reported, never counted as ties
    assert set(judged.battles["prompt_id"]) == {"p2", "p3"}
    assert set(judged.failures["prompt_id"]) == {"p0", "p1"}
    assert judged.failures["error"].str.contains("exploded|malformed").all()
    assert judged.stats["judgements_failed"] == 4 and judged.stats["battles_failed"] == 2
    first_calls = judge.calls

    again = judge_battles(judge, PROMPTS, answers, [("x", "y")], cache_dir=tmp_path)
    assert judge.calls - first_calls == 4  # only the failed ones are asked again
    assert again.stats["judgements_cached"] == 4
    assert again.battles.equals(judged.battles)

    other = CountingJudge(rule, identity="another-judge")  # a different judge never reuses these judgements
    judge_battles(other, PROMPTS, answers, [("x", "y")], cache_dir=tmp_path)
    assert other.calls == 8


def test_rate_reports_baseline_columns_and_survives_an_undefeated_model():
    import pandas as pd

    from harness.arena.leaderboard import format_leaderboard, rate

    rows = []
    for i in range(6):
        rows += [
            {"model_a": "x", "model_b": "base", "winner": "model_a", "score_a": 1.0, "prompt_id": f"p{i}"},
            {"model_a": "y", "model_b": "base", "winner": "tie" if i % 2 else "model_a",
             "score_a": 0.5 if i % 2 else 1.0, "prompt_id": f"p{i}"},
            {"model_a": "x", "model_b": "y", "winner": "model_a", "score_a": 1.0, "prompt_id": f"p{i}"},
        ]
    answers = [{"model": m, "prompt_id": f"p{i}", "answer": m * (i + 1)} for m in ("x", "y", "base") for i in range(6)]
    ratings = rate(pd.DataFrame(rows), answers, baseline="base", rounds=30, seed=0)
    assert any("never lost" in w and "L2 penalty" in w for w in ratings.warnings)  # x is undefeated: said loudly
    board = ratings.leaderboard.set_index("model")
    assert list(ratings.leaderboard["model"]) == ["x", "y", "base"]
    assert board.loc["x", "win_rate_vs_baseline"] == 1.0 and board.loc["y", "win_rate_vs_baseline"] == 0.75
    assert board.loc["y", "win_rate_ci_low"] < 0.75 < board.loc["y", "win_rate_ci_high"]
    assert board.loc["y", "p_win_vs_baseline"] > 0.5 and pd.isna(board.loc["base", "p_win_vs_baseline"])
    text = format_leaderboard(ratings.leaderboard)
    assert "win_rate_vs_base" in text and "p_win_vs_base" in text


def test_chat_prompts(tmp_path):
    from harness.arena.prompts import conversation, question

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "What is 2 + 2?"}]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"id": 7, "messages": chat, "reference": "4"}) + "\n")
    (row,) = read_prompts(path)
    assert row["id"] == "7" and conversation(row) == chat
    assert question(row).endswith("[user]: What is 2 + 2?")
