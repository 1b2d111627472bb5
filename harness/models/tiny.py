"""The embedded tiny model: a BPE tokenizer trained here and a small Llama built from a config.

Both are saved as a standard Hugging Face folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json`` with a chat template) that `AutoModelForCausalLM` / `AutoTokenizer` reload offline.

The tokenizer splits every digit into its own token (arithmetic needs it), uses byte-level BPE for the rest, and
carries the chat template

    <|user|>PROMPT<|end|><|assistant|>ANSWER<|end|>

where ``<|end|>`` is the eos token, so generation stops at the end of the assistant turn.

`add_reasoning_tokens` gives a model the think format's delimiters (``model.think``): two ordinary added tokens
(kept when decoding, so that graders and forced budgets see them), new embedding rows at the mean of the others,
and a chat template whose generation prompt opens the block, as DeepSeek-R1's and Qwen3's do
(``<|assistant|><think>``: every answer starts by thinking, and `harness.reasoning.detect` finds the pair there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer with single-digit tokens and the chat template.

    Args:
        corpus: training text lines.
        vocab_size: target vocabulary size, special tokens included.

    Returns:
        A `transformers.PreTrainedTokenizerFast`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 256
    return fast


def build_model(tokenizer, hidden_size: int = 128, layers: int = 4, heads: int = 4, seed: int = 0):
    """A freshly initialised `LlamaForCausalLM` sized for CPU training in minutes.

    Args:
        tokenizer: the tokenizer whose vocabulary and special ids the model uses.
        hidden_size: width of the residual stream.
        layers: number of decoder layers.
        heads: attention heads (and key/value heads).
        seed: initialisation seed.

    Returns:
        The model (float32, eval mode off).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save(model, tokenizer, out_dir: str | Path) -> Path:
    """Save model (safetensors) and tokenizer as one Hugging Face folder; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def think_template(delimiters) -> str:
    """The chat template of the think format: `CHAT_TEMPLATE` whose generation prompt opens the reasoning block,
    the closing delimiter named in a comment."""
    return (f"{{# reasoning: {delimiters.start} ... {delimiters.end} #}}"
            + CHAT_TEMPLATE.replace("'<|assistant|>'", repr("<|assistant|>" + delimiters.start)))


def add_reasoning_tokens(model, tokenizer, delimiters) -> bool:
    """Give `model` and `tokenizer` the reasoning delimiters as tokens, and declare them in the chat template.

    Args:
        model: a causal LM (its embeddings are resized; new rows start at the mean embedding).
        tokenizer: its tokenizer (changed in place).
        delimiters: the `harness.reasoning.Delimiters`.

    Returns:
        Whether anything was added (False when the tokenizer already has both as tokens).
    """
    import torch
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [d for d in (delimiters.start, delimiters.end) if d not in vocab]
    template = tokenizer.chat_template or CHAT_TEMPLATE
    if template == CHAT_TEMPLATE:
        tokenizer.chat_template = think_template(delimiters)
    if not new:
        return False
    tokenizer.add_tokens([AddedToken(d, special=False, normalized=False) for d in new])
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight[old:] = weight[:old].mean(dim=0, keepdim=True)
    return True
