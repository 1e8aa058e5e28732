"""Temporal sampling: which frame indices of a video (or segment) make up a clip.

Two standard schemes, both pure functions returning a ``torch.LongTensor`` of 0-based indices
relative to the start of the video/segment:

- :func:`uniform_segment_indices` -- TSN (Wang et al., 2016): split the frames into
  ``num_segments`` equal segments and take one frame from each (random offset when training,
  segment centre when evaluating).
- :func:`dense_indices` -- SlowFast/X3D-style ``clip_len x stride`` clips: ``clip_len`` frames
  ``stride`` apart starting at a random position (train) or centred (eval); too-short videos are
  padded by repeating their last frame.
"""

from __future__ import annotations

import torch

__all__ = ["uniform_segment_indices", "dense_indices"]


def _check(num_frames: int, count: int, what: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if count < 1:
        raise ValueError(f"{what} must be >= 1, got {count}")


def uniform_segment_indices(
    num_frames: int, num_segments: int, train: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """TSN segment sampling: one index per equal-length segment of ``range(num_frames)``.

    Segment ``k`` covers ``[k * L, (k + 1) * L)`` with ``L = num_frames / num_segments``. When
    ``train`` the index is drawn uniformly inside the segment, otherwise it is the segment centre.
    With fewer frames than segments indices repeat (still non-decreasing, within range).
    """
    _check(num_frames, num_segments, "num_segments")
    seg = num_frames / num_segments
    starts = torch.arange(num_segments, dtype=torch.float64) * seg
    if train:
        offsets = torch.rand(num_segments, generator=generator, dtype=torch.float64) * seg
    else:
        offsets = torch.full((num_segments,), seg / 2.0, dtype=torch.float64)
    idx = torch.floor(starts + offsets).long()
    return idx.clamp_(0, num_frames - 1)


def dense_indices(
    num_frames: int, clip_len: int, stride: int, train: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Dense ``clip_len x stride`` sampling: ``start + stride * arange(clip_len)``.

    The clip spans ``(clip_len - 1) * stride + 1`` frames. When the video is long enough the start
    is uniform over all valid positions when ``train`` and centred otherwise; when it is too short
    the clip starts at 0 and indices past the end repeat the last frame.
    """
    _check(num_frames, clip_len, "clip_len")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    span = (clip_len - 1) * stride + 1
    if num_frames >= span:
        room = num_frames - span
        if train:
            start = int(torch.randint(0, room + 1, (1,), generator=generator).item())
        else:
            start = room // 2
    else:
        start = 0
    idx = start + torch.arange(clip_len, dtype=torch.long) * stride
    return idx.clamp_(0, num_frames - 1)
