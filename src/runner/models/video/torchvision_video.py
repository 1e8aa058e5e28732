"""torchvision video classifiers with a split head (features | classifier).

Wraps the builders of :mod:`torchvision.models.video` (always ``weights=None``; this project
runs offline, load local files with ``checkpoint``):

=============  =====================================  ==============  =========================
arch           paper                                  pooled feature  original head
=============  =====================================  ==============  =========================
r3d_18         Tran et al., CVPR 2018 (R3D)           512             ``fc``
mc3_18         Tran et al., CVPR 2018 (MC3)           512             ``fc``
r2plus1d_18    Tran et al., CVPR 2018 (R(2+1)D)       512             ``fc``
s3d            Xie et al., ECCV 2018 (S3D)            1024            ``classifier`` = Dropout(0.2), 1x1x1 conv
mvit_v2_s      Li et al., CVPR 2022 (MViTv2-S)        768             ``head`` = Dropout(0.5), Linear
swin3d_t       Liu et al., CVPR 2022 (Video Swin-T)   768             ``head`` = Linear
=============  =====================================  ==============  =========================

The original head is replaced by ``nn.Identity`` inside ``self.backbone`` and re-created as
``self.dropout`` + ``self.classifier`` (a Linear). For s3d the 1x1x1 classifier conv followed by
a spatio-temporal mean equals a Linear applied after the mean, so the split is exact; its
1024-d feature is the mean of the (2, 7, 7) average-pooled map. Deviation: when the feature map
is smaller than that pooling window (inputs below 16x224x224 frames) s3d falls back to a global
average instead of failing. Input requirements: mvit_v2_s needs exactly 16 frames of 224x224
(fixed positional embeddings); s3d needs T >= 8 and H, W >= 64; the others take any clip
>= 1x32x32 (swin3d_t pads to its 8x7x7 window).

Original torchvision checkpoints (``fc.*``, ``classifier.1.*``, ``head.1.*``, ``head.*`` keys)
load directly through ``_checkpoint_key_map``.
"""

from __future__ import annotations

import torch
import torchvision.models.video as tv_video
from torch import nn

from runner.errors import invalid_value
from runner.models.checkpoint import load_local_weights

#: arch -> (name of the original head inside the torchvision model, feature dim, default dropout)
TORCHVISION_VIDEO_ARCHS: dict[str, tuple[str, int, float]] = {
    "r3d_18": ("fc", 512, 0.0),
    "mc3_18": ("fc", 512, 0.0),
    "r2plus1d_18": ("fc", 512, 0.0),
    "s3d": ("classifier", 1024, 0.2),
    "mvit_v2_s": ("head", 768, 0.5),
    "swin3d_t": ("head", 768, 0.0),
}


class TorchvisionVideoNet(nn.Module):
    """A torchvision video model with ``forward_features`` / ``classify``.

    Args:
        arch: one of :data:`TORCHVISION_VIDEO_ARCHS`.
        num_classes: classifier outputs (passed by train.py).
        checkpoint: optional local weight file (ours or an original torchvision one).
        dropout: dropout before the classifier; ``None`` keeps the original model's
            (0 for the ResNets and swin3d_t, 0.2 for s3d, 0.5 for mvit_v2_s).
    """

    _head_prefixes = ("classifier.",)

    def __init__(
        self,
        arch: str,
        num_classes: int,
        checkpoint: str | None = None,
        dropout: float | None = None,
    ):
        super().__init__()
        if arch not in TORCHVISION_VIDEO_ARCHS:
            raise invalid_value("model.arch", arch, f"one of {', '.join(TORCHVISION_VIDEO_ARCHS)}")
        head_name, feat_dim, default_dropout = TORCHVISION_VIDEO_ARCHS[arch]
        self.arch = arch
        self._orig_head = head_name
        self.backbone = getattr(tv_video, arch)(weights=None)
        setattr(self.backbone, head_name, nn.Identity())
        self.feature_dim = feat_dim
        self.dropout = nn.Dropout(default_dropout if dropout is None else float(dropout))
        self.classifier = nn.Linear(feat_dim, num_classes)
        if checkpoint:
            load_local_weights(self, checkpoint)

    def _checkpoint_key_map(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename original torchvision keys (no ``backbone.`` prefix, own head) to ours."""
        if any(k.startswith("backbone.") for k in sd):
            return sd
        out: dict[str, torch.Tensor] = {}
        for k, v in sd.items():
            if self.arch == "s3d" and k.startswith("classifier.1."):
                k = "classifier." + k[len("classifier.1.") :]
                v = v.flatten(1) if v.dim() == 5 else v
            elif self.arch == "mvit_v2_s" and k.startswith("head.1."):
                k = "classifier." + k[len("head.1.") :]
            elif k.startswith(self._orig_head + "."):
                k = "classifier." + k[len(self._orig_head) + 1 :]
            elif not k.startswith("classifier."):
                k = "backbone." + k
            out[k] = v
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch == "s3d":
            f = self.backbone.features(x)
            k = self.backbone.avgpool.kernel_size
            if all(s >= w for s, w in zip(f.shape[2:], k, strict=True)):
                f = self.backbone.avgpool(f)
            return f.mean(dim=(2, 3, 4))
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))
