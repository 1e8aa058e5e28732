"""STEP's affective features on hand-made skeletons, against an independent per-frame reference,
and the train-only normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner.data.skeleton.affective import (
    FEATURE_NAMES,
    FeatureScaler,
    affective_features,
    feature_names,
    foot_strikes,
)
from runner.data.skeleton.layouts import COCO17, EGAIT16
from runner.errors import UserError

DT = 1 / 30
COLUMN = {name: i for i, name in enumerate(feature_names(with_stride=True))}

# a standing pose (E-Gait joint order), hands forward: every posture feature has a closed form
POSE = np.array(
    [
        [0.0, 1.0, 0.0],  # 0 root
        [0.0, 1.3, 0.0],  # 1 spine
        [0.0, 1.6, 0.0],  # 2 neck
        [0.0, 1.8, 0.0],  # 3 head
        [-0.2, 1.6, 0.0],  # 4 right shoulder
        [-0.2, 1.3, 0.15],  # 5 right elbow
        [-0.2, 1.0, 0.3],  # 6 right hand
        [0.2, 1.6, 0.0],  # 7 left shoulder
        [0.2, 1.3, 0.15],  # 8 left elbow
        [0.2, 1.0, 0.3],  # 9 left hand
        [-0.1, 1.0, 0.0],  # 10 right hip
        [-0.1, 0.5, 0.0],  # 11 right knee
        [-0.1, 0.0, 0.0],  # 12 right foot
        [0.1, 1.0, 0.0],  # 13 left hip
        [0.1, 0.5, 0.0],  # 14 left knee
        [0.1, 0.0, 0.0],  # 15 left foot
    ]
)


def still(frames: int = 10) -> torch.Tensor:
    return torch.from_numpy(np.repeat(POSE[None], frames, axis=0))[None]  # [1, T, 16, 3] float64


def features_of(joints: torch.Tensor, **kwargs) -> dict[str, float]:
    values = affective_features(joints, EGAIT16, with_stride=True, **kwargs)[0]
    return {name: float(values[i]) for name, i in COLUMN.items()}


def test_there_are_27_features_and_29_with_stride():
    assert len(FEATURE_NAMES) == 27 and len(feature_names(True)) == 29
    assert affective_features(still(), EGAIT16).shape == (1, 27)
    assert affective_features(still(), EGAIT16, with_stride=True).shape == (1, 29)


def test_posture_features_of_a_standing_pose():
    f = features_of(still())
    assert f["volume"] == pytest.approx(0.4 * 1.8 * 0.3)
    assert f["angle_neck_shoulders"] == pytest.approx(180.0)
    assert f["angle_right_shoulder"] == pytest.approx(0.0, abs=1e-4)
    assert f["angle_left_shoulder"] == pytest.approx(0.0, abs=1e-4)
    assert f["angle_back_vertical"] == pytest.approx(0.0, abs=1e-4)
    assert f["angle_neck_head_spine"] == pytest.approx(180.0)
    assert f["dist_right_hand_root"] == pytest.approx(math.sqrt(0.2**2 + 0.3**2))
    assert f["dist_left_hand_root"] == pytest.approx(math.sqrt(0.2**2 + 0.3**2))
    assert f["dist_right_foot_root"] == pytest.approx(math.sqrt(0.1**2 + 1.0))
    assert f["dist_left_foot_root"] == pytest.approx(math.sqrt(0.1**2 + 1.0))
    assert f["area_hands_neck"] == pytest.approx(0.5 * 0.4 * math.sqrt(0.6**2 + 0.3**2))
    assert f["area_feet_root"] == pytest.approx(0.5 * 0.2 * 1.0)
    for name in FEATURE_NAMES[12:]:
        assert f[name] == pytest.approx(0.0, abs=1e-9), name


def test_bent_posture_angles():
    pose = POSE.copy()
    pose[3] = [0.0, 1.6, 0.2]  # head bowed forward, level with the neck: 90 degrees at the neck
    pose[4] = [-0.2, 1.8, 0.0]  # right shoulder raised 45 degrees
    f = features_of(torch.from_numpy(pose)[None, None])
    assert f["angle_neck_head_spine"] == pytest.approx(90.0)
    assert f["angle_back_vertical"] == pytest.approx(math.degrees(math.atan2(0.2, 0.6)))
    assert f["angle_neck_shoulders"] == pytest.approx(135.0)
    # the triangle right shoulder - neck - left shoulder: angles 135 (neck), 45 - 26.57, 26.57
    assert f["angle_right_shoulder"] == pytest.approx(45.0 - math.degrees(math.atan2(0.2, 0.4)))
    assert f["angle_left_shoulder"] == pytest.approx(math.degrees(math.atan2(0.2, 0.4)))


def test_speed_acceleration_jerk_of_uniform_accelerated_and_cubic_motion():
    frames = 12
    t = np.arange(frames) * DT
    base = still(frames)
    direction = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for profile, expected in (
        (1.2 * t, {"speed": 1.2, "acceleration": 0.0, "jerk": 0.0}),
        (0.5 * 2.0 * t**2, {"speed": 2.0 * DT * (frames - 1) / 2, "acceleration": 2.0, "jerk": 0.0}),
        (3.0 / 6 * t**3, {"jerk": 3.0}),
    ):
        moving = base + torch.from_numpy(profile)[None, :, None, None] * direction
        f = features_of(moving)
        for kind, value in expected.items():
            for joint in ("right_hand", "left_hand", "head", "right_foot", "left_foot"):
                assert f[f"{kind}_{joint}"] == pytest.approx(value, abs=1e-6), f"{kind}_{joint}"


def test_only_the_moving_joint_has_speed():
    joints = still(5).clone()
    joints[0, :, 6, 0] = torch.arange(5, dtype=torch.float64) * 0.1  # right hand moves 0.1 m per frame
    f = features_of(joints)
    assert f["speed_right_hand"] == pytest.approx(0.1 / DT)
    assert f["speed_left_hand"] == 0 and f["speed_head"] == 0


def test_stride_from_foot_strikes():
    frames, period = 70, 20
    t = np.arange(frames)
    joints = still(frames).clone()
    joints[0, :, 12, 1] = torch.from_numpy(0.05 * (1 - np.cos(2 * np.pi * t / period)))
    joints[0, :, 15, 1] = torch.from_numpy(0.05 * (1 - np.cos(2 * np.pi * (t - 10) / period)))
    f = features_of(joints)
    assert f["stride_frames"] == pytest.approx(period)
    assert f["gait_cycle_s"] == pytest.approx(period * DT)


def test_stride_falls_back_to_the_sequence_length_without_strikes():
    f = features_of(still(9))
    assert f["stride_frames"] == 9


def test_foot_strike_is_the_first_frame_of_a_flat_minimum():
    height = torch.tensor([[3.0, 2.0, 1.0, 1.0, 1.0, 2.0, 3.0]])
    strikes = foot_strikes(height, torch.ones_like(height, dtype=torch.bool))
    assert strikes.nonzero()[:, 1].tolist() == [2]


def test_padded_frames_are_ignored():
    rng = np.random.default_rng(0)
    short = torch.from_numpy(rng.normal(size=(1, 7, 16, 3)))
    padded = torch.cat([short, torch.from_numpy(rng.normal(size=(1, 5, 16, 3)) * 100)], dim=1)
    batch = torch.cat([padded, torch.from_numpy(rng.normal(size=(1, 12, 16, 3)))])
    together = affective_features(batch, EGAIT16, lengths=torch.tensor([7, 12]), with_stride=True)
    alone = affective_features(short, EGAIT16, with_stride=True)
    torch.testing.assert_close(together[0], alone[0])


def _reference(frames: np.ndarray) -> list[float]:
    """STEP's per-frame loops, written independently (Heron areas, true bounding boxes)."""

    def angle(v1, v2):
        cos = np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2))
        return math.degrees(math.acos(max(-1.0, min(1.0, cos))))

    def heron(a, b, c):
        x, y, z = np.linalg.norm(a - b), np.linalg.norm(a - c), np.linalg.norm(b - c)
        s = (x + y + z) / 2
        return math.sqrt(max(s * (s - x) * (s - y) * (s - z), 0.0))

    per_frame = []
    for f in frames:
        per_frame.append(
            [
                float(np.prod(f.max(0) - f.min(0))),
                angle(f[4] - f[2], f[7] - f[2]),
                angle(f[2] - f[4], f[7] - f[4]),
                angle(f[2] - f[7], f[4] - f[7]),
                angle(f[3] - f[0], np.array([0.0, 1.0, 0.0])),
                angle(f[3] - f[2], f[1] - f[2]),
                np.linalg.norm(f[6] - f[0]),
                np.linalg.norm(f[9] - f[0]),
                np.linalg.norm(f[12] - f[0]),
                np.linalg.norm(f[15] - f[0]),
                heron(f[9], f[2], f[6]),
                heron(f[15], f[0], f[12]),
            ]
        )
    out = list(np.mean(per_frame, axis=0))
    for order in (1, 2, 3):
        for joint in (6, 9, 3, 12, 15):
            values = frames[:, joint]
            for _ in range(order):
                values = np.diff(values, axis=0) / DT
            out.append(float(np.mean(np.linalg.norm(values, axis=1))))
    return out


def test_matches_an_independent_per_frame_reference_on_random_gaits():
    rng = np.random.default_rng(1)
    joints = rng.normal(size=(3, 15, 16, 3))
    ours = affective_features(torch.from_numpy(joints), EGAIT16).numpy()
    for i in range(3):
        np.testing.assert_allclose(ours[i], _reference(joints[i]), rtol=1e-6, atol=1e-9)


def test_two_d_data_gets_zero_depth():
    flat = still()[..., :2]
    f = affective_features(flat, EGAIT16)[0]
    assert float(f[0]) == 0.0  # volume
    assert float(f[COLUMN["angle_neck_shoulders"]]) == pytest.approx(180.0)


def test_roles_are_joint_means_for_layouts_without_the_joint():
    rng = np.random.default_rng(2)
    joints = torch.from_numpy(rng.normal(size=(1, 6, 17, 3)))
    f = affective_features(joints, COCO17)[0]
    root = joints[0, :, [11, 12]].mean(1)
    right_hand = joints[0, :, 10]
    assert float(f[COLUMN["dist_right_hand_root"]]) == pytest.approx(
        float((right_hand - root).norm(dim=-1).mean())
    )


def test_joint_count_must_match_the_layout():
    with pytest.raises(ValueError, match="layout egait16 has 16"):
        affective_features(torch.zeros(1, 5, 25, 3), EGAIT16)


def test_scaler_is_fitted_on_the_split_it_is_given():
    train = torch.tensor([[0.0, 5.0, 1.0], [10.0, 5.0, 3.0]])
    test = torch.tensor([[20.0, 5.0, 2.0]])
    scaler = FeatureScaler("minmax").fit(train)
    torch.testing.assert_close(scaler.transform(train), torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]))
    torch.testing.assert_close(scaler.transform(test), torch.tensor([[2.0, 0.0, 0.5]]))  # not clipped
    standard = FeatureScaler("standard").fit(train).transform(train)
    torch.testing.assert_close(standard[:, 0], torch.tensor([-1.0, 1.0]))
    with pytest.raises(UserError, match="normalization"):
        FeatureScaler("l2")
