"""STEP's affective features (Bhattacharya et al., AAAI 2020; card "Read from STEP"), as pure
functions over a batch of sequences.

The 27 features of STEP's ``compute_aff_features/compute_features.py`` (29 with stride), each the
mean over a sequence's valid frames of a per-frame posture quantity or a finite-difference motion
quantity (``dt`` = 1/30 s):

====  =================================================================
 0    volume of the joints' axis-aligned bounding box
 1    angle at the neck between the two shoulders
 2    angle at the right shoulder between the neck and the left shoulder
 3    angle at the left shoulder between the neck and the right shoulder
 4    angle between the root→head vector and the vertical ("up") axis
 5    angle at the neck between the head and the spine
 6-9  distance of the right hand, left hand, right foot, left foot to the root
10    area of the triangle left hand – neck – right hand
11    area of the triangle left foot – root – right foot
12-16 mean speed of the right hand, left hand, head, right foot, left foot
17-21 mean acceleration magnitude of the same joints
22-26 mean jerk magnitude of the same joints
27    stride length in frames (mean gap between foot strikes, both feet)
28    gait cycle time (27 × dt)
====  =================================================================

Angles are in degrees, as in STEP. Deviations from STEP's code, all documented here:
- STEP's constant rescalings (volume / 1000, distances and motion / 10, areas / 100) are left out:
  the features are min-max (or z-score) normalised afterwards, which cancels any constant scale.
- STEP's per-frame bounding box uses ``if … elif`` so a joint can update the minimum or the maximum
  but not both (the first joint never sets a maximum); here it is the true bounding box.
- Triangle areas use ``|AB × AC| / 2`` instead of Heron's formula (equal, without Heron's rounding
  error for thin triangles).
- A foot strike is a frame whose height is below the previous frame's and not above the next one's
  (one strike per flat minimum; STEP's plateau rule alternates along a flat run), and the one-foot
  fallback does not add STEP's ``+ 1``.

Joints are taken by role (:attr:`runner.data.skeleton.layouts.SkeletonLayout.roles`), so the features
exist for every layout; 2-D data is padded with a zero depth (the volume is then 0). Sequences of
different lengths are batched by padding to the longest and passing ``lengths``; every mean is over
the valid frames only (a motion term needs 2, 3 or 4 valid frames; with fewer it is 0).

Normalisation is fitted on the training split only (:class:`FeatureScaler`): STEP min-max normalises
over the whole dataset, which leaks the test set's range into training.
"""

from __future__ import annotations

import math

import torch

from runner.data.skeleton.layouts import SkeletonLayout
from runner.errors import invalid_value

MOTION_JOINTS = ("right_hand", "left_hand", "head", "right_foot", "left_foot")
FEATURE_NAMES: tuple[str, ...] = (
    "volume",
    "angle_neck_shoulders",
    "angle_right_shoulder",
    "angle_left_shoulder",
    "angle_back_vertical",
    "angle_neck_head_spine",
    "dist_right_hand_root",
    "dist_left_hand_root",
    "dist_right_foot_root",
    "dist_left_foot_root",
    "area_hands_neck",
    "area_feet_root",
    *(f"speed_{j}" for j in MOTION_JOINTS),
    *(f"acceleration_{j}" for j in MOTION_JOINTS),
    *(f"jerk_{j}" for j in MOTION_JOINTS),
)
STRIDE_FEATURE_NAMES: tuple[str, ...] = ("stride_frames", "gait_cycle_s")
DEFAULT_DT = 1.0 / 30.0


def feature_names(with_stride: bool = False) -> list[str]:
    """Names of the 27 (29 with stride) features, in column order."""
    return list(FEATURE_NAMES) + (list(STRIDE_FEATURE_NAMES) if with_stride else [])


# ---- helpers --------------------------------------------------------------------------------------
def frame_mask(
    lengths: torch.Tensor | None, num_sequences: int, num_frames: int, device=None
) -> torch.Tensor:
    """``[N, T]`` bool: frame ``t`` of sequence ``n`` is valid (``t < lengths[n]``; all if None)."""
    if lengths is None:
        return torch.ones(num_sequences, num_frames, dtype=torch.bool, device=device)
    steps = torch.arange(num_frames, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [N, T']`` over the True entries of ``mask [N, T']`` (0 where none)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def role_positions(joints: torch.Tensor, layout: SkeletonLayout) -> dict[str, torch.Tensor]:
    """``[N, T, 3]`` position of every role (the mean of its joints)."""
    return {role: joints[:, :, list(index)].mean(2) for role, index in layout.roles.items()}


def to_3d(joints: torch.Tensor) -> torch.Tensor:
    """``[N, T, V, 3]``: the first three coordinates, 2-D data padded with a zero depth."""
    if joints.shape[-1] >= 3:
        return joints[..., :3]
    pad = torch.zeros(*joints.shape[:-1], 3 - joints.shape[-1], dtype=joints.dtype, device=joints.device)
    return torch.cat([joints, pad], dim=-1)


# ---- posture ---------------------------------------------------------------------------------------
def bounding_box_volume(joints: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` volume of the axis-aligned box around all joints of each frame (``[N, T, V, 3]``)."""
    extent = joints.amax(2) - joints.amin(2)
    return extent.prod(-1)


def angle_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between vectors ``u`` and ``v`` (``[..., 3]``); 0 for a zero vector."""
    dot = (u * v).sum(-1)
    norms = u.norm(dim=-1) * v.norm(dim=-1)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(1e-12), torch.ones_like(dot))
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def angle_at(vertex: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees at ``vertex`` between the rays to ``a`` and ``b``."""
    return angle_between(a - vertex, b - vertex)


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between points ``a`` and ``b`` (``[..., 3]``)."""
    return (a - b).norm(dim=-1)


def triangle_area(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Area of the triangle ``a b c`` (``[..., 3]``): ``|ab × ac| / 2``."""
    return torch.linalg.cross(b - a, c - a, dim=-1).norm(dim=-1) / 2


# ---- motion ----------------------------------------------------------------------------------------
def finite_difference(position: torch.Tensor, order: int, dt: float) -> torch.Tensor:
    """``order``-th backward difference of ``position [N, T, 3]`` divided by ``dt**order``:
    ``[N, T - order, 3]`` (velocity, acceleration, jerk for order 1, 2, 3)."""
    out = position
    for _ in range(order):
        out = (out[:, 1:] - out[:, :-1]) / dt
    return out


def mean_motion(position: torch.Tensor, order: int, dt: float, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean magnitude of the ``order``-th derivative over the frames where it is defined
    (frame ``t`` needs frames ``t - order .. t`` valid: ``mask[:, order:]``)."""
    magnitude = finite_difference(position, order, dt).norm(dim=-1)
    return masked_mean(magnitude, mask[:, order:])


def mean_speed(position: torch.Tensor, dt: float, mask: torch.Tensor) -> torch.Tensor:
    return mean_motion(position, 1, dt, mask)


def mean_acceleration(position: torch.Tensor, dt: float, mask: torch.Tensor) -> torch.Tensor:
    return mean_motion(position, 2, dt, mask)


def mean_jerk(position: torch.Tensor, dt: float, mask: torch.Tensor) -> torch.Tensor:
    return mean_motion(position, 3, dt, mask)


def foot_strikes(height: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` bool: frame ``t`` is a foot strike — strictly lower than frame ``t - 1`` and not
    higher than frame ``t + 1`` (both valid)."""
    strikes = torch.zeros_like(mask)
    if height.shape[1] < 3:
        return strikes
    prev, curr, nxt = height[:, :-2], height[:, 1:-1], height[:, 2:]
    strikes[:, 1:-1] = (prev > curr) & (curr <= nxt) & mask[:, 2:]
    return strikes


def stride_frames(right_height: torch.Tensor, left_height: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean number of frames between consecutive strikes of the same foot, pooled over both
    feet (STEP's feature 27); a foot with fewer than two strikes is left out, and with neither foot
    the sequence length is used (STEP's fallback)."""
    steps = torch.arange(mask.shape[1], device=mask.device, dtype=right_height.dtype)
    spans, gaps = [], []
    for height in (right_height, left_height):
        strikes = foot_strikes(height, mask)
        count = strikes.sum(1).to(height.dtype)
        first = torch.where(strikes, steps, torch.full_like(steps, math.inf)).amin(1)
        last = torch.where(strikes, steps, torch.full_like(steps, -math.inf)).amax(1)
        usable = count >= 2
        spans.append(torch.where(usable, last - first, torch.zeros_like(count)))
        gaps.append(torch.where(usable, count - 1, torch.zeros_like(count)))
    total_gaps = gaps[0] + gaps[1]
    length = mask.sum(1).to(right_height.dtype)
    return torch.where(total_gaps > 0, (spans[0] + spans[1]) / total_gaps.clamp_min(1), length)


# ---- all features ---------------------------------------------------------------------------------
def affective_features(
    joints: torch.Tensor,
    layout: SkeletonLayout,
    lengths: torch.Tensor | None = None,
    dt: float = DEFAULT_DT,
    with_stride: bool = False,
    up_axis: int = 1,
) -> torch.Tensor:
    """``[N, 27]`` (``[N, 29]`` with stride) affective features of ``joints [N, T, V, C]`` (C = 2 or 3,
    frames beyond ``lengths[n]`` ignored); ``up_axis`` is the vertical coordinate (y in E-Gait)."""
    if joints.dim() != 4:
        raise ValueError(f"joints must be [N, T, V, C], got shape {tuple(joints.shape)}")
    if joints.shape[2] != layout.num_joints:
        raise ValueError(
            f"joints have {joints.shape[2]} joints, layout {layout.name} has {layout.num_joints}"
        )
    x = to_3d(joints)
    n, t = x.shape[:2]
    mask = frame_mask(lengths, n, t, device=x.device)
    p = role_positions(x, layout)
    up = torch.zeros(3, dtype=x.dtype, device=x.device)
    up[up_axis] = 1.0
    per_frame = [
        bounding_box_volume(x),
        angle_at(p["neck"], p["right_shoulder"], p["left_shoulder"]),
        angle_at(p["right_shoulder"], p["neck"], p["left_shoulder"]),
        angle_at(p["left_shoulder"], p["neck"], p["right_shoulder"]),
        angle_between(p["head"] - p["root"], up.expand_as(p["head"])),
        angle_at(p["neck"], p["head"], p["spine"]),
        distance(p["right_hand"], p["root"]),
        distance(p["left_hand"], p["root"]),
        distance(p["right_foot"], p["root"]),
        distance(p["left_foot"], p["root"]),
        triangle_area(p["left_hand"], p["neck"], p["right_hand"]),
        triangle_area(p["left_foot"], p["root"], p["right_foot"]),
    ]
    columns = [masked_mean(value, mask) for value in per_frame]
    for order in (1, 2, 3):
        columns += [mean_motion(p[joint], order, dt, mask) for joint in MOTION_JOINTS]
    if with_stride:
        stride = stride_frames(p["right_foot"][..., up_axis], p["left_foot"][..., up_axis], mask)
        columns += [stride, stride * dt]
    return torch.stack(columns, dim=1)


class FeatureScaler:
    """Per-feature normalisation fitted on one split (the training split) and applied to all.

    ``kind="minmax"``: ``(x - min) / (max - min)`` (STEP's choice, but STEP fits it on the whole
    dataset); ``kind="standard"``: ``(x - mean) / std``; ``kind="none"``: identity. Constant features
    map to 0. Values of other splits may fall outside [0, 1]: they are not clipped.
    """

    KINDS = ("minmax", "standard", "none")

    def __init__(self, kind: str = "minmax") -> None:
        if kind not in self.KINDS:
            raise invalid_value("dataset.affective.normalization", kind, "one of " + ", ".join(self.KINDS))
        self.kind = kind
        self.offset: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None

    def fit(self, features: torch.Tensor) -> FeatureScaler:
        if features.shape[0] == 0:
            raise ValueError("cannot fit a feature scaler on an empty split")
        if self.kind == "minmax":
            self.offset = features.amin(0)
            spread = features.amax(0) - self.offset
        elif self.kind == "standard":
            self.offset = features.mean(0)
            spread = features.std(0, unbiased=False)
        else:
            self.offset = torch.zeros(features.shape[1], dtype=features.dtype)
            spread = torch.ones(features.shape[1], dtype=features.dtype)
        self.scale = torch.where(spread > 0, spread, torch.ones_like(spread))
        return self

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        if self.offset is None or self.scale is None:
            raise RuntimeError("FeatureScaler.transform before fit")
        return (features - self.offset) / self.scale
