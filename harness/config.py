"""Experiment configuration: dataclasses with a help string per field; defaults < YAML file < ``--set`` flags.

`load_config(path, overrides, quick)` starts from the dataclass defaults (the packaged ``configs/default.yaml``
restates them for reading), applies the packaged ``configs/quick.yaml`` preset when `quick`, then the user's YAML
file, then ``--set section.key=value`` overrides (values parsed as YAML scalars). An unknown key raises a
`HarnessError` naming the key and the valid keys; a value of the wrong type names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

PACKAGE_CONFIGS = Path(__file__).parent / "configs"


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help string (mutable defaults copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    name: str = option("embedded", "Name of the parent MLflow run.")
    experiment: str = option("harness", "MLflow experiment name.")
    seed: int = option(0, "Seed for data sampling, initialisation and training order.")
    results: str = option("results", "Output folder: checkpoints, caches and the default sqlite MLflow store.")
    registered_model: str = option("harness-embedded", "MLflow registered-model name for the stage checkpoints.")
    price_per_hour: float = option(2.0, "Price of one accelerator-hour (USD) for cost estimates.")
    threads: int = option(1, "torch CPU threads per process (1 is fastest on a shared 2-core machine).")


@dataclass
class ModelConfig:
    hidden_size: int = option(128, "Tiny model: residual width.")
    layers: int = option(4, "Tiny model: decoder layers.")
    heads: int = option(4, "Tiny model: attention heads.")
    vocab_size: int = option(320, "Tiny model: BPE vocabulary size (small: nearly character-level, easy to copy).")
    trust_remote_code: bool = option(False, "Allow code shipped with a loaded checkpoint to run.")


@dataclass
class PretrainConfig:
    enabled: bool = option(True, "Build and pretrain the tiny base model (off: start from sft.init).")
    corpus_lines: int = option(40000, "Synthetic corpus lines.")
    steps: int = option(500, "Optimizer steps (copying appears after ~350 at the defaults).")
    batch_size: int = option(32, "Rows per step.")
    seq_len: int = option(64, "Tokens per row.")
    learning_rate: float = option(2e-3, "Peak learning rate (cosine decay, 5% warmup).")
    log_every: int = option(10, "Log the loss every N steps.")


@dataclass
class SFTConfig:
    enabled: bool = option(True, "Run supervised finetuning.")
    init: str | None = option(None, "Checkpoint to start from (HF id, folder or MLflow URI); default: the previous stage.")
    examples_per_skill: int = option(1000, "Training conversations per skill (arithmetic, format, knowledge, safe how-to).")
    epochs: float = option(2.0, "Passes over the data.")
    batch_size: int = option(32, "Per-device batch size.")
    learning_rate: float = option(1e-3, "Learning rate.")
    log_every: int = option(10, "Log every N steps.")


@dataclass
class DPOConfig:
    enabled: bool = option(True, "Run direct preference optimisation.")
    init: str | None = option(None, "Checkpoint to start from; default: the previous stage.")
    pairs: int = option(1200, "Preference pairs (safety: refuse unsafe, answer safe; plus a quarter format pairs).")
    arithmetic_fraction: float = option(0.0, "Share of arithmetic pairs (right over wrong number); 0 leaves it to RLVR.")
    epochs: float = option(2.0, "Passes over the pairs.")
    batch_size: int = option(32, "Per-device batch size.")
    learning_rate: float = option(5e-4, "Learning rate.")
    beta: float = option(0.1, "DPO temperature (strength of the KL anchor to the reference).")
    sft_weight: float = option(1.0, "Weight of the chosen answers' NLL added to the DPO loss (RPO); 0 for pure DPO.")
    log_every: int = option(5, "Log every N steps.")


@dataclass
class RLVRConfig:
    enabled: bool = option(True, "Run GRPO with verifiable rewards.")
    init: str | None = option(None, "Checkpoint to start from; default: the previous stage.")
    prompts: int = option(512, "Training prompts (arithmetic).")
    num_generations: int = option(8, "Completions sampled per prompt (the GRPO group).")
    batch_size: int = option(32, "Completions per step (a multiple of num_generations).")
    max_completion_length: int = option(8, "Maximum tokens per completion.")
    learning_rate: float = option(1e-4, "Learning rate.")
    beta: float = option(0.04, "KL coefficient against the reference model.")
    temperature: float = option(0.7, "Sampling temperature of the GRPO group.")
    epochs: float = option(1.0, "Passes over the prompts.")
    log_every: int = option(2, "Log every N steps.")


@dataclass
class EvalConfig:
    enabled: bool = option(True, "Evaluate every stage's checkpoint.")
    suite: str = option("tiny", "Suite name (suites/<name>.yaml) or a suite YAML file.")
    batch_size: int = option(64, "lm-eval batch size.")
    limit: int | None = option(None, "Evaluate at most this many items per task (None: all; a suite's own limit wins).")
    backend: str = option("hf", "lm-eval model backend: hf (default), vllm or local-chat-completions.")
    backend_args: dict = option({}, "Extra lm-eval model_args for the backend (e.g. base_url for local-chat-completions).")
    cache: bool = option(True, "Reuse cached results for an unchanged checkpoint, task version and settings.")
    device: str | None = option(None, "torch device for the hf backend (None: cuda when available, else cpu).")
    bootstrap_iters: int = option(100000, "lm-eval bootstrap rounds for the stderr of non-mean metrics (0: none).")
    group_items: int = option(2000, "Tasks with the same settings share one lm-eval call while their items add up to at "
                                "most this (fewer partial batches); larger tasks run alone, so an interrupted suite "
                                "resumes task by task. 0: one call per task.")


@dataclass
class ArenaConfig:
    enabled: bool = option(True, "Run a pairwise arena between the stages' checkpoints.")
    judge: str = option("verifier", "Judge: verifier, reward-model or llm.")
    prompt_file: str | None = option(None, "Prompt set (JSONL: id, prompt or messages, optional reference, skill); "
                                       "None: the embedded suites/arena/tiny.jsonl.")
    prompts: int = option(200, "Arena prompts taken from the prompt set (its first N; 0: all).")
    mode: str = option("round-robin", "round-robin (every pair of models) or baseline (every model against the baseline).")
    baseline: str | None = option(None, "Model the others are measured against (win rate, LC win rate, win probability); "
                                    "the pipeline uses its base stage when None.")
    max_new_tokens: int = option(16, "Generation length.")
    temperature: float = option(0.0, "Sampling temperature (0: greedy).")
    top_p: float = option(1.0, "Nucleus sampling mass (used when temperature > 0).")
    batch_size: int = option(16, "Prompts per generation batch.")
    device: str | None = option(None, "torch device for generation and the reward model (None: cuda when available, "
                                  "else cpu).")
    cache: bool = option(True, "Reuse cached answers and judgements (keyed by checkpoint hash, prompt and settings).")
    bootstrap: int = option(1000, "Bootstrap rounds for rating CIs.")
    reward_model: str | None = option(None, "Reward model for judge=reward-model (HF id or folder); None: train a tiny "
                                        "one from the pipeline's preference data.")
    rm_pairs: int = option(512, "Tiny reward model: preference pairs (a fifth of them held out for its accuracy).")
    rm_epochs: float = option(2.0, "Tiny reward model: passes over the training pairs.")
    rm_batch_size: int = option(32, "Tiny reward model: per-device batch size.")
    rm_learning_rate: float = option(3e-3, "Tiny reward model: learning rate.")
    rm_tie_margin: float = option(0.05, "Reward-model judge: score differences up to this are a tie.")
    rm_strong_margin: float = option(1.0, "Reward-model judge: score differences above this are a strong win (A>>B).")
    judge_base_url: str | None = option(None, "LLM judge: OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    judge_model: str | None = option(None, "LLM judge: model name sent to the endpoint.")
    judge_api_key_env: str = option("OPENAI_API_KEY", "LLM judge: NAME of the environment variable holding the API key "
                                                  "(the key itself is never read from config nor logged).")
    judge_max_tokens: int = option(1024, "LLM judge: maximum tokens of the judge's reply.")
    judge_timeout_s: float = option(60.0, "LLM judge: seconds before a call times out.")
    judge_retries: int = option(3, "LLM judge: retries after a timeout, connection error, HTTP 429 or 5xx.")
    judge_backoff_s: float = option(1.0, "LLM judge: first retry delay; doubles every retry.")
    judge_concurrency: int = option(4, "LLM judge: calls in flight at once.")
    judge_input_usd_per_mtok: float = option(0.0, "LLM judge: price of a million prompt tokens (USD), for cost records.")
    judge_output_usd_per_mtok: float = option(0.0, "LLM judge: price of a million completion tokens (USD).")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rlvr: RLVRConfig = field(default_factory=RLVRConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    arena: ArenaConfig = field(default_factory=ArenaConfig)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` (int → float widening allowed); raise naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except HarnessError:
                pass
        names = " or ".join("null" if a is type(None) else a.__name__ for a in args)
        raise HarnessError(f"config key {where}: expected {names}, got {value!r}")
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise HarnessError(f"config key {where}: expected {tp.__name__}, got {value!r}")
    return value


def _apply(obj: Any, data: dict, where: str) -> None:
    if not isinstance(data, dict):
        raise HarnessError(f"config {where or 'file'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(type(obj))
    valid = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in valid:
            raise HarnessError(f"unknown config key {name!r}; valid keys{' in ' + where if where else ''}: {', '.join(valid)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, name)
        else:
            setattr(obj, key, _coerce(value, hints[key], name))


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise HarnessError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise HarnessError(f"config file {str(path)!r} is not valid YAML{line}") from None
    return data or {}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"sft.learning_rate=1e-4"`` → ``(["sft", "learning_rate"], 0.0001)`` (the value parsed as a YAML scalar)."""
    import yaml

    if "=" not in text:
        raise HarnessError(f"--set {text!r}: expected section.key=value, e.g. --set sft.epochs=2")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and value.lower() in {"none", "null"}:
        value = None
    return key.strip().split("."), value


def apply_yaml(cfg: Any, path: str | Path) -> None:
    """Apply a YAML file's keys to the config dataclass `cfg` (unknown keys and wrong types raise)."""
    _apply(cfg, _read_yaml(Path(path)), "")


def apply_overrides(cfg: Any, overrides: list[str] | None) -> None:
    """Apply ``section.key=value`` strings to the config dataclass `cfg`, in order."""
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, quick: bool = False) -> Config:
    """Resolve the configuration: defaults < quick preset < YAML file < ``--set`` overrides.

    Args:
        path: a YAML experiment file, or None for the packaged default.
        overrides: ``section.key=value`` strings.
        quick: apply the packaged reduced preset (tests, CI).

    Returns:
        The resolved `Config`.
    """
    cfg = Config()
    if quick:
        apply_yaml(cfg, PACKAGE_CONFIGS / "quick.yaml")
    if path is not None:
        apply_yaml(cfg, path)
    apply_overrides(cfg, overrides)
    return cfg


def to_dict(cfg: Config) -> dict:
    """The config as plain nested dicts (for YAML artifacts and MLflow params)."""
    return dataclasses.asdict(cfg)
