"""2D image backbones applied per frame: temporal average pooling and TSM.

``temporal="avg"`` is the TSN-style baseline (Wang et al., ECCV 2016): a 2D network (any timm
model) embeds each frame and the per-frame features are averaged over time.

``temporal="tsm"`` adds the Temporal Shift Module (Lin, Gan & Han, "TSM: Temporal Shift Module
for Efficient Video Understanding", ICCV 2019): along the channel dimension, a fraction
(1/8) of the channels is shifted one frame backward in time (frame t receives frame t+1), another
1/8 one frame forward (frame t receives frame t-1), the rest is unchanged and vacated positions
at the clip boundaries are zero (Fig. 1b, "zero padding"). The shift is placed in the residual
branch, before the first conv of every residual block ("residual shift", Sec. 3.3/Fig. 3b),
implemented here by replacing ``block.conv1`` of each timm ResNet ``BasicBlock``/``Bottleneck``
with :class:`TemporalShiftConv2d` (same parameters and state-dict keys, so ImageNet-style
ResNet weights load unchanged). The number of frames is taken from each input batch, so a model
built with ``num_segments=8`` also runs on clips of any other length.
"""

from __future__ import annotations

import torch
from torch import nn

from runner.errors import invalid_value
from runner.models.checkpoint import load_local_weights

TEMPORAL_MODES = ("avg", "tsm")


def temporal_shift(x: torch.Tensor, num_frames: int, shift_fraction: float = 1 / 8) -> torch.Tensor:
    """Shift channels of ``x`` ``[B*T, C, H, W]`` in time (TSM, Lin et al. 2019, Fig. 1b).

    Channels ``[0, fold)`` take the value of the next frame (shift backward in time),
    channels ``[fold, 2*fold)`` the value of the previous frame (shift forward), with zeros where
    no such frame exists; the remaining channels are unchanged. ``fold = int(C * shift_fraction)``.
    """
    bt, c, h, w = x.shape
    if bt % num_frames:
        raise ValueError(f"batch of {bt} frames is not a multiple of num_frames={num_frames}")
    fold = int(c * shift_fraction)
    v = x.view(bt // num_frames, num_frames, c, h, w)
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(bt, c, h, w)


class TemporalShiftConv2d(nn.Conv2d):
    """A ``Conv2d`` that applies :func:`temporal_shift` to its input first.

    ``num_frames`` is set by :class:`FrameTimmNet` from every batch before the backbone runs.
    """

    num_frames: int = 1
    shift_fraction: float = 1 / 8

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, shift_fraction: float) -> TemporalShiftConv2d:
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        new.load_state_dict(conv.state_dict())
        new.shift_fraction = shift_fraction
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(temporal_shift(x, self.num_frames, self.shift_fraction))


def insert_temporal_shift(backbone: nn.Module, shift_fraction: float = 1 / 8) -> int:
    """Replace ``conv1`` of every timm ResNet block with :class:`TemporalShiftConv2d`; return the count."""
    from timm.models.resnet import BasicBlock, Bottleneck

    n = 0
    for m in backbone.modules():
        if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(m.conv1, nn.Conv2d):
            if not isinstance(m.conv1, TemporalShiftConv2d):
                m.conv1 = TemporalShiftConv2d.from_conv(m.conv1, shift_fraction)
            n += 1
    return n


class FrameTimmNet(nn.Module):
    """Per-frame timm 2D backbone + temporal average (TSN) or TSM, for clips ``[B, 3, T, H, W]``.

    Args:
        backbone: a timm model name (built with ``pretrained=False, num_classes=0``).
        num_classes: classifier outputs (passed by train.py).
        temporal: ``"avg"`` or ``"tsm"`` (TSM needs a timm ResNet: resnet18/34/50/...).
        num_segments: frames per clip the data pipeline is configured for (TSM paper: 8). The
            model does not rely on it: the shift uses the T of each input.
        shift_fraction: channels shifted per direction (1/8 in the paper).
        checkpoint: optional local weight file (ours, or a plain timm ResNet's: its ``fc`` is
            treated as the classifier and skipped when the class count differs).
        dropout: before the classifier (0.5 in TSM's Kinetics setup).
    """

    _head_prefixes = ("classifier.",)

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        temporal: str = "avg",
        num_segments: int = 8,
        shift_fraction: float = 1 / 8,
        checkpoint: str | None = None,
        dropout: float = 0.5,
    ):
        super().__init__()
        import timm

        if temporal not in TEMPORAL_MODES:
            raise invalid_value("model.temporal", temporal, f"one of {', '.join(TEMPORAL_MODES)}")
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        except RuntimeError as e:  # timm: "Unknown model (...)"
            raise invalid_value("model.backbone", backbone, f"a timm model name ({e})") from e
        if not 0.0 <= float(shift_fraction) <= 0.5:
            raise invalid_value("model.shift_fraction", shift_fraction, "a fraction in [0, 0.5]")
        self.temporal = temporal
        self.num_segments = int(num_segments)
        self._timm_head = str(getattr(self.backbone, "pretrained_cfg", {}).get("classifier") or "fc")
        if temporal == "tsm":
            if insert_temporal_shift(self.backbone, shift_fraction) == 0:
                raise invalid_value(
                    "model.temporal", "tsm", "tsm needs a timm ResNet backbone (resnet18/34/50...)"
                )
        self.feature_dim = int(self.backbone.num_features)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        if checkpoint:
            load_local_weights(self, checkpoint)

    def _checkpoint_key_map(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept a plain timm checkpoint: prefix ``backbone.``, its head becomes ``classifier``."""
        if any(k.startswith("backbone.") for k in sd):
            return sd
        head = self._timm_head + "."
        out = {}
        for k, v in sd.items():
            if k.startswith(head):
                out["classifier." + k[len(head) :]] = v
            elif not k.startswith("classifier."):
                out["backbone." + k] = v
            else:
                out[k] = v
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        if self.temporal == "tsm":
            for m in self.backbone.modules():
                if isinstance(m, TemporalShiftConv2d):
                    m.num_frames = t
        f = self.backbone(frames)
        return f.view(b, t, -1).mean(dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))
