"""Readers of the QVHighlights(-Unify) layout (card ``ovg_hq.md``, "Data" and "Feature layout").

Annotations: one JSON object per line with ``qid, query, duration, vid, relevant_windows`` (seconds,
``[[start, end], ...]``), ``relevant_clip_ids``, ``saliency_scores``, and for the Unify release
``segment_query: [st, ed]`` and ``complementary_text``. Test files without ``relevant_windows`` are
read with no windows.

Features (``<root>/<dir>/<name>.npz``, float arrays, CLIP ViT-B/32 width 512):

* ``clip_video/{vid}.npz`` — ``features [L ≤ 75, 512]``, one row per 2-s clip;
* ``clip_text/qid{qid}.npz``, ``clip_text_c/qid{qid}.npz`` — ``last_hidden_state [Lq, 512]``
  (and ``pooler_output [512]``);
* ``clip_image_{r,g,c}/qid{qid}.npz``, ``clip_segment_g/qid{qid}.npz`` — ``features [n, 512]``
  (segment files may add ``segment_query``).

A file that is missing, unreadable, lacks its key, is empty or holds non-finite values raises
:class:`BadFeatureFile` (the caller skips the query, names the file and counts it); a file whose
feature width differs from the configured one raises a one-line :class:`~runner.errors.UserError`
naming the file (a wrong ``dataset.feature_dim`` or a wrong folder, not a corrupt sample).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.data.text.format import read_jsonl
from runner.errors import UserError

__all__ = [
    "BadFeatureFile",
    "GroundingRecord",
    "MODALITY_KEYS",
    "feature_path",
    "load_feature_array",
    "read_annotations",
]

# npz key of each query modality ("video" is the clip stream)
MODALITY_KEYS: dict[str, str] = {
    "video": "features",
    "text": "last_hidden_state",
    "text_c": "last_hidden_state",
    "image_r": "features",
    "image_g": "features",
    "image_c": "features",
    "segment_g": "features",
}


class BadFeatureFile(Exception):
    """A feature file that cannot be used (the query that needs it is skipped and counted)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass
class GroundingRecord:
    """One query of an annotation file (times in seconds)."""

    qid: int
    vid: str
    query: str
    duration: float
    windows: list[tuple[float, float]] = field(default_factory=list)
    segment_query: tuple[float, float] | None = None
    complementary_text: str | None = None


def _window_list(value: object, where: str) -> list[tuple[float, float]]:
    if value is None:
        return []
    try:
        windows = [(float(w[0]), float(w[1])) for w in value]  # type: ignore[union-attr]
    except (TypeError, ValueError, IndexError, KeyError):
        raise UserError(f"{where}: relevant_windows must be a list of [start, end] pairs") from None
    for start, end in windows:
        if end < start:
            raise UserError(f"{where}: relevant window [{start}, {end}] ends before it starts")
    return windows


def _number(kind: type, value: object, key: str, where: str):
    """``kind(value)`` (int or float; ``"3"`` allowed, ``3.5`` not for int), a UserError naming ``where``."""
    try:
        number = float(value)  # type: ignore[arg-type]
        if kind is int and not number.is_integer():
            raise ValueError
        return int(number) if kind is int else number
    except (TypeError, ValueError, OverflowError):
        raise UserError(
            f"{where}: {key}={value!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None


def read_annotations(path: str | os.PathLike) -> list[GroundingRecord]:
    """The records of a QVHighlights jsonl file; a line missing a required field is a UserError."""
    records = []
    for number, raw in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        missing = [k for k in ("qid", "vid", "duration") if k not in raw]
        if missing:
            raise UserError(
                f"{where} lacks {', '.join(missing)} (QVHighlights jsonl: qid, query, duration, vid, ...)"
            )
        segment = raw.get("segment_query")
        qid = _number(int, raw["qid"], "qid", where)
        duration = _number(float, raw["duration"], "duration", where)
        if not duration > 0:
            raise UserError(f"{where}: duration={raw['duration']!r} is not a positive number of seconds")
        if segment:
            try:
                segment = (float(segment[0]), float(segment[1]))
            except (TypeError, ValueError, IndexError, KeyError):
                raise UserError(f"{where}: segment_query={segment!r} is not a [start, end] pair") from None
        records.append(
            GroundingRecord(
                qid=qid,
                vid=str(raw["vid"]),
                query=str(raw.get("query", "")),
                duration=duration,
                windows=_window_list(raw.get("relevant_windows"), where),
                segment_query=segment or None,
                complementary_text=raw.get("complementary_text"),
            )
        )
    return records


def feature_path(root: str | os.PathLike, folder: str, modality: str, record: GroundingRecord) -> Path:
    """``<root>/<folder>/{vid}.npz`` for the video stream, ``<root>/<folder>/qid{qid}.npz`` otherwise."""
    name = f"{record.vid}.npz" if modality == "video" else f"qid{record.qid}.npz"
    return Path(root) / folder / name


def load_feature_array(
    path: str | os.PathLike, key: str, width: int, max_rows: int | None = None
) -> np.ndarray:
    """``float32 [n, width]`` from ``path[key]`` (a 1-D array is one row); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise BadFeatureFile(path, "missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise BadFeatureFile(path, f"no '{key}' array (has {', '.join(data.files) or 'none'})")
            array = np.asarray(data[key])
    except BadFeatureFile:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise BadFeatureFile(path, f"unreadable ({type(err).__name__})") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise BadFeatureFile(path, f"'{key}' has shape {array.shape}, expected [n, {width}]")
    if array.shape[1] != width:
        raise UserError(
            f"{path}: feature width {array.shape[1]} in '{key}' does not match dataset.feature_dim={width}"
        )
    if array.shape[0] == 0:
        raise BadFeatureFile(path, "empty")
    if max_rows is not None:
        array = array[:max_rows]
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise BadFeatureFile(path, "non-finite values")
    return array


def l2_normalize(array: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (the official loader normalises every feature array)."""
    return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), eps)


def check_folders(root: str | os.PathLike, folders: Mapping[str, str]) -> None:
    """A missing feature folder is a setup mistake (one line), not a corrupt sample."""
    for modality, folder in folders.items():
        if not (Path(root) / folder).is_dir():
            raise UserError(
                f"feature folder {Path(root) / folder} for '{modality}' not found; "
                f"set dataset.feature_dirs.{modality}=<folder under dataset.root> or drop it from dataset.modalities"
            )
