"""Each TRL stage really trains: parameters change, a curve is recorded, tokens are counted."""

import pytest
import torch

from harness.config import load_config
from harness.models.load import load
from harness.train import dpo, rlvr, sft


def _params(path):
    model, _ = load(str(path))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(before, after):
    return sum(not torch.equal(before[k], after[k]) for k in before) / len(before)


@pytest.mark.parametrize("stage", ["sft", "dpo", "rlvr"])
def test_stage_changes_parameters(stage, tiny_checkpoint, tmp_path):
    cfg = load_config(quick=True)
    stage_cfg = getattr(cfg, stage)
    if stage == "sft":
        stage_cfg.examples_per_skill, stage_cfg.batch_size = 16, 16
    elif stage == "dpo":
        stage_cfg.pairs, stage_cfg.batch_size = 32, 8  # several steps: the first warmup step has lr 0
    else:
        stage_cfg.prompts, stage_cfg.num_generations, stage_cfg.batch_size = 8, 4, 8
    stage_cfg.log_every = 1
    module = {"sft": sft, "dpo": dpo, "rlvr": rlvr}[stage]
    out = tmp_path / stage
    kwargs = {}
    if stage == "rlvr":
        # An untrained model never earns the verifier's reward, so every advantage would be zero and nothing could
        # move; a reward that varies between samples shows the GRPO update itself works.
        kwargs["reward_fn"] = lambda completions, **_: [float(len(c[-1]["content"]) % 2) for c in completions]
    result = module.run(stage_cfg, str(tiny_checkpoint), out, seed=0, **kwargs)
    assert _changed(_params(tiny_checkpoint), _params(out)) > 0.5
    assert result.history and result.history[0][0] >= 1
    assert result.tokens > 0 and result.parameters > 0
    assert result.trainer_config["learning_rate"] == stage_cfg.learning_rate
    assert result.trainer_config["use_cpu"] is True
    if stage == "rlvr":
        assert any("reward" in m for _, m in result.history)
    else:
        assert any("loss" in m for _, m in result.history)


def test_rlvr_rewards_with_the_verifier():
    import inspect

    from harness.data.verifiers import reward

    assert inspect.signature(rlvr.run).parameters["reward_fn"].default is None
    assert rlvr.reward_for(load_config().rlvr) is reward  # rlvr.verifier's default: the skills' verifier
