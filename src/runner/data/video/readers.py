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

import logging
import os
from dataclasses import dataclass

from runner.data.files import csv_rows, parse_float, parse_int, read_text
from runner.data.skips import nothing_left, record_skip
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
        missing: list[str] = []
        for label, cls in enumerate(self._class_names):
            split_file = os.path.join(split_dir, cls + suffix)
            listed = 0
            for number, line in enumerate(read_text(split_file).splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise UserError(
                        f"{split_file}, line {number}: expected '<name>.avi <0|1|2>', found {line.strip()[:80]!r}"
                    )
                listed += 1
                flag = int(parts[1])
                if flag == 0:
                    continue
                path = os.path.join(self.root, "videos", cls, parts[0])
                if not os.path.isfile(path):
                    missing.append(f"{cls}/{parts[0]}")
                    continue
                clip_id = f"{cls}/{os.path.splitext(parts[0])[0]}"
                self._lists[flag].append(VideoRecord(path=path, label=label, clip_id=clip_id))
            if not listed:
                raise UserError(
                    f"{split_file} lists no video; a split file has one '<name>.avi <flag>' per line"
                )
        record_skip(f"hmdb51 {self.root}/videos", "listed videos missing on disk", len(missing), missing)
        video_dir = os.path.join(self.root, "videos")
        unlisted = (
            sorted(set(os.listdir(video_dir)) - set(self._class_names)) if os.path.isdir(video_dir) else []
        )
        record_skip(f"hmdb51 {split_dir}", f"class folders without a *{suffix} file", len(unlisted), unlisted)
        for flag, subset in ((1, "train"), (2, "test")):
            if not self._lists[flag]:
                raise nothing_left(f"hmdb51 {self.root}", f"{subset} videos of split {self.split}")

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

    REQUIRED = ("narration_id", "participant_id", "video_id", "verb", "verb_class", "noun", "noun_class")

    def _read_csv(self, name: str) -> list[dict[str, str]]:
        """Rows of an annotation csv, with ``_line`` (the line number) and the class columns checked."""
        path = os.path.join(self.root, name)
        self._need_file(path)
        rows = []
        for line, row in csv_rows(path, self.REQUIRED, non_empty=self.REQUIRED):
            for key in ("verb_class", "noun_class"):
                row[key] = str(parse_int(path, line, key, row[key], low=0))
            has_frames = (row.get("start_frame") or "").strip() and (row.get("stop_frame") or "").strip()
            if has_frames:
                for key in ("start_frame", "stop_frame"):
                    row[key] = str(parse_int(path, line, key, row[key], low=0))
            else:
                for key in ("start_timestamp", "stop_timestamp"):
                    try:
                        parse_timestamp(row.get(key) or "")
                    except ValueError:
                        raise UserError(
                            f"{path}, line {line}: {key}={row.get(key)!r} is not HH:MM:SS.ff (and no frame numbers)"
                        ) from None
            row["_line"] = f"{path}, line {line}"
            rows.append(row)
        if not rows:
            raise UserError(f"{path} has a header but no segment")
        return rows

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
        return {
            parse_int(path, line, "id", r["id"], low=0): r["key"] for line, r in csv_rows(path, ("id", "key"))
        }

    def _to_records(self, rows: list[dict[str, str]], subset: str) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        unseen: list[str] = []
        missing: list[str] = []
        for r in rows:
            if self.target == "action":
                label = self._pair_index.get((int(r["verb_class"]), int(r["noun_class"])))
                if label is None:
                    unseen.append(r["narration_id"])
                    continue
            else:
                label = int(r[f"{self.target}_class"])
                if label >= self.num_classes:
                    raise UserError(
                        f"{r['_line']}: {self.target}_class={label} is outside the {self.num_classes} classes"
                    )
            path = os.path.join(self.root, r["participant_id"], "videos", r["video_id"] + ".MP4")
            if not os.path.isfile(path):
                missing.append(r["narration_id"])
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
        record_skip(
            f"epic_kitchens {subset}", "segments whose (verb, noun) pair is not in train", len(unseen), unseen
        )
        record_skip(
            f"epic_kitchens {subset}", "segments whose video is missing on disk", len(missing), missing
        )
        if not out:
            raise nothing_left(f"epic_kitchens {subset}", f"segments with a video under {self.root}")
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

    # annotation files: in the root, or in annotations/ (the common download layout); the
    # validation list is validate.csv (the original release) or val.csv (the re-hosted one)
    CSV_NAMES = {"train": ("train.csv",), "val": ("validate.csv", "val.csv")}
    REQUIRED = ("label", "youtube_id", "time_start", "time_end")

    def __init__(self, root: str):
        super().__init__(root)
        train_rows = self._read_csv("train")
        self._class_names = sorted({r["label"] for r in train_rows})
        self._index = {c: i for i, c in enumerate(self._class_names)}
        self._records = {
            "train": self._to_records(train_rows, "train"),
            "val": self._to_records(self._read_csv("val"), "val"),
        }

    def _csv_path(self, subset: str) -> str:
        for folder in (self.root, os.path.join(self.root, "annotations")):
            for name in self.CSV_NAMES[subset]:
                if os.path.isfile(os.path.join(folder, name)):
                    return os.path.join(folder, name)
        names = " or ".join(self.CSV_NAMES[subset])
        raise UserError(
            f"kinetics400 root {self.root} is incomplete: no {names} in it or in its annotations/"
        )

    def _read_csv(self, subset: str) -> list[dict[str, str]]:
        path = self._csv_path(subset)
        rows = []
        for line, row in csv_rows(path, self.REQUIRED, non_empty=self.REQUIRED):
            start = parse_float(path, line, "time_start", row["time_start"])
            end = parse_float(path, line, "time_end", row["time_end"])
            if start < 0 or end <= start:
                raise UserError(f"{path}, line {line}: time_start={start:g}, time_end={end:g} is not a clip")
            row["_name"] = f"{row['youtube_id']}_{int(start):06d}_{int(end):06d}.mp4"
            rows.append(row)
        if not rows:
            raise UserError(f"{path} has a header but no clip")
        return rows

    def _clip_path(self, folder: str, label: str, name: str) -> str | None:
        """The clip under ``<folder>/<label>/`` (label as written or with underscores) or flat in
        ``<folder>/`` (the common download layout)."""
        base = os.path.join(self.root, folder)
        for candidate in (
            os.path.join(base, label, name),
            os.path.join(base, label.replace(" ", "_"), name),
            os.path.join(base, name),
        ):
            if os.path.isfile(candidate):
                return candidate
        return None

    def _to_records(self, rows: list[dict[str, str]], folder: str) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        missing: list[str] = []
        unknown: list[str] = []
        for r in rows:
            label = self._index.get(r["label"])
            if label is None:
                unknown.append(r["youtube_id"])
                continue
            name = r["_name"]
            path = self._clip_path(folder, r["label"], name)
            if path is None:
                missing.append(name)
                continue
            out.append(VideoRecord(path, label, os.path.splitext(name)[0]))
        record_skip(f"kinetics400 {folder}", "listed clips missing on disk", len(missing), missing)
        record_skip(f"kinetics400 {folder}", "rows with labels not in train.csv", len(unknown), unknown)
        if not out:
            raise nothing_left(f"kinetics400 {folder}", f"clips under {os.path.join(self.root, folder)}")
        return out

    def records(self, subset: str) -> list[VideoRecord]:
        """Clips of ``subset`` (val and test both come from ``validate.csv``)."""
        self._check_subset(subset)
        return list(self._records["train" if subset == "train" else "val"])
