"""Config precedence (defaults < quick preset < YAML < --set) and errors that name the bad key."""

import pytest

from harness.config import Config, load_config, parse_override
from harness.errors import HarnessError


def test_defaults_match_dataclasses():
    assert load_config() == Config()


def test_precedence_defaults_quick_yaml_set(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("sft:\n  learning_rate: 2.0e-4\n  epochs: 3\npretrain:\n  steps: 7\n")
    cfg = load_config(path, ["sft.epochs=5"], quick=True)
    assert cfg.sft.learning_rate == pytest.approx(2e-4)  # YAML beats the default
    assert cfg.sft.epochs == 5.0  # --set beats YAML
    assert cfg.pretrain.steps == 7  # YAML beats the quick preset
    assert cfg.sft.examples_per_skill == 300  # quick preset beats the default
    assert cfg.dpo.beta == Config().dpo.beta  # untouched default


def test_exponent_without_dot_is_a_float(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("sft:\n  learning_rate: 1e-4\n")
    assert load_config(path).sft.learning_rate == pytest.approx(1e-4)


def test_unknown_key_names_key_and_valid_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("sft:\n  lr: 0.1\n")
    with pytest.raises(HarnessError) as err:
        load_config(path)
    msg = str(err.value)
    assert "'sft.lr'" in msg and "learning_rate" in msg and "epochs" in msg


def test_unknown_section_and_set_key():
    with pytest.raises(HarnessError, match=r"unknown config key 'trainer'.*valid keys: run, model"):
        load_config(overrides=["trainer.x=1"])


def test_wrong_type_names_key_and_type():
    with pytest.raises(HarnessError, match=r"config key pretrain.steps: expected int, got 'many'"):
        load_config(overrides=["pretrain.steps=many"])


def test_parse_override_values():
    assert parse_override("sft.init=null") == (["sft", "init"], None)
    assert parse_override("run.seed=3") == (["run", "seed"], 3)
    with pytest.raises(HarnessError, match="expected section.key=value"):
        parse_override("sft.epochs")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [unclosed\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(HarnessError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_packaged_default_yaml_restates_the_defaults():
    from harness.config import PACKAGE_CONFIGS

    assert load_config(PACKAGE_CONFIGS / "default.yaml") == Config()
