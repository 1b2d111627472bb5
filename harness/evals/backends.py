"""The lm-eval model a suite runs on: which of lm-eval's registered backends, and the arguments handed to it.

- ``hf`` (default): lm-eval's Hugging Face backend on the resolved checkpoint folder (or hub id), in-process.
- ``vllm``: lm-eval's vLLM backend on the same checkpoint (needs ``lm-eval[vllm]`` and a GPU).
- ``local-chat-completions``: an OpenAI-compatible chat server (vLLM, SGLang, TGI...) at
  ``backend_args.base_url`` (e.g. ``http://127.0.0.1:8000/v1/chat/completions``) serving the model named by
  ``--model``. Chat requests only: prompts always go through the chat template and log-likelihood tasks
  (multiple choice) cannot run.

The choice is `harness.config.Backend` (checked when the config is set); `EvalConfig.backend_args` are passed
to lm-eval unchanged and win over the defaults here.
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
    return cfg.backend, {"pretrained": model, "trust_remote_code": trust_remote_code, **extra}


def extra_arguments(cfg: EvalConfig) -> dict[str, Any]:
    """The arguments lm-eval's registry passes beside ``model_args`` when it builds the model."""
    device = cfg.device
    if device is None and cfg.backend == "hf":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"batch_size": cfg.batch_size, "max_batch_size": None, "device": device}


def create(cfg: EvalConfig, model: str, trust_remote_code: bool = False):
    """Build the lm-eval `LM` once, to be shared by every task of a suite.

    Raises:
        HarnessError: the model cannot be loaded (one line, no traceback).
    """
    from lm_eval.api import registry

    name, args = model_arguments(cfg, model, trust_remote_code)
    try:
        return registry.get_model(name).create_from_arg_obj(args, extra_arguments(cfg))
    except (OSError, ValueError, ImportError) as err:
        first = first_line(err)
        raise HarnessError(f"model {model!r} could not be loaded by lm-eval's {name} backend: {first}") from None


def check_tasks(cfg: EvalConfig, task: str, output_types: set[str], apply_chat_template: bool) -> None:
    """Raise if the backend cannot run a task with these output types and chat setting."""
    if cfg.backend in CHAT_ONLY:
        if output_types - {"generate_until"}:
            raise HarnessError(f"task {task!r} needs log-likelihoods ({', '.join(sorted(output_types))}), which the "
                               f"{cfg.backend} backend cannot give; use hf or vllm, or drop the task")
        if not apply_chat_template:
            raise HarnessError(f"task {task!r}: the {cfg.backend} backend needs apply_chat_template: true")
