"""Config precedence (defaults < quick preset < YAML < --set < flags), self-validation (choices, ranges, rules
between keys, nested sections) and errors that name the bad key, through the real command line."""

import dataclasses
import subprocess
import sys
import time
import types
import typing

import pytest
import yaml

from harness.cli import main
from harness.config import (ArenaConfig, Config, EvalConfig, LLMJudgeConfig, RewardModelConfig, SFTConfig, load_config,
                            parse_override, to_dict)
from harness.config_base import Section
from harness.errors import HarnessError
from harness.nightly.config import NightlyConfig, load_nightly_config


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
    assert yaml.safe_load((PACKAGE_CONFIGS / "default.yaml").read_text()) == to_dict(Config())  # every key, restated


# --- every range-checked key, with a bad value, through the real command line -------------------------------------

SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
# How each command takes config: `--set KEY=VALUE` after these arguments (they name nothing that exists).
COMMANDS = {
    "run": ["run"],
    "eval": ["eval", "--model", "no-such-model"],
    "arena": ["arena", "--models", "a=no-such-a", "b=no-such-b"],
    "nightly": ["nightly", "--candidate", "no-such-candidate"],
}


def _ranged(cfg, prefix=""):
    """(key, bound name, limit, integer field?) for every bound of every range-checked scalar field, sections
    included."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Section):
            yield from _ranged(value, f"{prefix}{f.name}.")
        elif not isinstance(value, dict):
            integer = int in (hints[f.name], *typing.get_args(hints[f.name]))
            for name, limit in f.metadata.get("range", {}).items():
                yield f"{prefix}{f.name}", name, limit, integer


def _bad(name, limit, integer):
    """A value just outside one bound: the bound itself for > and <, one step past it for >= and <=."""
    step = 1 if integer and isinstance(limit, int) else 0.5
    return {"gt": limit, "ge": limit - step, "lt": limit, "le": limit + step}[name]


def _cases():
    for key, name, limit, integer in _ranged(Config()):
        commands = ["run"] + [c for c in ("eval", "arena") if key.startswith(c + ".")]
        for command in commands:
            yield pytest.param(command, key, name, limit, _bad(name, limit, integer), id=f"{command}-{key}-{name}")
    for key, name, limit, integer in _ranged(NightlyConfig()):
        yield pytest.param("nightly", key, name, limit, _bad(name, limit, integer), id=f"nightly-{key}-{name}")


def _one_line_error(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), captured.err
    return lines[0].removeprefix("harness: error: ")


def test_every_command_type_is_covered():
    commands = {c.values[0] for c in _cases()}
    assert commands == set(COMMANDS)
    assert len(list(_cases())) > 100


@pytest.mark.parametrize("command, key, bound, limit, bad", list(_cases()))
def test_out_of_range_value_is_one_line_naming_key_value_and_range(command, key, bound, limit, bad, tmp_path, capsys):
    results = tmp_path / "results"
    err = _one_line_error(capsys, COMMANDS[command] + ["--results", str(results), "--set", f"{key}={bad}"])
    assert err.startswith(f"config key {key}: {bad} is out of range (valid: "), err
    assert f"{SYMBOLS[bound]} {limit}" in err.split("(valid: ", 1)[1]
    assert not results.exists()  # no MLflow store, no cache, no checkpoint: nothing started


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "m", "--limit", "0"], "config key eval.limit: 0 is out of range (valid: >= 1, or null)"),
    (["arena", "--models", "a", "b", "--limit", "-1"], "config key arena.prompts: -1 is out of range (valid: >= 0)"),
    (["nightly", "--candidate", "c", "--set", "min_effects.acc,none=-0.5"],
     "config key min_effects.acc,none: -0.5 is out of range (valid: >= 0)"),
])
def test_command_flags_are_checked_as_config_keys(argv, message, tmp_path, capsys):
    assert _one_line_error(capsys, argv + ["--results", str(tmp_path / "results")]) == message
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_value_fails_fast_in_a_fresh_process(command, tmp_path):
    key = {"run": "sft.epochs", "eval": "eval.batch_size", "arena": "arena.llm.concurrency",
           "nightly": "history"}[command]
    argv = [sys.executable, "-m", "harness.cli", *COMMANDS[command], "--results", str(tmp_path), "--set", f"{key}=0"]
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 10
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()] and f"config key {key}: 0 is out of range" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


# --- NaN and infinity ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["sft.learning_rate", "arena.temperature", "arena.llm.timeout_s", "run.price_per_hour",
                                 "arena.reward_model.tie_margin", "dpo.sft_weight"])
@pytest.mark.parametrize("text, shown", [("nan", "nan"), (".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"),
                                         ("inf", "inf")])
def test_nan_and_inf_are_rejected(key, text, shown, tmp_path, capsys):
    err = _one_line_error(capsys, ["run", "--results", str(tmp_path), "--set", f"{key}={text}"])
    assert err.startswith(f"config key {key}: {shown} is not a finite number (valid: ")


def test_nan_in_yaml_in_nightly_and_in_code(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("dpo:\n  beta: .nan\n")
    with pytest.raises(HarnessError, match=r"^config key dpo.beta: nan is not a finite number \(valid: > 0\)$"):
        load_config(path)
    err = _one_line_error(capsys, ["nightly", "--candidate", "c", "--results", str(tmp_path), "--set", "alpha=nan"])
    assert err == "config key alpha: nan is not a finite number (valid: > 0 and < 1)"
    with pytest.raises(HarnessError, match="config key min_effects.acc,none: inf is not a finite number"):
        load_nightly_config(overrides=["min_effects={'acc,none': .inf}"])
    with pytest.raises(HarnessError, match="config key sft.learning_rate: inf is not a finite number"):
        SFTConfig(learning_rate=float("inf"))


# --- fixed choices (Literal) ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, key, value, choices", [
    ("run", "arena.judge", "foo", "verifier, reward-model, llm"),
    ("run", "eval.backend", "tgi", "hf, vllm, local-chat-completions"),
    ("eval", "eval.backend", "openai", "hf, vllm, local-chat-completions"),
    ("arena", "arena.mode", "league", "round-robin, baseline"),
    ("nightly", "correction", "bonferroni", "holm, bh"),
    ("nightly", "metrics", "some", "headline, all"),
    ("nightly", "arena.judge", "human", "verifier, reward-model, llm"),
])
def test_value_off_its_choices_names_them(command, key, value, choices, tmp_path, capsys):
    err = _one_line_error(capsys, COMMANDS[command] + ["--results", str(tmp_path), "--set", f"{key}={value}"])
    assert err == f"config key {key}: {value!r} is not one of {choices}"


def test_choices_are_defined_once():
    from typing import get_args

    from harness.arena import battles, judges
    from harness.config import ArenaMode, Backend, JudgeKind
    from harness.nightly import stats
    from harness.nightly.config import Correction, MetricSet

    hints = {cls: typing.get_type_hints(cls) for cls in (EvalConfig, ArenaConfig, NightlyConfig)}
    assert hints[EvalConfig]["backend"] == Backend and get_args(Backend) == ("hf", "vllm", "local-chat-completions")
    assert hints[ArenaConfig]["judge"] == JudgeKind and hints[ArenaConfig]["mode"] == ArenaMode
    assert hints[NightlyConfig]["correction"] == Correction and hints[NightlyConfig]["metrics"] == MetricSet
    assert judges.JUDGES == get_args(JudgeKind) and battles.MODES == get_args(ArenaMode)
    assert stats.CORRECTIONS == get_args(Correction) and get_args(MetricSet) == ("headline", "all")
    with pytest.raises(HarnessError, match="config key arena.judge: 1 is not one of"):
        ArenaConfig(judge=1)


# --- rules between keys --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["rlvr.batch_size=10"], "config key rlvr.batch_size: 10 is not a multiple of rlvr.num_generations=8"),
    (["pretrain.enabled=false", "sft.enabled=false", "dpo.enabled=false", "rlvr.enabled=false"],
     "config keys pretrain.enabled, sft.enabled, dpo.enabled, rlvr.enabled: every stage is disabled; enable at least "
     "one"),
    (["pretrain.enabled=false"], "config key sft.init: required when pretrain is disabled (a folder, hub id or MLflow "
                                 "URI)"),
    (["pretrain.enabled=false", "sft.enabled=false", "sft.init=/x"], "config key dpo.init: required when pretrain"),
    (["model.hidden_size=130"], "config key model.hidden_size: 130 is not a multiple of model.heads=4"),
    (["model.hidden_size=132"], "config key model.hidden_size: 132 gives an odd size per head (33 with model.heads=4)"),
    (["arena.reward_model.tie_margin=2"], "config key arena.reward_model.tie_margin: 2 is above "
                                          "arena.reward_model.strong_margin=1 (valid: <= strong_margin)"),
    (["arena.judge=llm", "arena.llm.model=m"], "config key arena.llm.base_url: the llm judge needs an endpoint"),
    (["eval.backend=local-chat-completions"], "config key eval.backend_args: eval backend local-chat-completions "
                                              "needs eval.backend_args.base_url"),
])
def test_cross_field_rule_is_one_line_before_anything_starts(overrides, message, tmp_path, capsys):
    argv = ["run", "--results", str(tmp_path / "results")] + [a for o in overrides for a in ("--set", o)]
    assert _one_line_error(capsys, argv).startswith(message)
    assert not (tmp_path / "results").exists()


def test_cross_field_rules_see_the_final_values():
    # 12 is not a multiple of the default 8, but it is of the 4 set next: rules run once everything is applied
    cfg = load_config(overrides=["rlvr.batch_size=12", "rlvr.num_generations=4"])
    assert (cfg.rlvr.batch_size, cfg.rlvr.num_generations) == (12, 4)
    load_config(overrides=["rlvr.enabled=false", "rlvr.batch_size=10"])  # a disabled stage's rule does not apply
    load_config(overrides=["arena.enabled=false", "arena.judge=llm"])  # nor a disabled arena's
    with pytest.raises(HarnessError, match="the llm judge needs an endpoint"):
        load_nightly_config(flags={"arena": {"enabled": True, "judge": "llm"}})


def test_values_set_in_code_are_checked_too():
    with pytest.raises(HarnessError, match=r"^config key arena.prompts: -1 is out of range \(valid: >= 0\)$"):
        ArenaConfig(prompts=-1)
    cfg = load_config()
    with pytest.raises(HarnessError, match=r"^config key eval.limit: 0 is out of range"):
        cfg.eval.limit = 0
    with pytest.raises(HarnessError, match=r"^config key arena.top_p: 2 is out of range \(valid: > 0 and <= 1\)$"):
        dataclasses.replace(cfg.arena, top_p=2)
    with pytest.raises(HarnessError, match="config key arena.reward_model.tie_margin: 3 is above"):
        RewardModelConfig(tie_margin=3)
    assert SFTConfig(epochs=3).epochs == 3.0 and isinstance(SFTConfig(epochs=3).epochs, float)


# --- nested sections: arena.llm and arena.reward_model -------------------------------------------------------------

def test_nested_sections_from_yaml_and_set(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("arena:\n  judge: llm\n  llm:\n    base_url: http://127.0.0.1:8000/v1\n    model: judge\n"
                    "    timeout_s: 5\n  reward_model: {path: org/rm, tie_margin: 0.1}\n")
    cfg = load_config(path, ["arena.llm.retries=0", "arena.reward_model.strong_margin=2.5"])
    assert cfg.arena.llm == LLMJudgeConfig(base_url="http://127.0.0.1:8000/v1", model="judge", timeout_s=5.0,
                                           retries=0)
    assert cfg.arena.reward_model == RewardModelConfig(path="org/rm", tie_margin=0.1, strong_margin=2.5)
    flat = to_dict(cfg)["arena"]
    assert flat["llm"]["model"] == "judge" and flat["reward_model"]["path"] == "org/rm"
    nightly = load_nightly_config(overrides=["arena.llm.max_tokens=64", "arena.reward_model.pairs=40"])
    assert (nightly.arena.llm.max_tokens, nightly.arena.reward_model.pairs) == (64, 40)


def test_nested_sections_reject_unknown_old_and_scalar_keys(tmp_path, capsys):
    with pytest.raises(HarnessError, match=r"unknown config key 'arena.llm.url'; valid keys in arena.llm: base_url, "
                                           r"model, api_key_env"):
        load_config(overrides=["arena.llm.url=http://x"])
    for old in ("arena.judge_base_url=http://x", "arena.rm_pairs=4"):  # the flat keys these sections replaced
        with pytest.raises(HarnessError, match=r"unknown config key 'arena\.(judge_base_url|rm_pairs)'"):
            load_config(overrides=[old])
    err = _one_line_error(capsys, ["run", "--results", str(tmp_path), "--set", "arena.reward_model=org/rm"])
    assert err.startswith("config key arena.reward_model: a section, expected a mapping of its keys (path, pairs")


def test_arena_flags_map_onto_the_nested_sections(monkeypatch, tmp_path, capsys):
    from harness.arena import arena

    seen = {}

    def fake_run_arena(models, *, cfg, **kwargs):
        seen.update(models=models, cfg=cfg, **kwargs)
        return types.SimpleNamespace(run_id="r")

    monkeypatch.setattr(arena, "run_arena", fake_run_arena)
    prompts = tmp_path / "p.jsonl"
    assert main(["arena", "--models", "a=x", "b=y", "--prompts", str(prompts), "--judge", "llm",
                 "--judge-base-url", "http://h/v1", "--judge-model", "m", "--judge-api-key-env", "K",
                 "--reward-model", "org/rm", "--mode", "baseline", "--baseline", "a", "--no-cache",
                 "--results", str(tmp_path / "r"), "--set", "arena.llm.retries=0"]) == 0
    cfg = seen["cfg"]
    assert (cfg.judge, cfg.mode, cfg.baseline, cfg.cache, cfg.prompt_file, cfg.prompts) == (
        "llm", "baseline", "a", False, str(prompts), 0)
    assert (cfg.llm.base_url, cfg.llm.model, cfg.llm.api_key_env, cfg.llm.retries) == ("http://h/v1", "m", "K", 0)
    assert cfg.reward_model.path == "org/rm" and seen["results_dir"] == str(tmp_path / "r")
