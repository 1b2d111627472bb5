"""The lm-eval model a suite runs on: which of lm-eval's registered backends, and the arguments handed to it.

- ``hf`` (default): lm-eval's Hugging Face backend on the resolved checkpoint folder (or hub id), in-process.
- ``vllm``: lm-eval's vLLM backend on the same checkpoint, in-process (vLLM installed: a GPU build, or the CPU build
  that ``scripts/vllm-env.sh`` installs). Defaults below `backend_args`: ``dtype`` the checkpoint's own (as the hf
  backend loads it; vLLM's ``auto`` would run a float32 checkpoint in 16 bits), ``max_model_len`` from its config
  (the context `harness.evals.checks` checks against) and, without a GPU, ``enforce_eager`` (vLLM's CPU build
  compiles graphs otherwise: minutes on a small machine). ``tensor_parallel_size``, ``data_parallel_size`` (Ray)
  and ``gpu_memory_utilization`` are vLLM's defaults (1, 1, 0.9) unless given. Greedy generations equal the hf
  backend's and log-likelihoods agree to about 1e-5 in float32 (``tests/test_vllm.py``).
- ``local-chat-completions``: an OpenAI-compatible chat server (vLLM, SGLang, TGI...) at
  ``backend_args.base_url`` (e.g. ``http://127.0.0.1:8000/v1/chat/completions``) serving the model named by
  ``--model``. Chat requests only: prompts always go through the chat template and log-likelihood tasks
  (multiple choice) cannot run.

The choice is `harness.config.Backend` (checked when the config is set; whether vLLM is installed, when the
command starts: `harness.evals.checks.engine_installed`); `EvalConfig.backend_args` are passed to lm-eval unchanged
and win over the defaults here.
"""

from __future__ import annotations

from typing import Any

from harness.config import EvalConfig
from harness.errors import HarnessError, first_line

CHAT_ONLY = {"local-chat-completions"}


def model_arguments(cfg: EvalConfig, model: str, trust_remote_code: bool = False) -> tuple[str, dict[str, Any]]:
    """lm-eval's model name and ``model_args`` for `cfg.backend`.

    Args:
        cfg: the eval settings (backend, backend_args).
        model: the resolved checkpoint (a folder or hub id); for ``local-chat-completions`` the served model name.
        trust_remote_code: allow code shipped with the checkpoint to run.

    Returns:
        ``(lm-eval model name, model_args)``.
    """
    extra = dict(cfg.backend_args or {})
    if cfg.backend == "local-chat-completions":  # EvalConfig.check made sure of a base_url
        return cfg.backend, {"model": model, "tokenizer_backend": None, **extra}
    defaults = _vllm_defaults(model, trust_remote_code, extra) if cfg.backend == "vllm" else {}
    return cfg.backend, {"pretrained": model, "trust_remote_code": trust_remote_code, **defaults, **extra}


def _vllm_defaults(model: str, trust_remote_code: bool, extra: dict[str, Any]) -> dict[str, Any]:
    """The vllm backend's defaults for a checkpoint (see the module docstring), read from its config."""
    import torch
    import transformers

    out: dict[str, Any] = {}
    try:
        config = transformers.AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - a hub id not cached here: vLLM reads the config itself, and reports it
        config = None
    text = getattr(config, "text_config", None) or config
    dtype = getattr(text, "dtype", None) or getattr(text, "torch_dtype", None)
    if dtype is not None:
        out["dtype"] = str(dtype).removeprefix("torch.")
    if "max_length" not in extra:  # lm-eval takes one of max_length and max_model_len
        length = next((getattr(text, a) for a in ("max_position_embeddings", "n_positions", "n_ctx")
                       if getattr(text, a, None)), None)
        if length:
            out["max_model_len"] = int(length)
    if not torch.cuda.is_available():
        out["enforce_eager"] = True
    return out


def extra_arguments(cfg: EvalConfig) -> dict[str, Any]:
    """The arguments lm-eval's registry passes beside ``model_args`` when it builds the model."""
    device = cfg.device
    if device is None and cfg.backend == "hf":
        from harness.models.load import default_device

        device = default_device()
    return {"batch_size": cfg.batch_size, "max_batch_size": None, "device": device}


def create(cfg: EvalConfig, model: str, trust_remote_code: bool = False, threads: int | None = None):
    """Build the lm-eval `LM` once, to be shared by every task of a suite, with `threads` torch threads (None: as
    they are).

    Raises:
        HarnessError: the model cannot be loaded (one line, no traceback).
    """
    from lm_eval.api import registry

    from harness.models.load import set_threads

    set_threads(threads)
    name, args = model_arguments(cfg, model, trust_remote_code)
    try:
        return registry.get_model(name).create_from_arg_obj(args, extra_arguments(cfg))
    except (OSError, ValueError, ImportError) as err:
        first = first_line(err)
        raise HarnessError(f"model {model!r} could not be loaded by lm-eval's {name} backend: {first}") from None


def release(lm) -> None:
    """Shut down the engine behind an lm-eval model once a suite has run, before its record is written: vLLM's
    in-process engine keeps worker threads that, left to interpreter exit, were seen to abort ``lm_eval --model
    vllm`` processes after their results were written (``terminate called without an active exception``, rc 134).
    Other backends need nothing."""
    core = getattr(getattr(getattr(lm, "model", None), "llm_engine", None), "engine_core", None)
    if core is not None and callable(getattr(core, "shutdown", None)):
        core.shutdown()


def check_tasks(cfg: EvalConfig, task: str, output_types: set[str], apply_chat_template: bool) -> None:
    """Raise if the backend cannot run a task with these output types and chat setting."""
    if cfg.backend in CHAT_ONLY:
        if output_types - {"generate_until"}:
            raise HarnessError(f"task {task!r} needs log-likelihoods ({', '.join(sorted(output_types))}), which the "
                               f"{cfg.backend} backend cannot give; use hf or vllm, or drop the task")
        if not apply_chat_template:
            raise HarnessError(f"task {task!r}: the {cfg.backend} backend needs apply_chat_template: true")
