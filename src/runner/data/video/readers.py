"""Readers for the on-disk formats of the video datasets.

A reader turns a dataset root into :class:`VideoRecord` lists for the subsets ``train``, ``val``
and ``test``, plus the class list. Each reader parses the files exactly as the dataset ships them:

- HMDB51 (Kuehne et al., 2011): videos ``<root>/videos/<class>/<name>.avi`` and the official
  three-split files ``<root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`` whose lines
  are ``<name>.avi <flag>`` with flag 1 = train, 2 = test, 0 = unused.
- EPIC-KITCHENS-100 (Damen et al., 2022): annotation csvs ``EPIC_100_train.csv`` /
  ``EPIC_100_validation.csv`` (narration_id, participant_id, video_id, narration_timestamp,
  start_timestamp, stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun,
  noun_class, all_nouns, all_noun_classes) and videos ``<root>/<participant_id>/videos/<video_id>.MP4``.
- Kinetics-400 (Kay et al., 2017): ``train.csv`` / ``validate.csv`` (label, youtube_id, time_start,
  time_end, split) and clips ``<root>/{train,val}/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``.

Every constructor checks that the root exists and raises the standard one-line
:func:`runner.errors.missing_dataset_root` error otherwise.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass

from runner.errors import UserError, invalid_value, missing_dataset_root

log = logging.getLogger("runner.data")

__all__ = [
    "VideoRecord",
    "VideoReader",
    "HMDB51Reader",
    "EpicKitchens100Reader",
    "Kinetics400Reader",
    "parse_timestamp",
    "SUBSETS",
]

SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One labelled clip: a whole file, or a segment of it.

    ``start_frame``/``stop_frame`` are 0-based with ``stop_frame`` exclusive; ``start_sec``/
    ``stop_sec`` give the segment in seconds when frame numbers are not known.
    """

    path: str
    label: int
    clip_id: str
    start_frame: int | None = None
    stop_frame: int | None = None
    start_sec: float | None = None
    stop_sec: float | None = None


def parse_timestamp(text: str) -> float:
    """Seconds of an EPIC-KITCHENS timestamp ``HH:MM:SS.ff`` (also accepts ``MM:SS.ff`` / ``SS.ff``)."""
    parts = text.strip().split(":")
    if not parts or len(parts) > 3:
        raise ValueError(f"bad timestamp {text!r}")
    sec = 0.0
    for p in parts:
        sec = sec * 60.0 + float(p)
    return sec


class VideoReader:
    """Base class: root check, subset check and the class list."""

    name = "video"

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(self.root):
            raise missing_dataset_root(self.name, self.root)
        self._class_names: list[str] = []

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    def _check_subset(self, subset: str) -> None:
        if subset not in SUBSETS:
            raise invalid_value("subset", subset, "one of train, val, test")

    def records(self, subset: str) -> list[VideoRecord]:
        raise NotImplementedError

    def _need_file(self, path: str) -> None:
        if not os.path.isfile(path):
            raise UserError(f"{self.name} root {self.root} is incomplete: missing {path}")


class HMDB51Reader(VideoReader):
    """HMDB51 with one of its three official 70/30 splits.

    Classes are the ``<class>`` parts of ``testTrainMulti_7030_splits/<class>_test_split<k>.txt``
    (sorted). Flag 1 lines form ``train``, flag 2 lines form ``test``; HMDB51 has no validation
    split, so ``val`` is the test list. Listed files missing from ``videos/`` are skipped and counted.
    """

    name = "hmdb51"
    SPLIT_DIR = "testTrainMulti_7030_splits"

    def __init__(self, root: str, split: int = 1):
        super().__init__(root)
        try:
            split_i = int(split)
        except (TypeError, ValueError):
            split_i = -1
        if split_i not in (1, 2, 3):
            raise invalid_value("dataset.reader.split", split, "HMDB51 has splits 1, 2, 3")
        self.split = split_i
        split_dir = os.path.join(self.root, self.SPLIT_DIR)
        suffix = f"_test_split{self.split}.txt"
        files = (
            sorted(f for f in os.listdir(split_dir) if f.endswith(suffix)) if os.path.isdir(split_dir) else []
        )
        if not files:
            raise UserError(f"hmdb51 root {self.root} has no split files {split_dir}/<class>{suffix}")
        self._class_names = [f[: -len(suffix)] for f in files]
        self._lists: dict[int, list[VideoRecord]] = {1: [], 2: []}
        missing = 0
        for label, cls in enumerate(self._class_names):
            with open(os.path.join(split_dir, cls + suffix)) as fh:
                for line in fh:
                    parts = line.split()
                    if not parts:
                        continue
                    if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                        raise UserError(f"malformed HMDB51 split line in {cls + suffix}: {line.strip()!r}")
                    flag = int(parts[1])
                    if flag == 0:
                        continue
                    path = os.path.join(self.root, "videos", cls, parts[0])
                    if not os.path.isfile(path):
                        missing += 1
                        continue
                    clip_id = f"{cls}/{os.path.splitext(parts[0])[0]}"
                    self._lists[flag].append(VideoRecord(path=path, label=label, clip_id=clip_id))
        if missing:
            log.warning(
                "hmdb51: %d listed videos are missing under %s/videos and were skipped", missing, self.root
            )

    def records(self, subset: str) -> list[VideoRecord]:
        """Records of ``subset``: train = flag 1, val = test = flag 2."""
        self._check_subset(subset)
        return list(self._lists[1 if subset == "train" else 2])


class EpicKitchens100Reader(VideoReader):
    """EPIC-KITCHENS-100 action segments.

    ``target``: ``verb`` (``verb_class``), ``noun`` (``noun_class``) or ``action`` (the index of the
    ``(verb_class, noun_class)`` pair in the sorted set of pairs found in the train csv; validation
    segments whose pair never occurs in train are dropped and counted). ``val`` and ``test`` are the
    validation csv. ``start_frame``/``stop_frame`` in the csv are 1-based inclusive (frame numbers
    of the extracted ``frame_%010d.jpg`` files), converted here to 0-based with exclusive stop;
    rows without frame numbers fall back to the ``HH:MM:SS.ff`` timestamps.
    """

    name = "epic_kitchens"
    TRAIN_CSV = "EPIC_100_train.csv"
    VAL_CSV = "EPIC_100_validation.csv"

    def __init__(self, root: str, target: str = "verb"):
        super().__init__(root)
        if target not in ("verb", "noun", "action"):
            raise invalid_value("dataset.reader.target", target, "one of verb, noun, action")
        self.target = target
        train_rows = self._read_csv(self.TRAIN_CSV)
        val_rows = self._read_csv(self.VAL_CSV)
        if target == "action":
            pairs = sorted({(int(r["verb_class"]), int(r["noun_class"])) for r in train_rows})
            self._pair_index = {p: i for i, p in enumerate(pairs)}
            verb_names = self._names(train_rows + val_rows, "verb")
            noun_names = self._names(train_rows + val_rows, "noun")
            self._class_names = [f"{verb_names.get(v, v)} {noun_names.get(n, n)}" for v, n in pairs]
        else:
            names = self._official_names(target) or self._names(train_rows + val_rows, target)
            n = max(names) + 1 if names else 0
            self._class_names = [str(names.get(i, i)) for i in range(n)]
        self._records = {
            "train": self._to_records(train_rows, "train"),
            "val": self._to_records(val_rows, "val"),
        }

    def _read_csv(self, name: str) -> list[dict[str, str]]:
        path = os.path.join(self.root, name)
        self._need_file(path)
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    @staticmethod
    def _names(rows: list[dict[str, str]], key: str) -> dict[int, str]:
        names: dict[int, str] = {}
        for r in rows:
            names.setdefault(int(r[f"{key}_class"]), r[key])
        return names

    def _official_names(self, key: str) -> dict[int, str]:
        """Class names from ``EPIC_100_{verb,noun}_classes.csv`` (id, key, ...) when present."""
        path = os.path.join(self.root, f"EPIC_100_{key}_classes.csv")
        if not os.path.isfile(path):
            return {}
        with open(path, newline="") as fh:
            return {int(r["id"]): r["key"] for r in csv.DictReader(fh)}

    def _to_records(self, rows: list[dict[str, str]], subset: str) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        unseen = missing = 0
        for r in rows:
            if self.target == "action":
                label = self._pair_index.get((int(r["verb_class"]), int(r["noun_class"])))
                if label is None:
                    unseen += 1
                    continue
            else:
                label = int(r[f"{self.target}_class"])
            path = os.path.join(self.root, r["participant_id"], "videos", r["video_id"] + ".MP4")
            if not os.path.isfile(path):
                missing += 1
                continue
            if (r.get("start_frame") or "").strip() and (r.get("stop_frame") or "").strip():
                start_f, stop_f = int(r["start_frame"]), int(r["stop_frame"])
                out.append(
                    VideoRecord(
                        path,
                        label,
                        r["narration_id"],
                        start_frame=max(start_f - 1, 0),
                        stop_frame=max(stop_f, start_f),
                    )
                )
            else:
                out.append(
                    VideoRecord(
                        path,
                        label,
                        r["narration_id"],
                        start_sec=parse_timestamp(r["start_timestamp"]),
                        stop_sec=parse_timestamp(r["stop_timestamp"]),
                    )
                )
        if unseen:
            log.warning(
                "epic_kitchens: dropped %d %s segments whose (verb, noun) pair is not in train",
                unseen,
                subset,
            )
        if missing:
            log.warning(
                "epic_kitchens: %d %s segments reference missing videos and were skipped", missing, subset
            )
        return out

    def records(self, subset: str) -> list[VideoRecord]:
        """Segments of ``subset`` (val and test both come from the validation csv)."""
        self._check_subset(subset)
        return list(self._records["train" if subset == "train" else "val"])


class Kinetics400Reader(VideoReader):
    """Kinetics-400 trimmed clips.

    Classes are the sorted distinct labels of ``train.csv``; ``val`` and ``test`` use
    ``validate.csv`` with clips under ``val/``. Rows whose clip file is missing (common: YouTube
    videos disappear) are skipped and counted in a warning. Label directories may use the label as
    written or with spaces replaced by underscores.
    """

    name = "kinetics400"

    def __init__(self, root: str):
        super().__init__(root)
        train_rows = self._read_csv("train.csv")
        self._class_names = sorted({r["label"] for r in train_rows})
        self._index = {c: i for i, c in enumerate(self._class_names)}
        self._records = {
            "train": self._to_records(train_rows, "train"),
            "val": self._to_records(self._read_csv("validate.csv"), "val"),
        }

    def _read_csv(self, name: str) -> list[dict[str, str]]:
        path = os.path.join(self.root, name)
        self._need_file(path)
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    def _to_records(self, rows: list[dict[str, str]], folder: str) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        missing = unknown = 0
        for r in rows:
            label = self._index.get(r["label"])
            if label is None:
                unknown += 1
                continue
            name = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}.mp4"
            path = os.path.join(self.root, folder, r["label"], name)
            if not os.path.isfile(path):
                alt = os.path.join(self.root, folder, r["label"].replace(" ", "_"), name)
                if not os.path.isfile(alt):
                    missing += 1
                    continue
                path = alt
            out.append(VideoRecord(path, label, os.path.splitext(name)[0]))
        if missing:
            log.warning(
                "kinetics400: %d of %d %s clips are missing on disk and were skipped",
                missing,
                len(rows),
                folder,
            )
        if unknown:
            log.warning(
                "kinetics400: %d %s rows have labels not in train.csv and were skipped", unknown, folder
            )
        return out

    def records(self, subset: str) -> list[VideoRecord]:
        """Clips of ``subset`` (val and test both come from ``validate.csv``)."""
        self._check_subset(subset)
        return list(self._records["train" if subset == "train" else "val"])
