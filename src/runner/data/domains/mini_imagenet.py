"""Mini-ImageNet reader (Ravi & Larochelle split files): ``<root>/images/<file>.jpg`` plus
``train.csv`` / ``val.csv`` / ``test.csv`` with columns ``filename,label`` (label = ImageNet wnid).

The few-shot splits have disjoint classes; federated work (CO-PFL) pools the three files into one
100-class dataset and splits it per class itself, which :func:`read_mini_imagenet` does with
``pooled=True`` (the default): seeded, ``test_fraction`` of every class held out.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from runner.data.domains.folders import ImageArrays, load_image
from runner.data.files import read_text
from runner.data.skips import nothing_left, record_skip
from runner.errors import UserError, missing_dataset_root

SPLIT_FILES = ("train.csv", "val.csv", "test.csv")


def read_split_file(path: str) -> list[tuple[str, str]]:
    """(filename, label) rows of one split file; a malformed file raises a UserError naming the line."""
    rows = []
    try:
        reader = csv.reader(io.StringIO(read_text(path)))
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise UserError(f"{path}: line 1 must be the header 'filename,label', got {header}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise UserError(f"{path}: line {line_number} is not 'filename,label': {row}")
            rows.append((row[0], row[1]))
    except csv.Error as err:
        raise UserError(f"{path}: malformed CSV ({err})") from None
    return rows


def read_mini_imagenet(
    root: str, size: int = 84, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, ImageArrays]:
    """``{"train": ImageArrays, "test": ImageArrays}`` over all classes of the three split files."""
    if not os.path.isdir(root):
        raise missing_dataset_root("mini_imagenet", root)
    rows: list[tuple[str, str]] = []
    for name in SPLIT_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise UserError(
                f"Mini-ImageNet split file {path} not found (expected {', '.join(SPLIT_FILES)} and images/)"
            )
        rows += read_split_file(path)
    class_names = sorted({label for _, label in rows})
    index = {name: k for k, name in enumerate(class_names)}
    images, labels, unreadable = [], [], []
    for filename, label in rows:
        image = load_image(Path(root, "images", filename), size)
        if image is not None:
            images.append(image)
            labels.append(index[label])
        else:
            unreadable.append(filename)
    record_skip(
        os.path.join(root, "images"), "listed images missing or unreadable", len(unreadable), unreadable
    )
    if not images:
        raise nothing_left(os.path.join(root, "images"), "readable image")
    all_images, all_labels = np.stack(images), np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(all_labels), bool)
    for k in range(len(class_names)):
        members = np.flatnonzero(all_labels == k)
        test_mask[rng.permutation(members)[: int(round(test_fraction * len(members)))]] = True
    return {
        "train": ImageArrays(all_images[~test_mask], all_labels[~test_mask], class_names),
        "test": ImageArrays(all_images[test_mask], all_labels[test_mask], class_names),
    }
