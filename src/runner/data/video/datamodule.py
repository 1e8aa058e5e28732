"""Lightning data module for the video datasets (real data or their synthetic twins).

Pipeline per sample: reader record -> temporal indices (:mod:`.sampling`) -> one PyAV decode
(:mod:`.decode`) -> spatial transform (:mod:`.transforms`) for the main view ``video`` and for any
extra named views ``video_<name>`` cut from the same decoded frames. Undecodable files do not
crash training: the dataset returns a marker, :func:`collate_video_batch` drops it and lists the
path under ``batch["corrupt"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from runner.data.loading import EpochSeededSampler, fit_epoch, loader_generator, sampler_key, worker_context
from runner.data.splits import stratified_split
from runner.data.twin import data_root
from runner.errors import invalid_value

from .decode import CorruptVideoError, count_frames, decode_clip
from .readers import VideoRecord
from .sampling import dense_indices, uniform_segment_indices
from .transforms import KINETICS_MEAN, KINETICS_STD, ClipTransform

log = logging.getLogger("runner.data")

__all__ = ["VideoDataModule", "VideoClipDataset", "ViewSpec", "EpochSeededSampler", "collate_video_batch"]

SAMPLINGS = ("dense", "uniform")


class ViewSpec:
    """An extra view of a clip: ``num_frames`` frames taken every ``temporal_stride``-th frame of
    the main view's sampled frames (the last one repeated if too few), cropped to ``crop_size``."""

    def __init__(
        self,
        name: str,
        num_frames: int | None = None,
        crop_size: int = 112,
        temporal_stride: int = 1,
        short_side: int | Sequence[int] | None = None,
    ):
        if int(temporal_stride) < 1:
            raise invalid_value(f"dataset.views.{name}.temporal_stride", temporal_stride, "an integer >= 1")
        self.name = name
        self.num_frames = None if num_frames is None else int(num_frames)
        self.crop_size = int(crop_size)
        self.temporal_stride = int(temporal_stride)
        self.short_side = short_side

    def positions(self, main_len: int) -> torch.Tensor:
        """Positions within the main view's frames that this view uses."""
        pos = torch.arange(0, main_len, self.temporal_stride)
        n = self.num_frames or len(pos)
        if len(pos) < n:
            pos = torch.cat([pos, pos[-1:].expand(n - len(pos))])
        return pos[:n]


class VideoClipDataset(Dataset):
    """Map-style dataset over :class:`VideoRecord` s returning dicts (see the module docstring)."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        train: bool,
        sampling: str,
        num_frames: int,
        stride: int,
        transform: ClipTransform,
        views: Mapping[str, tuple[ViewSpec, ClipTransform]] | None = None,
    ):
        self.records = list(records)
        self.train = train
        self.sampling = sampling
        self.num_frames = num_frames
        self.stride = stride
        self.transform = transform
        self.views = dict(views or {})

    def __len__(self) -> int:
        return len(self.records)

    def _indices(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        if self.sampling == "uniform":
            return uniform_segment_indices(n, self.num_frames, self.train, generator=generator)
        return dense_indices(n, self.num_frames, self.stride, self.train, generator=generator)

    def _frames(self, rec: VideoRecord, generator: torch.Generator | None) -> torch.Tensor:
        """Decode the sampled frames of ``rec`` once: ``uint8 [num_frames, H, W, 3]``."""
        if rec.start_frame is not None and rec.stop_frame is not None:
            n = max(rec.stop_frame - rec.start_frame, 1)
            return decode_clip(rec.path, self._indices(n, generator) + rec.start_frame)
        if rec.start_sec is not None or rec.stop_sec is not None:
            window = decode_clip(rec.path, start_sec=rec.start_sec, stop_sec=rec.stop_sec)
            return window[self._indices(len(window), generator)]
        return decode_clip(rec.path, self._indices(count_frames(rec.path), generator))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``key`` is an index, or ``(index, sample_seed)`` from :class:`EpochSeededSampler`: then the
        random frame offsets, crop and flip come from that seed alone, so a resumed run draws
        exactly the augmentations an uninterrupted run would."""
        i, sample_seed = sampler_key(key)
        generator = torch.Generator().manual_seed(int(sample_seed)) if sample_seed is not None else None
        rec = self.records[i]
        try:
            frames = self._frames(rec, generator)
        except CorruptVideoError as exc:
            if rec.start_frame is not None and exc.reason.startswith("truncated"):
                # a segment (EPIC) that runs past its video's end: only this segment is skipped, by id
                log.warning(
                    "skipping segment %s of %s: it runs past the video's end (%s)",
                    rec.clip_id,
                    exc.path,
                    exc.reason,
                )
                return {"corrupt": f"{rec.clip_id} (segment past the end of {exc.path})"}
            log.warning("skipping corrupt video %s (%s)", exc.path, exc.reason)
            return {"corrupt": exc.path}
        flip = None
        if self.train and self.transform.flip_prob > 0:
            flip = bool(
                torch.rand(1, generator=generator).item() < self.transform.flip_prob
            )  # shared by all views
        out: dict[str, Any] = {
            "video": self.transform(frames, generator=generator, flip=flip),
            "label": int(rec.label),
            "clip_id": rec.clip_id,
        }
        for name, (spec, tf) in self.views.items():
            out[f"video_{name}"] = tf(frames[spec.positions(len(frames))], generator=generator, flip=flip)
        return out


def collate_video_batch(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack samples into ``{video: [B,C,T,H,W], label: LongTensor[B], clip_id: list[str],
    corrupt: list[str], video_<view>: ...}``, dropping corrupt markers (their paths go to
    ``corrupt``). If every sample is corrupt, ``video`` has batch size 0 and callers skip it."""
    good = [s for s in samples if "corrupt" not in s]
    corrupt = [str(s["corrupt"]) for s in samples if "corrupt" in s]
    if not good:
        return {
            "video": torch.empty(0, 3, 0, 0, 0),
            "label": torch.empty(0, dtype=torch.long),
            "clip_id": [],
            "corrupt": corrupt,
        }
    batch: dict[str, Any] = {
        "label": torch.tensor([int(s["label"]) for s in good], dtype=torch.long),
        "clip_id": [s["clip_id"] for s in good],
        "corrupt": corrupt,
    }
    for key in good[0]:
        if key.startswith("video"):
            batch[key] = torch.stack([s[key] for s in good])
    return batch


class VideoDataModule(L.LightningDataModule):
    """Video classification data for Lightning, from a dataset reader (real or synthetic twin).

    ``reader`` is a callable (Hydra ``_partial_: true``) called as ``reader(root=root_used)``; with
    ``synthetic=True`` the root is ``twin.ensure(synthetic_root)``. The reader is built here, so
    ``num_classes`` and ``class_names`` are available right after construction.
    ``views`` maps a name to ``{num_frames, crop_size, temporal_stride}`` (see :class:`ViewSpec`).
    ``max_clips_per_subset`` keeps a fixed-seed, class-mixed subset of each split (for smoke runs).

    ``val_fraction > 0`` holds out that fraction of each class's training clips (a permutation seeded
    by ``split_seed``, the same for every run seed, so cached teachers are shared by the seeds) as the
    ``val`` subset, not trained on; ``val`` is otherwise the reader's (HMDB51 has none: its ``val`` is
    the test list, so nothing may be selected on it). The ``test`` subset is the reader's either way.
    """

    def __init__(
        self,
        reader: Callable[..., Any],
        root: str | None = None,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        twin: Any = None,
        num_frames: int = 16,
        sampling: str = "dense",
        stride: int = 4,
        crop_size: int = 112,
        short_side: int | Sequence[int] = 128,
        flip_prob: float = 0.5,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        views: Mapping[str, Mapping[str, Any]] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        max_clips_per_subset: int | None = None,
        seed: int = 0,
        twin_geometry: Mapping[str, Any] | None = None,
        val_fraction: float = 0.0,
        split_seed: int = 0,
    ):
        super().__init__()
        if synthetic and twin_geometry:
            # the twin's clips are small (e.g. 64 px, 16 frames): its own clip geometry replaces the
            # real-data one, so `experiment=<real> dataset.synthetic=true` runs in CPU minutes
            unknown = set(twin_geometry) - {
                "num_frames",
                "stride",
                "crop_size",
                "short_side",
                "batch_size",
                "sampling",
            }
            if unknown:
                raise invalid_value(
                    "dataset.twin_geometry",
                    sorted(unknown),
                    "keys among num_frames, stride, crop_size, short_side, batch_size, sampling",
                )
            num_frames = twin_geometry.get("num_frames", num_frames)
            stride = twin_geometry.get("stride", stride)
            crop_size = twin_geometry.get("crop_size", crop_size)
            short_side = twin_geometry.get("short_side", short_side)
            batch_size = twin_geometry.get("batch_size", batch_size)
            sampling = twin_geometry.get("sampling", sampling)
        if sampling not in SAMPLINGS:
            raise invalid_value("dataset.sampling", sampling, "one of dense, uniform")
        self.root_used = data_root(synthetic, root, twin, synthetic_root)
        self.reader = reader(root=self.root_used)
        self.synthetic = bool(synthetic)
        self.num_frames = int(num_frames)
        self.sampling = sampling
        self.stride = int(stride)
        self.crop_size = int(crop_size)
        self.short_side = short_side if isinstance(short_side, int | float) else tuple(short_side)
        self.flip_prob = float(flip_prob)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.views = {
            str(name): ViewSpec(str(name), **dict(spec or {})) for name, spec in dict(views or {}).items()
        }
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.max_clips_per_subset = max_clips_per_subset
        self.seed = int(seed)
        if not 0.0 <= float(val_fraction) < 1.0:
            raise invalid_value("dataset.val_fraction", val_fraction, "a number in [0, 1)")
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self._datasets: dict[str, VideoClipDataset] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.reader.class_names)

    @property
    def num_classes(self) -> int:
        return int(self.reader.num_classes)

    def _transform(self, train: bool, crop_size: int, short_side=None) -> ClipTransform:
        if short_side is None:
            ratio = crop_size / self.crop_size
            if isinstance(self.short_side, tuple):
                short_side = tuple(round(s * ratio) for s in self.short_side)
            else:
                short_side = round(self.short_side * ratio)
        return ClipTransform(train, crop_size, short_side, self.flip_prob, self.mean, self.std)

    def dataset(self, subset: str) -> VideoClipDataset:
        """The (cached) dataset of ``subset`` in ``train`` / ``val`` / ``test``."""
        if subset not in self._datasets:
            records = self.subset_records(subset)
            n = self.max_clips_per_subset
            if n is not None and len(records) > int(n):
                g = torch.Generator().manual_seed(0)
                keep = sorted(torch.randperm(len(records), generator=g)[: int(n)].tolist())
                records = [records[i] for i in keep]
            train = subset == "train"
            views = {
                name: (spec, self._transform(train, spec.crop_size, spec.short_side))
                for name, spec in self.views.items()
            }
            self._datasets[subset] = VideoClipDataset(
                records,
                train,
                self.sampling,
                self.num_frames,
                self.stride,
                self._transform(train, self.crop_size, self.short_side),
                views,
            )
        return self._datasets[subset]

    def subset_records(self, subset: str) -> list[VideoRecord]:
        """The clips of ``subset``: the reader's, or with ``val_fraction > 0`` the training clips split
        into ``train`` and a class-stratified ``val`` hold-out (class docstring)."""
        if self.val_fraction == 0 or subset == "test":
            return self.reader.records(subset)
        train = self.reader.records("train")
        labels = np.array([r.label for r in train], dtype=np.int64)
        keep = stratified_split(labels, self.val_fraction, 0.0, self.split_seed)[subset]
        if subset == "val" and len(keep) == 0:
            raise invalid_value(
                "dataset.val_fraction",
                self.val_fraction,
                f"a fraction that holds out at least one of {len(train)} clips",
            )
        return [train[i] for i in keep]

    def setup(self, stage: str | None = None) -> None:
        subsets = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for subset in subsets.get(stage or "", ("train", "val", "test")):
            self.dataset(subset)

    def _loader(self, subset: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(subset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(len(dataset), self.seed, fit_epoch(self)) if shuffle else None,
            generator=loader_generator(self.seed),
            drop_last=False,
            num_workers=self.num_workers,
            multiprocessing_context=worker_context(self.num_workers),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_video_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
