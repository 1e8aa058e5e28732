"""Lightning data module for sticker / meme emotion data (SER30K, MET-MEME, their twins).

A batch: ``image`` ``[B, 3, S, S]``; ``views`` ``[B, 4, D]`` and ``full_text`` ``[B, D]`` (the cached
frozen-encoder features of the four view descriptions and of the whole description; absent when
the dataset has no descriptions); ``label`` ``[B]``; ``key`` (``topic/file``); ``corrupt`` (paths of
images that could not be read: skipped, named in the log, counted into ``metrics.json`` by
:class:`runner.callbacks.CorruptSampleCounter`).

Transforms (MGHFT card, "Recipe"): training uses timm's ImageNet pipeline — random resized crop to
``crop_size`` (bicubic), horizontal flip, RandAugment ``rand-m9-mstd0.5-inc1``, colour jitter 0.1 —
evaluation resizes the short side to ``crop_size * 256/224`` (512 for 448) and centre-crops.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from runner.data.loading import EpochSeededSampler, sampler_key, worker_context
from runner.data.stickers.readers import SPLITS, StickerRecord, class_counts
from runner.data.stickers.text_features import FrozenTextEncoder, TextFeatureCache
from runner.data.twin import data_root
from runner.errors import invalid_value

log = logging.getLogger("runner.data")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIEW_KEYS = ("intention", "style", "main_role", "gesture")


def build_transform(
    train: bool,
    crop_size: int,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    color_jitter: float = 0.1,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    re_prob: float = 0.0,
    eval_crop_ratio: float = 224 / 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """timm's train / eval transform (module docstring)."""
    from timm.data import create_transform

    if train:
        return _pillow_safe_posterize(
            create_transform(
                crop_size,
                is_training=True,
                scale=tuple(scale),
                hflip=hflip,
                color_jitter=color_jitter,
                auto_augment=auto_augment or None,
                interpolation="bicubic",
                re_prob=re_prob,
                mean=tuple(mean),
                std=tuple(std),
            )
        )
    return create_transform(
        crop_size,
        is_training=False,
        interpolation="bicubic",
        crop_pct=eval_crop_ratio,
        mean=tuple(mean),
        std=tuple(std),
    )


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, with 0 bits giving the black image older Pillow returned (Pillow >= 11 raises)."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _pillow_safe_posterize(transform: Any) -> Any:
    """RandAugment's increasing posterize asks for 0 bits at the top magnitude (``rand-m9-mstd0.5``
    reaches it through the magnitude noise); route it through :func:`_posterize`."""
    from timm.data import auto_augment

    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize
    return transform


class StickerDataset(Dataset):
    """Records + transform + (optional) per-record text features ``[N, 5, D]`` (4 views, whole)."""

    def __init__(
        self,
        records: Sequence[StickerRecord],
        transform: Callable[[Image.Image], torch.Tensor],
        text_features: torch.Tensor | None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.text_features = text_features

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, sample_seed = sampler_key(key)
        rec = self.records[i]
        try:
            with Image.open(rec.path) as img:
                image = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            log.warning("skipping unreadable image %s (%s)", rec.path, type(e).__name__)
            return {"corrupt": rec.path}
        if sample_seed is not None:
            # the augmentation draws (torch and python RNGs used by timm) are a function of the sample's seed
            state = (torch.get_rng_state(), random.getstate(), np.random.get_state())
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2**32)
            try:
                tensor = self.transform(image)
            finally:
                torch.set_rng_state(state[0])
                random.setstate(state[1])
                np.random.set_state(state[2])
        else:
            tensor = self.transform(image)
        out: dict[str, Any] = {"image": tensor, "label": rec.label, "key": rec.key}
        if self.text_features is not None:
            out["text"] = self.text_features[i]
        return out


def collate_stickers(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack the readable samples; unreadable ones are dropped and their paths listed in ``corrupt``."""
    good = [s for s in samples if "corrupt" not in s]
    batch: dict[str, Any] = {"corrupt": [str(s["corrupt"]) for s in samples if "corrupt" in s]}
    if not good:
        batch.update(image=torch.empty(0, 3, 1, 1), label=torch.empty(0, dtype=torch.long), key=[])
        return batch
    batch["image"] = torch.stack([s["image"] for s in good])
    batch["label"] = torch.tensor([int(s["label"]) for s in good], dtype=torch.long)
    batch["key"] = [s["key"] for s in good]
    if "text" in good[0]:
        text = torch.stack([s["text"] for s in good]).float()
        batch["views"], batch["full_text"] = text[:, :4], text[:, 4]
    return batch


class StickerDataModule(L.LightningDataModule):
    """Sticker emotion data for Lightning (module docstring).

    ``reader`` is a partial reader (``reader(root=...)``: :class:`SER30KReader` or
    :class:`MetMemeReader`); with ``synthetic=True`` the root is the twin's (generated if needed).
    ``text_encoder`` is a partial :class:`FrozenTextEncoder`; view features are cached under
    ``text_cache_dir``. ``max_samples_per_subset`` keeps a fixed-seed subset of each split (smoke runs).
    """

    def __init__(
        self,
        reader: Callable[..., Any],
        root: str | None = None,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        twin: Any = None,
        text_encoder: Callable[..., FrozenTextEncoder] | None = None,
        text_cache_dir: str | None = None,
        crop_size: int = 448,
        transform: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        num_workers: int = 4,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        max_samples_per_subset: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(crop_size) < 32:
            raise invalid_value("dataset.crop_size", crop_size, "an integer >= 32")
        self.root_used = data_root(synthetic, root, twin, synthetic_root)
        self.reader = reader(root=self.root_used)
        self.crop_size = int(crop_size)
        self.transform_cfg = dict(transform or {})
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.max_samples_per_subset = max_samples_per_subset
        self.seed = int(seed)
        self.text_encoder_factory = text_encoder
        self.text_cache_dir = text_cache_dir
        self._encoder: FrozenTextEncoder | None = None
        self._datasets: dict[str, StickerDataset] = {}

    # ---- data properties (runner.train.data_properties) ----
    @property
    def class_names(self) -> list[str]:
        return list(self.reader.class_names)

    @property
    def num_classes(self) -> int:
        return int(self.reader.num_classes)

    @property
    def has_text(self) -> bool:
        return self.text_encoder_factory is not None and bool(self.reader.has_views)

    @property
    def encoder(self) -> FrozenTextEncoder | None:
        if self._encoder is None and self.has_text:
            self._encoder = self.text_encoder_factory()
        return self._encoder

    def network_kwargs(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "class_counts": class_counts(self.records("train"), self.num_classes),
            "text_dim": self.encoder.dim if self.encoder is not None else 0,
            "image_size": self.crop_size,
        }

    # ---- splits ----
    def records(self, subset: str) -> list[StickerRecord]:
        records = self.reader.records(subset)
        n = self.max_samples_per_subset
        if n is not None and len(records) > int(n):
            keep = torch.randperm(len(records), generator=torch.Generator().manual_seed(0))[: int(n)]
            records = [records[i] for i in sorted(keep.tolist())]
        return records

    def text_features(self, records: Sequence[StickerRecord]) -> torch.Tensor | None:
        """``[N, 5, D]`` cached features: the four views and the whole description of each record."""
        if self.encoder is None:
            return None
        cache_dir = self.text_cache_dir or f"{self.root_used}/.text_features"
        items = [
            (r.key, view, text)
            for r in records
            for view, text in zip((*VIEW_KEYS, "full"), (*r.views, r.description), strict=True)
        ]
        feats = TextFeatureCache(cache_dir, self.encoder).features(items)
        return feats.reshape(len(records), 5, -1)

    def dataset(self, subset: str) -> StickerDataset:
        if subset not in SPLITS:
            raise invalid_value("subset", subset, "one of train, val, test")
        if subset not in self._datasets:
            records = self.records(subset)
            transform = build_transform(subset == "train", self.crop_size, **self.transform_cfg)
            self._datasets[subset] = StickerDataset(records, transform, self.text_features(records))
        return self._datasets[subset]

    def setup(self, stage: str | None = None) -> None:
        subsets = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for subset in subsets.get(stage or "", SPLITS):
            self.dataset(subset)

    def _loader(self, subset: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(subset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(len(dataset), self.seed) if shuffle else None,
            # training drops a last partial batch (as the release does): the in-batch contrastive
            # stage losses need more than a handful of pairs
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_stickers,
            multiprocessing_context=worker_context(self.num_workers),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
