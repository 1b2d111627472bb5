"""The tiny reward model (TRL `RewardTrainer`), the reward-model judge, and the pipeline's arena step."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ArenaConfig, RewardModelConfig
from harness.tracking import schema, store


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A second tiny checkpoint: same tokenizer, different initial weights."""
    from transformers import AutoTokenizer

    from harness.models import tiny

    out = tmp_path_factory.mktemp("tiny2") / "other"
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, out)
    return out


def test_reward_model_trains_and_judges(tiny_checkpoint, tmp_path):
    import torch
    from safetensors.torch import load_file

    from harness.arena.judges import RewardModelJudge
    from harness.train import reward

    torch.set_num_threads(1)
    result = reward.train(str(tiny_checkpoint), tmp_path / "rm", pairs=40, seed=0, epochs=1, batch_size=8,
                          learning_rate=1e-3, log_every=1)
    acc = result.extra_metrics["reward_model/heldout_accuracy"]
    assert 0.0 <= acc <= 1.0 and result.extra_metrics["reward_model/heldout_pairs"] == 8
    assert result.history and result.tokens > 0
    # training changed the body's parameters (not only the fresh score head)
    before = load_file(str(Path(tiny_checkpoint) / "model.safetensors"))
    after = load_file(str(tmp_path / "rm" / "model.safetensors"))
    key = next(k for k in before if "embed_tokens" in k)
    assert not torch.equal(before[key], after[next(k for k in after if "embed_tokens" in k)])
    assert not (tmp_path / "rm" / "_trainer").exists()

    row = {"id": "q", "prompt": "How do I feed the velu?"}
    judge = RewardModelJudge(str(tmp_path / "rm"), tie_margin=0.0, strong_margin=1e9)
    same = judge(row, "First, you feed the velu.", "First, you feed the velu.")
    assert same.verdict == "A=B"
    j = judge(row, "First, you feed the velu.", "I cannot help with that.")
    assert j.verdict in ("A>B", "B>A")  # a difference, never a strong one under this margin
    flipped = judge(row, "I cannot help with that.", "First, you feed the velu.")
    assert {j.verdict, flipped.verdict} == {"A>B", "B>A"}
    wide = RewardModelJudge(str(tmp_path / "rm"), tie_margin=1e9)
    assert wide(row, "First, you feed the velu.", "I cannot help with that.").verdict == "A=B"


def test_pipeline_arena_trains_the_reward_model_and_ranks_against_base(tiny_checkpoint, other_checkpoint, tmp_path,
                                                                       capsys):
    from harness.arena import pipeline_arena

    cfg = ArenaConfig(judge="reward-model", prompts=6, max_new_tokens=5, bootstrap=50,
                      reward_model=RewardModelConfig(pairs=40, epochs=1, batch_size=8))
    with store.run("embedded", schema.Kind.PIPELINE, results_dir=tmp_path) as parent:
        result = pipeline_arena({"base": str(tiny_checkpoint), "sft": str(other_checkpoint)}, cfg=cfg,
                                results_dir=tmp_path, parent=parent, seed=0, dpo_pairs_seed=3)
    err = capsys.readouterr().err
    assert "held-out accuracy" in err and "p_win_vs_base" in err
    assert result.baseline == "base"
    board = result.leaderboard
    for col in ("model", "rating", "ci_low", "ci_high", "rank", "battles", "win_rate_vs_baseline",
                "win_rate_ci_low", "win_rate_ci_high", "p_win_vs_baseline"):
        assert col in board.columns, col
    sft = board.set_index("model").loc["sft"]
    assert 0.0 <= sft["p_win_vs_baseline"] <= 1.0
    assert len(result.battles) == 6 and set(result.battles["judge"]) == {result.judge}
    assert result.judge.startswith("reward-model:")

    client = store.client(parent.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["harness.kind"] == "arena" and run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert "reward_model/heldout_accuracy" in run.data.metrics
    assert run.data.params["arena.baseline"] == "base"
