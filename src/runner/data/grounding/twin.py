"""Synthetic twin of QVHighlights-Unify, written in its real layout (card ``ovg_hq.md``, "Data";
issue 11, item 2) and read back by :mod:`.readers`.

A *concept* is an (object, action) pair; its visual embedding is ``normalize(E_obj[o] + E_act[a])``
in a 512-d "CLIP" space (seeded Gaussian directions). A video is a stream of 2-s clips, each
``normalize(signal + style + σ·noise)``: segments of distractor concepts (a third of them sharing the
query's object or its action: hard negatives) and background, plus the query's moments (1–2 windows,
lengths drawn from short / medium / long ranges — long ones exceed the 16-clip window, and every
moment keeps going after an online model first sees it). Positions are uniform, so where a moment is
cannot be guessed from time alone.

Every query modality comes from the same concept:

* ``clip_text``: an English caption ("a dog is jumping in the park", several templates) encoded by the
  offline all-MiniLM-L6-v2 (token states ``[Lq, 384]``) and mapped to 512-d by a fixed seeded random
  projection (``last_hidden_state``, ``pooler_output`` = mean token);
* ``clip_text_c``: a complementary caption naming only the action ("someone is jumping");
* ``clip_image_c``: the object's embedding plus noise — with ``text_c`` it names the concept;
* ``clip_image_r``: the concept embedding plus noise (a reference image);
* ``clip_image_g``: a "generated" image: the concept embedding through a fixed distortion plus more noise;
* ``clip_segment_g``: 2–6 clips cut from inside a GT window, plus noise (``segment_query`` = where).

Splits ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl`` share concepts but not videos.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runner.data.twin import CachedTwin

OBJECTS = (
    "dog", "cat", "child", "woman", "man", "horse", "bird", "car",
    "bicycle", "boat", "guitar player", "chef",
)  # fmt: skip
ACTIONS = (
    "running", "jumping", "eating", "sleeping", "swimming", "dancing",
    "climbing", "sitting", "playing", "spinning",
)  # fmt: skip
PLACES = ("park", "kitchen", "beach", "street", "forest", "living room", "garden", "stadium")
TEMPLATES = (
    "a {obj} is {act} in the {place}",
    "we see a {obj} {act} near the {place}",
    "the {obj} keeps {act}",
    "in the {place} a {obj} starts {act}",
    "close-up of a {obj} {act}",
)
COMPLEMENTARY_TEMPLATES = ("someone is {act}", "something is {act} in the {place}", "{act} happens here")


class QVHighlightsTwin(CachedTwin):
    """Seeded generator of the twin (see the module docstring); sizes are CPU-sized by default."""

    twin_name = "QVHighlights-Unify"

    def __init__(
        self,
        num_videos: Sequence[int] = (240, 60, 60),
        clips_range: Sequence[int] = (40, 75),
        queries_per_video: Sequence[int] = (1, 2),
        moment_lengths: Sequence[Sequence[int]] = ((2, 6), (7, 14), (17, 30)),
        length_probs: Sequence[float] = (0.4, 0.35, 0.25),
        second_window_prob: float = 0.2,
        distractor_length: Sequence[int] = (3, 10),
        hard_negative_prob: float = 0.35,
        background_prob: float = 0.3,
        clip_noise: float = 0.8,
        style_strength: float = 0.3,
        image_r_noise: float = 0.6,
        image_g_noise: float = 1.0,
        image_g_distortion: float = 0.6,
        image_c_noise: float = 0.6,
        segment_noise: float = 0.6,
        segment_clips: Sequence[int] = (2, 6),
        feature_dim: int = 512,
        clip_seconds: float = 2.0,
        seed: int = 0,
        version: int = 1,
    ) -> None:
        self.num_videos = [int(v) for v in num_videos]
        self.clips_range = (int(clips_range[0]), int(clips_range[1]))
        self.queries_per_video = (int(queries_per_video[0]), int(queries_per_video[1]))
        self.moment_lengths = [(int(a), int(b)) for a, b in moment_lengths]
        self.length_probs = [float(p) for p in length_probs]
        self.second_window_prob = float(second_window_prob)
        self.distractor_length = (int(distractor_length[0]), int(distractor_length[1]))
        self.hard_negative_prob = float(hard_negative_prob)
        self.background_prob = float(background_prob)
        self.clip_noise = float(clip_noise)
        self.style_strength = float(style_strength)
        self.image_r_noise = float(image_r_noise)
        self.image_g_noise = float(image_g_noise)
        self.image_g_distortion = float(image_g_distortion)
        self.image_c_noise = float(image_c_noise)
        self.segment_noise = float(segment_noise)
        self.segment_clips = (int(segment_clips[0]), int(segment_clips[1]))
        self.feature_dim = int(feature_dim)
        self.clip_seconds = float(clip_seconds)
        self.seed = int(seed)
        self.version = int(version)

    def recipe(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")} | {
            "text_encoder": "all-MiniLM-L6-v2",
            "objects": OBJECTS,
            "actions": ACTIONS,
            "templates": TEMPLATES,
        }

    # ------------------------------------------------------------------ generation
    def _unit(self, x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def _noise(self, rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
        """Gaussian noise whose rows have expected norm ``scale``."""
        return rng.standard_normal(shape) * (scale / np.sqrt(self.feature_dim))

    def write(self, out: str) -> None:
        rng = np.random.default_rng(self.seed)
        d = self.feature_dim
        e_obj = self._unit(rng.standard_normal((len(OBJECTS), d)))
        e_act = self._unit(rng.standard_normal((len(ACTIONS), d)))
        e_bg = self._unit(rng.standard_normal((8, d)))  # background "scenery" directions
        distortion = np.eye(d) + self.image_g_distortion * rng.standard_normal((d, d)) / np.sqrt(d)
        text_projection = rng.standard_normal((384, d)) / np.sqrt(384)

        def concept(o: int, a: int) -> np.ndarray:
            return self._unit(e_obj[o] + e_act[a])

        folders = {
            m: Path(out) / f"clip_{m}"
            for m in ("video", "text", "text_c", "image_r", "image_g", "image_c", "segment_g")
        }
        for folder in folders.values():
            folder.mkdir(parents=True)
        splits = ("train", "val", "test")
        records: dict[str, list[dict]] = {s: [] for s in splits}
        captions: list[tuple[int, str, str]] = []  # (qid, caption, complementary caption)
        qid = 0
        for split, count in zip(splits, self.num_videos, strict=True):
            for v in range(count):
                vid = f"twin{split}{v:04d}_0.0_150.0"
                n = int(rng.integers(self.clips_range[0], self.clips_range[1] + 1))
                signal = np.zeros((n, d))
                owner = np.full(n, -1)  # which query's moment a clip belongs to (-1: none)
                num_queries = int(rng.integers(self.queries_per_video[0], self.queries_per_video[1] + 1))
                used: set[tuple[int, int]] = set()
                queries = []
                for qi in range(num_queries):
                    while True:
                        o, a = int(rng.integers(len(OBJECTS))), int(rng.integers(len(ACTIONS)))
                        if (o, a) not in used:
                            used.add((o, a))
                            break
                    windows = self._place_moments(rng, n, owner, qi)
                    if not windows:
                        continue
                    for s, e in windows:
                        signal[s:e] = concept(o, a)
                    queries.append((o, a, windows))
                # distractors and background on the free clips
                t = 0
                while t < n:
                    if owner[t] >= 0:
                        t += 1
                        continue
                    length = int(rng.integers(self.distractor_length[0], self.distractor_length[1] + 1))
                    end = t
                    while end < n and end - t < length and owner[end] < 0:
                        end += 1
                    signal[t:end] = self._distractor(rng, queries, used, concept, e_bg)
                    t = end
                style = self._unit(rng.standard_normal(d)) * self.style_strength
                clips = self._unit(signal + style + self._noise(rng, (n, d), self.clip_noise)).astype(
                    np.float32
                )
                np.savez(folders["video"] / f"{vid}.npz", features=clips)
                for o, a, windows in queries:
                    qid += 1
                    place = PLACES[int(rng.integers(len(PLACES)))]
                    caption = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(
                        obj=OBJECTS[o], act=ACTIONS[a], place=place
                    )
                    complementary = COMPLEMENTARY_TEMPLATES[
                        int(rng.integers(len(COMPLEMENTARY_TEMPLATES)))
                    ].format(act=ACTIONS[a], place=place)
                    captions.append((qid, caption, complementary))
                    seg = self._write_visual_queries(
                        rng, folders, qid, clips, windows, concept(o, a), e_obj[o], distortion
                    )
                    secs = [[s * self.clip_seconds, e * self.clip_seconds] for s, e in windows]
                    clip_ids = [c for s, e in windows for c in range(s, e)]
                    records[split].append(
                        {
                            "qid": qid,
                            "query": caption,
                            "duration": float(n * self.clip_seconds),
                            "vid": vid,
                            "relevant_windows": secs,
                            "relevant_clip_ids": clip_ids,
                            "saliency_scores": [
                                [int(x) for x in rng.integers(2, 5, size=3)] for _ in clip_ids
                            ],
                            "segment_query": [seg[0] * self.clip_seconds, seg[1] * self.clip_seconds],
                            "complementary_text": complementary,
                        }
                    )
        self._write_text_features(folders, captions, text_projection)
        for split in splits:
            with open(os.path.join(out, f"{split}.jsonl"), "w") as handle:
                for record in records[split]:
                    handle.write(json.dumps(record) + "\n")

    def _place_moments(
        self, rng: np.random.Generator, n: int, owner: np.ndarray, qi: int
    ) -> list[tuple[int, int]]:
        """1–2 non-overlapping windows ``[s, e)`` (clips) on free clips, marked in ``owner``."""
        count = 2 if rng.random() < self.second_window_prob else 1
        windows: list[tuple[int, int]] = []
        for _ in range(count):
            for _attempt in range(20):
                lo, hi = self.moment_lengths[int(rng.choice(len(self.moment_lengths), p=self.length_probs))]
                length = int(rng.integers(lo, hi + 1))
                if length >= n:
                    continue
                start = int(rng.integers(0, n - length + 1))
                # keep one free clip around each moment so windows never touch
                lo_c, hi_c = max(0, start - 1), min(n, start + length + 1)
                if (owner[lo_c:hi_c] >= 0).any():
                    continue
                owner[start : start + length] = qi
                windows.append((start, start + length))
                break
        return sorted(windows)

    def _distractor(self, rng, queries, used, concept, e_bg) -> np.ndarray:
        if rng.random() < self.background_prob or not queries:
            return e_bg[int(rng.integers(len(e_bg)))]
        if rng.random() < self.hard_negative_prob:
            o, a, _ = queries[int(rng.integers(len(queries)))]
            for _ in range(20):  # same object or same action, never the query's concept
                if rng.random() < 0.5:
                    cand = (o, int(rng.integers(len(ACTIONS))))
                else:
                    cand = (int(rng.integers(len(OBJECTS))), a)
                if cand not in used:
                    return concept(*cand)
        for _ in range(50):
            cand = (int(rng.integers(len(OBJECTS))), int(rng.integers(len(ACTIONS))))
            if cand not in used:
                return concept(*cand)
        return e_bg[0]

    def _write_visual_queries(self, rng, folders, qid, clips, windows, concept_vec, object_vec, distortion):
        d = self.feature_dim
        image_r = self._unit(concept_vec + self._noise(rng, (d,), self.image_r_noise))
        image_g = self._unit(distortion @ concept_vec + self._noise(rng, (d,), self.image_g_noise))
        image_c = self._unit(object_vec + self._noise(rng, (d,), self.image_c_noise))
        s, e = windows[int(rng.integers(len(windows)))]
        k = int(rng.integers(self.segment_clips[0], self.segment_clips[1] + 1))
        k = max(1, min(k, e - s))
        start = int(rng.integers(s, e - k + 1))
        segment = self._unit(clips[start : start + k] + self._noise(rng, (k, d), self.segment_noise))
        for name, array in (("image_r", image_r), ("image_g", image_g), ("image_c", image_c)):
            np.savez(folders[name] / f"qid{qid}.npz", features=array[None, :].astype(np.float32))
        np.savez(
            folders["segment_g"] / f"qid{qid}.npz",
            features=segment.astype(np.float32),
            segment_query=np.asarray([start * self.clip_seconds, (start + k) * self.clip_seconds]),
        )
        return start, start + k

    def _write_text_features(self, folders, captions, projection) -> None:
        from runner.models.text import MiniLMTextEncoder

        encoder = MiniLMTextEncoder()
        for column, folder in ((1, folders["text"]), (2, folders["text_c"])):
            for lo in range(0, len(captions), 256):
                chunk = captions[lo : lo + 256]
                states, masks = _token_states(encoder, [c[column] for c in chunk])
                for (qid, *_), state, mask in zip(chunk, states, masks, strict=True):
                    tokens = state[mask] @ projection
                    np.savez(
                        folder / f"qid{qid}.npz",
                        last_hidden_state=tokens.astype(np.float32),
                        pooler_output=tokens.mean(0).astype(np.float32),
                    )


def _token_states(encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM token states ``[n, L, 384]`` and attention masks ``[n, L]`` (special tokens included)."""
    import torch

    with torch.no_grad():
        batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        states = encoder.model(**batch).last_hidden_state
    return states.numpy().astype(np.float64), batch["attention_mask"].numpy().astype(bool)
