"""Named loss terms of the distillation objective (issue 3, item 1: ``distill.terms``).

The total loss is ``Σ_name weight_name · term_name(context)``; every term is an ``nn.Module`` built
from config via ``_target_`` (its own parameters — SDB, projectors — are trained with the student and
dropped from the exported student). After construction the module calls ``term.bind(...)`` with
the dimensions the term needs (teacher feature widths, the student's hooked feature maps).

Card, "Reconstruction": ``L = CE + α·T²·KL(σ(z_target/T) ‖ σ(z_s/T)) + β·MSE(SDB(f_s), f_res) + γ·RKD``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .datw import MeanFusion
from .sdd import ResidualTarget, StructureDiscrepancyBranch


@dataclass
class DistillContext:
    """What one training step exposes to the loss terms."""

    student_logits: torch.Tensor
    student_features: torch.Tensor
    labels: torch.Tensor
    teacher_logits: dict[str, torch.Tensor]
    teacher_features: dict[str, torch.Tensor]
    feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # per-step values to log
    epoch: int = 0  # the training epoch (0-based), for epoch-dependent terms (DKD's warm-up)


@dataclass
class BindInfo:
    """Sizes known only once the networks are built."""

    num_classes: int
    student_feature_dim: int
    teacher_feature_dims: dict[str, int]
    feature_map_channels: dict[str, int]


class LossTerm(nn.Module):
    """Base class: ``weight`` and the teachers the term reads (``teachers: []`` = none)."""

    def __init__(self, weight: float = 1.0, teachers: Sequence[str] = ()):
        super().__init__()
        self.weight = float(weight)
        self.teachers = [str(t) for t in teachers]

    @property
    def feature_modules(self) -> list[str]:
        """Names of student sub-modules whose outputs this term needs (forward hooks)."""
        return []

    def bind(self, info: BindInfo) -> None:
        """Create parameters that depend on the network sizes (default: nothing)."""

    def forward(self, ctx: DistillContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class CrossEntropyTerm(LossTerm):
    """Supervised cross-entropy on the labels."""

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        return F.cross_entropy(ctx.student_logits, ctx.labels, label_smoothing=self.label_smoothing)


class _FusedTerm(LossTerm):
    """A term on the fused teacher target (DATW, or the mean for one/averaged teachers)."""

    def __init__(
        self,
        weight: float = 1.0,
        teachers: Sequence[str] = ("cnn", "vit"),
        fusion: nn.Module | None = None,
        temperature: float = 4.0,
    ):
        super().__init__(weight, teachers)
        self.fusion = fusion if fusion is not None else MeanFusion()
        self.temperature = float(temperature)

    def target(self, ctx: DistillContext, prefix: str) -> torch.Tensor:
        fused, w = self.fusion(ctx.student_logits, [ctx.teacher_logits[t].float() for t in self.teachers])
        for k, name in enumerate(self.teachers):
            ctx.stats[f"{prefix}_weight_{name}"] = w[:, k].detach().mean()
        return fused


class KDTerm(_FusedTerm):
    """``T²·KL(σ(z_target/T) ‖ σ(z_s/T))`` with ``z_target`` from ``fusion`` (:mod:`.datw`)."""

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        return losses.kd_loss(ctx.student_logits, self.target(ctx, "kd"), self.temperature)


class DKDTerm(_FusedTerm):
    """Decoupled KD on the (fused) teacher logits; see :func:`.losses.dkd_loss`, scaled by DKD's
    linear warm-up ``min(epoch / warmup_epochs, 1)`` (mdistiller ``DKD.forward_train``, ``WARMUP: 20``;
    mdistiller counts epochs from 1, so the first epoch has factor ``1 / warmup_epochs``;
    ``warmup_epochs: 0`` switches the warm-up off)."""

    def __init__(
        self,
        weight=1.0,
        teachers=("cnn",),
        fusion=None,
        temperature=4.0,
        alpha=1.0,
        beta=8.0,
        warmup_epochs=20,
    ):
        super().__init__(weight, teachers, fusion, temperature)
        self.alpha, self.beta = float(alpha), float(beta)
        if int(warmup_epochs) < 0:
            raise ValueError(f"distill.terms.dkd.warmup_epochs must be >= 0, got {warmup_epochs}")
        self.warmup_epochs = int(warmup_epochs)

    def warmup_factor(self, epoch: int) -> float:
        """``min((epoch + 1) / warmup_epochs, 1)`` for the 0-based ``epoch`` (1 without a warm-up)."""
        return 1.0 if self.warmup_epochs == 0 else min((int(epoch) + 1) / self.warmup_epochs, 1.0)

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        z_t = self.target(ctx, "dkd")
        factor = self.warmup_factor(ctx.epoch)
        ctx.stats["dkd_warmup"] = torch.tensor(factor)
        loss = losses.dkd_loss(ctx.student_logits, z_t, ctx.labels, self.alpha, self.beta, self.temperature)
        return factor * loss


class DISTTerm(_FusedTerm):
    """DIST on the (fused) teacher logits; see :func:`.losses.dist_loss`."""

    def __init__(self, weight=1.0, teachers=("cnn",), fusion=None, temperature=1.0, beta=1.0, gamma=1.0):
        super().__init__(weight, teachers, fusion, temperature)
        self.beta, self.gamma = float(beta), float(gamma)

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        z_t = self.target(ctx, "dist")
        return losses.dist_loss(ctx.student_logits, z_t, self.beta, self.gamma, self.temperature)


class RKDTerm(LossTerm):
    """RKD (distance + angle) between the student's pooled features and each teacher's, averaged."""

    def __init__(self, weight=1.0, teachers=("cnn", "vit"), dist_factor=1.0, angle_factor=2.0):
        super().__init__(weight, teachers)
        self.dist_factor, self.angle_factor = float(dist_factor), float(angle_factor)

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        parts = [
            losses.rkd_loss(
                ctx.student_features, ctx.teacher_features[t].float(), self.dist_factor, self.angle_factor
            )
            for t in self.teachers
        ]
        return torch.stack(parts).mean()


class SDDTerm(LossTerm):
    """SDD: ``MSE(SDB(f_s), φ_vit(f_vit) − φ_cnn(f_cnn))`` (:mod:`.sdd`).

    Args:
        vit, cnn: names of the heterogeneous and homogeneous teachers.
        proj_dim: width of the residual target.
        feature_module: student sub-module whose output the SDB reads (null: the pooled features).
        sdb_width, non_local, se: the SDB's size and blocks (non-local + SE by default).
        normalize_target: layer-normalise each projected teacher feature before the difference
            (reconstruction: keeps the target's scale independent of the teachers' feature scales).
        train_projectors: let gradients reach φ (default: fixed random orthogonal projectors).
    """

    def __init__(
        self,
        weight: float = 1.0,
        vit: str = "vit",
        cnn: str = "cnn",
        proj_dim: int = 128,
        feature_module: str | None = None,
        sdb_width: int = 64,
        non_local: bool = True,
        se: bool = True,
        normalize_target: bool = True,
        train_projectors: bool = False,
    ):
        super().__init__(weight, (vit, cnn))
        self.vit, self.cnn = str(vit), str(cnn)
        self.proj_dim = int(proj_dim)
        self.feature_module = feature_module
        self.sdb_width = int(sdb_width)
        self.non_local, self.se = bool(non_local), bool(se)
        self.normalize_target = bool(normalize_target)
        self.train_projectors = bool(train_projectors)

    @property
    def feature_modules(self) -> list[str]:
        return [self.feature_module] if self.feature_module else []

    def bind(self, info: BindInfo) -> None:
        in_ch = (
            info.feature_map_channels[self.feature_module]
            if self.feature_module
            else info.student_feature_dim
        )
        self.sdb = StructureDiscrepancyBranch(in_ch, self.proj_dim, self.sdb_width, self.non_local, self.se)
        self.residual = ResidualTarget(
            info.teacher_feature_dims[self.vit],
            info.teacher_feature_dims[self.cnn],
            self.proj_dim,
            trainable=self.train_projectors,
        )

    def residual_target(self, f_vit: torch.Tensor, f_cnn: torch.Tensor) -> torch.Tensor:
        p_vit = self.residual.phi_vit(f_vit.float())
        p_cnn = self.residual.phi_cnn(f_cnn.float())
        if self.normalize_target:
            p_vit = F.layer_norm(p_vit, p_vit.shape[-1:])
            p_cnn = F.layer_norm(p_cnn, p_cnn.shape[-1:])
        return p_vit - p_cnn

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        source = ctx.feature_maps[self.feature_module] if self.feature_module else ctx.student_features
        target = self.residual_target(ctx.teacher_features[self.vit], ctx.teacher_features[self.cnn])
        if self.train_projectors:
            return F.mse_loss(self.sdb(source), target)
        return losses.sdd_mse(self.sdb(source), target)


class OFATerm(_FusedTerm):
    """OFA-KD style baseline (Hao et al., NeurIPS 2023): projectors map intermediate student
    features (forward hooks on ``stage_modules``) to logit space; each branch and the final logits
    learn the (fused) teacher target with the OFA loss (:func:`.losses.ofa_loss`), averaged.
    The projectors are training-only, like the SDB. Projector = global pool → MLP (the paper uses
    stage-specific conv/attention blocks: simplified here, a documented deviation)."""

    def __init__(
        self, weight=1.0, teachers=("vit",), fusion=None, temperature=1.0, eps=1.0, stage_modules=()
    ):
        super().__init__(weight, teachers, fusion, temperature)
        self.eps = float(eps)
        self.stage_modules = [str(m) for m in stage_modules]

    @property
    def feature_modules(self) -> list[str]:
        return list(self.stage_modules)

    def bind(self, info: BindInfo) -> None:
        self.projectors = nn.ModuleDict(
            {
                name.replace(".", "_"): nn.Sequential(
                    nn.Linear(info.feature_map_channels[name], 256),
                    nn.ReLU(),
                    nn.Linear(256, info.num_classes),
                )
                for name in self.stage_modules
            }
        )

    def forward(self, ctx: DistillContext) -> torch.Tensor:
        z_t = self.target(ctx, "ofa")
        logits = [ctx.student_logits]
        for name in self.stage_modules:
            fmap = ctx.feature_maps[name]
            pooled = fmap.flatten(2).mean(-1) if fmap.dim() > 2 else fmap
            logits.append(self.projectors[name.replace(".", "_")](pooled))
        parts = [losses.ofa_loss(z, z_t, ctx.labels, self.eps, self.temperature) for z in logits]
        return torch.stack(parts).mean()
