"""Stage datasets in real formats: SFT on GSM8K's train split as ``messages``, DPO on conversational chosen/rejected
pairs, RLVR on GSM8K prompts rewarded by math-verify; each trains (parameters change) and is recorded with its
dataset input. Bad datasets are one line before any training."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from harness.config import load_config
from harness.errors import HarnessError
from harness.models.load import load
from harness.train import rlvr, sft, user_data

from conftest import SHARED_DATA

GSM8K_TRAIN = SHARED_DATA / "benchmarks" / "openai" / "gsm8k" / "main" / "train.jsonl"


def _gsm8k(n: int, single_digit: bool = False) -> list[dict]:
    rows = []
    with GSM8K_TRAIN.open() as f:
        for line in f:
            row = json.loads(line)
            if not single_digit or row["answer"].rsplit("####", 1)[1].strip() in list("0123456789"):
                rows.append(row)
            if len(rows) == n:
                break
    return rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _messages(rows, final_only=False):
    return [{"messages": [{"role": "user", "content": r["question"]},
                          {"role": "assistant", "content": "#### " + r["answer"].rsplit("####", 1)[1].strip()
                           if final_only else r["answer"]}]} for r in rows]


def _params(path):
    model, _ = load(str(path))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(before, after):
    return sum(not torch.equal(before[k], after[k]) for k in before) / len(before)


def test_sft_on_gsm8k_messages_changes_parameters(tiny_checkpoint, tmp_path):
    data = _jsonl(tmp_path / "gsm8k_sft.jsonl", _messages(_gsm8k(64)))
    cfg = load_config(quick=True, overrides=[f"sft.dataset={data}", "sft.batch_size=16", "sft.epochs=1",
                                             "sft.log_every=1", "sft.max_length=96"])
    loaded = user_data.load(cfg.sft)
    assert loaded.format == "messages" and loaded.dataset.column_names == ["messages"]
    assert loaded.record.rows == 64 and loaded.record.source == {"uri": str(data)}
    result = sft.run(cfg.sft, str(tiny_checkpoint), tmp_path / "sft", seed=0)
    assert _changed(_params(tiny_checkpoint), _params(tmp_path / "sft")) > 0.5
    assert result.trainer_config["max_length"] == 96 and len(result.history) == 4


def test_digest_follows_the_content(tmp_path):
    rows = _messages(_gsm8k(4))
    (tmp_path / "copy").mkdir()
    files = [_jsonl(tmp_path / "a.jsonl", rows), _jsonl(tmp_path / "copy" / "a.jsonl", rows),
             _jsonl(tmp_path / "c.jsonl", rows[:3])]
    digests = [user_data.load(load_config(overrides=[f"sft.dataset={f}"]).sft).record.digest for f in files]
    assert digests[0] == digests[1] != digests[2] and len(digests[0]) == 16


def test_prompt_completion_columns_mapped(tmp_path):
    data = _jsonl(tmp_path / "qa.jsonl", _gsm8k(8))
    cfg = load_config(overrides=[f"sft.dataset={data}", "sft.dataset_columns={prompt: question, completion: answer}"])
    loaded = user_data.load(cfg.sft)
    assert loaded.format == "prompt-completion" and sorted(loaded.dataset.column_names) == ["completion", "prompt"]
    assert loaded.dataset[0]["prompt"] == _gsm8k(1)[0]["question"]


def test_parquet_and_csv_folders_read_by_split(tmp_path):
    import pandas as pd

    rows = _gsm8k(6)
    (tmp_path / "pq").mkdir()
    pd.DataFrame(rows[:4]).to_parquet(tmp_path / "pq" / "train-00000.parquet")
    pd.DataFrame(rows[4:]).to_parquet(tmp_path / "pq" / "test-00000.parquet")
    cfg = load_config(overrides=[f"rlvr.dataset={tmp_path / 'pq'}", "rlvr.dataset_columns={prompt: question}",
                                 "rlvr.verifier=math"])
    assert len(user_data.load(cfg.rlvr).dataset) == 4
    cfg.rlvr.dataset_split = "test"
    assert len(user_data.load(cfg.rlvr).dataset) == 2
    pd.DataFrame(rows).to_csv(tmp_path / "qa.csv", index=False)
    cfg = load_config(overrides=[f"rlvr.dataset={tmp_path / 'qa.csv'}", "rlvr.dataset_columns={prompt: question}",
                                 "rlvr.verifier=exact_match"])
    assert user_data.load(cfg.rlvr).record.rows == 6


@pytest.mark.parametrize("overrides, rows, message", [
    (["sft.dataset_columns={messages: conversation}"], [{"messages": []}],
     "config key sft.dataset_columns.messages: no column 'conversation' in '{data}' (columns: messages)"),
    ([], [{"question": "q", "answer": "a"}],
     "sft.dataset '{data}': needs the columns messages, or prompt and completion, or text; columns found: question, "
     "answer (map yours with sft.dataset_columns"),
    (["rlvr.verifier=math", "rlvr.dataset_columns={prompt: question}"], [{"question": "q", "solution": "4"}],
     "rlvr.dataset '{data}': needs the columns prompt, answer (prompt, and for verifier math its columns); columns "
     "found: prompt, solution"),
    ([], [{"messages": "just text"}], "dataset '{data}' row 0 column 'messages': str 'just text' (valid: a list of"),
    ([], [], "sft.dataset '{data}' has no rows"),
])
def test_bad_datasets_are_one_line(overrides, rows, message, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", rows)
    stage = overrides[0].split(".")[0] if overrides else "sft"
    if not rows:
        data.write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
        data = tmp_path / "empty"
        data.mkdir()
        (data / "train.jsonl").write_text("")
    cfg = load_config(overrides=[f"{stage}.dataset={data}", *overrides])
    with pytest.raises(HarnessError) as info:
        user_data.load(getattr(cfg, stage))
    assert message.format(data=data) in str(info.value) and "\n" not in str(info.value)


def test_missing_hub_dataset_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = load_config(overrides=["sft.dataset=nobody-here/no-such-dataset"])
    with pytest.raises(HarnessError, match=r"hub dataset 'nobody-here/no-such-dataset' \(config None, split 'train', "
                                           r"revision unpinned\) could not be loaded: .*offline, only the local cache"):
        user_data.load(cfg.sft)


def test_rlvr_on_gsm8k_rewarded_by_math_verify(tiny_checkpoint, tmp_path):
    """A short SFT on GSM8K's final answers first, so that the tiny model writes ``#### <digit>`` and some samples
    earn math-verify's reward; then GRPO on GSM8K prompts, rewarded by the math verifier."""
    rows = _gsm8k(16, single_digit=True)
    final = _jsonl(tmp_path / "final.jsonl", _messages(rows, final_only=True))
    prompts = _jsonl(tmp_path / "gsm8k_rl.jsonl", rows)
    cfg = load_config(quick=True, overrides=[
        f"sft.dataset={final}", "sft.batch_size=16", "sft.epochs=20", "sft.learning_rate=5e-3", "sft.max_length=256",
        f"rlvr.dataset={prompts}", "rlvr.dataset_columns={prompt: question}", "rlvr.verifier=math",
        "rlvr.num_generations=8", "rlvr.batch_size=16", "rlvr.log_every=1", "rlvr.temperature=1.0",
        "rlvr.max_completion_length=6"])
    sft.run(cfg.sft, str(tiny_checkpoint), tmp_path / "sft", seed=0)
    reward = rlvr.reward_for(cfg.rlvr)
    assert reward.__name__ == "math" and reward.__module__ == "harness.data.task_verifiers"
    assert reward(["#### 3", "\\boxed{3}", "#### 4"], answer=[rows[0]["answer"]] * 3) == \
        [float(rows[0]["answer"].endswith(" 3"))] * 2 + [float(rows[0]["answer"].endswith(" 4"))]
    result = rlvr.run(cfg.rlvr, str(tmp_path / "sft"), tmp_path / "rlvr", seed=0)
    rewards = [m["rewards/math/mean"] for _, m in result.history if "rewards/math/mean" in m]
    assert len(rewards) == 8 and max(rewards) > 0  # math-verify's reward, and some samples earned it
    assert _changed(_params(tmp_path / "sft"), _params(tmp_path / "rlvr")) > 0.5


def test_pipeline_records_each_dataset_input(tiny_checkpoint, tmp_path):
    """`harness run` with its own SFT and DPO data: the stage runs carry the dataset inputs, digests and params."""
    from harness.cli import main
    from harness.tracking import schema, store

    sft_data = _jsonl(tmp_path / "gsm8k_sft.jsonl", _messages(_gsm8k(64)))
    pairs = [{"prompt": [{"role": "user", "content": f"Is {i} even?"}],
              "chosen": [{"role": "assistant", "content": "yes" if i % 2 == 0 else "no"}],
              "rejected": [{"role": "assistant", "content": "no" if i % 2 == 0 else "yes"}]} for i in range(24)]
    dpo_data = _jsonl(tmp_path / "prefs.jsonl", pairs)
    results = tmp_path / "r"
    assert main(["run", "--quick", "--results", str(results), "--set", "pretrain.enabled=false",
                 "--set", f"sft.init={tiny_checkpoint}", "--set", f"sft.dataset={sft_data}",
                 "--set", "sft.batch_size=16", "--set", "sft.epochs=1", "--set", "sft.trl={gradient_accumulation_steps: 2}",
                 "--set", f"dpo.dataset={dpo_data}", "--set", "dpo.batch_size=8",
                 "--set", "rlvr.enabled=false", "--set", "eval.enabled=false", "--set", "arena.enabled=false"]) == 0
    client = mlflow.MlflowClient(store.tracking_uri(results))
    runs = {r.data.tags[schema.tag_key("stage")]: r for r in client.search_runs(
        [client.get_experiment_by_name("harness").experiment_id], schema.where(schema.Kind.TRAIN))}
    assert set(runs) == {"sft", "dpo"}
    for stage, data, rows in (("sft", sft_data, 64), ("dpo", dpo_data, 24)):
        run = runs[stage]
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1 and inputs[0].dataset.name == data.name
        expected = user_data.load(load_config(overrides=[f"{stage}.dataset={data}"]).__getattribute__(stage))
        assert inputs[0].dataset.digest == expected.record.digest == run.data.params["dataset.digest"]
        assert json.loads(inputs[0].dataset.profile) == {"num_rows": rows}
        assert [t.value for t in inputs[0].tags] == [schema.TRAIN_CONTEXT]
        assert run.data.params["dataset.source"] == str(data) and run.data.params["stage.dataset"] == str(data)
    assert runs["sft"].data.params["trainer.gradient_accumulation_steps"] == "2"
    assert runs["sft"].data.params["stage.trl.gradient_accumulation_steps"] == "2"
    assert runs["dpo"].data.params["dataset.format"] == "preference"
