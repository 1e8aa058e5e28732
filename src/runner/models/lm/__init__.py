"""Causal language models for the CCD experiments: any local HF model (:func:`load_causal_lm`) and
the in-project tiny GPT-2 (:func:`build_tiny_gpt2`, :func:`train_tokenizer`)."""

from .loading import CausalLM, left_pad, load_causal_lm, missing_model_files
from .tiny import build_tiny_gpt2, tiny_gpt2_config, train_tokenizer

__all__ = [
    "CausalLM",
    "build_tiny_gpt2",
    "left_pad",
    "load_causal_lm",
    "missing_model_files",
    "tiny_gpt2_config",
    "train_tokenizer",
]
