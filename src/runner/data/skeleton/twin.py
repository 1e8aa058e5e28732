"""Synthetic twin of E-Gait: a procedural gait generator on the 16-joint E-Gait skeleton (card
"Data": "a walking cycle with emotion-dependent speed, stride, arm swing, head / spine posture,
jerkiness, plus person-level variation and noise"), written in E-Gait's h5 format
(:class:`EGaitTwin`) and as a PYSKL annotation pickle (:class:`PysklGaitTwin`) — the same gaits.

How a gait is made (y up, walking along +z, metres, 30 fps):

* A person has a body size, limb proportions, shoulder width and a personal walking *style*: an
  offset to every style parameter (cadence, step amplitude, arm swing, elbow flexion, trunk lean,
  head pitch, shoulder raise, jerkiness, vertical bounce, arm spread), drawn once per person.
* An emotion moves the style away from neutral (:data:`EMOTION_STYLES`): happy walks fast with wide
  arm swing and the head up; sad slowly with small steps, a forward lean and the head down; angry
  fast with bent elbows, raised shoulders and abrupt (jerky) arm movement; neutral in between. Each
  gait expresses its emotion with a random *intensity* in [0.35, 1.15] (a weak expression looks
  almost neutral), so classes overlap; the personal offsets are of the same size as the differences
  between emotions, so no single style parameter — hence no single affective feature — separates
  the classes.
* Forward kinematics per frame: hip / knee angles of a walking cycle at the cadence, the root moving
  forward at the speed the step amplitude and cadence imply with a vertical bounce and lateral sway;
  spine, neck and head tilted by the lean and the head pitch; arms swinging against the legs. Jerky
  gaits use a sharpened swing waveform and a 4–6 Hz tremor on hands and head.
* Each gait starts at a random phase and position, faces a random direction (±20° yaw), has a random
  length (``min_frames``..``max_frames``) and carries per-joint measurement noise.

Class order (labels 0..3): angry, neutral, happy, sad — STEP's E-Gait order (an assumption kept
consistent between twin and real data via ``dataset.class_names``).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np

from runner.data.images.common import CachedTwin

CLASS_NAMES = ("angry", "neutral", "happy", "sad")
STYLE_KEYS = (
    "cadence",  # gait cycles per second
    "step",  # hip flexion amplitude (rad): step length
    "arm_swing",  # shoulder flexion amplitude (rad)
    "elbow",  # mean elbow flexion (rad)
    "lean",  # forward trunk lean (rad)
    "head",  # head pitch, positive = looking down (rad)
    "shoulder_raise",  # shoulder height offset (m)
    "jerk",  # abruptness of the arm swing and tremor amplitude (unitless)
    "bounce",  # vertical root bounce (m)
    "spread",  # arm abduction (rad)
)
# style means per emotion (neutral is the reference every emotion is a departure from)
EMOTION_STYLES: dict[str, dict[str, float]] = {
    "neutral": dict(
        cadence=0.90, step=0.30, arm_swing=0.38, elbow=0.26, lean=0.05, head=0.09,
        shoulder_raise=0.0, jerk=0.20, bounce=0.025, spread=0.09,
    ),
    "happy": dict(
        cadence=1.00, step=0.35, arm_swing=0.56, elbow=0.33, lean=0.02, head=-0.07,
        shoulder_raise=0.008, jerk=0.35, bounce=0.040, spread=0.17,
    ),
    "sad": dict(
        cadence=0.76, step=0.23, arm_swing=0.20, elbow=0.18, lean=0.17, head=0.38,
        shoulder_raise=-0.020, jerk=0.10, bounce=0.015, spread=0.05,
    ),
    "angry": dict(
        cadence=1.02, step=0.34, arm_swing=0.52, elbow=0.70, lean=0.12, head=0.10,
        shoulder_raise=0.025, jerk=0.85, bounce=0.035, spread=0.14,
    ),
}  # fmt: skip
# standard deviation of the per-person style offsets (about the gap between neighbouring emotions)
PERSON_STYLE_STD: dict[str, float] = dict(
    cadence=0.06, step=0.035, arm_swing=0.10, elbow=0.14, lean=0.045, head=0.10,
    shoulder_raise=0.012, jerk=0.18, bounce=0.008, spread=0.04,
)  # fmt: skip
# per-gait style jitter on top (as a fraction of the person std)
GAIT_STYLE_JITTER = 0.5


@dataclass
class GaitSet:
    """Generated gaits: ``sequences[i]`` is ``[T_i, 16, 3]``; ``labels``, ``persons`` are int64."""

    sequences: list[np.ndarray]
    labels: np.ndarray
    persons: np.ndarray


def _rot_x(angle: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Rotate ``vec [..., 3]`` about the x axis by ``angle`` (positive tilts +y towards +z)."""
    c, s = np.cos(angle), np.sin(angle)
    y, z = vec[..., 1], vec[..., 2]
    return np.stack(np.broadcast_arrays(vec[..., 0], c * y - s * z, s * y + c * z), -1)


def _limb(length: np.ndarray, flexion: np.ndarray, side: float, abduction: np.ndarray) -> np.ndarray:
    """A limb hanging down, swung forward by ``flexion`` (rad) and out sideways by ``abduction``."""
    cos_b = np.cos(abduction)
    return np.stack(
        [
            side * length * np.sin(abduction),
            -length * np.cos(flexion) * cos_b,
            length * np.sin(flexion) * cos_b,
        ],
        -1,
    )


def _swing(phase: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """A sine that becomes square-like (abrupt reversals) as ``sharpness`` grows."""
    s = np.sin(phase)
    return np.sign(s) * np.abs(s) ** (1.0 / (1.0 + 2.5 * np.maximum(sharpness, 0.0)))


def walk(
    style: dict[str, float],
    body: dict[str, float],
    num_frames: int,
    rng: np.random.Generator,
    fps: float = 30.0,
    noise_std: float = 0.008,
) -> np.ndarray:
    """``[T, 16, 3]`` joints of one gait (E-Gait joint order) for a style and a body."""
    t = np.arange(num_frames) / fps
    phase = 2 * np.pi * style["cadence"] * t + rng.uniform(0, 2 * np.pi)
    s = body["scale"]
    thigh, shank = 0.45 * s * body["leg"], 0.44 * s * body["leg"]
    upper_arm, forearm = 0.29 * s * body["arm"], 0.27 * s * body["arm"]
    leg_length = thigh + shank
    step = max(style["step"], 0.05)
    speed = 4 * leg_length * np.sin(step) * max(style["cadence"], 0.3)
    joints = np.zeros((num_frames, 16, 3))
    root = np.stack(
        [
            0.02 * s * np.sin(phase),
            leg_length * np.cos(0.6 * step) + style["bounce"] * np.cos(2 * phase),
            speed * t + rng.uniform(-1, 1),
        ],
        -1,
    )
    joints[:, 0] = root
    # trunk: spine and neck tilted forward by the lean, head by lean + head pitch
    lean = style["lean"] + 0.02 * np.sin(2 * phase)
    up = np.array([0.0, 1.0, 0.0])
    joints[:, 1] = root + _rot_x(lean, up * 0.24 * s)
    joints[:, 2] = joints[:, 1] + _rot_x(lean * 1.3, up * 0.26 * s)
    head_tilt = lean * 1.3 + style["head"]
    tremor_freq = rng.uniform(4.0, 6.0)
    tremor = style["jerk"] * 0.006 * s * np.sin(2 * np.pi * tremor_freq * t + rng.uniform(0, 2 * np.pi))
    joints[:, 3] = (
        joints[:, 2] + _rot_x(head_tilt, up * 0.16 * s) + np.stack([tremor, 0 * tremor, tremor], -1)
    )
    # arms: shoulders beside the neck, swinging against the same-side leg
    width = body["shoulders"]
    for side, (sh, el, ha), leg_phase in ((-1.0, (4, 5, 6), 0.0), (1.0, (7, 8, 9), np.pi)):
        shoulder = joints[:, 2] + np.array([side * width, -0.04 * s + style["shoulder_raise"], 0.0])
        swing = style["arm_swing"] * _swing(phase + leg_phase + np.pi, style["jerk"])
        elbow_flex = style["elbow"] + 0.35 * style["arm_swing"] * (
            1 + _swing(phase + leg_phase + np.pi, style["jerk"])
        )
        joints[:, sh] = shoulder
        joints[:, el] = shoulder + _limb(upper_arm, swing, side, np.full_like(swing, style["spread"]))
        hand_tremor = np.stack([tremor, tremor * 0.5, -tremor], -1) * 2.0
        joints[:, ha] = (
            joints[:, el]
            + _limb(forearm, swing + elbow_flex, side, np.full_like(swing, style["spread"]))
            + hand_tremor
        )
    # legs: hip flexion = step·sin(phase), knee flexes in the swing phase
    for side, (hip_j, knee_j, foot_j), leg_phase in ((-1.0, (10, 11, 12), 0.0), (1.0, (13, 14, 15), np.pi)):
        hip = root + np.array([side * 0.10 * s, 0.0, 0.0])
        flexion = step * np.sin(phase + leg_phase)
        knee_flex = 0.08 + 2.2 * step * np.maximum(0.0, np.sin(phase + leg_phase + 0.9)) ** 2
        joints[:, hip_j] = hip
        joints[:, knee_j] = hip + _limb(thigh, flexion, side, np.zeros_like(flexion))
        joints[:, foot_j] = joints[:, knee_j] + _limb(
            shank, flexion - knee_flex, side, np.zeros_like(flexion)
        )
    # face a random direction (yaw about the vertical axis), then measurement noise
    yaw = rng.uniform(-np.pi / 9, np.pi / 9)
    c, sn = np.cos(yaw), np.sin(yaw)
    x, z = joints[..., 0].copy(), joints[..., 2].copy()
    joints[..., 0], joints[..., 2] = c * x + sn * z, -sn * x + c * z
    joints += rng.normal(0.0, noise_std, joints.shape)
    return joints.astype(np.float32)


def generate_gaits(
    num_gaits: int,
    num_persons: int,
    class_weights: tuple[float, ...] = (0.2, 0.32, 0.28, 0.2),
    min_frames: int = 48,
    max_frames: int = 72,
    noise_std: float = 0.008,
    seed: int = 0,
) -> GaitSet:
    """``num_gaits`` gaits by ``num_persons`` people, labels drawn with ``class_weights``
    (order :data:`CLASS_NAMES`)."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(class_weights, dtype=np.float64)
    weights = weights / weights.sum()
    people = [
        {
            "body": {
                "scale": rng.uniform(0.88, 1.12),
                "leg": rng.normal(1.0, 0.04),
                "arm": rng.normal(1.0, 0.04),
                "shoulders": rng.normal(0.18, 0.015),
            },
            "offset": {k: rng.normal(0.0, PERSON_STYLE_STD[k]) for k in STYLE_KEYS},
        }
        for _ in range(num_persons)
    ]
    labels = rng.choice(len(CLASS_NAMES), size=num_gaits, p=weights)
    persons = rng.integers(0, num_persons, size=num_gaits)
    neutral = EMOTION_STYLES["neutral"]
    sequences = []
    for label, person in zip(labels, persons, strict=True):
        target = EMOTION_STYLES[CLASS_NAMES[label]]
        intensity = rng.uniform(0.35, 1.15)
        style = {
            k: neutral[k]
            + intensity * (target[k] - neutral[k])
            + people[person]["offset"][k]
            + rng.normal(0.0, GAIT_STYLE_JITTER * PERSON_STYLE_STD[k])
            for k in STYLE_KEYS
        }
        num_frames = int(rng.integers(min_frames, max_frames + 1))
        sequences.append(walk(style, people[person]["body"], num_frames, rng, noise_std=noise_std))
    return GaitSet(sequences, labels.astype(np.int64), persons.astype(np.int64))


class _GaitTwinBase(CachedTwin):
    """The recipe both twin formats share."""

    def __init__(
        self,
        num_gaits: int = 2400,
        num_persons: int = 40,
        class_percent: tuple[int, ...] | list[int] = (20, 32, 28, 20),
        min_frames: int = 48,
        max_frames: int = 72,
        noise: float = 0.008,
        seed: int = 0,
    ) -> None:
        self.num_gaits = int(num_gaits)
        self.num_persons = int(num_persons)
        self.class_weights = tuple(float(w) for w in class_percent)
        self.min_frames = int(min_frames)
        self.max_frames = int(max_frames)
        self.noise_std = float(noise)
        self.seed = int(seed)

    def recipe(self) -> dict:
        return {
            "num_gaits": self.num_gaits,
            "num_persons": self.num_persons,
            "class_weights": list(self.class_weights),
            "min_frames": self.min_frames,
            "max_frames": self.max_frames,
            "noise_std": self.noise_std,
            "seed": self.seed,
            "generator_version": 1,
        }

    def gaits(self) -> GaitSet:
        return generate_gaits(
            self.num_gaits,
            self.num_persons,
            self.class_weights,
            self.min_frames,
            self.max_frames,
            self.noise_std,
            self.seed,
        )


class EGaitTwin(_GaitTwinBase):
    """The gaits as E-Gait h5 files: ``features<ftype>.h5`` (``[T, 48]`` per gait),
    ``labels<ftype>.h5`` and ``affectiveFeatures<ftype>.h5`` (the 27 raw affective features)."""

    def __init__(self, ftype: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.ftype = str(ftype or "")

    def recipe(self) -> dict:
        return {**super().recipe(), "ftype": self.ftype}

    def write(self, out: str) -> None:
        import h5py
        import torch

        from runner.data.skeleton.affective import affective_features
        from runner.data.skeleton.layouts import EGAIT16

        gaits = self.gaits()
        width = len(str(len(gaits.sequences)))
        keys = [f"gait_{i:0{width}d}" for i in range(len(gaits.sequences))]
        with (
            h5py.File(os.path.join(out, f"features{self.ftype}.h5"), "w") as ff,
            h5py.File(os.path.join(out, f"labels{self.ftype}.h5"), "w") as fl,
            h5py.File(os.path.join(out, f"affectiveFeatures{self.ftype}.h5"), "w") as fa,
        ):
            for key, seq, label in zip(keys, gaits.sequences, gaits.labels, strict=True):
                ff.create_dataset(key, data=seq.reshape(seq.shape[0], -1))
                fl.create_dataset(key, data=np.int64(label))
                features = affective_features(torch.from_numpy(seq)[None], EGAIT16)[0]
                fa.create_dataset(key, data=features.numpy())


class PysklGaitTwin(_GaitTwinBase):
    """The gaits as a PYSKL annotation pickle ``<filename>`` with a cross-subject split
    (``xsub_train`` / ``xsub_val``: every fifth person held out)."""

    def __init__(self, filename: str = "egait_twin.pkl", **kwargs) -> None:
        super().__init__(**kwargs)
        self.filename = str(filename)

    def recipe(self) -> dict:
        return {**super().recipe(), "filename": self.filename}

    def write(self, out: str) -> None:
        gaits = self.gaits()
        annotations, train, val = [], [], []
        for i, (seq, label, person) in enumerate(
            zip(gaits.sequences, gaits.labels, gaits.persons, strict=True)
        ):
            frame_dir = f"P{person:03d}_G{i:05d}"
            annotations.append(
                {
                    "frame_dir": frame_dir,
                    "label": int(label),
                    "keypoint": seq[None],  # [M=1, T, V, C]
                    "total_frames": int(seq.shape[0]),
                }
            )
            (val if person % 5 == 4 else train).append(frame_dir)
        with open(os.path.join(out, self.filename), "wb") as fh:
            pickle.dump({"split": {"xsub_train": train, "xsub_val": val}, "annotations": annotations}, fh)


def egait_to_ntu25(sequence: np.ndarray) -> np.ndarray:
    """``[T, 25, 3]`` NTU Kinect joints placed from ``[T, 16, 3]`` E-Gait joints: shared joints copied,
    the Kinect-only ones (neck, wrists, hand tips, thumbs, ankles vs feet) put along the nearest bone."""
    e = sequence
    out = np.zeros((e.shape[0], 25, 3), dtype=np.float32)

    def along(a: int, b: int, fraction: float) -> np.ndarray:  # beyond joint b on the bone a -> b
        return e[:, b] + fraction * (e[:, b] - e[:, a])

    out[:, 0], out[:, 1], out[:, 20], out[:, 3] = e[:, 0], e[:, 1], e[:, 2], e[:, 3]
    out[:, 2] = (e[:, 2] + e[:, 3]) / 2  # Kinect neck: between spine-shoulder and head
    for (sh, el, ha), (k_sh, k_el, k_wr, k_ha, k_tip, k_thumb) in (
        ((7, 8, 9), (4, 5, 6, 7, 21, 22)),  # left arm
        ((4, 5, 6), (8, 9, 10, 11, 23, 24)),  # right arm
    ):
        out[:, k_sh], out[:, k_el], out[:, k_wr] = e[:, sh], e[:, el], e[:, ha]
        out[:, k_ha] = along(el, ha, 0.25)
        out[:, k_tip] = along(el, ha, 0.5)
        out[:, k_thumb] = along(el, ha, 0.3) + np.array([0.0, 0.0, 0.03], dtype=np.float32)
    for (hip, knee, foot), (k_hip, k_knee, k_ankle, k_foot) in (
        ((13, 14, 15), (12, 13, 14, 15)),  # left leg
        ((10, 11, 12), (16, 17, 18, 19)),  # right leg
    ):
        out[:, k_hip], out[:, k_knee], out[:, k_ankle] = e[:, hip], e[:, knee], e[:, foot]
        out[:, k_foot] = e[:, foot] + np.array([0.0, -0.04, 0.12], dtype=np.float32)
    return out


def write_ntu_skeleton(path: str, joints: np.ndarray) -> None:
    """One body per frame as an NTU ``.skeleton`` text file (x y z then zeros for the 2-D projections,
    orientation and tracking fields the readers ignore)."""
    lines = [str(joints.shape[0])]
    info = "72057594037931101 0 1 1 1 1 0 0.0 0.0 2"
    for frame in joints:
        lines += ["1", info, str(frame.shape[0])]
        lines += [f"{x:.5f} {y:.5f} {z:.5f} 0 0 0 0 0 0 0 0 2" for x, y, z in frame]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


class NTUGaitTwin(_GaitTwinBase):
    """The gaits as NTU RGB+D ``.skeleton`` files on the 25-joint Kinect skeleton
    (:func:`egait_to_ntu25`), named ``S<set>C001P<person>R<rep>A<emotion + 1>.skeleton``."""

    def write(self, out: str) -> None:
        gaits = self.gaits()
        for i, (seq, label, person) in enumerate(
            zip(gaits.sequences, gaits.labels, gaits.persons, strict=True)
        ):
            name = f"S{i // 999 + 1:03d}C001P{person + 1:03d}R{i % 999 + 1:03d}A{label + 1:03d}.skeleton"
            write_ntu_skeleton(os.path.join(out, name), egait_to_ntu25(seq))
