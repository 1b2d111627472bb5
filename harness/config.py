"""Experiment configuration: dataclasses with a help string per field; defaults < YAML file < ``--set`` < flags.

`load_config(path, overrides, quick, flags)` starts from the dataclass defaults (the packaged ``configs/default.yaml``
restates them for reading), applies the packaged ``configs/quick.yaml`` preset when `quick`, then the user's YAML
file, then ``--set section.key=value`` overrides (values parsed as YAML scalars; ``--set arena.llm.model=m`` for a
nested section), then the command's own flags, and finally checks the whole config.

The config validates itself (`harness.config_base`): fixed choices are ``Literal`` types, numbers carry their range
and are checked as they are set, and each section's `check()` holds the rules between its fields. A bad value is one
`HarnessError` line naming the key, the value and what is valid, before any model loads or any MLflow run starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.config_base import (Section, apply_flags, apply_overrides, apply_yaml, nested, option, parse_override,
                                 resolve, to_dict, validate)
from harness.errors import HarnessError
from harness.resources import resource_path

__all__ = ["ArenaConfig", "ArenaMode", "Backend", "Config", "DPOConfig", "EvalConfig", "JudgeKind", "LLMJudgeConfig",
           "ModelConfig", "PretrainConfig", "RLVRConfig", "RewardModelConfig", "RunConfig", "SFTConfig",
           "apply_flags", "apply_overrides", "apply_yaml", "load_config", "option", "parse_override", "to_dict",
           "validate"]

PACKAGE_CONFIGS = resource_path("configs")

# Fixed choices, defined once: the modules that act on them read the values with typing.get_args.
Backend = Literal["hf", "vllm", "local-chat-completions"]
JudgeKind = Literal["verifier", "reward-model", "llm"]
ArenaMode = Literal["round-robin", "baseline"]


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu|hpu|meta)(:\d+)?$")


def check_device(value: str | None, key: str) -> None:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``...) or None; whether this machine has it is
    checked when the command starts (`harness.models.load.check_device`)."""
    if value is not None and not _DEVICE.match(value):
        raise HarnessError(f"config key {key}: {value!r} is not a torch device (valid: cpu, cuda, cuda:N, mps, "
                           "xpu, or null for cuda when available, else cpu)")


def check_model_name(value: str, key: str) -> None:
    """A registered-model name as MLflow accepts it: not empty, no '/' or ':'."""
    if not value.strip() or "/" in value or ":" in value:
        raise HarnessError(f"config key {key}: {value!r} is not a registered-model name (valid: a non-empty name "
                           "without '/' or ':')")


def check_experiment(value: str, key: str) -> None:
    """An MLflow experiment name: 1 to 500 characters."""
    if not value or len(value) > 500:
        raise HarnessError(f"config key {key}: {value!r} is not an MLflow experiment name (valid: 1 to 500 "
                           "characters)")


@dataclass
class RunConfig(Section):
    where = "run"
    name: str = option("embedded", "Name of the parent MLflow run.")
    experiment: str = option("harness", "MLflow experiment name.")
    seed: int = option(0, "Seed for data sampling, initialisation and training order.", ge=0)
    results: str = option("results", "Output folder: checkpoints, caches and the default sqlite MLflow store.")
    registered_model: str = option("harness-embedded", "MLflow registered-model name for the stage checkpoints.")
    price_per_hour: float = option(2.0, "Price of one accelerator-hour (USD) for cost estimates.", ge=0)
    threads: int = option(1, "torch CPU threads per process (1 is fastest on a shared 2-core machine).", ge=1)

    def check(self) -> None:
        if not self.name.strip():
            raise HarnessError("config key run.name: '' is empty (valid: a name for the parent MLflow run)")
        if not self.results.strip():
            raise HarnessError("config key run.results: '' is empty (valid: a folder)")
        check_experiment(self.experiment, "run.experiment")
        check_model_name(self.registered_model, "run.registered_model")


@dataclass
class ModelConfig(Section):
    where = "model"
    hidden_size: int = option(128, "Tiny model: residual width (a multiple of heads, with an even size per head).",
                              ge=1)
    layers: int = option(4, "Tiny model: decoder layers.", ge=1)
    heads: int = option(4, "Tiny model: attention heads.", ge=1)
    vocab_size: int = option(320, "Tiny model: BPE vocabulary size (small: nearly character-level, easy to copy).",
                             ge=1)
    trust_remote_code: bool = option(False, "Allow code shipped with a loaded checkpoint to run.")

    def check(self) -> None:
        if self.hidden_size % self.heads:
            raise HarnessError(f"config key model.hidden_size: {self.hidden_size} is not a multiple of "
                               f"model.heads={self.heads}")
        if (self.hidden_size // self.heads) % 2:
            raise HarnessError(f"config key model.hidden_size: {self.hidden_size} gives an odd size per head "
                               f"({self.hidden_size // self.heads} with model.heads={self.heads}); rotary position "
                               "embeddings need an even one")


@dataclass
class PretrainConfig(Section):
    where = "pretrain"
    enabled: bool = option(True, "Build and pretrain the tiny base model (off: start from sft.init).")
    corpus_lines: int = option(40000, "Synthetic corpus lines.", ge=1)
    steps: int = option(500, "Optimizer steps (copying appears after ~350 at the defaults).", ge=1)
    batch_size: int = option(32, "Rows per step.", ge=1)
    seq_len: int = option(64, "Tokens per row.", ge=2)
    learning_rate: float = option(2e-3, "Peak learning rate (cosine decay, 5% warmup).", gt=0)
    log_every: int = option(10, "Log the loss every N steps.", ge=1)


@dataclass
class SFTConfig(Section):
    where = "sft"
    enabled: bool = option(True, "Run supervised finetuning.")
    init: str | None = option(None, "Checkpoint to start from (HF id, folder or MLflow URI); default: the previous stage.")
    examples_per_skill: int = option(1000, "Training conversations per skill (arithmetic, format, knowledge, safe "
                                           "how-to).", ge=1)
    epochs: float = option(2.0, "Passes over the data.", gt=0)
    batch_size: int = option(32, "Per-device batch size.", ge=1)
    learning_rate: float = option(1e-3, "Learning rate.", gt=0)
    log_every: int = option(10, "Log every N steps.", ge=1)


@dataclass
class DPOConfig(Section):
    where = "dpo"
    enabled: bool = option(True, "Run direct preference optimisation.")
    init: str | None = option(None, "Checkpoint to start from; default: the previous stage.")
    pairs: int = option(1200, "Preference pairs (safety: refuse unsafe, answer safe; plus a quarter format pairs).",
                        ge=1)
    arithmetic_fraction: float = option(0.0, "Share of arithmetic pairs (right over wrong number); 0 leaves it to "
                                             "RLVR; at most 0.75, as a quarter are format pairs.", ge=0, le=0.75)
    epochs: float = option(2.0, "Passes over the pairs.", gt=0)
    batch_size: int = option(32, "Per-device batch size.", ge=1)
    learning_rate: float = option(5e-4, "Learning rate.", gt=0)
    beta: float = option(0.1, "DPO temperature (strength of the KL anchor to the reference).", gt=0)
    sft_weight: float = option(1.0, "Weight of the chosen answers' NLL added to the DPO loss (RPO); 0 for pure DPO.",
                               ge=0)
    log_every: int = option(5, "Log every N steps.", ge=1)


@dataclass
class RLVRConfig(Section):
    where = "rlvr"
    enabled: bool = option(True, "Run GRPO with verifiable rewards.")
    init: str | None = option(None, "Checkpoint to start from; default: the previous stage.")
    prompts: int = option(512, "Training prompts (arithmetic).", ge=1)
    num_generations: int = option(8, "Completions sampled per prompt (the GRPO group; at least 2).", ge=2)
    batch_size: int = option(32, "Completions per step (a multiple of num_generations).", ge=1)
    max_completion_length: int = option(8, "Maximum tokens per completion.", ge=1)
    learning_rate: float = option(1e-4, "Learning rate.", gt=0)
    beta: float = option(0.04, "KL coefficient against the reference model (0: no reference model).", ge=0)
    temperature: float = option(0.7, "Sampling temperature of the GRPO group.", gt=0)
    epochs: float = option(1.0, "Passes over the prompts.", gt=0)
    log_every: int = option(2, "Log every N steps.", ge=1)

    def check(self) -> None:
        if self.enabled and self.batch_size % self.num_generations:
            raise HarnessError(f"config key rlvr.batch_size: {self.batch_size} is not a multiple of "
                               f"rlvr.num_generations={self.num_generations}")


@dataclass
class EvalConfig(Section):
    where = "eval"
    enabled: bool = option(True, "Evaluate every stage's checkpoint.")
    suite: str = option("tiny", "Suite name (packaged: tiny, tulu3_dev, tulu3_unseen; or <name>.yaml in "
                        "$HARNESS_SUITES when set) or a suite YAML file.")
    batch_size: int = option(64, "lm-eval batch size.", ge=1)
    limit: int | None = option(None, "Evaluate at most this many items per task (None: all; a suite's own limit "
                                     "wins).", ge=1)
    backend: Backend = option("hf", "lm-eval model backend: hf (default), vllm or local-chat-completions.")
    backend_args: dict = option({}, "Extra lm-eval model_args for the backend (e.g. base_url for local-chat-completions).")
    cache: bool = option(True, "Reuse cached results for an unchanged checkpoint, task version and settings, and "
                               "the answers an interrupted lm-eval call had given (lm-eval's request cache).")
    device: str | None = option(None, "torch device for the hf backend (None: cuda when available, else cpu).")
    bootstrap_iters: int = option(100000, "lm-eval bootstrap rounds for the stderr of non-mean metrics (0: none).",
                                  ge=0)
    group_items: int = option(2000, "Tasks with the same settings share one lm-eval call while their items add up to at "
                                "most this (fewer partial batches); larger tasks run alone, so an interrupted suite "
                                "resumes task by task. 0: one call per task.", ge=0)

    def check(self) -> None:
        check_device(self.device, "eval.device")
        if self.backend == "local-chat-completions" and not self.backend_args.get("base_url"):
            raise HarnessError("config key eval.backend_args: eval backend local-chat-completions needs "
                               "eval.backend_args.base_url (e.g. http://127.0.0.1:8000/v1/chat/completions)")


@dataclass
class RewardModelConfig(Section):
    where = "arena.reward_model"
    path: str | None = option(None, "Reward model for judge=reward-model (HF id or folder); None: train a tiny one "
                                    "from the pipeline's preference data with the settings below.")
    pairs: int = option(512, "Tiny reward model: preference pairs (a fifth of them held out for its accuracy).", ge=2)
    epochs: float = option(2.0, "Tiny reward model: passes over the training pairs.", gt=0)
    batch_size: int = option(32, "Tiny reward model: per-device batch size.", ge=1)
    learning_rate: float = option(3e-3, "Tiny reward model: learning rate.", gt=0)
    tie_margin: float = option(0.05, "Score differences up to this are a tie.", ge=0)
    strong_margin: float = option(1.0, "Score differences above this are a strong win (A>>B); at least tie_margin.",
                                  ge=0)

    def check(self) -> None:
        if self.tie_margin > self.strong_margin:
            raise HarnessError(f"config key arena.reward_model.tie_margin: {self.tie_margin:g} is above "
                               f"arena.reward_model.strong_margin={self.strong_margin:g} (valid: <= strong_margin)")


@dataclass
class LLMJudgeConfig(Section):
    where = "arena.llm"
    base_url: str | None = option(None, "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = option(None, "Judge model name sent to the endpoint.")
    api_key_env: str = option("OPENAI_API_KEY", "NAME of the environment variable holding the API key (the key "
                                                "itself is never read from config nor logged).")
    max_tokens: int = option(1024, "Maximum tokens of the judge's reply.", ge=1)
    timeout_s: float = option(60.0, "Seconds before a call times out.", gt=0)
    retries: int = option(3, "Retries after a timeout, connection error, HTTP 429 or 5xx.", ge=0)
    backoff_s: float = option(1.0, "First retry delay in seconds; doubles every retry.", ge=0)
    concurrency: int = option(4, "Calls in flight at once.", ge=1)
    input_usd_per_mtok: float = option(0.0, "Price of a million prompt tokens (USD), for cost records.", ge=0)
    output_usd_per_mtok: float = option(0.0, "Price of a million completion tokens (USD).", ge=0)


@dataclass
class ArenaConfig(Section):
    where = "arena"
    enabled: bool = option(True, "Run a pairwise arena between the stages' checkpoints.")
    judge: JudgeKind = option("verifier", "Judge: verifier, reward-model (settings in arena.reward_model) or llm "
                                          "(settings in arena.llm).")
    prompt_file: str | None = option(None, "Prompt set (JSONL: id, prompt or messages, optional reference, skill); "
                                       "None: the packaged harness/suites/arena/tiny.jsonl.")
    prompts: int = option(200, "Arena prompts taken from the prompt set (its first N; 0: all).", ge=0)
    mode: ArenaMode = option("round-robin", "round-robin (every pair of models) or baseline (every model against the "
                                            "baseline).")
    baseline: str | None = option(None, "Model the others are measured against (win rate, LC win rate, win probability); "
                                    "the pipeline uses its base stage when None.")
    max_new_tokens: int = option(16, "Generation length.", ge=1)
    temperature: float = option(0.0, "Sampling temperature (0: greedy).", ge=0)
    top_p: float = option(1.0, "Nucleus sampling mass (used when temperature > 0).", gt=0, le=1)
    batch_size: int = option(16, "Prompts per generation batch.", ge=1)
    device: str | None = option(None, "torch device for generation and the reward model (None: cuda when available, "
                                  "else cpu).")
    cache: bool = option(True, "Reuse cached answers and judgements (keyed by checkpoint hash, prompt and settings).")
    bootstrap: int = option(1000, "Bootstrap rounds for rating CIs (0: none; the intervals are then empty).", ge=0)
    reward_model: RewardModelConfig = nested(RewardModelConfig, "The reward-model judge: its model, or how to train "
                                                                "the tiny one, and its margins.")
    llm: LLMJudgeConfig = nested(LLMJudgeConfig, "The LLM judge: endpoint, model, key variable, limits and prices.")

    def check(self) -> None:
        check_device(self.device, "arena.device")
        if self.enabled and self.judge == "llm" and not (self.llm.base_url and self.llm.model):
            raise HarnessError("config key arena.llm.base_url: the llm judge needs an endpoint: set arena.llm.base_url "
                               "and arena.llm.model (or --judge-base-url URL --judge-model NAME)")


STAGE_SECTIONS = ("pretrain", "sft", "dpo", "rlvr")


@dataclass
class Config(Section):
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rlvr: RLVRConfig = field(default_factory=RLVRConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    arena: ArenaConfig = field(default_factory=ArenaConfig)

    def check(self) -> None:
        first = next((name for name in STAGE_SECTIONS if getattr(self, name).enabled), None)
        if first is None:
            raise HarnessError("config keys pretrain.enabled, sft.enabled, dpo.enabled, rlvr.enabled: every stage is "
                               "disabled; enable at least one")
        if first != "pretrain" and not getattr(self, first).init:
            raise HarnessError(f"config key {first}.init: required when pretrain is disabled (a folder, hub id or "
                               "MLflow URI)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, quick: bool = False,
                flags: dict | None = None) -> Config:
    """Resolve the configuration: defaults < quick preset < YAML file < ``--set`` overrides < flags, then check it.

    Args:
        path: a YAML experiment file, or None for the packaged default.
        overrides: ``section.key=value`` strings.
        quick: apply the packaged reduced preset (tests, CI).
        flags: a command's own flags as a nested mapping (``{"eval": {"limit": 5}}``); None values are not given.

    Returns:
        The resolved, checked `Config`.

    Raises:
        HarnessError: an unknown key, a value of the wrong type, off its choices or out of range, or a broken rule
            between keys; one line naming the key, the value and what is valid.
    """
    return resolve(Config(), PACKAGE_CONFIGS / "quick.yaml" if quick else None, path, overrides=overrides,
                   flags=flags)
