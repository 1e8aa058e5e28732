"""Skeleton layouts: joint names, bone edges, the centre joint and the body roles the affective
features need (card "Data": E-Gait 16-joint, NTU RGB+D 25-joint, COCO 17-keypoint).

A layout is data, not code: :data:`LAYOUTS` maps the config name (``dataset.layout``) to a
:class:`SkeletonLayout`; the graph partitions built from it live in :mod:`runner.models.skeleton.graph`.

Joint roles (:attr:`SkeletonLayout.roles`) name the joints STEP's affective features use (root, spine,
neck, head, shoulders, hands, feet). A role is a list of joint indices whose mean is the role's
position, so layouts without a joint of that name still have it (COCO has no root: the mid-hip point).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.errors import invalid_value

#: the roles :mod:`runner.data.skeleton.affective` reads
ROLE_NAMES = (
    "root",
    "spine",
    "neck",
    "head",
    "right_shoulder",
    "left_shoulder",
    "right_hand",
    "left_hand",
    "right_foot",
    "left_foot",
)


@dataclass(frozen=True)
class SkeletonLayout:
    """One skeleton: ``num_joints`` joints, undirected bone ``edges``, the ``center`` joint of the
    ST-GCN spatial partition, and the joint indices of each affective-feature role."""

    name: str
    joint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: int
    roles: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def __post_init__(self) -> None:
        for a, b in self.edges:
            if not (0 <= a < self.num_joints and 0 <= b < self.num_joints):
                raise ValueError(f"layout {self.name}: edge ({a}, {b}) outside 0..{self.num_joints - 1}")
        missing = set(ROLE_NAMES) - set(self.roles)
        if missing:
            raise ValueError(f"layout {self.name}: roles {sorted(missing)} are not defined")


# E-Gait / STEP (card): 0 root, 1 spine, 2 neck, 3 head, 4/5/6 right shoulder/elbow/hand, 7/8/9 left,
# 10/11/12 right hip/knee/foot, 13/14/15 left; centre 0
EGAIT16 = SkeletonLayout(
    name="egait16",
    joint_names=(
        "root",
        "spine",
        "neck",
        "head",
        "right_shoulder",
        "right_elbow",
        "right_hand",
        "left_shoulder",
        "left_elbow",
        "left_hand",
        "right_hip",
        "right_knee",
        "right_foot",
        "left_hip",
        "left_knee",
        "left_foot",
    ),
    edges=(
        (0, 1),
        (0, 10),
        (0, 13),
        (1, 2),
        (2, 3),
        (2, 4),
        (2, 7),
        (4, 5),
        (5, 6),
        (7, 8),
        (8, 9),
        (10, 11),
        (11, 12),
        (13, 14),
        (14, 15),
    ),
    center=0,
    roles={
        "root": (0,),
        "spine": (1,),
        "neck": (2,),
        "head": (3,),
        "right_shoulder": (4,),
        "left_shoulder": (7,),
        "right_hand": (6,),
        "left_hand": (9,),
        "right_foot": (12,),
        "left_foot": (15,),
    },
)

# NTU RGB+D (Kinect v2), 0-based: the 25 joints of the .skeleton files; the centre is the
# spine-shoulder joint (21 in the 1-based numbering), as in ST-GCN and PYSKL
NTU25 = SkeletonLayout(
    name="ntu25",
    joint_names=(
        "spine_base",
        "spine_mid",
        "neck",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "left_hand",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "right_hand",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
        "spine_shoulder",
        "left_hand_tip",
        "left_thumb",
        "right_hand_tip",
        "right_thumb",
    ),
    edges=tuple(
        (a - 1, b - 1)
        for a, b in (
            (1, 2),
            (2, 21),
            (3, 21),
            (4, 3),
            (5, 21),
            (6, 5),
            (7, 6),
            (8, 7),
            (9, 21),
            (10, 9),
            (11, 10),
            (12, 11),
            (13, 1),
            (14, 13),
            (15, 14),
            (16, 15),
            (17, 1),
            (18, 17),
            (19, 18),
            (20, 19),
            (22, 23),
            (23, 8),
            (24, 25),
            (25, 12),
        )
    ),
    center=20,
    roles={
        "root": (0,),
        "spine": (1,),
        "neck": (20,),
        "head": (3,),
        "right_shoulder": (8,),
        "left_shoulder": (4,),
        "right_hand": (11,),
        "left_hand": (7,),
        "right_foot": (19,),
        "left_foot": (15,),
    },
)

# COCO 17 keypoints (2-D pose estimators, PYSKL's 2-D pickles); centre 0 (nose) as in PYSKL's
# 'coco' layout. No root / spine / neck joint: they are the mid-hip, the mid-torso and the
# mid-shoulder points.
COCO17 = SkeletonLayout(
    name="coco17",
    joint_names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    edges=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 5),
        (12, 6),
        (9, 7),
        (7, 5),
        (10, 8),
        (8, 6),
        (5, 0),
        (6, 0),
        (1, 0),
        (3, 1),
        (2, 0),
        (4, 2),
    ),
    center=0,
    roles={
        "root": (11, 12),
        "spine": (5, 6, 11, 12),
        "neck": (5, 6),
        "head": (0,),
        "right_shoulder": (6,),
        "left_shoulder": (5,),
        "right_hand": (10,),
        "left_hand": (9,),
        "right_foot": (16,),
        "left_foot": (15,),
    },
)

LAYOUTS: dict[str, SkeletonLayout] = {layout.name: layout for layout in (EGAIT16, NTU25, COCO17)}


def get_layout(name: str, key: str = "dataset.layout") -> SkeletonLayout:
    """The layout called ``name``; an unknown name is a one-line config error naming ``key``."""
    try:
        return LAYOUTS[str(name)]
    except KeyError:
        raise invalid_value(key, name, "one of " + ", ".join(LAYOUTS)) from None
