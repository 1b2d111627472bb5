"""Hardware settings of the TRL stages: device and precision from what is there, a ``trl`` mapping validated by TRL's
own class, LoRA through PEFT saved merged, and the bad settings refused in one line before any training."""

from __future__ import annotations

import pytest
import torch

from harness.cli import main
from harness.config import load_config
from harness.errors import HarnessError
from harness.models.load import load
from harness.train import common, dpo, rlvr, sft
from harness.train.checks import check_stages


def test_device_and_precision_follow_the_machine(tmp_path):
    hardware = common.train_device()
    if torch.cuda.is_available():
        assert hardware.device == "cuda" and hardware.bf16 == torch.cuda.is_bf16_supported()
    else:
        assert hardware == common.Hardware("cpu", False)
    args = sft.trainer_args(load_config().sft, tmp_path, seed=0)
    assert args.use_cpu is (hardware.device == "cpu") and args.bf16 is hardware.bf16 and args.fp16 is False


def test_defaults_keep_the_embedded_settings(tmp_path):
    cfg = load_config()
    s, d, r = (m.trainer_args(getattr(cfg, n), tmp_path, 0) for m, n in ((sft, "sft"), (dpo, "dpo"), (rlvr, "rlvr")))
    assert s.max_length == d.max_length == 128 and s.packing is False and s.completion_only_loss is True
    assert s.gradient_accumulation_steps == d.gradient_accumulation_steps == r.gradient_accumulation_steps == 1
    assert s.gradient_checkpointing and d.gradient_checkpointing and r.gradient_checkpointing  # TRL's default
    assert r.num_generations == 8 and r.max_completion_length == 8 and d.beta == 0.1


def test_trl_mapping_reaches_trl_and_wins(tmp_path):
    cfg = load_config(overrides=["sft.trl={gradient_accumulation_steps: 4, warmup_steps: 3}", "sft.max_length=512",
                                 "sft.gradient_checkpointing=false", "sft.packing=true",
                                 "dpo.gradient_accumulation_steps=2"])
    args = sft.trainer_args(cfg.sft, tmp_path, 0)
    assert (args.gradient_accumulation_steps, args.warmup_steps, args.max_length) == (4, 3, 512)
    assert args.gradient_checkpointing is False and args.packing is True
    assert dpo.trainer_args(cfg.dpo, tmp_path, 0).gradient_accumulation_steps == 2


@pytest.mark.parametrize("override, message", [
    ("sft.trl={gradient_acumulation_steps: 4}", "config key sft.trl.gradient_acumulation_steps: not a field of "
                                                "trl.SFTConfig (did you mean gradient_accumulation_steps"),
    ("rlvr.trl={output_dir: /x}", "config key rlvr.trl.output_dir: set by the harness"),
    ("sft.lora.target_modules=[]", "config key sft.lora.target_modules: [] is not a list of module names"),
    ("dpo.lora.quantize=4bit", "config key dpo.lora.quantize: 4bit needs LoRA (dpo.lora.r > 0)"),
    ("rlvr.verifier=no_such_module_xyz:score", "config key rlvr.verifier 'no_such_module_xyz:score': module "
                                               "'no_such_module_xyz' does not import"),
])
def test_bad_settings_fail_when_the_config_is_checked(override, message):
    with pytest.raises(HarnessError, match=None) as info:
        load_config(overrides=[override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_trl_refusing_a_value_is_one_line():
    cfg = load_config(overrides=["sft.trl={lr_scheduler_type: sideways}"])
    with pytest.raises(HarnessError, match=r"config key sft.trl: trl.SFTConfig refuses the stage's settings: "
                                           r".*sideways"):
        check_stages(cfg)


def test_lora_targets_checked_against_the_model(tiny_checkpoint):
    cfg = load_config(overrides=["pretrain.enabled=false", f"sft.init={tiny_checkpoint}", "sft.lora.r=4",
                                 "sft.lora.target_modules=[query, value]"])
    with pytest.raises(HarnessError) as info:
        check_stages(cfg)
    assert str(info.value).startswith("config key sft.lora.target_modules: query, value not in "
                                      f"{tiny_checkpoint} (LlamaForCausalLM; its linear modules include ")
    assert "q_proj" in str(info.value)
    cfg.sft.lora.target_modules = ["q_proj", "v_proj"]
    check_stages(cfg)  # and the tiny model pretraining would build has them too
    check_stages(load_config(overrides=["dpo.lora.r=4", "dpo.lora.target_modules=[q_proj]"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal of QLoRA")
def test_qlora_without_a_gpu_is_one_line():
    with pytest.raises(HarnessError, match="config key sft.lora.quantize: 4bit \\(QLoRA\\) needs a CUDA GPU"):
        check_stages(load_config(overrides=["sft.lora.r=8", "sft.lora.quantize=4bit"]))


def test_lora_trains_and_saves_a_merged_checkpoint_that_evaluates(tiny_checkpoint, tmp_path):
    cfg = load_config(quick=True, overrides=["sft.examples_per_skill=16", "sft.batch_size=16", "sft.log_every=1",
                                             "sft.lora.r=4", "sft.lora.alpha=8", "sft.lora.target_modules=[q_proj, v_proj]",
                                             "sft.learning_rate=1e-2"])
    out = tmp_path / "sft"
    sft.run(cfg.sft, str(tiny_checkpoint), out, seed=0)
    assert not (out / "adapter_config.json").exists()
    before, _ = load(str(tiny_checkpoint))
    after, _ = load(str(out))
    old, new = before.state_dict(), after.state_dict()
    assert set(old) == set(new)  # a plain model: the adapters merged in
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    assert len(changed) == 2 * before.config.num_hidden_layers
    assert main(["eval", "--model", str(out), "--suite", "tiny", "--limit", "2", "--results", str(tmp_path / "r")]) == 0


BAD = [
    ("unknown-dataset-column", ["--set", "sft.dataset={tmp}/d.jsonl", "--set", "sft.dataset_columns={messages: chat}"],
     "config key sft.dataset_columns.messages: no column 'chat' in '{tmp}/d.jsonl' (columns: question, answer)"),
    ("dataset-without-its-columns", ["--set", "dpo.dataset={tmp}/d.jsonl"],
     "dpo.dataset '{tmp}/d.jsonl': needs the columns chosen and rejected"),
    ("unknown-trl-key", ["--set", "sft.trl={not_a_field: 1}"], "config key sft.trl.not_a_field: not a field of "
                                                                "trl.SFTConfig"),
    ("verifier-does-not-import", ["--set", "rlvr.verifier=nowhere_xyz:reward"],
     "config key rlvr.verifier 'nowhere_xyz:reward': module 'nowhere_xyz' does not import"),
    ("lora-without-targets", ["--set", "rlvr.lora.r=8", "--set", "rlvr.lora.target_modules=[c_attn]"],
     "config key rlvr.lora.target_modules: c_attn not in the tiny model pretraining builds"),
]


@pytest.mark.parametrize("argv, fragment", [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_bad_stage_input_stops_the_run_before_training(argv, fragment, tmp_path, monkeypatch, capsys):
    from harness import runner

    def reached(*args, **kwargs):
        pytest.fail("training started for an input that must be refused first")

    monkeypatch.setattr(runner, "_train", reached)
    (tmp_path / "d.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["run", "--quick", "--results", str(tmp_path / "r"), *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and "Traceback" not in captured.err
    assert fragment.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not (tmp_path / "r" / "mlflow.db").exists()  # no MLflow run started, so none left RUNNING
