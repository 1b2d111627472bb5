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

__all__ = ["ArenaConfig", "ArenaEngine", "ArenaMode", "Backend", "Config", "DPOConfig", "EvalConfig", "JudgeKind", "LLMJudgeConfig",
           "LoRAConfig", "ModelConfig", "Quantize", "PretrainConfig", "RLVRConfig", "RewardModelConfig", "RunConfig", "SFTConfig", "SweepConfig",
           "apply_flags", "apply_overrides", "apply_yaml", "load_config", "option", "parse_override", "to_dict",
           "validate"]

PACKAGE_CONFIGS = resource_path("configs")

# Fixed choices, defined once: the modules that act on them read the values with typing.get_args.
Backend = Literal["hf", "vllm", "local-chat-completions"]
JudgeKind = Literal["verifier", "reward-model", "llm"]
ArenaMode = Literal["round-robin", "baseline"]
ArenaEngine = Literal["hf", "vllm"]
ArenaScoring = Literal["paired", "arena-hard"]
Quantize = Literal["none", "4bit", "8bit"]


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu|hpu|meta)(:\d+)?$")
_REASONING = ("Reasoning delimiters {{start: '<think>', end: '</think>', answer: ''}} of {}: only the answer after "
              "the block is graded and judged, the reasoning is kept beside it and its tokens counted; answer is "
              "written after end when a budget forces it. {{}}: off; None: from the checkpoint's chat template "
              "when it declares a known pair (README 'Reasoning models').")


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
    reasoning: dict | None = option(None, _REASONING.format("every eval and arena answer of the pipeline's "
                                                            "checkpoints (eval.reasoning and arena.reasoning win)"))
    think: bool = option(False, "Embedded pipeline: the think format (the tiny tokenizer gets model.reasoning's "
                                "delimiters, default <think> </think>, as tokens; arithmetic SFT answers carry "
                                "worked steps inside them; RLVR rewards the answer part, plus rlvr.format_reward). "
                                "Off: the default pipeline, unchanged.")

    def check(self) -> None:
        from harness import reasoning

        reasoning.check(self.reasoning, "model.reasoning")
        if self.think and self.reasoning == {}:
            raise HarnessError("config key model.think: true needs reasoning delimiters, and model.reasoning is {} "
                               "(off); set model.reasoning: {start: '<think>', end: '</think>'} or leave it null")
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


# ------------------------------------------------------------------ what every TRL stage shares: data and hardware

_DATASET = ("Training data: a hub id (with dataset_config, dataset_split, dataset_revision; offline from the local "
            "cache) or local JSONL / JSON / Parquet / CSV files or a folder of them, in TRL's standard format: {}. "
            "None: the embedded synthetic skills.")
_DATASET_CONFIG = "The hub dataset's config (subset) name, e.g. main for openai/gsm8k."
_DATASET_SPLIT = ("Split to train on (a hub split; in a folder, the files named after it, e.g. train.jsonl, else every "
                  "file).")
_DATASET_REVISION = "The hub dataset's revision (commit, tag or branch) to pin."
_DATASET_COLUMNS = ("Column mapping, standard name: your column (e.g. {{{}}}); the columns the stage needs are "
                    "checked before any training.")
_MAX_LENGTH = "Maximum tokens per training sequence (longer ones are truncated)."
_GRAD_ACCUM = "Steps whose gradients are summed before each optimizer step (effective batch = batch_size × this)."
_GRAD_CKPT = ("Recompute activations in the backward pass (less memory, about a third more compute; on by default in "
              "TRL's trainer configs).")
_TRL = ("Any other field of TRL's {} passed through, over the harness's own settings (e.g. {{warmup_steps: 10, "
        "weight_decay: 0.01}}); checked against TRL's class.")
_OWNED_BY_HARNESS = {"output_dir": "checkpoints are written to <results>/checkpoints/<run name>/<stage>"}


def check_trl(mapping: dict, trl_class: str, key: str) -> None:
    """Every key of a stage's ``trl`` mapping is a field of TRL's config class `trl_class` (imported only when the
    mapping has keys); the values are checked by that class when the stage's trainer arguments are built."""
    if not mapping:
        return
    import dataclasses
    import difflib

    import trl

    fields = {f.name for f in dataclasses.fields(getattr(trl, trl_class))}
    for name in mapping:
        if name in _OWNED_BY_HARNESS:
            raise HarnessError(f"config key {key}.{name}: set by the harness ({_OWNED_BY_HARNESS[name]})")
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise HarnessError(f"config key {key}.{name}: not a field of trl.{trl_class} ({hint}valid: its fields, "
                               f"listed by python -c \"import dataclasses, trl; print(sorted(f.name for f in "
                               f"dataclasses.fields(trl.{trl_class})))\")")


@dataclass
class LoRAConfig(Section):
    where = "lora"  # the stage's key (sft.lora, ...) is set per instance by `at`
    r: int = option(0, "LoRA rank through PEFT (0: off, every weight trained); the merged model is saved.", ge=0)
    alpha: float = option(16.0, "LoRA scaling alpha (the update is scaled by alpha / r).", gt=0)
    dropout: float = option(0.05, "Dropout on the LoRA branch.", ge=0, lt=1)
    target_modules: list = option(["all-linear"], "Module names the adapters attach to (e.g. [q_proj, v_proj]); "
                                                  "all-linear: every linear layer but the output head.")
    quantize: Quantize = option("none", "QLoRA: load the base weights in 4bit or 8bit through bitsandbytes (CUDA "
                                        "only); none: full precision.")

    @classmethod
    def at(cls, where: str) -> "LoRAConfig":
        section = cls()
        object.__setattr__(section, "where", where)
        return section

    def check(self) -> None:
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise HarnessError(f"config key {self.key('target_modules')}: {self.target_modules!r} is not a list of "
                               "module names (valid: e.g. [q_proj, v_proj], or [all-linear])")
        if self.quantize != "none" and not self.r:
            raise HarnessError(f"config key {self.key('quantize')}: {self.quantize} needs LoRA "
                               f"({self.key('r')} > 0): quantized weights cannot be trained directly")


def _lora(stage: str):
    return field(default_factory=lambda: LoRAConfig.at(f"{stage}.lora"),
                 metadata={"help": "LoRA / QLoRA through PEFT (off while r is 0)."})


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
    dataset: str | None = option(None, _DATASET.format("messages, or prompt and completion (conversational or "
                                                       "plain), or text"))
    dataset_config: str | None = option(None, _DATASET_CONFIG)
    dataset_split: str = option("train", _DATASET_SPLIT)
    dataset_revision: str | None = option(None, _DATASET_REVISION)
    dataset_columns: dict[str, str] = option({}, _DATASET_COLUMNS.format("prompt: question, completion: answer"))
    max_length: int = option(128, _MAX_LENGTH, ge=1)
    gradient_accumulation_steps: int = option(1, _GRAD_ACCUM, ge=1)
    gradient_checkpointing: bool = option(True, _GRAD_CKPT)
    packing: bool = option(False, "Pack several examples into each max_length sequence (TRL's packing).")
    lora: LoRAConfig = _lora("sft")
    trl: dict = option({}, _TRL.format("SFTConfig"))

    def check(self) -> None:
        check_trl(self.trl, "SFTConfig", "sft.trl")


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
    dataset: str | None = option(None, _DATASET.format("prompt, chosen and rejected (conversational or plain; "
                                                       "prompt may be left implicit in chosen and rejected)"))
    dataset_config: str | None = option(None, _DATASET_CONFIG)
    dataset_split: str = option("train", _DATASET_SPLIT)
    dataset_revision: str | None = option(None, _DATASET_REVISION)
    dataset_columns: dict[str, str] = option({}, _DATASET_COLUMNS.format("chosen: preferred, rejected: dispreferred"))
    max_length: int = option(128, _MAX_LENGTH, ge=1)
    gradient_accumulation_steps: int = option(1, _GRAD_ACCUM, ge=1)
    gradient_checkpointing: bool = option(True, _GRAD_CKPT)
    lora: LoRAConfig = _lora("dpo")
    trl: dict = option({}, _TRL.format("DPOConfig"))

    def check(self) -> None:
        check_trl(self.trl, "DPOConfig", "dpo.trl")


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
    verifier: str = option("skills", "The reward, which is also the grader: skills (the embedded synthetic skills' "
                                     "verifier: columns skill, answer), exact_match or math (column answer), ifeval "
                                     "(instruction_id_list, kwargs), or module:function (TRL's reward contract).")
    dataset: str | None = option(None, _DATASET.format("prompt (conversational or plain) plus the verifier's "
                                                       "columns"))
    dataset_config: str | None = option(None, _DATASET_CONFIG)
    dataset_split: str = option("train", _DATASET_SPLIT)
    dataset_revision: str | None = option(None, _DATASET_REVISION)
    dataset_columns: dict[str, str] = option({}, _DATASET_COLUMNS.format("prompt: question"))
    gradient_accumulation_steps: int = option(1, _GRAD_ACCUM, ge=1)
    gradient_checkpointing: bool = option(True, _GRAD_CKPT)
    lora: LoRAConfig = _lora("rlvr")
    format_reward: float = option(0.0, "Added to the reward of a completion whose reasoning block closes (think "
                                       "format, or model.reasoning set); 0: the verifier's reward alone.", ge=0)
    trl: dict = option({}, _TRL.format("GRPOConfig"))

    def check(self) -> None:
        if self.enabled and self.batch_size % self.num_generations:
            raise HarnessError(f"config key rlvr.batch_size: {self.batch_size} is not a multiple of "
                               f"rlvr.num_generations={self.num_generations}")
        if self.verifier != "skills":
            from harness.data.task_verifiers import verifier_by_name

            verifier_by_name(self.verifier, where="config key rlvr.verifier")
        check_trl(self.trl, "GRPOConfig", "rlvr.trl")


def check_during_training(value: dict, suite: str) -> None:
    """``eval.during_training``: ``every`` a whole number >= 1, ``suite`` (default: eval.suite) a suite that exists."""
    where = "config key eval.during_training"
    unknown = sorted(set(value) - {"every", "suite"})
    if unknown:
        raise HarnessError(f"{where}: unknown key {unknown[0]!r} (valid: every, suite)")
    every = value.get("every")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise HarnessError(f"{where}.every: {every!r} is out of range (valid: a whole number of steps >= 1)")
    name = value.get("suite", suite)
    if not isinstance(name, str) or not name.strip():
        raise HarnessError(f"{where}.suite: {name!r} is not a suite (valid: a suite name or a suite YAML file)")
    from harness.evals import suite as suites

    try:
        suites.find(name)
    except HarnessError as err:
        raise HarnessError(f"{where}.suite: {err}") from None


@dataclass
class DecontamConfig(Section):
    where = "eval.decontam"
    enabled: bool = option(True, "Before training, measure the n-gram overlap of every stage's own dataset "
                                 "(sft/dpo/rlvr.dataset) with the eval suite's items (no effect without one).")
    n: int = option(8, "n-gram length in words (8 as Tulu 3; shorter for suites of short prompts).", ge=1)
    threshold: float = option(0.5, "An eval item is contaminated when more than this share of its words lie in "
                                   "n-grams found in the training data.", ge=0, lt=1)
    flag_rate: float = option(0.0, "A task is flagged contaminated when the share of its items that are is above "
                                   "this (0: any contaminated item flags it).", ge=0, lt=1)


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
    backend_args: dict = option({}, "Extra lm-eval model_args for the backend, over the harness's defaults (e.g. base_url "
                                    "for local-chat-completions; dtype, max_model_len, tensor_parallel_size, "
                                    "data_parallel_size, gpu_memory_utilization for vllm).")
    cache: bool = option(True, "Reuse cached results for an unchanged checkpoint, task version and settings, and "
                               "the answers an interrupted lm-eval call had given (lm-eval's request cache).")
    device: str | None = option(None, "torch device for the hf backend (None: cuda when available, else cpu).")
    bootstrap_iters: int = option(100000, "lm-eval bootstrap rounds for the stderr of non-mean metrics (0: none).",
                                  ge=0)
    group_items: int = option(2000, "Tasks with the same settings share one lm-eval call while their items add up to at "
                                "most this (fewer partial batches); larger tasks run alone, so an interrupted suite "
                                "resumes task by task. 0: one call per task.", ge=0)
    during_training: dict | None = option(None, "Evaluate while a TRL stage (sft, dpo, rlvr) trains: {every: N, "
                                          "suite: S} saves the model every N steps and at the end, scores it on "
                                          "suite S (default: eval.suite) and logs eval/<skill>/score by step on the "
                                          "stage's run (None: off).")
    decontam: DecontamConfig = nested(DecontamConfig, "Decontamination report of the stages' own datasets against "
                                                      "the suite (README 'Decontamination').")
    reasoning: dict | None = option(None, _REASONING.format("the evaluated checkpoint (None: model.reasoning in "
                                                            "the pipeline)"))
    budgets: list | None = option(None, "Thinking budgets in tokens, strictly increasing (e.g. [64, 256, 1024]): "
                                        "the suite's generation tasks are evaluated once more at each, the "
                                        "reasoning closed at N tokens and the answer forced (s1's budget forcing), "
                                        "one eval run per budget, and the scaling curve (score vs mean tokens, one "
                                        "line per checkpoint) is drawn; needs reasoning delimiters. None: off.")
    usd_per_mtok: float = option(0.0, "Price of a million generated tokens (USD): the eval's cost per item "
                                      "(reasoning and answer tokens) in the cost summary.", ge=0)

    def check(self) -> None:
        from harness import reasoning

        check_device(self.device, "eval.device")
        reasoning.check(self.reasoning, "eval.reasoning")
        reasoning.check_budgets(self.budgets, "eval.budgets")
        if self.budgets and self.reasoning == {}:
            raise HarnessError("config key eval.budgets: thinking budgets need reasoning delimiters, and "
                               "eval.reasoning is {} (off)")
        if self.budgets and self.backend == "local-chat-completions":
            raise HarnessError("config key eval.budgets: budget forcing continues the model's own raw text, which "
                               "the local-chat-completions backend (chats) cannot send (valid: eval.backend hf or "
                               "vllm, or eval.budgets null)")
        if self.during_training is not None:
            check_during_training(self.during_training, self.suite)
        if self.backend == "local-chat-completions" and not self.backend_args.get("base_url"):
            raise HarnessError("config key eval.backend_args: eval backend local-chat-completions needs "
                               "eval.backend_args.base_url (e.g. http://127.0.0.1:8000/v1/chat/completions)")


@dataclass
class SweepConfig(Section):
    where = "sweep"
    cpus_per_task: float = option(1.0, "CPUs Ray reserves for each task of a sweep on a Ray cluster (one lm-eval call "
                                       "of one model: a suite entry, or small entries grouped by eval.group_items).",
                                  gt=0)
    gpus_per_task: float = option(0.0, "GPUs Ray reserves for each task (1: a model on a GPU of its own; a fraction "
                                       "packs several small models on one GPU; 0: CPU only).", ge=0)
    max_retries: int = option(3, "Times Ray runs a task again when its worker dies (killed, out of memory, a lost "
                                 "node); 0: never.", ge=0)


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
    removed = {"backoff_s": "the judge's client (openai) backs off on its own, about 0.5 s doubling up to 8 s with "
                            "jitter, and honours the server's Retry-After; arena.llm.retries sets how many retries"}
    base_url: str | None = option(None, "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = option(None, "Judge model name sent to the endpoint.")
    api_key_env: str = option("OPENAI_API_KEY", "NAME of the environment variable holding the API key (the key "
                                                "itself is never read from config nor logged).")
    max_tokens: int = option(1024, "Maximum tokens of the judge's reply.", ge=1)
    timeout_s: float = option(60.0, "Seconds before a call times out (connecting, or waiting for the reply).", gt=0)
    retries: int = option(3, "Retries after a timeout, connection error, HTTP 408, 409, 429 or 5xx (the openai "
                             "client's backoff: about 0.5 s doubling up to 8 s, or the server's Retry-After).", ge=0)
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
    engine: ArenaEngine = option("hf", "What generates the answers: hf (transformers generate) or vllm (vLLM's offline "
                                       "engine, installed apart: README 'Serving engines'); greedy answers agree.")
    engine_args: dict = option({}, "Extra vllm.LLM arguments for engine vllm (tensor_parallel_size, "
                                   "gpu_memory_utilization, dtype, max_model_len...); part of the answer cache key.")
    device: str | None = option(None, "torch device for generation and the reward model (None: cuda when available, "
                                  "else cpu); vLLM picks its GPUs itself (CUDA_VISIBLE_DEVICES).")
    cache: bool = option(True, "Reuse cached answers and judgements (keyed by checkpoint hash, prompt and settings).")
    bootstrap: int = option(1000, "Bootstrap rounds for rating CIs (0: none; the intervals are then empty).", ge=0)
    scoring: ArenaScoring = option("paired", "How judgements become battles for the ratings: paired (one battle per "
                                             "pair of position-swapped games, won on the mean score) or arena-hard "
                                             "(each game a battle, a strong verdict >> arena.strong_weight battles, "
                                             "as arena-hard-auto scores); win rates use the paired score either way.")
    strong_weight: int = option(3, "Battles per strong verdict (A>>B, B>>A) with arena.scoring arena-hard.", ge=1)
    labels: str | None = option(None, "Human labels of arena pairs (JSONL / JSON / CSV / Parquet: prompt_id, model_a, "
                                      "model_b, winner) for the judge's agreement with people (accuracy, Cohen's "
                                      "kappa) and its self-preference; None: not measured.")
    judge_family: str | None = option(None, "The judge's model family (e.g. llama); with arena.families it gives the "
                                            "judge's self-preference statistics.")
    families: dict[str, str] = option({}, "Model name → model family for the arena's models (those sharing "
                                          "arena.judge_family are the judge's own); with arena.judge_family.")
    reasoning: dict | None = option(None, _REASONING.format("every arena model's answers; the judges see the "
                                                            "answer only (None: model.reasoning in the pipeline)"))
    budget: int | None = option(None, "Thinking budget of arena answers in tokens (engine hf): the reasoning closed at "
                                      "N tokens and the answer forced; None: arena.max_new_tokens for both.", ge=1)
    reward_model: RewardModelConfig = nested(RewardModelConfig, "The reward-model judge: its model, or how to train "
                                                                "the tiny one, and its margins.")
    llm: LLMJudgeConfig = nested(LLMJudgeConfig, "The LLM judge: endpoint, model, key variable, limits and prices.")

    def check(self) -> None:
        from harness import reasoning

        check_device(self.device, "arena.device")
        reasoning.check(self.reasoning, "arena.reasoning")
        if self.budget is not None and self.reasoning == {}:
            raise HarnessError("config key arena.budget: a thinking budget needs reasoning delimiters, and "
                               "arena.reasoning is {} (off)")
        if self.budget is not None and self.engine != "hf":
            raise HarnessError(f"config key arena.budget: budget forcing runs on arena.engine hf, not "
                               f"{self.engine} (valid: null with engine {self.engine})")
        if self.engine_args and self.engine != "vllm":
            raise HarnessError(f"config key arena.engine_args: set for arena.engine={self.engine}, which takes none "
                               "(valid: {} unless arena.engine is vllm)")
        if self.enabled and self.judge == "llm" and not (self.llm.base_url and self.llm.model):
            raise HarnessError("config key arena.llm.base_url: the llm judge needs an endpoint: set arena.llm.base_url "
                               "and arena.llm.model (or --judge-base-url URL --judge-model NAME)")
        if bool(self.judge_family) != bool(self.families):
            given, other = ("arena.judge_family", "arena.families") if self.judge_family else \
                ("arena.families", "arena.judge_family")
            raise HarnessError(f"config key {given}: set without {other}; self-preference needs both the judge's "
                               "family and the models' (e.g. judge_family: llama, families: {sft: llama})")


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
    sweep: SweepConfig = field(default_factory=SweepConfig)
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
