"""Readers for the sticker / meme emotion datasets (MGHFT card, "Data").

SER30K (``dataset.root``)::

    Images/<topic>/<file_name>
    Annotations/image-level/{train,val,test}.json     {"annotations": [{topic, file_name, text, anno1..3, anno}]}
    Annotations_mg/image-level/{train,val,test}.json  the same entries, ``text`` = the MLLM's multi-view
                                                      description (MGHFT's release)

The label is ``anno - 1`` (7 classes). The four view descriptions are the description split at the
markers ``#The sticker's intention|style|main role|gesture`` (each view keeps its marker, as the
release's splitter does); a view missing from a description is the empty string.

MET-MEME (``dataset.root``)::

    Cimages/<file_name>, Eimages/<file_name>        (``language: C`` Chinese, ``E`` English)
    C_text.csv, E_text.csv                          file_name,text  (gbk)
    label_C.csv, label_E.csv                        file_name,sentiment category,...  ("1(happiness)")
    views_C.json, views_E.json                      optional: {file_name: description with the four markers}

Label = the category number - 1 (happiness, love, anger, sorrow, fear, hate, surprise). MET-MEME has
no official split: a seeded 70/10/20 split of the labelled memes (``split_seed``). MET-MEME ships no
multi-view descriptions; generate them (any MLLM) into ``views_<lang>.json`` in SER30K's marker
format. Without that file each view is the meme's own text (reconstruction, documented assumption:
the four stages then see the same text).

A json entry without a label, or with a label outside the classes, stops with one line naming the
file and the entry; so does a descriptions folder that lacks a split's file, or a csv whose header
lacks its columns. Stickers / memes left without a description (or a MET-MEME text row) are counted
under ``skipped`` in ``metrics.json`` (:func:`runner.data.skips.record_skip`). Images are not opened here: an unreadable image is skipped (named, counted) by
the data loader.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from runner.data.skips import record_skip
from runner.errors import UserError, invalid_value, missing_dataset_root

log = logging.getLogger("runner.data")

SPLITS = ("train", "val", "test")
VIEW_NAMES = ("intention", "style", "main role", "gesture")
VIEW_MARKER = re.compile(r"(#The sticker's (?:intention|style|main role|gesture))")
SER30K_CLASSES = tuple(f"emotion_{i}" for i in range(1, 8))  # anno 1..7; names are not in the json
METMEME_CLASSES = ("happiness", "love", "anger", "sorrow", "fear", "hate", "surprise")


@dataclass(frozen=True)
class StickerRecord:
    """One labelled sticker: image path, label, a stable key (``topic/file``), its four view
    descriptions and the whole description (empty strings when the dataset has none)."""

    path: str
    label: int
    key: str
    views: tuple[str, str, str, str] = ("", "", "", "")
    description: str = ""


def split_views(description: str) -> tuple[str, str, str, str]:
    """The four views of a multi-view description, each starting with its marker.

    Text before the first marker is dropped (as the release does); a view that appears twice keeps
    its last occurrence; a missing view is ``""``.
    """
    parts = VIEW_MARKER.split(description or "")
    views = dict.fromkeys(VIEW_NAMES, "")
    for i in range(1, len(parts), 2):
        name = parts[i].removeprefix("#The sticker's ")
        views[name] = (parts[i] + parts[i + 1]).strip()
    return tuple(views[n] for n in VIEW_NAMES)  # type: ignore[return-value]


def _label(value: object, num_classes: int, offset: int, where: str) -> int:
    """``int(value) - offset`` in ``[0, num_classes)``, else a one-line UserError naming ``where``."""
    try:
        label = int(str(value).strip()) - offset
    except (TypeError, ValueError):
        raise UserError(f"{where}: label {value!r} is not a class number") from None
    if not 0 <= label < num_classes:
        raise UserError(
            f"{where}: label {value!r} is not one of the {num_classes} classes "
            f"({offset}..{num_classes - 1 + offset})"
        )
    return label


class SER30KReader:
    """SER30K's json layout (module docstring). ``records(split)`` gives :class:`StickerRecord` s.

    Args:
        root: the dataset folder.
        annotations: the folder of the labelled split files.
        descriptions: the folder of MGHFT's multi-view descriptions (``null`` or absent: no views).
        class_names: names for ``anno`` 1..7 (used for per-class F1).
    """

    def __init__(
        self,
        root: str,
        annotations: str = "Annotations/image-level",
        descriptions: str | None = "Annotations_mg/image-level",
        images: str = "Images",
        class_names: tuple[str, ...] | list[str] = SER30K_CLASSES,
    ) -> None:
        self.root = Path(root).expanduser()
        if not (self.root / annotations).is_dir():
            raise missing_dataset_root("SER30K", str(self.root / annotations))
        self.annotations = self.root / annotations
        self.descriptions = self.root / descriptions if descriptions else None
        self.images = self.root / images
        self.class_names = [str(c) for c in class_names]
        self._cache: dict[str, list[StickerRecord]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_views(self) -> bool:
        """True when the descriptions folder is there; a split file missing from it is a UserError (a
        silent fall-back to no views would train the text branch on nothing)."""
        if self.descriptions is None or not self.descriptions.is_dir():
            return False
        missing = [s for s in SPLITS if not (self.descriptions / f"{s}.json").is_file()]
        if missing:
            raise UserError(
                f"{self.descriptions} lacks {', '.join(f'{s}.json' for s in missing)}; every split needs "
                "its multi-view descriptions (dataset.reader.descriptions=null reads none)"
            )
        return True

    @staticmethod
    def _entries(path: Path) -> list[dict]:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise UserError(f"{path} is not valid json ({e})") from None
        entries = payload.get("annotations") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise UserError(f"{path} has no 'annotations' list")
        return entries

    def _descriptions(self, split: str) -> dict[str, str]:
        if not self.has_views:
            return {}
        path = self.descriptions / f"{split}.json"  # type: ignore[operator]
        out = {}
        for i, entry in enumerate(self._entries(path)):
            if not isinstance(entry, dict) or "topic" not in entry or "file_name" not in entry:
                raise UserError(f"{path}: entry {i} lacks topic / file_name")
            out[f"{entry['topic']}/{entry['file_name']}"] = str(entry.get("text") or "")
        return out

    def records(self, split: str) -> list[StickerRecord]:
        if split not in SPLITS:
            raise invalid_value("split", split, "one of train, val, test")
        if split in self._cache:
            return self._cache[split]
        path = self.annotations / f"{split}.json"
        if not path.is_file():
            raise UserError(f"SER30K split file {path} not found (dataset.root={self.root})")
        with_views = self.has_views
        descriptions = self._descriptions(split)
        records, undescribed = [], []
        for i, entry in enumerate(self._entries(path)):
            if not isinstance(entry, dict) or "topic" not in entry or "file_name" not in entry:
                raise UserError(f"{path}: entry {i} lacks topic / file_name")
            key = f"{entry['topic']}/{entry['file_name']}"
            where = f"{path}: entry {i} ({key})"
            if entry.get("anno") in (None, ""):
                raise UserError(f"{where} has no label ('anno')")
            label = _label(entry["anno"], self.num_classes, 1, where)
            description = descriptions.get(key, "")
            if with_views and key not in descriptions:
                undescribed.append(key)
            records.append(
                StickerRecord(
                    path=str(self.images / str(entry["topic"]) / str(entry["file_name"])),
                    label=label,
                    key=key,
                    views=split_views(description),
                    description=description,
                )
            )
        if with_views:
            record_skip(
                str(self.descriptions / f"{split}.json"),
                "stickers without a multi-view description (empty views)",
                len(undescribed),
                undescribed,
            )
        self._cache[split] = records
        return records


_CATEGORY = re.compile(r"^\s*(\d+)\s*(?:\(.*\))?\s*$")


def _read_csv(path: Path, encoding: str, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a csv as dicts; decoded with ``encoding`` (MET-MEME: gbk), UTF-8 as a fallback. A header
    without one of ``required`` (an empty or foreign file) or a malformed row is a UserError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    for enc in (encoding, "utf-8-sig"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = raw.decode(encoding, errors="replace")
        log.warning("%s is neither %s nor UTF-8: undecodable bytes replaced", path, encoding)
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        header = [(name or "").strip() for name in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise UserError(
                f"{path}, line 1: the header lacks column(s) {', '.join(missing)} (an empty or foreign file?)"
            )
        rows = list(reader)
    except csv.Error as e:
        raise UserError(f"{path}, line {reader.line_num}: malformed CSV ({e})") from None
    return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in rows]


class MetMemeReader:
    """MET-MEME (module docstring): one language's memes with a seeded 70/10/20 split."""

    def __init__(
        self,
        root: str,
        language: str = "E",
        split_seed: int = 0,
        split_fractions: tuple[float, float, float] | list[float] = (0.7, 0.1, 0.2),
        encoding: str = "gbk",
        class_names: tuple[str, ...] | list[str] = METMEME_CLASSES,
    ) -> None:
        if language not in ("C", "E"):
            raise invalid_value("dataset.reader.language", language, "C (Chinese) or E (English)")
        if len(split_fractions) != 3 or abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
            raise invalid_value(
                "dataset.reader.split_fractions", list(split_fractions), "3 fractions summing to 1"
            )
        self.root = Path(root).expanduser()
        self.language = language
        self.labels_file = self.root / f"label_{language}.csv"
        if not self.labels_file.is_file():
            raise missing_dataset_root("MET-MEME", str(self.labels_file))
        self.class_names = [str(c) for c in class_names]
        images = self.root / f"{language}images"
        nested = images / f"{language}images"  # the archives unpack into a folder of the same name
        self.images = nested if nested.is_dir() else images
        self.texts = self._texts(self.root / f"{language}_text.csv", encoding)
        self.views_file = self.root / f"views_{language}.json"
        self.descriptions = self._descriptions()
        self._splits = self._split(self._labelled(encoding), int(split_seed), tuple(split_fractions))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_views(self) -> bool:
        return True  # the meme text stands in for the views when there is no views file

    @staticmethod
    def _texts(path: Path, encoding: str) -> dict[str, str]:
        if not path.is_file():
            log.warning("MET-MEME text file %s not found: empty texts", path)
            return {}
        rows = _read_csv(path, encoding, required=("file_name", "text"))
        return {row.get("file_name", "").strip(): row.get("text", "").strip() for row in rows}

    def _descriptions(self) -> dict[str, str]:
        if not self.views_file.is_file():
            return {}
        try:
            payload = json.loads(self.views_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {self.views_file}: {e}") from None
        if not isinstance(payload, dict):
            raise UserError(f"{self.views_file} must map file_name -> multi-view description")
        return {str(k): str(v) for k, v in payload.items()}

    def _labelled(self, encoding: str) -> list[StickerRecord]:
        records = []
        textless, undescribed = [], []
        for i, row in enumerate(
            _read_csv(self.labels_file, encoding, required=("file_name", "sentiment category"))
        ):
            name = row.get("file_name", "").strip()
            if not name:
                continue  # trailing blank rows of the spreadsheet export
            where = f"{self.labels_file}: row {i + 2} ({name})"
            category = row.get("sentiment category", "").strip()
            if not category:
                raise UserError(f"{where} has no label ('sentiment category')")
            match = _CATEGORY.match(category)
            if match is None:
                raise UserError(f"{where}: label {category!r} is not like '1(happiness)'")
            label = _label(match.group(1), self.num_classes, 1, where)
            if name not in self.texts:
                textless.append(name)
            text = self.texts.get(name, "")
            description = self.descriptions.get(name)
            if description is None and self.views_file.is_file():
                undescribed.append(name)
            views = split_views(description) if description else (text, text, text, text)
            records.append(
                StickerRecord(
                    path=str(self.images / name),
                    label=label,
                    key=f"{self.language}/{name}",
                    views=views,
                    description=description or text,
                )
            )
        if not records:
            raise UserError(f"{self.labels_file} has no labelled meme")
        text_file = str(self.root / f"{self.language}_text.csv")
        record_skip(text_file, "memes without a text row (empty text)", len(textless), textless)
        record_skip(
            str(self.views_file),
            "memes without a multi-view description (views = the meme's text)",
            len(undescribed),
            undescribed,
        )
        return records

    @staticmethod
    def _split(
        records: list[StickerRecord], seed: int, fractions: tuple[float, float, float]
    ) -> dict[str, list[StickerRecord]]:
        """Seeded random 70/10/20 split (a permutation of the file-sorted records)."""
        ordered = sorted(records, key=lambda r: r.key)
        order = torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed)).tolist()
        n_train = int(round(fractions[0] * len(ordered)))
        n_val = int(round(fractions[1] * len(ordered)))
        picked = [ordered[i] for i in order]
        return {
            "train": picked[:n_train],
            "val": picked[n_train : n_train + n_val],
            "test": picked[n_train + n_val :],
        }

    def records(self, split: str) -> list[StickerRecord]:
        if split not in SPLITS:
            raise invalid_value("split", split, "one of train, val, test")
        return self._splits[split]


def class_counts(records: list[StickerRecord], num_classes: int) -> list[int]:
    """How many records of each class."""
    counts = [0] * num_classes
    for r in records:
        counts[r.label] += 1
    return counts


__all__ = [
    "METMEME_CLASSES",
    "SER30K_CLASSES",
    "MetMemeReader",
    "SER30KReader",
    "StickerRecord",
    "class_counts",
    "split_views",
]
