"""LoRA and QLoRA for the TRL stages, through PEFT: the adapter config a stage's ``lora`` section asks for, the checks
made before any training (target modules present in the model, bitsandbytes and CUDA for quantized weights), the
quantized load, and the save: adapters merged into the base, so that the next stage and the evals load a plain
model.

A stage trains with LoRA when its ``lora.r`` is above 0 (``--set sft.lora.r=16 --set
'sft.lora.target_modules=[q_proj, v_proj]'``); ``lora.quantize: 4bit`` (or ``8bit``) is QLoRA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError

ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output head
_SHOWN = 8  # module names listed in an error


def peft_config(lora: Any):
    """PEFT's `LoraConfig` for a stage's ``lora`` section, or None when LoRA is off (``r`` is 0)."""
    if not lora.r:
        return None
    from peft import LoraConfig

    targets = ALL_LINEAR if ALL_LINEAR in lora.target_modules else list(lora.target_modules)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type="CAUSAL_LM")


def _meta_model(source: str | None, model_cfg: Any, trust_remote_code: bool):
    """The model a stage will train, built on the meta device (no weights read): the checkpoint's architecture, or the
    tiny Llama pretraining builds when `source` is None."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if source is None:
        config = LlamaConfig(vocab_size=model_cfg.vocab_size, hidden_size=model_cfg.hidden_size,
                             intermediate_size=model_cfg.hidden_size * 4, num_hidden_layers=model_cfg.layers,
                             num_attention_heads=model_cfg.heads, num_key_value_heads=model_cfg.heads)
    else:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def check_targets(lora: Any, source: str | None, model_cfg: Any, trust_remote_code: bool = False) -> None:
    """Before any training: the modules `lora.target_modules` names exist in the model the stage trains (its
    checkpoint `source`, or the tiny model pretraining builds when None).

    Raises:
        HarnessError: none of the names (or, for ``all-linear``, no linear layer) is in the model; names some that are.
    """
    import torch

    model = _meta_model(source, model_cfg, trust_remote_code)
    leaves = {name.rsplit(".", 1)[-1]: type(m) for name, m in model.named_modules() if name}
    linear = sorted(n for n, t in leaves.items() if issubclass(t, torch.nn.Linear) and n != "lm_head")
    asked = list(lora.target_modules)
    if ALL_LINEAR in asked:
        if linear:
            return
        missing = asked
    else:
        missing = [m for m in asked if m not in leaves]
    if missing:
        what = source or "the tiny model pretraining builds"
        some = ", ".join(linear[:_SHOWN] or sorted(leaves)[:_SHOWN])
        raise HarnessError(f"config key {lora.key('target_modules')}: {', '.join(missing)} not in {what} "
                           f"({type(model).__name__}; its linear modules include {some})")


def check_quantize(lora: Any) -> None:
    """Before any training: quantized weights (QLoRA) need bitsandbytes and a CUDA GPU."""
    if lora.quantize == "none" or not lora.r:
        return
    import importlib.util

    import torch

    key = lora.key("quantize")
    if not torch.cuda.is_available():
        raise HarnessError(f"config key {key}: {lora.quantize} (QLoRA) needs a CUDA GPU and this machine has none "
                           "(valid here: none)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise HarnessError(f"config key {key}: {lora.quantize} (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def load_quantized(spec: str, lora: Any, trust_remote_code: bool = False):
    """`(model, tokenizer)` with the base weights quantized as `lora.quantize` asks (bitsandbytes, bf16 compute),
    prepared for k-bit training."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from harness.models.load import resolve

    source = resolve(spec)
    bits = (dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                 bnb_4bit_use_double_quant=True) if lora.quantize == "4bit" else dict(load_in_8bit=True))
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=BitsAndBytesConfig(**bits),
                                                 dtype=torch.bfloat16, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return prepare_model_for_kbit_training(model), tokenizer


def load_for(cfg: Any, init: str, trust_remote_code: bool = False):
    """The stage's starting model: quantized for QLoRA, else as `harness.models.load.load` loads it."""
    if cfg.lora.r and cfg.lora.quantize != "none":
        return load_quantized(init, cfg.lora, trust_remote_code)
    from harness.models.load import load

    return load(init, trust_remote_code=trust_remote_code)


def save(trainer: Any, out_dir: Path) -> None:
    """Save the trained model to `out_dir`: as the trainer saves it, or, for a LoRA stage, the adapters merged into
    the base (a quantized base is loaded again in bf16 to merge into, so the checkpoint is a plain model)."""
    from peft import PeftModel

    model = trainer.model
    if not isinstance(model, PeftModel):
        trainer.save_model(str(out_dir))  # every process calls it (DeepSpeed and FSDP gather); the main one writes
        return
    if not trainer.args.should_save:  # under accelerate launch, only the main process merges and writes
        return
    quantized = getattr(model.base_model.model, "is_loaded_in_4bit", False) or getattr(
        model.base_model.model, "is_loaded_in_8bit", False)
    if quantized:
        import torch
        from transformers import AutoModelForCausalLM

        adapters = out_dir / "_adapter"
        model.save_pretrained(adapters)
        base = AutoModelForCausalLM.from_pretrained(model.peft_config["default"].base_model_name_or_path,
                                                    dtype=torch.bfloat16, use_safetensors=True)
        model = PeftModel.from_pretrained(base, adapters)
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    if quantized:
        import shutil

        shutil.rmtree(out_dir / "_adapter", ignore_errors=True)
