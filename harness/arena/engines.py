"""What generates arena answers: transformers' ``generate`` (``hf``) or vLLM's offline engine (``vllm``), behind one
interface, so that `harness.arena.answers` batches, seeds and caches them the same way.

`load(spec, settings, ...)` returns an engine for one checkpoint; ``engine.answer(chats, settings)`` answers a batch
of chats with one record per chat (``answer``, ``answer_chars``, ``prompt_tokens``, ``answer_tokens``, ``finish``);
``engine.close()`` frees it. Both engines build the prompt the same way (the checkpoint's chat template through its
Hugging Face tokenizer, the same token ids), stop at the tokenizer's end-of-turn token and decode with the same
tokenizer, so greedy answers are the same up to the engines' numerics (``tests/test_vllm.py`` finds them equal on
the tiny model in float32). Sampled answers (temperature > 0) are not: each engine draws from its own generator.

vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set) with ``arena.engine_args`` over these
defaults: ``dtype=float32`` (as the hf engine loads weights; ``bfloat16`` on GPUs), ``seed`` from the settings and,
without a GPU, ``enforce_eager=True`` and the in-process ``uni`` executor (vLLM's CPU build compiles graphs
otherwise, minutes on a small machine). ``tensor_parallel_size``, ``gpu_memory_utilization`` and ``max_model_len``
go through ``arena.engine_args`` unchanged.

Budget forcing (``arena.budget``, engine hf; `harness.reasoning`): the reasoning is generated for at most that many
tokens, stopping at the end delimiter; the end delimiter and the answer lead-in are appended to it and the answer
is generated from there with ``arena.max_new_tokens``, the one answer record covering both rounds.
"""

from __future__ import annotations

import os
from typing import Any

from harness.errors import HarnessError, first_line

# `settings` below is a `harness.arena.answers.GenerationSettings` (not imported: answers imports this module).
GenerationSettings = Any


def device_or_default(device: str | None) -> str:
    """`device`, or cuda when torch sees a GPU, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _record(tokenizer, prompt_ids: list[int], ids: list[int], stopped: bool = False) -> dict[str, Any]:
    """One answer record from the generated token ids (cut at end of turn, padding dropped)."""
    stop = stopped or tokenizer.eos_token_id in ids
    ids = ids[: ids.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in ids else ids
    ids = [t for t in ids if t != tokenizer.pad_token_id]
    answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return {"answer": answer, "answer_chars": len(answer), "prompt_tokens": len(prompt_ids),
            "answer_tokens": len(ids), "finish": "stop" if stop else "length"}


def _prompts(tokenizer, chats: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]


def _generate(model, tokenizer, prompts: list[str], settings: GenerationSettings, max_new_tokens: int,
              stop: str | None = None) -> list[dict[str, Any]]:
    """One transformers `generate` call over rendered prompts (left-padded), stopping at `stop` if given."""
    import torch

    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sample = settings.temperature > 0
    kwargs = dict(do_sample=sample, temperature=settings.temperature, top_p=settings.top_p) if sample else {}
    if stop:
        kwargs.update(stop_strings=[stop], tokenizer=tokenizer)
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **kwargs,
        )
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    return [_record(tokenizer, [t for t, m in zip(ids, mask) if m], gen)
            for ids, mask, gen in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), new)]


def generate_batch(model, tokenizer, chats: list[list[dict]], settings: GenerationSettings) -> list[dict[str, Any]]:
    """Answer a batch of chats with transformers `generate` (left-padded): one call, or two with a thinking budget
    (the reasoning up to ``settings.budget`` tokens, then the forced answer; see the module docstring).

    Args:
        model: a causal LM.
        tokenizer: its tokenizer (with a chat template and a pad token).
        chats: one message list per prompt.
        settings: generation settings.

    Returns:
        Per chat: ``answer``, ``answer_chars``, ``prompt_tokens``, ``answer_tokens``, ``finish`` (stop or length);
        with a budget also ``reasoning_tokens`` (generated in the first round) and ``forced`` (they reached it).
    """
    from harness import reasoning

    prompts = _prompts(tokenizer, chats)
    delimiters = settings.delimiters() if getattr(settings, "budget", None) else None
    if delimiters is None:
        return _generate(model, tokenizer, prompts, settings, settings.max_new_tokens)
    thoughts = _generate(model, tokenizer, prompts, settings, settings.budget, stop=delimiters.end)
    heads = [t["answer"].split(delimiters.end)[0] + reasoning.forced(delimiters) for t in thoughts]
    answers = _generate(model, tokenizer, [p + h for p, h in zip(prompts, heads)], settings, settings.max_new_tokens)
    return [{**a, "answer": h + a["answer"], "answer_chars": len(h + a["answer"]),
             "prompt_tokens": t["prompt_tokens"], "answer_tokens": t["answer_tokens"] + a["answer_tokens"],
             "reasoning_tokens": t["answer_tokens"],  # as generated (re-encoding decoded text may count others)
             "forced": t["answer_tokens"] >= settings.budget and delimiters.end not in t["answer"]}
            for t, h, a in zip(thoughts, heads, answers)]


def _check_chat(spec: str, tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(f"model {spec!r} has no chat template; arena prompts are chats (use an instruct checkpoint)")


class HFEngine:
    """transformers' ``generate`` on a model loaded in float32 on `device`."""

    name = "hf"

    def __init__(self, spec: str, *, trust_remote_code: bool = False, device: str | None = None) -> None:
        from harness.models.load import load

        self.model, self.tokenizer = load(spec, trust_remote_code=trust_remote_code, device=device_or_default(device))
        _check_chat(spec, self.tokenizer)
        self.model.eval()

    def answer(self, chats: list[list[dict]], settings: GenerationSettings) -> list[dict[str, Any]]:
        return generate_batch(self.model, self.tokenizer, chats, settings)

    def close(self) -> None:
        del self.model


def vllm_defaults(seed: int = 0) -> dict[str, Any]:
    """The `vllm.LLM` arguments the arena uses unless ``arena.engine_args`` says otherwise (see the module doc)."""
    import torch

    args: dict[str, Any] = {"dtype": "float32", "seed": seed}
    if not torch.cuda.is_available():
        args.update(enforce_eager=True, distributed_executor_backend="uni")
    return args


class VLLMEngine:
    """vLLM's offline engine (`vllm.LLM`), fed the same prompt token ids as `HFEngine`."""

    name = "vllm"

    def __init__(self, spec: str, *, trust_remote_code: bool = False, engine_args: dict | None = None,
                 seed: int = 0) -> None:
        from transformers import AutoTokenizer

        from harness.evals.checks import engine_installed
        from harness.models.load import resolve

        engine_installed("vllm", "arena.engine")
        source = resolve(spec)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception as err:  # noqa: BLE001 - corrupt files raise anything
            raise HarnessError(f"model {spec!r} could not be loaded: {first_line(err)}") from None
        _check_chat(spec, self.tokenizer)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: no __main__ guard needed
        from vllm import LLM

        self.args = {"model": source, "tokenizer": source, "trust_remote_code": trust_remote_code,
                     **vllm_defaults(seed), **(engine_args or {})}
        try:
            self.llm = LLM(**self.args)
        except Exception as err:  # noqa: BLE001 - vLLM raises anything for a model or setting it cannot run
            raise HarnessError(f"model {spec!r} could not be loaded by vLLM: {type(err).__name__}: "
                               f"{first_line(err)}") from None

    def answer(self, chats: list[list[dict]], settings: GenerationSettings) -> list[dict[str, Any]]:
        from vllm import SamplingParams, TokensPrompt

        tok = self.tokenizer
        ids = [tok(text, add_special_tokens=False)["input_ids"] for text in _prompts(tok, chats)]
        sample = settings.temperature > 0
        params = SamplingParams(
            max_tokens=settings.max_new_tokens, temperature=settings.temperature if sample else 0.0,
            top_p=settings.top_p if sample else 1.0, seed=settings.seed, stop_token_ids=[tok.eos_token_id],
            detokenize=False,
        )
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        return [_record(tok, i, list(o.outputs[0].token_ids), o.outputs[0].finish_reason == "stop")
                for i, o in zip(ids, outs)]

    def close(self) -> None:
        shutdown = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if shutdown is not None and hasattr(shutdown, "shutdown"):
            shutdown.shutdown()
        del self.llm


def load(spec: str, settings: GenerationSettings, *, trust_remote_code: bool = False,
         device: str | None = None) -> HFEngine | VLLMEngine:
    """The engine `settings.engine` names, loaded on checkpoint `spec`.

    Args:
        spec: a folder, hub id or MLflow URI.
        settings: generation settings (``engine``, ``engine_args``, ``seed``).
        trust_remote_code: allow code shipped with the checkpoint to run.
        device: the hf engine's torch device (vLLM picks its own: ``CUDA_VISIBLE_DEVICES``).

    Raises:
        HarnessError: the model cannot be loaded, has no chat template, or vLLM is not installed.
    """
    if settings.engine == "vllm":
        return VLLMEngine(spec, trust_remote_code=trust_remote_code, engine_args=settings.engine_args,
                          seed=settings.seed)
    return HFEngine(spec, trust_remote_code=trust_remote_code, device=device)
