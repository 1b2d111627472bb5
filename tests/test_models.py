"""The tiny tokenizer and model reload offline as standard HF folders; the loader rejects what is not a model."""

import pytest

from harness.errors import HarnessError
from harness.models.load import content_hash, load, resolve


def test_tokenizer_splits_digits_and_has_chat_template(tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    pieces = tok.tokenize("123 + 45")
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["1", "2", "3", "4", "5"] or all(
        len(p.strip("Ġ")) <= 1 for p in pieces if any(c.isdigit() for c in p)
    )
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>hi<|end|><|assistant|>"
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<|pad|>"
    assert tok.decode(tok("What is 12 + 3?")["input_ids"]) == "What is 12 + 3?"


def test_checkpoint_reloads_with_auto_classes(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    assert model.config.model_type == "llama"
    assert (tiny_checkpoint / "model.safetensors").is_file()
    model2, tok = load(str(tiny_checkpoint))
    assert sum(p.numel() for p in model2.parameters()) == sum(p.numel() for p in model.parameters())


def test_loader_errors_are_one_line(tmp_path):
    with pytest.raises(HarnessError, match="no such folder"):
        resolve(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match="no config.json"):
        resolve(str(empty))
    (empty / "config.json").write_text("{}")
    with pytest.raises(HarnessError, match="safetensors"):
        resolve(str(empty))
    (empty / "model.safetensors").write_bytes(b"not weights")  # refused when resolved, before anything loads
    with pytest.raises(HarnessError) as err:
        load(str(empty))
    assert "\n" not in str(err.value) and "model.safetensors is truncated or corrupt" in str(err.value)
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, empty / "model.safetensors")  # whole, but no model transformers knows
    with pytest.raises(HarnessError) as err:
        load(str(empty))
    assert "\n" not in str(err.value) and "could not be loaded" in str(err.value)


def test_hub_ids_pass_through_and_hash_is_stable(tiny_checkpoint):
    assert resolve("allenai/OLMo-2-1124-7B-SFT") == "allenai/OLMo-2-1124-7B-SFT"
    assert content_hash(str(tiny_checkpoint)) == content_hash(str(tiny_checkpoint))
    assert len(content_hash(str(tiny_checkpoint))) == 16
