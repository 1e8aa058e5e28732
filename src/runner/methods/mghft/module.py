"""The training recipe every sticker-emotion model here shares, and MGHFT itself.

:class:`StickerClassifier` (MGHFT card, "Recipe"): label-smoothing cross-entropy (0.2) plus
``aux_loss_weight`` x the model's auxiliary loss (MGHFT: 0.5 x the summed stage losses); AdamW
(wd 0.05, no decay on biases / norms / 1-d parameters) at ``lr x global batch / 512`` with the global
batch = ``dataset.batch_size x devices x accumulate_grad_batches``; timm's cosine schedule with 5
warm-up epochs from 1e-5 and a 1e-5 floor, stepped per epoch; accuracy and macro-F1 (torchmetrics)
on val and test, per-class F1 on test (``test/f1/<class>`` in ``metrics.json``). Which weights are
tested is the experiment's ``test_ckpt`` (``best`` by ``val/acc`` here: selection on val, never on
test as the release does).

:class:`MGHFT` (card, "Model"): a PVT v1 with a CLS token per stage; per stage ``i`` the view-``i``
text feature ``t_i`` (frozen encoder, cached; ``l_proj`` to 512) is injected into the stage's
Local-Re-Attention tokens ``p ← p + softmax(p tᵀ) t`` (with one text token the softmax is 1, so this
is ``p + t``: kept as written, noted on the card) and aligned with the stage's global token by the
stage loss; after stage 4 ``G ← G + softmax(G Tᵀ) T`` over the four views; global + local tokens go
through the text-guided fusion block and token 0 to the classifier.

Switches (ablations and the release's differences):

* ``text_views``: ``per_view`` (default: view i at stage i) or ``full_text`` (every stage gets the
  whole description — what the release's data loader does by mistake, and the "w/o multi-view
  text" ablation);
* ``local_tokens``: false drops Local Re-Attention (no local tokens: the fusion block sees the 4
  global tokens and the 4 view tokens);
* ``stage_losses``: false drops the per-stage InfoNCE + KL terms;
* ``fusion``: false drops the fusion block (the classifier reads token 0, the text-injected stage-4
  global token, directly);
* ``kl_reduction``: ``batchmean`` (default) or ``sum`` (the release).

Deviations from the release: stage 4's local text token is ``cross_proj4(t_4)`` (the release
reuses stage 3's, a stale variable); the token order is stage 4 → 1 for both global and local tokens
(the release flips the concatenated local tokens, which also reverses them within a stage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from timm.layers import trunc_normal_
from timm.scheduler import CosineLRScheduler
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from runner.errors import UserError, invalid_value
from runner.methods.mghft.fusion import TextGuidedFusionBlock
from runner.methods.mghft.losses import KL_REDUCTIONS, stage_alignment_loss
from runner.models.vision import (
    PyramidVisionTransformer,
    gather_tokens,
    local_reattention_indices,
    top_k_per_head,
)

TEXT_VIEWS = ("per_view", "full_text")
DEFAULT_OPTIMIZER = {"lr": 1.0e-3, "weight_decay": 0.05, "reference_batch_size": 512, "betas": (0.9, 0.999)}
DEFAULT_SCHEDULER = {"warmup_epochs": 5, "warmup_lr": 1.0e-5, "min_lr": 1.0e-5}


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy (micro: the fraction of correct stickers) and macro-F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        }
    )


class StickerClassifier(L.LightningModule):
    """Shared recipe (module docstring). Subclasses implement :meth:`logits_and_aux`."""

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        names = list(class_names) if class_names else [f"class_{i}" for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise invalid_value("dataset.class_names", names, f"{self.num_classes} names (one per class)")
        self.class_names = names
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
        self.aux_loss_weight = float(aux_loss_weight)
        self.optimizer_cfg = {**DEFAULT_OPTIMIZER, **dict(optimizer or {})}
        self.scheduler_cfg = {**DEFAULT_SCHEDULER, **dict(scheduler or {})}
        self.train_metrics = classification_metrics(self.num_classes).clone(prefix="train/")
        self.val_metrics = classification_metrics(self.num_classes).clone(prefix="val/")
        self.test_metrics = classification_metrics(self.num_classes).clone(prefix="test/")
        self.test_per_class_f1 = MulticlassF1Score(num_classes=self.num_classes, average=None)

    # ---- the model ----
    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits [B, classes], auxiliary loss or None)`` of a batch."""
        raise NotImplementedError

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.logits_and_aux(batch)[0]

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    # ---- steps ----
    @staticmethod
    def _is_empty(batch: Mapping[str, Any]) -> bool:
        return batch["label"].shape[0] == 0  # every image of the batch was unreadable (named in "corrupt")

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if self._is_empty(batch):
            return None
        logits, aux = self.logits_and_aux(batch)
        ce = self.criterion(logits, batch["label"])
        loss = ce if aux is None else ce + self.aux_loss_weight * aux
        size = logits.shape[0]
        self.train_metrics.update(logits.detach(), batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        terms = {"ce": ce.detach()}
        if aux is not None:
            self.log("train/aux_loss", aux, on_step=False, on_epoch=True, batch_size=size)
            terms["aux"] = aux.detach()
        return {"loss": loss, "loss_terms": terms}

    def on_train_epoch_end(self) -> None:
        """Training accuracy / macro-F1 of the epoch (on the augmented training views): whether the
        schedule has plateaued, which the results tables report next to test accuracy."""
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not self._is_empty(batch):
            logits, _ = self.logits_and_aux(batch)
            self.val_metrics.update(logits, batch["label"])
            self.log("val/loss", self.criterion(logits, batch["label"]), batch_size=logits.shape[0])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not self._is_empty(batch):
            logits, _ = self.logits_and_aux(batch)
            self.test_metrics.update(logits, batch["label"])
            self.test_per_class_f1.update(logits, batch["label"])
            self.log("test/loss", self.criterion(logits, batch["label"]), batch_size=logits.shape[0])

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        per_class = self.test_per_class_f1.compute()
        self.log_dict({f"test/f1/{name}": per_class[i] for i, name in enumerate(self.class_names)})
        self.test_metrics.reset()
        self.test_per_class_f1.reset()

    # ---- optimisation ----
    def global_batch_size(self) -> int:
        trainer = self.trainer
        per_device = int(getattr(trainer.datamodule, "batch_size", 0) or 0) if trainer.datamodule else 0
        if per_device <= 0:
            raise UserError(
                "the sticker recipe scales the learning rate by dataset.batch_size, which is missing"
            )
        return per_device * int(trainer.world_size) * int(trainer.accumulate_grad_batches)

    def scaled_lr(self) -> float:
        """``lr x global batch / reference_batch_size`` (the release: 1e-3 x batch / 512)."""
        cfg = self.optimizer_cfg
        return float(cfg["lr"]) * self.global_batch_size() / float(cfg["reference_batch_size"])

    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, param in self.trainable_parameters():
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        cfg = self.optimizer_cfg
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(cfg["weight_decay"])},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.scaled_lr(),
            betas=tuple(cfg["betas"]),
        )
        sched = self.scheduler_cfg
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=epochs,
            lr_min=float(sched["min_lr"]),
            warmup_t=int(sched["warmup_epochs"]),
            warmup_lr_init=float(sched["warmup_lr"]),
            t_in_epochs=True,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        # called after epoch e (0-based): the next epoch runs at the schedule's value for e + 1
        scheduler.step(epoch=self.current_epoch + 1)


class MGHFT(StickerClassifier):
    """MGHFT (module docstring). ``net`` is a PVT v1 (``model=pvt_small``); it gets a CLS token per stage.

    Args:
        net: the image backbone (:class:`PyramidVisionTransformer`).
        num_classes, text_dim, image_size, class_names: from the data.
        alpha: Local Re-Attention's α (k = α·(N_q // (N_k − 1)) per head), given for
            ``alpha_reference_size`` (448) px inputs; at another input size ``S`` it is scaled with the
            patch count, ``max(1, round(α (S / 448)²))``, so the same share of patches is kept (exactly
            the paper's α at 448; at 64 px: 1). ``alpha_reference_size=null`` uses α as given.
        hidden_dim, fusion_heads, fusion_mlp_dim, fusion_dropout, fusion_attention_dropout: the fusion
            block (768 / 12 / 3072 / 0.1 / 0.0); ``hidden_dim=null`` is 1.5 x the backbone's last
            width (768 for PVT-small's 512) and ``fusion_mlp_dim=null`` 4 x hidden_dim, so a narrower
            backbone gets a proportionally narrower fusion block.
        text_views, local_tokens, stage_losses, fusion, kl_reduction: switches (module docstring).
        nce_temperature, kl_weight: stage-loss constants (0.07, 30).
    """

    def __init__(
        self,
        net: PyramidVisionTransformer,
        num_classes: int,
        text_dim: int,
        image_size: int,
        class_names: Sequence[str] | None = None,
        alpha: int = 8,
        alpha_reference_size: int | None = 448,
        hidden_dim: int | None = None,
        fusion_heads: int = 12,
        fusion_mlp_dim: int | None = None,
        fusion_dropout: float = 0.1,
        fusion_attention_dropout: float = 0.0,
        text_views: str = "per_view",
        local_tokens: bool = True,
        stage_losses: bool = True,
        fusion: bool = True,
        nce_temperature: float = 0.07,
        kl_weight: float = 30.0,
        kl_reduction: str = "batchmean",
        label_smoothing: float = 0.2,
        aux_loss_weight: float = 0.5,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, class_names, label_smoothing, aux_loss_weight, optimizer, scheduler)
        if text_views not in TEXT_VIEWS:
            raise invalid_value("method.text_views", text_views, "one of " + ", ".join(TEXT_VIEWS))
        if kl_reduction not in KL_REDUCTIONS:
            raise invalid_value("method.kl_reduction", kl_reduction, "one of " + ", ".join(KL_REDUCTIONS))
        if int(text_dim) <= 0:
            raise UserError(
                "MGHFT needs the four view descriptions of every sticker (SER30K: "
                "Annotations_mg/image-level/<split>.json); the dataset has none"
            )
        self.save_hyperparameters(ignore=["net"])
        self.backbone = net.add_stage_cls_tokens()
        dims = self.backbone.embed_dims
        width = dims[3]
        self.alpha = (
            max(1, round(int(alpha) * (int(image_size) / int(alpha_reference_size)) ** 2))
            if alpha_reference_size
            else int(alpha)
        )
        hidden_dim = int(hidden_dim) if hidden_dim else int(1.5 * width)
        fusion_mlp_dim = int(fusion_mlp_dim) if fusion_mlp_dim else 4 * hidden_dim
        self.text_views = text_views
        self.local_tokens = bool(local_tokens)
        self.stage_losses = bool(stage_losses)
        self.use_fusion = bool(fusion)
        self.nce_temperature = float(nce_temperature)
        self.kl_weight = float(kl_weight)
        self.kl_reduction = kl_reduction

        def mlp(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(a, a), nn.ReLU(), nn.Linear(a, b))

        self.l_proj = nn.Linear(int(text_dim), width)
        self.cross_proj = nn.ModuleList(
            nn.Sequential(nn.Linear(width, d), nn.ReLU(), nn.Linear(d, d)) for d in dims
        )
        self.local_proj = nn.ModuleList(mlp(d, width) for d in dims[:3])
        self.global_proj = nn.ModuleList(mlp(d, width) for d in dims[:3])
        self.tokens_per_stage = self.local_token_counts(int(image_size)) if self.local_tokens else [0] * 4
        self.v_proj = nn.Linear(width, hidden_dim)
        self.vl_proj = nn.Linear(width, hidden_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4 + sum(self.tokens_per_stage), hidden_dim))
        self.fusion = (
            TextGuidedFusionBlock(
                hidden_dim, fusion_heads, fusion_mlp_dim, fusion_dropout, fusion_attention_dropout
            )
            if self.use_fusion
            else None
        )
        self.head = nn.Linear(hidden_dim, self.num_classes)
        for layer in (self.v_proj, self.vl_proj, self.l_proj, self.head):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)
        trunc_normal_(self.pos_embed, std=0.02)

    def local_token_counts(self, image_size: int) -> list[int]:
        """Selected tokens per stage (heads x k) for a square ``image_size`` input."""
        counts, side = [], image_size
        for i in range(4):
            side = side // (self.backbone.patch_size if i == 0 else 2)
            reduced = side // self.backbone.sr_ratios[i]
            k = top_k_per_head(1 + side * side, 1 + reduced * reduced, self.alpha, side * side)
            counts.append(self.backbone.num_heads[i] * k)
        return counts

    def stage_texts(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``[B, 4, D_text]``: view i for stage i, or the whole description at every stage."""
        if self.text_views == "full_text":
            return batch["full_text"].unsqueeze(1).expand(-1, 4, -1)
        return batch["views"]

    def logits_and_aux(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        texts = self.l_proj(self.stage_texts(batch).to(self.l_proj.weight.dtype))  # [B, 4, 512]
        stages = self.backbone.forward_stages(batch["image"], need_weights=self.local_tokens)
        global_tokens, local_tokens, local_texts = [], [], []
        aux = None
        for i, stage in enumerate(stages):
            text = texts[:, i]
            glob = self.global_proj[i](stage.cls) if i < 3 else stage.cls
            global_tokens.append(glob)
            if self.local_tokens:
                idx = local_reattention_indices(
                    stage.attentions, stage.H, stage.W, self.backbone.sr_ratios[i], self.alpha
                )
                parts = gather_tokens(stage.tokens, idx)  # [B, heads*k, C_i]
                t = self.cross_proj[i](text).unsqueeze(1)  # [B, 1, C_i]
                parts = parts + torch.softmax(parts @ t.transpose(1, 2), dim=-1) @ t
                if i < 3:
                    parts, t = self.local_proj[i](parts), self.local_proj[i](t)
                local_tokens.append(parts)
                local_texts.append(t)
            if self.stage_losses:
                loss = stage_alignment_loss(
                    glob, text, self.nce_temperature, self.kl_weight, self.kl_reduction
                )
                aux = loss if aux is None else aux + loss
        view_tokens = texts.flip(1)  # stage 4 first
        glob = torch.stack(global_tokens[::-1], dim=1)
        glob = glob + torch.softmax(glob @ view_tokens.transpose(1, 2), dim=-1) @ view_tokens
        tokens = self.backbone.norm(torch.cat([glob, *local_tokens[::-1]], dim=1))
        x = self.v_proj(tokens) + self.pos_embed
        if self.fusion is not None:
            text_tokens = self.vl_proj(torch.cat([view_tokens, *local_texts[::-1]], dim=1))
            x = self.fusion(x, text_tokens, num_queries=1)  # token 0 is all the classifier reads
        return self.head(x[:, 0]), aux
