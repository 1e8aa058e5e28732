"""Baselines of the MGHFT table, all trained with the same recipe (:class:`StickerClassifier`).

* :class:`VisualOnlyPVT` — the PVT v1 backbone alone (stage-4 CLS token -> linear), the card's
  "visual-only PVT (same recipe)";
* :class:`TextOnlyMLP` — the four cached view features, concatenated, through an MLP (no image);
* :class:`LateFusion` — visual-only PVT logits and text-MLP logits, averaged (trained jointly);
* :class:`CLIPLinearProbe` — a frozen open_clip image tower + a linear classifier; its weights come
  from a local checkpoint file (``clip_checkpoint=/path``); with ``clip_checkpoint=null`` the tower
  is randomly initialised (a random-feature probe: usable offline and in tests, not a CLIP result);
* :class:`MajorityClass` — the training split's class prior as constant logits (predicts the most
  frequent class).

Modules without an image backbone still receive the experiment's ``net`` (the ``model`` group is
shared by every method of a sweep) and do not use or store it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import UserError
from runner.methods.mghft.module import StickerClassifier
from runner.models.vision import PyramidVisionTransformer

log = logging.getLogger(__name__)


def _needs_views(text_dim: int, name: str) -> None:
    if int(text_dim) <= 0:
        raise UserError(
            f"{name} needs the four view descriptions of every sticker (SER30K: "
            "Annotations_mg/image-level/<split>.json); the dataset has none"
        )


def text_mlp(text_dim: int, num_classes: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """LayerNorm over the 4 concatenated view features -> Linear -> GELU -> dropout -> Linear."""
    return nn.Sequential(
        nn.LayerNorm(4 * text_dim),
        nn.Linear(4 * text_dim, hidden_dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, num_classes),
    )


class VisualOnlyPVT(StickerClassifier):
    """PVT v1 -> normalised stage-4 CLS token -> linear classifier."""

    def __init__(
        self,
        net: PyramidVisionTransformer,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        self.save_hyperparameters(ignore=["net"])
        self.backbone = net
        self.head = nn.Linear(net.embed_dims[3], self.num_classes)

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, None]:
        return self.head(self.backbone.forward_features(batch["image"])), None


class TextOnlyMLP(StickerClassifier):
    """The four view features -> MLP (the image backbone ``net`` is not used)."""

    def __init__(
        self,
        num_classes: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.1,
        net: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        _needs_views(text_dim, "the text-only baseline")
        self.save_hyperparameters(ignore=["net"])
        self.mlp = text_mlp(int(text_dim), self.num_classes, int(hidden_dim), float(dropout))

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, None]:
        views = batch["views"].to(self.mlp[1].weight.dtype)
        return self.mlp(views.flatten(1)), None


class LateFusion(StickerClassifier):
    """Mean of the visual-only PVT logits and the text-MLP logits."""

    def __init__(
        self,
        net: PyramidVisionTransformer,
        num_classes: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.1,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        _needs_views(text_dim, "late fusion")
        self.save_hyperparameters(ignore=["net"])
        self.backbone = net
        self.visual_head = nn.Linear(net.embed_dims[3], self.num_classes)
        self.text_head = text_mlp(int(text_dim), self.num_classes, int(hidden_dim), float(dropout))

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, None]:
        visual = self.visual_head(self.backbone.forward_features(batch["image"]))
        text = self.text_head(batch["views"].to(visual.dtype).flatten(1))
        return 0.5 * (visual + text), None


class CLIPLinearProbe(StickerClassifier):
    """A frozen open_clip image tower (local weights) + a linear classifier on its normalised features.

    Args:
        clip_model: an open_clip architecture name (``ViT-B-32``, ``ViT-S-32``, ...).
        clip_checkpoint: a local open_clip weight file; null = random initialisation (warned).
        image_size: the input size (open_clip's ``force_image_size``).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        clip_model: str = "ViT-B-32",
        clip_checkpoint: str | None = None,
        net: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        from runner.models.clip import load_open_clip

        self.save_hyperparameters(ignore=["net"])
        # a local weight file only, loaded with weights_only=True (runner.models.clip); null: random tower
        model = load_open_clip(
            clip_model,
            clip_checkpoint,
            config_key="method.clip_checkpoint",
            model_key="method.clip_model",
            allow_random_init=True,
            force_image_size=int(image_size),
        )
        self.visual = model.visual.eval().requires_grad_(False)
        with torch.no_grad():
            dim = self.visual(torch.zeros(1, 3, int(image_size), int(image_size))).shape[-1]
        self.head = nn.Linear(dim, self.num_classes)

    def train(self, mode: bool = True) -> CLIPLinearProbe:
        super().train(mode)
        self.visual.eval()  # frozen: dropout / norm statistics stay in inference mode
        return self

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, None]:
        with torch.no_grad():
            features = F.normalize(self.visual(batch["image"]).float(), dim=-1)
        return self.head(features), None


class MajorityClass(StickerClassifier):
    """Constant logits = log of the training split's class prior (argmax: the majority class).

    The logits are a parameter initialised at the prior and trained by the same recipe (the
    cross-entropy optimum of a constant predictor is the prior itself, so it stays there)."""

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int],
        net: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        self.save_hyperparameters(ignore=["net"])
        counts = torch.as_tensor(list(class_counts), dtype=torch.float32)
        if counts.numel() != self.num_classes:
            raise UserError(f"class_counts has {counts.numel()} entries for {self.num_classes} classes")
        self.log_prior = nn.Parameter((counts.clamp_min(0.5) / counts.sum()).log())

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, None]:
        return self.log_prior.expand(batch["label"].shape[0], -1), None
