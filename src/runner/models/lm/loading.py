"""Any Hugging Face causal LM + tokenizer from a local directory (card: ccd.md, "Implementation").

Nothing is downloaded: ``from_pretrained`` is called with ``local_files_only=True`` on a directory
that must hold ``config.json``, weights (``*.safetensors`` or ``pytorch_model*.bin``) and tokenizer
files; anything missing is one :class:`~runner.errors.UserError` naming the directory and the files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from runner.errors import UserError, invalid_value

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")


class CausalLM(nn.Module):
    """A causal LM and its tokenizer (padding on the left, a pad token always set).

    ``forward`` is the HF model's forward; :meth:`encode` tokenises a batch left-padded.
    """

    def __init__(self, model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of ``texts``, left-padded, on the model's device."""
        return left_pad([self.token_ids(t) for t in texts], self.pad_token_id, self.device)

    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` model and tokenizer into ``directory`` atomically (temp dir + rename)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if directory.exists():
                trash = directory.with_name(f"{directory.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(directory, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return directory


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into ``(ids, mask)`` padded on the left to the longest."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, length - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, length - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def missing_model_files(path: Path) -> list[str]:
    """What a HF causal-LM directory lacks (empty when complete)."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin"))
    if not weights:
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer (" + " / ".join(TOKENIZER_FILES) + ")")
    return missing


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise invalid_value("model.dtype", dtype, "one of " + ", ".join(DTYPES))
    return DTYPES[dtype]


def load_causal_lm(
    path: str | None,
    dtype: str = "float32",
    device: str | None = None,
    attn_implementation: str | None = None,
) -> CausalLM:
    """Load ``AutoModelForCausalLM`` + ``AutoTokenizer`` from the local directory ``path``.

    Args:
        path: a directory written by ``save_pretrained`` (model and tokenizer).
        dtype: float32 / float16 / bfloat16.
        device: where to put the model (``auto`` = CUDA when visible); ``None`` leaves it on the CPU
            for Lightning to move.
        attn_implementation: passed to ``from_pretrained`` (``None`` = the library's default).
    """
    if not path:
        raise UserError("model.path is not set: pass model.path=/dir/of/a/hugging-face/causal-lm")
    directory = Path(str(path)).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"model.path={path} does not exist; give a local directory written by save_pretrained "
            "(config.json, weights, tokenizer files) — nothing is downloaded"
        )
    missing = missing_model_files(directory)
    if missing:
        raise UserError(f"model.path={path} is incomplete: missing {'; '.join(missing)}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True, "dtype": resolve_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model.eval()
    lm = CausalLM(model, tokenizer)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device:
        lm.to(device)
    return lm
