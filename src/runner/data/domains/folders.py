"""Readers for class-folder image layouts, loaded whole into uint8 arrays (FL clients train on
preloaded tensors; these datasets are small).

* domain layout (Digits-5, Office-Caltech-10, PACS as used by FedPall):
  ``<root>/<domain>/<split>/<class>/<image>.(png|jpg)``
* CINIC-10 layout: ``<root>/<split>/<class>/<image>.png`` with splits ``train``, ``valid``, ``test``.

Images are resized to ``size`` × ``size`` RGB. In the domain layout, class indices follow the
sorted union of the class-folder names of all domains read, so they agree across domains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.data.skips import record_skip
from runner.errors import UserError, missing_dataset_root

log = logging.getLogger("runner.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class ImageArrays:
    """Images ``uint8 [N, H, W, 3]``, labels ``int64 [N]`` and the class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_image(path: Path, size: int | None) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        log.warning("skipping unreadable image %s (%s)", path, err)
        return None


def read_class_folders(
    folder: str | Path, size: int | None = 32, class_names: list[str] | None = None
) -> ImageArrays:
    """All images of ``folder/<class>/*``; unreadable files are skipped and logged.

    ``class_names`` fixes the class order (e.g. from another split); by default the sorted
    sub-folder names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} not found")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    names = list(class_names) if class_names is not None else found
    extra = sorted(set(found) - set(names))
    if extra:
        raise UserError(f"{folder} has class folders {extra} that are not among the expected classes {names}")
    images, labels, unreadable = [], [], []
    for label, name in enumerate(names):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = load_image(path, size)
            if image is not None:
                images.append(image)
                labels.append(label)
            else:
                unreadable.append(str(path))
    record_skip(str(folder), "unreadable images", len(unreadable), unreadable)
    if not images:
        raise UserError(f"no images under {folder}/<class>/ (expected .png or .jpg files)")
    return ImageArrays(np.stack(images), np.asarray(labels, dtype=np.int64), names)


def read_domain_folders(
    root: str | Path, domains: list[str], split: str, size: int | None = 32, dataset_name: str = "dataset"
) -> dict[str, ImageArrays]:
    """``{domain: ImageArrays}`` for ``<root>/<domain>/<split>/<class>/*`` with one class order."""
    root = Path(root)
    if not root.is_dir():
        raise missing_dataset_root(dataset_name, str(root))
    folders = []
    for domain in domains:
        folder = root / domain / split
        if not folder.is_dir():
            raise UserError(
                f"{dataset_name}: domain folder {folder} not found (expected <root>/<domain>/<split>/<class>/)"
            )
        folders.append(folder)
    # one class order for every domain: the sorted union of their class folders
    class_names = sorted({p.name for folder in folders for p in folder.iterdir() if p.is_dir()})
    return {
        domain: read_class_folders(folder, size, class_names)
        for domain, folder in zip(domains, folders, strict=True)
    }
