"""Clip transforms on tensors: ``uint8 [T, H, W, 3]`` -> normalised ``float32 [C, T, H, W]``.

Train: short-side scale jitter, random crop, random horizontal flip. Eval: resize the short side,
centre crop. Resizing runs on the ``uint8`` frames (torchvision's fast path) after the crop box has
been chosen on the resized geometry, so the cost is one resize + one slice per clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ["KINETICS_MEAN", "KINETICS_STD", "ClipTransform"]

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def _rand_int(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


class ClipTransform:
    """Spatial augmentation + normalisation of one clip.

    Args:
        train: random (train) or deterministic (eval) geometry.
        crop_size: side of the square output crop.
        short_side: the short side is resized to this before cropping; an ``(min, max)`` pair gives
            scale jitter when training (eval uses the integer midpoint).
        flip_prob: probability of a horizontal flip (train only).
        mean, std: per-channel normalisation of ``[0, 1]`` pixel values.
    """

    def __init__(
        self,
        train: bool,
        crop_size: int = 112,
        short_side: int | Sequence[int] = 128,
        flip_prob: float = 0.5,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
    ):
        self.train = bool(train)
        self.crop_size = int(crop_size)
        if isinstance(short_side, int | float):
            lo = hi = int(short_side)
        else:
            lo, hi = (int(v) for v in short_side)
        if lo > hi:
            lo, hi = hi, lo
        lo = max(lo, self.crop_size)
        hi = max(hi, lo)
        self.short_side = (lo, hi)
        self.flip_prob = float(flip_prob)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1, 1)

    def __call__(
        self, clip: torch.Tensor, generator: torch.Generator | None = None, flip: bool | None = None
    ) -> torch.Tensor:
        """Transform ``clip`` (``uint8 [T, H, W, 3]``) into ``float32 [3, T, crop, crop]``.

        ``flip`` forces the flip decision (used to keep several views of one clip consistent);
        ``None`` draws it with ``flip_prob`` when training.
        """
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"expected a clip [T, H, W, 3], got shape {tuple(clip.shape)}")
        x = clip.permute(0, 3, 1, 2)  # [T, 3, H, W]
        h, w = x.shape[-2:]
        lo, hi = self.short_side
        s = _rand_int(lo, hi, generator) if self.train else (lo + hi) // 2
        if h <= w:
            nh, nw = s, max(self.crop_size, round(w * s / h))
        else:
            nh, nw = max(self.crop_size, round(h * s / w)), s
        if (nh, nw) != (h, w):
            x = TF.resize(x.contiguous(), [nh, nw], antialias=True)
        c = self.crop_size
        if self.train:
            top = _rand_int(0, nh - c, generator)
            left = _rand_int(0, nw - c, generator)
        else:
            top, left = (nh - c) // 2, (nw - c) // 2
        x = x[..., top : top + c, left : left + c]
        if flip is None:
            flip = (
                self.train
                and self.flip_prob > 0
                and (float(torch.rand(1, generator=generator).item()) < self.flip_prob)
            )
        if flip:
            x = x.flip(-1)
        x = x.permute(1, 0, 2, 3).float().div_(255.0)  # [3, T, c, c]
        return x.sub_(self.mean).div_(self.std)
