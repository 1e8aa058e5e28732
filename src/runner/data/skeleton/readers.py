"""Readers of skeleton-sequence formats (card "Data" and "Read from STEP and PYSKL").

Every reader is a callable ``reader(root) -> SkeletonCollection`` (configured with Hydra's
``_partial_``/instance pattern) returning the sequences as ``[M, T, V, C]`` float32 arrays
(M persons, T frames, V joints, C channels) with integer labels:

* :class:`EGaitReader` — E-Gait / Emotion-Gait as STEP ships it: ``features<ftype>.h5`` (one dataset
  per gait, ``float [T, 48]`` = 16 joints × xyz, frame-major), ``labels<ftype>.h5`` (one scalar per
  gait, same keys), optionally ``affectiveFeatures<ftype>.h5``. Gaits are paired with labels by key
  (STEP pairs by position; keys are identical in the released files).
* :class:`PysklReader` — a PYSKL annotation pickle ``{split: {name: [frame_dir…]}, annotations:
  [{frame_dir, label, keypoint [M, T, V, C], keypoint_score [M, T, V] (2-D), total_frames, …}]}``,
  loaded with :func:`runner.data.safe_pickle.load_restricted_pickle` (only containers and NumPy arrays;
  a pickle naming any other global is refused before anything from it runs).
* :class:`NTUSkeletonReader` — a folder of NTU RGB+D ``.skeleton`` text files (frame count; per frame
  a body count; per body an info line, the joint count and one line per joint, x y z first); the label
  is the action number ``A<nnn>`` of the file name.

A malformed sample (wrong shape, non-finite values, too few frames, missing or invalid label, a text
file that does not parse) is skipped: each one is named in the log with its reason, counted per reason
in ``metrics.json`` (``skipped``, :func:`runner.data.skips.record_skip`) and returned in ``skipped``.
A file that is not of the format at all is one :class:`UserError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.data.safe_pickle import load_restricted_pickle
from runner.data.skips import record_skip
from runner.errors import UserError

log = logging.getLogger("runner.data")

#: fewer frames than this cannot give the jerk features (third differences) and are skipped
MIN_FRAMES = 4


class MalformedSample(ValueError):
    """One sample of a file cannot be used; the message says why (``kind``: the reason without the
    sample's particulars, under which it is counted)."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or message


@dataclass
class SkeletonCollection:
    """What a reader returns.

    Attributes:
        sequences: one ``[M, T, V, C]`` float32 array per sample.
        labels: int64 ``[N]``.
        names: one name per sample (h5 key, frame_dir, file name).
        coord_dims: how many leading channels are coordinates (2 or 3); later ones are scores.
        skipped: ``(name, reason)`` of every malformed sample left out.
        splits: predefined splits of the file (name -> sample indices), e.g. PYSKL's ``xsub_train``.
        affective: precomputed affective features ``[N, F]`` shipped with the data, if any.
        source: the file or folder read.
    """

    sequences: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    coord_dims: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: dict[str, list[int]] = field(default_factory=dict)
    affective: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.sequences)


def check_sequence(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as float32 ``[M, T, V, C]`` if it is a usable sample, else :class:`MalformedSample`."""
    if array.ndim != 4:
        raise MalformedSample(
            f"expected [M, T, V, C], got shape {array.shape}", "malformed samples (wrong shape)"
        )
    if array.shape[0] < 1 or array.shape[2] < 1 or array.shape[3] < 2:
        raise MalformedSample(
            f"empty person / joint / coordinate axis in shape {array.shape}",
            "malformed samples (wrong shape)",
        )
    if array.shape[1] < MIN_FRAMES:
        raise MalformedSample(
            f"{array.shape[1]} frames (at least {MIN_FRAMES} needed)",
            f"samples with fewer than {MIN_FRAMES} frames",
        )
    try:
        values = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise MalformedSample(
            f"non-numeric values ({err})", "malformed samples (non-numeric values)"
        ) from err
    if not np.isfinite(values).all():
        raise MalformedSample("non-finite coordinates (NaN or inf)", "samples with NaN / inf coordinates")
    return values


def check_label(value, name: str) -> int:
    """A non-negative integer label, else :class:`MalformedSample`."""
    try:
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"{array.size} values")
        scalar = array.reshape(()).item()
        label = int(scalar)
        if label != scalar or label < 0:
            raise ValueError(scalar)
    except (TypeError, ValueError) as err:
        raise MalformedSample(
            f"label is not a non-negative integer ({err})", "samples without a non-negative integer label"
        ) from err
    return label


def keep_most_common_joint_count(
    sequences: list[np.ndarray], names: list[str], skipped: list[tuple[str, str, str]]
) -> list[int]:
    """Indices of the samples whose joint count is the most common one; the others are skipped."""
    if not sequences:
        return []
    counts = Counter(s.shape[2] for s in sequences)
    common = counts.most_common(1)[0][0]
    keep = []
    for i, seq in enumerate(sequences):
        if seq.shape[2] == common:
            keep.append(i)
        else:
            skipped.append(
                (
                    names[i],
                    f"{seq.shape[2]} joints where the file's samples have {common}",
                    "samples with another joint count",
                )
            )
    return keep


def report_skipped(skipped: list[tuple[str, str, str]], source: str) -> list[tuple[str, str]]:
    """Log every skipped sample with its reason, count them per kind for ``metrics.json``, and return
    ``(name, reason)`` pairs."""
    by_kind: dict[str, list[str]] = {}
    for name, reason, kind in skipped:
        log.warning("%s: skipping sample %s: %s", source, name, reason)
        by_kind.setdefault(kind, []).append(name)
    for kind, names in by_kind.items():
        record_skip(source, kind, len(names), names)
    return [(name, reason) for name, reason, _ in skipped]


# ---- E-Gait -----------------------------------------------------------------------------------------
class EGaitReader:
    """E-Gait h5 files in a folder (see the module docstring).

    Args:
        ftype: the file-name suffix (``features<ftype>.h5``; STEP uses e.g. ``"ELMD"`` or ``""``).
        coords_per_joint: coordinates per joint in a row (3: x, y, z).
        read_affective: also read ``affectiveFeatures<ftype>.h5`` (error if absent).
    """

    def __init__(self, ftype: str = "", coords_per_joint: int = 3, read_affective: bool = False) -> None:
        self.ftype = str(ftype or "")
        self.coords = int(coords_per_joint)
        self.read_affective = bool(read_affective)

    def files(self, root: str | os.PathLike) -> dict[str, Path]:
        root = Path(root)
        return {kind: root / f"{kind}{self.ftype}.h5" for kind in ("features", "labels", "affectiveFeatures")}

    def __call__(self, root: str | os.PathLike) -> SkeletonCollection:
        import h5py

        files = self.files(root)
        for kind in ("features", "labels") + (("affectiveFeatures",) if self.read_affective else ()):
            if not files[kind].is_file():
                raise UserError(
                    f"E-Gait file {files[kind]} not found; dataset.root must hold features{self.ftype}.h5 "
                    f"and labels{self.ftype}.h5 (dataset.reader.ftype sets the suffix), or use "
                    "dataset.synthetic=true"
                )
        try:
            with h5py.File(files["features"], "r") as ff, h5py.File(files["labels"], "r") as fl:
                feature_keys, label_keys = list(ff.keys()), list(fl.keys())
                pairs = self._pair_keys(feature_keys, label_keys, files)
                affective_file = h5py.File(files["affectiveFeatures"], "r") if self.read_affective else None
                try:
                    return self._read(ff, fl, affective_file, pairs, str(root))
                finally:
                    if affective_file is not None:
                        affective_file.close()
        except (OSError, KeyError, RuntimeError) as err:  # h5py's errors for damaged files
            raise UserError(
                f"{files['features']} or {files['labels']} is not a readable HDF5 file "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None

    @staticmethod
    def _pair_keys(
        feature_keys: list[str], label_keys: list[str], files: dict[str, Path]
    ) -> list[tuple[str, str]]:
        if set(feature_keys) == set(label_keys):
            return [(k, k) for k in feature_keys]
        if len(feature_keys) == len(label_keys):
            log.info("E-Gait: feature and label keys differ; pairing them by position as STEP does")
            return list(zip(feature_keys, label_keys, strict=True))
        raise UserError(
            f"{files['features']} has {len(feature_keys)} gaits but {files['labels']} has {len(label_keys)} "
            "labels with different keys; they must pair up"
        )

    def _read(self, ff, fl, affective_file, pairs, source: str) -> SkeletonCollection:
        sequences, labels, names, affective, skipped = [], [], [], [], []
        for feature_key, label_key in pairs:
            try:
                raw = np.asarray(ff[feature_key][()])
                if raw.ndim != 2 or raw.shape[1] % self.coords:
                    raise MalformedSample(
                        f"expected [T, joints×{self.coords}] rows, got shape {raw.shape}",
                        "malformed samples (wrong shape)",
                    )
                seq = raw.reshape(1, raw.shape[0], raw.shape[1] // self.coords, self.coords)
                seq = check_sequence(seq, feature_key)
                label = check_label(fl[label_key][()], feature_key)
                row = None
                if affective_file is not None:
                    if feature_key not in affective_file:
                        raise MalformedSample(
                            "no affective-feature row for this gait", "gaits without affective features"
                        )
                    row = np.asarray(affective_file[feature_key][()], dtype=np.float32).reshape(-1)
                    if not np.isfinite(row).all():
                        raise MalformedSample(
                            "non-finite affective features", "gaits with NaN / inf affective features"
                        )
            except MalformedSample as err:
                skipped.append((feature_key, str(err), err.kind))
                continue
            except (OSError, KeyError, RuntimeError) as err:  # one damaged dataset of the file
                skipped.append((feature_key, f"unreadable ({type(err).__name__})", "unreadable samples"))
                continue
            sequences.append(seq)
            labels.append(label)
            names.append(feature_key)
            affective.append(row)
        keep = keep_most_common_joint_count(sequences, names, skipped)
        if affective_file is not None:
            widths = Counter(affective[i].shape[0] for i in keep)
            width = widths.most_common(1)[0][0] if widths else 0
            bad = [i for i in keep if affective[i].shape[0] != width]
            skipped += [
                (
                    names[i],
                    f"{affective[i].shape[0]} affective features, not {width}",
                    "gaits with another feature count",
                )
                for i in bad
            ]
            keep = [i for i in keep if affective[i].shape[0] == width]
        return SkeletonCollection(
            sequences=[sequences[i] for i in keep],
            labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
            names=[names[i] for i in keep],
            coord_dims=self.coords,
            skipped=report_skipped(skipped, source),
            affective=np.stack([affective[i] for i in keep]) if affective_file is not None and keep else None,
            source=source,
        )


# ---- PYSKL ------------------------------------------------------------------------------------------
class PysklReader:
    """A PYSKL annotation pickle (see the module docstring).

    Args:
        filename: the pickle inside ``root`` when ``root`` is a folder (None: its only ``*.pkl``);
            ``root`` may also be the pickle itself.
        with_score: for 2-D keypoints, append ``keypoint_score`` as a third channel (PYSKL's input).
    """

    FORMAT = "PYSKL annotation pickle"

    def __init__(self, filename: str | None = None, with_score: bool = True) -> None:
        self.filename = filename
        self.with_score = bool(with_score)

    def resolve(self, root: str | os.PathLike) -> Path:
        root = Path(root)
        if root.is_file():
            return root
        if self.filename:
            path = root / self.filename
            if not path.is_file():
                raise UserError(f"PYSKL pickle {path} not found; set dataset.reader.filename or dataset.root")
            return path
        candidates = sorted(root.glob("*.pkl")) if root.is_dir() else []
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise UserError(
                f"dataset.root={root} must be a PYSKL .pkl file or a folder with exactly one .pkl "
                f"(found: {found}); set dataset.reader.filename to choose, or use dataset.synthetic=true"
            )
        return candidates[0]

    def __call__(self, root: str | os.PathLike) -> SkeletonCollection:
        path = self.resolve(root)
        payload = load_restricted_pickle(path, format_name=self.FORMAT)
        if not isinstance(payload, dict) or not isinstance(payload.get("annotations"), list):
            raise UserError(f"{path}: a {self.FORMAT} is a dict with an 'annotations' list")
        split = payload.get("split") or {}
        if not isinstance(split, dict):
            raise UserError(f"{path}: 'split' must map split names to lists of frame_dir")
        sequences, labels, names, skipped, coord_dims = [], [], [], [], []
        for index, ann in enumerate(payload["annotations"]):
            name = (
                str(ann.get("frame_dir", f"annotation[{index}]"))
                if isinstance(ann, dict)
                else f"annotation[{index}]"
            )
            try:
                seq, dims = self._sample(ann)
                label = check_label(ann.get("label"), name)
            except MalformedSample as err:
                skipped.append((name, str(err), err.kind))
                continue
            sequences.append(seq)
            labels.append(label)
            names.append(name)
            coord_dims.append(dims)
        keep = keep_most_common_joint_count(sequences, names, skipped)
        if keep:
            channel_counts = Counter((sequences[i].shape[3], coord_dims[i]) for i in keep)
            (channels, dims), _ = channel_counts.most_common(1)[0]
            bad = [i for i in keep if (sequences[i].shape[3], coord_dims[i]) != (channels, dims)]
            skipped += [
                (
                    names[i],
                    f"{sequences[i].shape[3]} channels where others have {channels}",
                    "samples with another channel count",
                )
                for i in bad
            ]
            keep = [i for i in keep if i not in set(bad)]
        else:
            dims = 3
        reported = report_skipped(skipped, str(path))
        kept_names = [names[i] for i in keep]
        position = {n: i for i, n in enumerate(kept_names)}
        splits = {
            str(split_name): [position[str(n)] for n in members if str(n) in position]
            for split_name, members in split.items()
            if isinstance(members, list | tuple)
        }
        return SkeletonCollection(
            sequences=[sequences[i] for i in keep],
            labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
            names=kept_names,
            coord_dims=dims,
            skipped=reported,
            splits=splits,
            source=str(path),
        )

    def _sample(self, ann) -> tuple[np.ndarray, int]:
        if not isinstance(ann, dict):
            raise MalformedSample(
                f"annotation is a {type(ann).__name__}, not a dict", "annotations that are not dicts"
            )
        if "keypoint" not in ann:
            raise MalformedSample("no 'keypoint' array", "annotations without 'keypoint'")
        keypoint = np.asarray(ann["keypoint"])
        seq = check_sequence(keypoint, "")
        dims = seq.shape[3]
        if dims == 2 and self.with_score:
            if "keypoint_score" not in ann:
                raise MalformedSample(
                    "2-D keypoints without 'keypoint_score' (dataset.reader.with_score=false reads them)",
                    "2-D annotations without 'keypoint_score'",
                )
            score = np.asarray(ann["keypoint_score"], dtype=np.float32)
            if score.shape != seq.shape[:3] or not np.isfinite(score).all():
                raise MalformedSample(
                    f"keypoint_score shape {score.shape} does not match keypoint {seq.shape} (or is not finite)",
                    "annotations with a bad 'keypoint_score'",
                )
            seq = np.concatenate([seq, score[..., None]], axis=-1)
        return seq, min(dims, 3)


# ---- NTU RGB+D ----------------------------------------------------------------------------------------
NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def read_ntu_skeleton(path: str | os.PathLike, max_bodies: int = 2) -> np.ndarray:
    """``[M, T, V, 3]`` float32 joints of one NTU ``.skeleton`` file (bodies in the order each frame
    lists them, at most ``max_bodies``; absent bodies are zeros). Raises :class:`MalformedSample`."""
    try:
        with open(path) as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise MalformedSample(f"unreadable ({err})", "unreadable files") from err
    cursor = 0

    def take() -> str:
        nonlocal cursor
        if cursor >= len(lines):
            raise MalformedSample("file ends early (truncated)", "truncated files")
        cursor += 1
        return lines[cursor - 1]

    def count(line: str, what: str) -> int:
        value = int(line)
        if value < 0:
            raise MalformedSample(
                f"negative {what} count {value} at line {cursor}", "files that do not parse"
            )
        return value

    try:
        num_frames = count(take(), "frame")
        frames: list[list[np.ndarray]] = []
        num_joints = None
        for _ in range(num_frames):
            bodies = []
            for _ in range(count(take(), "body")):
                take()  # body info line
                joints_here = count(take(), "joint")
                if num_joints is None:
                    num_joints = joints_here
                elif joints_here != num_joints:
                    raise MalformedSample(
                        f"{joints_here} joints in one body, {num_joints} in another",
                        "files with inconsistent joint counts",
                    )
                coords = [take().split()[:3] for _ in range(joints_here)]
                bodies.append(np.asarray(coords, dtype=np.float32))
            frames.append(bodies)
    except ValueError as err:
        if isinstance(err, MalformedSample):
            raise
        raise MalformedSample(
            f"not an NTU .skeleton text file at line {cursor} ({err})", "files that do not parse"
        ) from err
    if num_joints is None:
        raise MalformedSample("no body in any frame", "files without a body")
    persons = max(1, min(max_bodies, max(len(b) for b in frames)))
    out = np.zeros((persons, len(frames), num_joints, 3), dtype=np.float32)
    for t, bodies in enumerate(frames):
        for m, body in enumerate(bodies[:persons]):
            if body.shape != (num_joints, 3):
                raise MalformedSample(
                    f"frame {t}: joint lines with fewer than 3 values", "files that do not parse"
                )
            out[m, t] = body
    return out


class NTUSkeletonReader:
    """A folder of NTU RGB+D ``.skeleton`` files; label = action number − 1 (``A001`` → 0).

    Args:
        max_bodies: persons kept per frame (NTU: 2).
    """

    def __init__(self, max_bodies: int = 2) -> None:
        self.max_bodies = int(max_bodies)

    def __call__(self, root: str | os.PathLike) -> SkeletonCollection:
        root = Path(root)
        files = sorted(root.rglob("*.skeleton")) if root.is_dir() else []
        if not files:
            raise UserError(
                f"no NTU .skeleton files under {root}; set dataset.root or use dataset.synthetic=true"
            )
        sequences, labels, names, skipped = [], [], [], []
        for path in files:
            match = NTU_NAME.search(path.name)
            try:
                if match is None:
                    raise MalformedSample(
                        "file name has no S…C…P…R…A… code to read the action from",
                        "files without an NTU name code",
                    )
                seq = check_sequence(read_ntu_skeleton(path, self.max_bodies), path.name)
            except MalformedSample as err:
                skipped.append((path.name, str(err), err.kind))
                continue
            sequences.append(seq)
            labels.append(int(match.group(5)) - 1)
            names.append(path.stem)
        keep = keep_most_common_joint_count(sequences, names, skipped)
        return SkeletonCollection(
            sequences=[sequences[i] for i in keep],
            labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
            names=[names[i] for i in keep],
            coord_dims=3,
            skipped=report_skipped(skipped, str(root)),
            source=str(root),
        )
