"""Reasoning models: the thinking block kept apart from the answer (`harness.reasoning`), graded answer-only by the
verifier, the RLVR reward, lm-eval's metrics and the arena's judges; thinking tokens counted; budgets forced.

Hand-written completions come from `_HandWritten`, an lm-eval `LM` that writes them (a "model" that thinks in words
until its token limit and answers correctly once the block is closed), run through the real `evaluate` (lm-eval,
the eval cache, MLflow); the token-count test forces a real transformers model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_arena_llm import KEY_ENV, MODEL, SECRET, judge_server  # noqa: F401 - the stand-in judge server

from harness import reasoning
from harness.config import EvalConfig
from harness.errors import HarnessError

THINK = reasoning.Delimiters()


# ------------------------------------------------------------------------------------------ splitting by hand


@pytest.mark.parametrize("text, want", [
    ("<think>7 - 2 = 5, so 99?</think> 48", ("7 - 2 = 5, so 99?", "48", True)),  # stripped, numbers kept apart
    ("<think>3 + 5 = 8, tens 4", ("3 + 5 = 8, tens 4", "", False)),  # unterminated: no answer
    ("<think>3 + 5 = 8</think>", ("3 + 5 = 8", "", True)),  # a block without an answer after it
    ("48", ("", "48", True)),  # no block: all answer
    ("3 + 5 = 8</think>48", ("3 + 5 = 8", "48", True)),  # the prompt opened the block
    ("<think>a</think>b</think>c", ("a", "b</think>c", True)),  # the first close ends the block
])
def test_split_hand_written_completions(text, want):
    part = reasoning.split(text, THINK)
    assert (part.reasoning, part.answer, part.terminated) == want


def test_custom_delimiters_and_a_block_opened_by_the_prompt():
    thought = reasoning.Delimiters("<|begin_of_thought|>", "<|end_of_thought|>")
    part = reasoning.split("<|begin_of_thought|>12 is even<|end_of_thought|> The answer is 7.", thought)
    assert (part.reasoning, part.answer) == ("12 is even", "The answer is 7.")
    assert reasoning.split("<think>x</think>7", thought).answer == "<think>x</think>7"  # other delimiters: all answer
    assert reasoning.split("still thinking 12", THINK, opened=True) == reasoning.Split("still thinking 12", "", False)
    assert reasoning.opens("<|assistant|><think>\n", THINK) and not reasoning.opens("<|assistant|>", THINK)
    assert reasoning.split("<think>x</think>7", None).answer == "<think>x</think>7"  # reasoning off


def test_record_counts_tokens_of_each_part():
    rec = reasoning.record("<think>one two three</think>four five", THINK, lambda t: len(t.split()))
    assert rec == {"answer": "four five", "reasoning": "one two three", "raw_response": "<think>one two three</think>"
                   "four five", "reasoning_tokens": 3, "answer_tokens": 2, "terminated": True, "forced": False}


def test_stats_carry_uncertainty():
    import pandas as pd

    table = pd.DataFrame({"reasoning_tokens": [2, 4, 6, 8], "answer_tokens": [1, 1, 1, 1],
                          "terminated": [True, True, True, False], "forced": [False] * 4})
    stats = reasoning.sample_metrics(table)
    assert stats["reasoning_tokens_mean"] == 5.0 and stats["reasoning_tokens_p50"] == 5.0
    assert stats["reasoning_tokens_stderr"] == pytest.approx(pd.Series([2, 4, 6, 8]).std() / 2)
    assert stats["tokens_mean"] == 6.0 and stats["unterminated_rate"] == 0.25
    assert stats["unterminated_rate_stderr"] == pytest.approx((0.25 * 0.75 / 4) ** 0.5)
    assert reasoning.cost_per_item(6.0, 2.0) == pytest.approx(12e-6)


def test_delimiters_from_the_chat_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ '<|im_start|>assistant\\n<think>\\n' }}{# closes with </think> #}"}))
    assert reasoning.resolve(None, tmp_path, where="eval.reasoning") == THINK
    assert reasoning.resolve({}, tmp_path, where="eval.reasoning") is None  # {}: off, whatever the template says
    assert reasoning.detect("{{ messages }}") is None


def test_delimiters_that_never_occur_are_warned_about_once(tiny_checkpoint, capsys):
    value = {"start": "<thonk>", "end": "</thonk>"}
    for _ in range(3):
        assert reasoning.resolve(value, tiny_checkpoint, where="eval.reasoning").start == "<thonk>"
    err = capsys.readouterr().err
    assert err.count("harness: warning: eval.reasoning: '<thonk>', '</thonk>' occurs neither in the vocabulary "
                     "nor in the chat template of") == 1, err


# ------------------------------------------------------------------------------------ the verifier and the reward


def test_reward_grades_only_the_answer_with_an_optional_format_reward():
    from harness.data import verifiers

    rows = {"skill": ["arithmetic"] * 4, "answer": ["48"] * 4}
    completions = ["<think>7 - 2 = 5</think>48",  # scratch numbers first: the raw grader takes 7
                   "<think>48, or is it",  # unterminated: no answer, though the raw grader takes 48
                   "<think>7</think>",  # closed, no answer
                   [{"role": "assistant", "content": "<think>8</think> 48"}]]  # conversational
    assert verifiers.reward(completions, **rows) == [0.0, 1.0, 0.0, 0.0]
    assert verifiers.answers_only(verifiers.reward, THINK)(completions, **rows) == [1.0, 0.0, 0.0, 1.0]
    shaped = verifiers.answers_only(verifiers.reward, THINK, format_reward=0.25)
    assert shaped(completions, **rows) == [1.25, 0.0, 0.25, 1.25]


def test_rlvr_rewards_the_answer_of_a_block_the_prompt_opened(tiny_checkpoint):
    from transformers import AutoTokenizer

    from harness.config import RLVRConfig
    from harness.models import tiny
    from harness.train.rlvr import reward_for

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert not reasoning.opened_by(tokenizer, THINK)
    tokenizer.chat_template = tiny.think_template(THINK)
    opened = reasoning.opened_by(tokenizer, THINK)
    assert opened
    graded = reward_for(RLVRConfig(format_reward=0.5), THINK, opened)
    rows = {"skill": ["arithmetic"] * 3, "answer": ["48"] * 3}
    assert graded(["units 3 + 5 = 8, tens 4</think>48", "units 48", "4</think>7"], **rows) == [1.5, 0.0, 0.5]
    assert reward_for(RLVRConfig()).__name__ == "reward"  # without reasoning: the verifier's reward, unchanged


def test_real_task_verifiers_grade_the_answer_part():
    from harness.data import task_verifiers, verifiers

    graded = verifiers.answers_only(task_verifiers.exact_match, THINK)
    assert graded(["<think>maybe 12, maybe 7</think>The answer is 7", "<think>7"],
                  answer=["the answer is 7", "7"]) == [1.0, 0.0]
    assert graded.__name__ == "exact_match_answer"


# ------------------------------------------------------------------------------- lm-eval, through `evaluate`


class _HandWritten:
    """An lm-eval model of hand-written completions: in a context whose reasoning is not closed it thinks one word
    per token (``<think> step step ...``) up to the request's token limit and never closes the block; once the
    context ends with ``</think>`` it answers the arithmetic question correctly."""

    def __new__(cls):
        from lm_eval.api.model import LM

        class HandWritten(LM):
            tokenizer_name = "hand-written"

            def chat_template(self, chat_template=False):
                return "hand-written"

            def apply_chat_template(self, chat_history, add_generation_prompt=True):
                return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in chat_history) + "<|assistant|>"

            def tok_encode(self, text, add_special_tokens=False):
                return text.split()

            def loglikelihood(self, requests):
                raise NotImplementedError

            loglikelihood_rolling = loglikelihood

            def generate_until(self, requests, disable_tqdm=False):
                out = []
                for r in requests:
                    context, kwargs = r.args
                    if context.endswith("</think>"):
                        a, op, b = re.search(r"What is (\d+) ([+-]) (\d+)\?", context).groups()
                        text = f" {int(a) + int(b) if op == '+' else int(a) - int(b)}"
                    else:
                        text = " ".join(["<think>"] + ["step"] * (kwargs.get("max_gen_toks", 256) - 1))
                    self.cache_hook.add_partial("generate_until", r.args, text)
                    out.append(text)
                return out

        return HandWritten()


@pytest.fixture
def hand_written(monkeypatch):
    from harness.evals import backends

    monkeypatch.setattr(backends, "create", lambda *a, **k: _HandWritten())


def _cfg(**kw) -> EvalConfig:
    return EvalConfig(limit=4, bootstrap_iters=0, reasoning=THINK.to_dict(), **kw)


def test_lm_eval_metrics_see_only_the_answer_and_budgets_force_it(hand_written, tiny_checkpoint, tmp_path):
    from harness.evals.budgets import read_scaling, scaling_table
    from harness.evals.run import evaluate
    from harness.tracking import schema, store

    results = tmp_path / "r"
    free = evaluate(str(tiny_checkpoint), "tiny_think", cfg=_cfg(), results_dir=results, label="sft")
    rows = free.samples["tiny_arithmetic_gen"]
    # never closed within the task's 40 tokens: no answer, so nothing the scratch work holds is graded
    assert rows["terminated"].tolist() == [False] * 4 and rows["response"].tolist() == [""] * 4
    assert rows["reasoning_tokens"].tolist() == [39] * 4
    assert free.skill("arithmetic") == 0.0

    curve = {}
    for budget in (3,):
        forced = evaluate(str(tiny_checkpoint), "tiny_think", cfg=_cfg(), results_dir=results, label="sft",
                          budget=budget)
        rows = forced.samples["tiny_arithmetic_gen"]
        assert (rows["reasoning_tokens"] <= budget).all() and rows["forced"].all()  # the budget stopped it
        assert rows["reasoning"].str.split().str.len().tolist() == [budget - 1] * 4  # "<think>" is the budget's 1st
        assert rows["raw_response"].str.contains("</think>").all()
        assert (rows["response"] == rows["target"]).all()  # the forced answer, and only it, reached the metric
        assert rows["verifier,none"].tolist() == [1.0] * 4 and forced.skill("overall") == 1.0
        curve[budget] = forced

    client = store.client(store.tracking_uri(results))
    run = client.get_run(curve[3].run_id)
    assert run.data.tags[schema.tag_key("budget")] == "3" and run.data.tags[schema.tag_key("curve")] == "sft"
    assert schema.tag_key("stage") not in run.data.tags  # the stage's own eval run stays the unforced one
    assert run.info.run_name == "eval-sft-tiny_think-budget3"
    assert run.data.params["reasoning.budget"] == "3" and run.data.params["reasoning.end"] == "</think>"
    metrics = run.data.metrics
    assert metrics[schema.reasoning_metric("reasoning_tokens_mean", "arithmetic", "tiny_arithmetic_gen")] == 2.0
    assert metrics[schema.reasoning_metric("forced_rate")] == 1.0
    assert metrics[schema.reasoning_metric("unterminated_rate")] == 0.0
    free_metrics = client.get_run(free.run_id).data.metrics
    assert free_metrics[schema.reasoning_metric("unterminated_rate")] == 1.0
    assert free_metrics[schema.reasoning_metric("unterminated_rate_stderr")] == 0.0
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    row = json.loads((art / schema.samples("tiny_arithmetic_gen").path).read_text().splitlines()[0])
    assert row["response"] == row["target"] and row["reasoning"].startswith("step") and row["forced"] is True

    table = scaling_table({"sft": curve})
    assert table["budget"].tolist() == [3] and table["value"].tolist() == [1.0]
    assert table["tokens_mean"].tolist() == [3.0]  # reasoning (budget - 1) + the answer's 1 token
    back = read_scaling(store.find_runs("harness", schema.Kind.EVAL, results))
    assert back[["label", "budget", "value", "tokens_mean"]].values.tolist() == \
        table[["label", "budget", "value", "tokens_mean"]].values.tolist()

    # `harness compare` and the nightly: a fixed budget picks the budget's runs, no budget never picks one
    from harness.evals.compare import find_eval_run
    from harness.nightly import records

    def find(ref, budget=None):
        return find_eval_run(ref, results_dir=results, experiment="harness", budget=budget)["run_id"]

    assert find("sft") == find(str(tiny_checkpoint)) == free.run_id  # though the budget run is newer
    assert find("sft", 3) == find(free.run_id, 3) == find(str(tiny_checkpoint), 3) == curve[3].run_id
    with pytest.raises(HarnessError, match=f"^run {free.run_id} has no eval run at thinking budget 5"):
        find(free.run_id, 5)
    reasons = records.incomparable(records.load_record(free.run_id, results),
                                   records.load_record(curve[3].run_id, results))
    assert "thinking budget: (none) (candidate) vs 3 (baseline)" in reasons

    again = evaluate(str(tiny_checkpoint), "tiny_think", cfg=_cfg(), results_dir=results, label="sft", budget=3)
    assert again.cached == ["tiny_arithmetic_gen"]  # budgets are part of the cache key, and reused
    assert again.samples["tiny_arithmetic_gen"]["reasoning"].tolist() == \
        curve[3].samples["tiny_arithmetic_gen"]["reasoning"].tolist()


def test_a_budget_without_delimiters_fails_before_model_work(tiny_checkpoint, tmp_path, no_model_work):
    from harness.evals.run import evaluate

    with pytest.raises(HarnessError, match=r"^config key eval.budgets: budget 8 needs reasoning delimiters, and "
                                           r"neither eval.reasoning nor the chat template of"):
        evaluate(str(tiny_checkpoint), "tiny_think", cfg=EvalConfig(limit=2), results_dir=tmp_path, budget=8)


# --------------------------------------------------------------------------------- forcing a real model


@pytest.fixture(scope="module")
def chatty(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint with an untied output head that can never write a special token: it never ends its turn
    (nor closes a reasoning block), so every generation runs to its token limit."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.models import tiny

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tiny.add_reasoning_tokens(model, tokenizer, THINK)
    model.config.tie_word_embeddings = False
    head = model.get_input_embeddings().weight.detach().clone()
    special = [tokenizer.convert_tokens_to_ids(t) for t in (*tiny.SPECIAL_TOKENS, THINK.start, THINK.end)]
    head[special] = 0.0
    model.lm_head = torch.nn.Linear(head.shape[1], head.shape[0], bias=False)
    model.lm_head.weight = torch.nn.Parameter(head)
    out = tmp_path_factory.mktemp("chatty") / "model"
    tiny.save(model, tokenizer, out)
    return out


def test_budget_forcing_stops_a_real_model_at_the_budget(chatty):
    from lm_eval.api.instance import Instance

    from harness.evals import backends
    from harness.evals.request_cache import thinking

    lm = backends.create(EvalConfig(batch_size=2, device="cpu"), str(chatty))
    ask = {"until": ["<|end|>"], "max_gen_toks": 12, "do_sample": False}
    context = "<|user|>What is 12 + 3?<|end|><|assistant|><think>"
    requests = [Instance("generate_until", {}, (context, ask), 0), Instance("generate_until", {}, (context + "1", ask), 0)]
    count = lambda text: len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for budget in (3, 7):
        with thinking(lm, THINK, budget) as hook:
            answers = lm.generate_until(requests)
        for request, answer in zip(requests, answers):
            note = hook.notes[json.dumps(list(request.args), sort_keys=True)][0]
            assert note["forced"] and note["terminated"] and 0 < note["reasoning_tokens"] <= budget
            assert count(note["reasoning"]) <= budget
            head, _, tail = note["raw_response"].partition("</think>")
            assert head.strip() == note["reasoning"] and tail.strip() == note["answer"] == answer != ""
            # the answer is the model's own continuation of the prompt, its reasoning and the forced close
            assert lm.generate_until([Instance("generate_until", {}, (request.args[0] + head + "</think>", ask),
                                               0)]) == [tail]
    assert "generate_until" not in vars(lm)  # the lm is left as it was


# ---------------------------------------------------------------------------------------- the embedded format


def test_think_format_data_and_tokens(tiny_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.data import skills
    from harness.models import tiny
    from harness.train.datasets import sft_rows

    item = next(i for i in skills.universe("arithmetic") if i["prompt"] == "What is 47 - 5?")
    assert skills.think_answer(item) == "<think>units 7 - 5 = 2, tens 4</think>42"
    plain, think = sft_rows(20, 0), sft_rows(20, 0, think=THINK)
    assert plain == sft_rows(20, 0) and len(plain) == len(think)
    changed = [(p, t) for p, t in zip(plain, think) if p != t]
    assert changed and all(t["completion"][0]["content"] == f"<think>{skills.worked_steps({'prompt': p['prompt'][0]['content'], 'answer': ''})}</think>{p['completion'][0]['content']}"
                           for p, t in changed)

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    before = len(tokenizer)
    assert tiny.add_reasoning_tokens(model, tokenizer, THINK)
    assert len(tokenizer) == before + 2 and model.get_input_embeddings().weight.shape[0] == before + 2
    ids = tokenizer("<think>1</think>2", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<think>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>1</think>2"  # kept when decoding
    tiny.save(model, tokenizer, tmp_path / "think")
    assert reasoning.resolve(None, tmp_path / "think", where="eval.reasoning") == THINK  # declared by its template
    assert not tiny.add_reasoning_tokens(model, tokenizer, THINK)  # idempotent


# ------------------------------------------------------------------------------------------------- the arena


class _ThinkingEngine:
    """An arena engine of hand-written answers: private reasoning, then the visible answer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def answer(self, chats, settings):
        texts = [f"<think>PRIVATE-THOUGHT about {c[-1]['content']}</think>visible answer {i}" if i % 2 == 0
                 else f"<think>PRIVATE-THOUGHT that never ends {i}" for i, c in enumerate(chats)]
        return [{"answer": t, "answer_chars": len(t), "prompt_tokens": 3, "answer_tokens": 9, "finish": "stop"}
                for t in texts]

    def close(self):
        pass


def test_the_judge_is_sent_no_reasoning(judge_server, tiny_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    import pandas as pd
    from transformers import AutoTokenizer

    from harness.arena import arena, engines
    from harness.arena.answers import GenerationSettings, generate
    from harness.arena.battles import judge_battles
    from harness.arena.llm_judge import LLMJudge
    from harness.tracking import schema

    server, url = judge_server
    monkeypatch.setenv(KEY_ENV, SECRET)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    monkeypatch.setattr(engines, "load", lambda *a, **k: _ThinkingEngine(tokenizer))
    prompts = [{"id": f"p{i}", "prompt": f"Say something {i}"} for i in range(4)]
    settings = GenerationSettings(reasoning=THINK.to_dict())
    assert settings.key() != GenerationSettings().key()  # reasoning is part of the answer cache key ...
    assert GenerationSettings().key() == GenerationSettings(reasoning=None, budget=None).key()  # ... only when set
    answers = generate({"a": str(tiny_checkpoint)}, prompts, settings, cache_dir=tmp_path / "answers")
    answers += [{**r, "model": "b"} for r in answers]
    judge = LLMJudge(url, MODEL, KEY_ENV, retries=0, timeout_s=5)
    judged = judge_battles(judge, prompts, answers, [("a", "b")])

    sent = [json.dumps(r["messages"]) for r in server.requests if "Assistant A" in json.dumps(r["messages"])]
    assert len(sent) == 4 and judged.stats["judgements_failed"] == 0
    assert sum("visible answer" in s for s in sent) == 2  # the two closed blocks' answers reached the judge
    assert not any("PRIVATE-THOUGHT" in s or "<think>" in s for s in sent)  # and no reasoning at all
    by = {r["prompt_id"]: r for r in answers if r["model"] == "a"}
    assert by["p0"]["answer"] == "visible answer 0" and by["p0"]["terminated"]
    assert by["p0"]["reasoning"] == "PRIVATE-THOUGHT about Say something 0"
    assert by["p1"]["answer"] == "" and not by["p1"]["terminated"]
    metrics = arena._thinking(pd.DataFrame(answers))
    assert metrics[schema.reasoning_metric("unterminated_rate", "a")] == 0.5
    assert metrics[schema.reasoning_metric("reasoning_tokens_mean", "b")] > 0


# ------------------------------------------------------------------------------ a think-format embedded run


def test_think_format_pipeline_logs_thinking_and_a_scaling_curve(tiny_checkpoint, tmp_path, capsys):
    from transformers import AutoTokenizer

    from harness.cli import main
    from harness.evals.budgets import read_scaling
    from harness.tracking import schema, store

    results = tmp_path / "r"
    argv = ["run", "--quick", "--results", str(results), "--set", "pretrain.enabled=false",
            "--set", f"sft.init={tiny_checkpoint}", "--set", "sft.examples_per_skill=8", "--set", "sft.batch_size=8",
            "--set", "dpo.enabled=false", "--set", "rlvr.enabled=false", "--set", "arena.enabled=false", "--set", "model.think=true", "--set", "eval.suite=tiny_think",
            "--set", "eval.limit=3", "--set", "eval.budgets=[2, 4, 8]", "--set", "eval.usd_per_mtok=2.0"]
    assert main(argv) == 0
    shown = capsys.readouterr()
    assert "Test-time scaling by thinking budget" in shown.err and "eval thinking per item" in shown.out

    sft = results / "checkpoints" / "embedded" / "sft"
    assert AutoTokenizer.from_pretrained(sft).convert_ids_to_tokens(
        AutoTokenizer.from_pretrained(sft)("<think>", add_special_tokens=False)["input_ids"]) == ["<think>"]
    runs = store.find_runs("harness", schema.Kind.EVAL, results)
    budgets = runs[schema.column("budget")].dropna()
    assert sorted(budgets.astype(int).tolist()) == [2, 4, 8]
    stage_runs = runs[runs[schema.column("stage")].notna()]
    assert stage_runs[schema.column("stage")].tolist() == ["sft"]
    for _, run in stage_runs.iterrows():
        for stat in ("reasoning_tokens_mean", "reasoning_tokens_p90", "answer_tokens_mean", "unterminated_rate",
                     "unterminated_rate_stderr", "usd_per_item"):
            assert f"metrics.{schema.reasoning_metric(stat)}" in run and \
                run[f"metrics.{schema.reasoning_metric(stat)}"] >= 0
    curve = read_scaling(runs)
    assert curve["label"].tolist() == ["sft"] * 3 and curve["budget"].tolist() == [2, 4, 8]
    assert curve[["ci_low", "ci_high", "tokens_ci_low", "tokens_ci_high"]].notna().all().all()
    assert (curve["reasoning_tokens_mean"] <= curve["budget"]).all()

    parent = store.find_runs("harness", schema.Kind.PIPELINE, results).run_id.iloc[0]
    logged = store.read(parent, schema.SCALING_TABLE, results)
    assert logged["budget"].tolist() == [2, 4, 8] and set(logged["label"]) == {"sft"}
    art = Path(store.client(store.tracking_uri(results)).get_run(parent).info.artifact_uri.removeprefix("file://"))
    assert (art / schema.SCALING_FIGURE.path).read_bytes().startswith(b"\x89PNG")
    from harness.report.dashboard import build_dashboard

    page = build_dashboard("harness", tmp_path / "site", results_dir=results, samples=0).read_text()
    assert "Test-time scaling" in page and "img/scaling" in page


def test_arena_budget_forcing_on_a_real_model(chatty):
    from harness.arena.answers import GenerationSettings, generate

    prompts = [{"id": "p0", "prompt": "What is 12 + 3?"}, {"id": "p1", "prompt": "Say hi"}]
    for budget in (2, 5):
        settings = GenerationSettings(max_new_tokens=4, reasoning=THINK.to_dict(), budget=budget)
        answers = generate({"m": str(chatty)}, prompts, settings, device="cpu")
        for rec in answers:
            assert rec["forced"] and rec["terminated"] and 0 < rec["reasoning_tokens"] <= budget
            assert rec["raw_response"].startswith(rec["reasoning"]) and "</think>" in rec["raw_response"]
            assert rec["answer"] and rec["answer_tokens"] <= budget + 1 + 4  # reasoning, the close, the answer
