"""Procedural synthetic twins of the video datasets, written in each dataset's real on-disk format.

:class:`ProceduralVideoTwin` renders small clips of a textured shape moving in a class-specific way
and writes them exactly as the real dataset ships (``.avi`` + HMDB51 split files, ``.MP4`` +
EPIC-KITCHENS-100 csvs, ``.mp4`` + Kinetics-400 csvs), so the real readers in
:mod:`runner.data.video.readers` load the twin unchanged.

A class is a pair (appearance, motion): appearance = shape + colour family + stripe texture,
motion = slide / bounce / spin / pulse / orbit / diagonal. Every appearance occurs with every
motion (the label set is the product, truncated to ``num_classes``), so a model needs both. Each
motion is a horizontal-flip-invariant category (directions are random per clip). Clutter:
background texture, per-frame noise, dull distractor shapes drifting about, camera jitter, random
start positions, phases and speeds.

Generation is seeded and cached: ``recipe.json`` in the root holds a hash of every generation
parameter plus :data:`RECIPE_VERSION`; :meth:`ProceduralVideoTwin.ensure` regenerates only when
it differs, writing into a temporary directory next to the root and renaming it into place.
"""

from __future__ import annotations

import csv
import logging
import math
import os

import av
import numpy as np

from runner.data.twin import CachedTwin
from runner.errors import invalid_value

log = logging.getLogger("runner.data")

__all__ = ["RECIPE_VERSION", "LAYOUTS", "APPEARANCES", "MOTIONS", "ProceduralVideoTwin", "write_video"]

RECIPE_VERSION = 1  # bump when the generated files change
LAYOUTS = ("hmdb51", "epic_kitchens", "kinetics400")

# (name, RGB colour family, stripe frequency in shape units, stripe angle offset)
APPEARANCES = (
    ("disc", (220, 60, 50), 2.0, 0.0),
    ("square", (50, 190, 70), 3.0, 0.6),
    ("triangle", (60, 90, 225), 2.5, 1.2),
    ("cross", (230, 200, 40), 3.5, 0.3),
    ("ring", (200, 60, 210), 2.0, 0.9),
    ("diamond", (40, 200, 210), 3.0, 1.5),
)
MOTIONS = ("sliding", "bouncing", "spinning", "pulsing", "orbiting", "zigzagging")


def write_video(path: str, frames: np.ndarray, fps: int, container_format: str) -> None:
    """Encode ``frames`` (``uint8 [T, H, W, 3]``) with MPEG-4 Part 2 at a high bit rate."""
    t, h, w, _ = frames.shape
    with av.open(path, mode="w", format=container_format) as container:
        stream = container.add_stream("mpeg4", rate=int(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = max(2_000_000, w * h * int(fps) * 8)
        stream.codec_context.gop_size = max(1, int(fps))
        stream.options = {"qmin": "1", "qmax": "4"}
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a unit-size shape in local coordinates ``(u, v)`` (v points down)."""
    if kind == "disc":
        return u * u + v * v <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if kind == "triangle":
        return (v <= 0.6) & (v >= -0.95 + 1.8 * np.abs(u))
    if kind == "cross":
        au, av_ = np.abs(u), np.abs(v)
        return ((au <= 0.32) & (av_ <= 0.95)) | ((av_ <= 0.32) & (au <= 0.95))
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.05
    raise ValueError(kind)


def _reflect(x: np.ndarray | float, lo: float, hi: float):
    """Fold ``x`` into ``[lo, hi]`` like a ball bouncing between two walls."""
    span = max(hi - lo, 1e-6)
    y = np.mod(np.asarray(x, dtype=np.float64) - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


class _Renderer:
    """Renders clips of one class on a canvas with margin for camera jitter."""

    def __init__(self, size: int):
        self.size = size
        self.margin = max(2, size // 16)
        self.canvas = size + 2 * self.margin
        yy, xx = np.mgrid[0 : self.canvas, 0 : self.canvas].astype(np.float32)
        self.yy, self.xx = yy, xx

    def background(self, rng: np.random.Generator) -> np.ndarray:
        c = self.canvas
        coarse = rng.uniform(0.0, 1.0, size=(c // 8 + 2, c // 8 + 2, 1)).astype(np.float32)
        coarse = np.kron(coarse, np.ones((8, 8, 1), np.float32))[:c, :c]
        tint = rng.uniform(70, 140, size=3).astype(np.float32)
        fine = rng.normal(0, 10, size=(c, c, 1)).astype(np.float32)
        return tint + 45.0 * (coarse - 0.5) + fine

    def _draw(self, img, kind, cx, cy, radius, theta, colour, freq, angle):
        m = radius * 1.1 + 1
        y0, y1 = max(int(cy - m), 0), min(int(cy + m) + 2, self.canvas)
        x0, x1 = max(int(cx - m), 0), min(int(cx + m) + 2, self.canvas)
        if y0 >= y1 or x0 >= x1:
            return
        dx = (self.xx[y0:y1, x0:x1] - cx) / radius
        dy = (self.yy[y0:y1, x0:x1] - cy) / radius
        ct, st = math.cos(theta), math.sin(theta)
        u = ct * dx + st * dy
        v = -st * dx + ct * dy
        mask = _shape_mask(kind, u, v)
        if freq > 0:
            ca, sa = math.cos(angle), math.sin(angle)
            stripes = (np.sin((ca * u + sa * v) * freq * math.pi) > 0).astype(np.float32)[..., None]
            col = colour * (0.55 + 0.45 * stripes)
        else:
            col = np.broadcast_to(colour, (*mask.shape, 3))
        region = img[y0:y1, x0:x1]
        region[mask] = col[mask] if col.ndim == 3 else col

    def clip(self, rng, n_frames, appearance, motion, bg=None, cam=None) -> np.ndarray:
        """``uint8 [n_frames, size, size, 3]``; ``appearance``/``motion`` None = background only."""
        size, margin, c = self.size, self.margin, self.canvas
        bg = self.background(rng) if bg is None else bg
        t = np.arange(n_frames, dtype=np.float64)
        # main object trajectory
        if appearance is not None:
            kind, family, freq, angle = APPEARANCES[appearance]
            colour = np.clip(np.asarray(family, np.float32) + rng.normal(0, 18, 3), 0, 255).astype(np.float32)
            radius = size * rng.uniform(0.14, 0.19)
            lo, hi = margin + radius * 1.6, c - margin - radius * 1.6
            x0, y0 = rng.uniform(lo, hi), rng.uniform(lo, hi)
            theta0 = rng.uniform(0, 2 * math.pi)
            cx = np.full(n_frames, x0)
            cy = np.full(n_frames, y0)
            theta = np.full(n_frames, theta0)
            scale = np.ones(n_frames)
            sign = rng.choice([-1.0, 1.0])
            name = MOTIONS[motion]
            if name == "sliding":
                speed = size * rng.uniform(0.04, 0.07)
                cx = _reflect(x0 + sign * speed * t, lo, hi)
            elif name == "bouncing":
                floor = rng.uniform(c * 0.6, hi)
                amp = rng.uniform(0.3, 0.45) * size
                w = rng.uniform(0.35, 0.55)
                cy = floor - amp * np.abs(np.sin(w * t + rng.uniform(0, math.pi)))
                cy = np.clip(cy, lo, hi)
            elif name == "spinning":
                theta = theta0 + sign * rng.uniform(0.3, 0.5) * t
            elif name == "pulsing":
                scale = 1.0 + 0.45 * np.sin(rng.uniform(0.6, 0.9) * t + rng.uniform(0, 2 * math.pi))
            elif name == "orbiting":
                rad = rng.uniform(0.18, 0.26) * size
                centre = rng.uniform(c / 2 - size * 0.08, c / 2 + size * 0.08, 2)
                ph, w = rng.uniform(0, 2 * math.pi), sign * rng.uniform(0.35, 0.5)
                cx, cy = centre[0] + rad * np.cos(w * t + ph), centre[1] + rad * np.sin(w * t + ph)
            elif name == "zigzagging":
                speed = size * rng.uniform(0.04, 0.06)
                cx = _reflect(x0 + sign * speed * t, lo, hi)
                cy = _reflect(y0 + rng.choice([-1.0, 1.0]) * speed * t, lo, hi)
        # distractors: dull, slowly drifting shapes
        n_dis = int(rng.integers(1, 4))
        dis = []
        for _ in range(n_dis):
            kind_d = APPEARANCES[int(rng.integers(len(APPEARANCES)))][0]
            grey = rng.uniform(60, 190)
            col = np.clip(grey + rng.normal(0, 12, 3), 0, 255).astype(np.float32)
            r = size * rng.uniform(0.06, 0.1)
            p = rng.uniform(r, c - r, 2)
            vel = rng.normal(0, size * 0.008, 2)
            dis.append((kind_d, col, r, p, vel, rng.uniform(0, 2 * math.pi)))
        cam = cam if cam is not None else rng.integers(0, 2 * margin + 1, size=2)
        out = np.empty((n_frames, size, size, 3), np.uint8)
        for i in range(n_frames):
            img = bg.copy()
            for kind_d, col, r, p, vel, th in dis:
                q = p + vel * i
                self._draw(img, kind_d, q[0], q[1], r, th, col, 0.0, 0.0)
            if appearance is not None:
                self._draw(img, kind, cx[i], cy[i], radius * scale[i], theta[i], colour, freq, angle)
            cam = np.clip(cam + rng.integers(-1, 2, size=2), 0, 2 * margin)
            img += rng.normal(0, 5, size=(1, 1, 1)).astype(np.float32)  # global flicker
            crop = img[cam[1] : cam[1] + size, cam[0] : cam[0] + size]
            out[i] = np.clip(crop, 0, 255).astype(np.uint8)
        return out


class ProceduralVideoTwin(CachedTwin):
    """A seeded procedural stand-in for a video dataset, written in that dataset's real format.

    Args:
        layout: ``hmdb51`` | ``epic_kitchens`` | ``kinetics400`` -- the on-disk format to write.
        num_classes: number of (appearance, motion) classes; at most ``6 * 6``.
        clips_per_class: clips (segments, for EPIC) per class, split train/test per class.
        test_fraction: the share of each class's clips in the test split (0.3: HMDB51's 70/30);
            a larger one gives a larger test split at the same training size.
        num_frames: frames per clip (EPIC segments get up to 50 % more).
        size: frame height = width in pixels (even).
        fps: frame rate written into the containers and used for EPIC timestamps.
        seed: seed of the numpy Generator that drives everything.
    """

    def __init__(
        self,
        layout: str,
        num_classes: int = 12,
        clips_per_class: int = 20,
        num_frames: int = 16,
        size: int = 64,
        fps: int = 8,
        seed: int = 0,
        test_fraction: float = 0.3,
    ):
        if layout not in LAYOUTS:
            raise invalid_value("dataset.twin.layout", layout, "one of " + ", ".join(LAYOUTS))
        if not 2 <= int(num_classes) <= len(APPEARANCES) * len(MOTIONS):
            raise invalid_value(
                "dataset.twin.num_classes", num_classes, f"2..{len(APPEARANCES) * len(MOTIONS)}"
            )
        if int(clips_per_class) < 2:
            raise invalid_value(
                "dataset.twin.clips_per_class", clips_per_class, "at least 2 (train and test)"
            )
        if int(size) < 16 or int(size) % 2:
            raise invalid_value("dataset.twin.size", size, "an even number >= 16")
        if int(num_frames) < 1 or int(fps) < 1:
            raise invalid_value("dataset.twin.num_frames", num_frames, "num_frames and fps must be >= 1")
        self.layout = layout
        self.num_classes = int(num_classes)
        self.clips_per_class = int(clips_per_class)
        self.num_frames = int(num_frames)
        self.size = int(size)
        self.fps = int(fps)
        self.seed = int(seed)
        self.test_fraction = float(test_fraction)
        if not 0.0 < self.test_fraction < 1.0:
            raise invalid_value("dataset.twin.test_fraction", test_fraction, "a number in (0, 1)")
        # the smallest near-square grid of appearances x motions covering num_classes
        self.num_appearances = min(math.ceil(math.sqrt(self.num_classes)), len(APPEARANCES))
        self.num_motions = math.ceil(self.num_classes / self.num_appearances)

    # ---- classes -------------------------------------------------------------------------
    def class_of(self, k: int) -> tuple[int, int]:
        """(appearance index, motion index) of class ``k``: appearance-major product order."""
        return k // self.num_motions, k % self.num_motions

    def class_name(self, k: int, sep: str = "_") -> str:
        a, m = self.class_of(k)
        return f"{MOTIONS[m]}{sep}{APPEARANCES[a][0]}"

    # ---- recipe / cache (runner.data.twin.CachedTwin does the caching) -----------------------
    @property
    def twin_name(self) -> str:
        return self.layout

    def recipe(self) -> dict:
        """Every parameter that determines the generated files."""
        return {
            "recipe_version": RECIPE_VERSION,
            "layout": self.layout,
            "num_classes": self.num_classes,
            "clips_per_class": self.clips_per_class,
            "num_frames": self.num_frames,
            "size": self.size,
            "fps": self.fps,
            "seed": self.seed,
            # recorded when not HMDB51's 30 %, so the default twins keep their hash
            **({"test_fraction": self.test_fraction} if self.test_fraction != 0.3 else {}),
        }

    # ---- generation --------------------------------------------------------------------------
    def write(self, out: str) -> None:
        """Write the twin's files (in the layout's real format) into the empty directory ``out``."""
        rng = np.random.default_rng(self.seed)
        renderer = _Renderer(self.size)
        getattr(self, f"_write_{self.layout}")(out, rng, renderer)

    def _split_per_class(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Per class, a boolean train mask over its clips (``1 − test_fraction`` True, at least one of each)."""
        n = self.clips_per_class
        n_train = min(max(1, round((1.0 - self.test_fraction) * n)), n - 1)
        masks = []
        for _ in range(self.num_classes):
            m = np.zeros(n, bool)
            m[rng.permutation(n)[:n_train]] = True
            masks.append(m)
        return masks

    def _write_hmdb51(self, out, rng, renderer) -> None:
        split_dir = os.path.join(out, "testTrainMulti_7030_splits")
        os.makedirs(split_dir)
        for k in range(self.num_classes):
            cls = self.class_name(k, "_")
            os.makedirs(os.path.join(out, "videos", cls))
            a, m = self.class_of(k)
            for i in range(self.clips_per_class):
                frames = renderer.clip(rng, self.num_frames, a, m)
                write_video(
                    os.path.join(out, "videos", cls, f"{cls}_clip{i:03d}.avi"), frames, self.fps, "avi"
                )
        for split in (1, 2, 3):  # three different 70/30 shuffles, like the official splits
            masks = self._split_per_class(rng)
            for k in range(self.num_classes):
                cls = self.class_name(k, "_")
                with open(os.path.join(split_dir, f"{cls}_test_split{split}.txt"), "w") as fh:
                    for i in range(self.clips_per_class):
                        fh.write(f"{cls}_clip{i:03d}.avi {1 if masks[k][i] else 2} \n")

    def _write_kinetics400(self, out, rng, renderer) -> None:
        masks = self._split_per_class(rng)
        alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
        rows = {"train": [], "val": []}
        for k in range(self.num_classes):
            label = self.class_name(k, " ")
            a, m = self.class_of(k)
            for i in range(self.clips_per_class):
                folder = "train" if masks[k][i] else "val"
                yid = "".join(rng.choice(alphabet, 11))
                start = int(rng.integers(0, 300))
                end = start + 10
                d = os.path.join(out, folder, label)
                os.makedirs(d, exist_ok=True)
                frames = renderer.clip(rng, self.num_frames, a, m)
                write_video(os.path.join(d, f"{yid}_{start:06d}_{end:06d}.mp4"), frames, self.fps, "mp4")
                rows[folder].append([label, yid, start, end, folder])
        for folder, name in (("train", "train.csv"), ("val", "validate.csv")):
            with open(os.path.join(out, name), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
                w.writerows(rows[folder])

    @staticmethod
    def _timestamp(sec: float) -> str:
        h, rem = divmod(sec, 3600)
        mnt, s = divmod(rem, 60)
        return f"{int(h):02d}:{int(mnt):02d}:{s:05.2f}"

    def _write_epic_kitchens(self, out, rng, renderer) -> None:
        masks = self._split_per_class(rng)
        items = {"train": [], "val": []}
        for k in range(self.num_classes):
            for i in range(self.clips_per_class):
                items["train" if masks[k][i] else "val"].append(k)
        header = [
            "narration_id",
            "participant_id",
            "video_id",
            "narration_timestamp",
            "start_timestamp",
            "stop_timestamp",
            "start_frame",
            "stop_frame",
            "narration",
            "verb",
            "verb_class",
            "noun",
            "noun_class",
            "all_nouns",
            "all_noun_classes",
        ]
        participants = [f"P{p:02d}" for p in range(1, 4)]
        per_video = 8
        video_count = {p: 0 for p in participants}
        for subset in ("train", "val"):
            order = [items[subset][j] for j in rng.permutation(len(items[subset]))]
            rows = []
            for v, chunk_start in enumerate(range(0, len(order), per_video)):
                chunk = order[chunk_start : chunk_start + per_video]
                pid = participants[v % len(participants)]
                video_count[pid] += 1
                vid = f"{pid}_{video_count[pid]:02d}"
                bg = renderer.background(rng)
                parts, pos = [], 0
                for j, k in enumerate(chunk):
                    gap = int(rng.integers(1, max(2, self.num_frames // 2)))
                    parts.append(renderer.clip(rng, gap, None, None, bg=bg))
                    pos += gap
                    n = self.num_frames + int(rng.integers(0, self.num_frames // 2 + 1))
                    a, m = self.class_of(k)
                    parts.append(renderer.clip(rng, n, a, m, bg=bg))
                    verb, noun = MOTIONS[m], APPEARANCES[a][0]
                    start_s, stop_s = pos / self.fps, (pos + n) / self.fps
                    rows.append(
                        [
                            f"{vid}_{j}",
                            pid,
                            vid,
                            self._timestamp(start_s),
                            self._timestamp(start_s),
                            self._timestamp(stop_s),
                            pos + 1,
                            pos + n,
                            f"{verb} {noun}",
                            verb,
                            m,
                            noun,
                            a,
                            f"['{noun}']",
                            f"[{a}]",
                        ]
                    )
                    pos += n
                parts.append(
                    renderer.clip(rng, int(rng.integers(1, max(2, self.num_frames // 2))), None, None, bg=bg)
                )
                d = os.path.join(out, pid, "videos")
                os.makedirs(d, exist_ok=True)
                write_video(os.path.join(d, f"{vid}.MP4"), np.concatenate(parts), self.fps, "mp4")
            name = "EPIC_100_train.csv" if subset == "train" else "EPIC_100_validation.csv"
            with open(os.path.join(out, name), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows(rows)
        for key, names in (
            ("verb", [MOTIONS[m] for m in range(self.num_motions)]),
            ("noun", [APPEARANCES[a][0] for a in range(self.num_appearances)]),
        ):
            with open(os.path.join(out, f"EPIC_100_{key}_classes.csv"), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["id", "key", "instances", "category"])
                for i, n in enumerate(names):
                    w.writerow([i, n, f"['{n}']", "synthetic"])
