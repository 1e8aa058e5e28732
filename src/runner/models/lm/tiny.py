"""The in-project tiny GPT-2-style LM: a byte-level BPE tokenizer trained on the twin's text with the
``tokenizers`` library, and a small ``GPT2Config`` (card: ccd.md, "Data": "a tiny causal LM trained
in-project").
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .loading import CausalLM, resolve_dtype

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as a HF ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=PAD, padding_side="left"
    )


def tiny_gpt2_config(
    vocab_size: int,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    n_positions: int = 128,
    dropout: float = 0.0,
    eos_token_id: int = 0,
    pad_token_id: int = 1,
):
    """A small ``GPT2Config`` (GPT-2-medium is n_layer=24, n_embd=1024, n_head=16)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def build_tiny_gpt2(
    tokenizer,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    n_positions: int = 128,
    dropout: float = 0.0,
    dtype: str = "float32",
    seed: int | None = None,
) -> CausalLM:
    """A randomly initialised GPT-2-style LM sized for ``tokenizer`` (seeded when ``seed`` is given)."""
    from transformers import GPT2LMHeadModel

    config = tiny_gpt2_config(
        len(tokenizer),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        dropout=dropout,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).to(resolve_dtype(dtype))
    return CausalLM(model, tokenizer)
