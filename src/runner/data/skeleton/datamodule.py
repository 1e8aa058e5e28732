"""The skeleton-sequence datamodule: any reader, seeded stratified splits, fixed-length clips and
the affective features normalised on the training split (card "Data", "Read from STEP and PYSKL").

Batches are ``{"joints": float [B, M, T, V, C], "affective": float [B, F], "label": int64 [B]}``:
every paradigm reads the same batches (the networks declare which inputs they use), so every method
of the benchmark sees the same data, splits and features.

* Splits: no official split exists for E-Gait (STEP draws an unseeded random 90/10), so the samples
  are split per class with a seeded permutation (``split.seed``, the run's seed by default: the
  paradigms of one seed share one split). A PYSKL file's own splits are used when named
  (``split.train`` / ``split.val`` / ``split.test``).
* Clip length (``temporal``): ``tile`` repeats a gait cyclically up to ``num_frames`` (STEP tiles to
  the longest gait), ``uniform`` takes one frame from each of ``num_frames`` equal segments (random
  in training, the middle one otherwise: PYSKL's UniformSample), ``pad`` zero-pads or crops.
* ``center``: subtract the centre joint's position in the first frame (per sample; PYSKL's
  PreNormalize3D centres the same way), so the start position carries no label information.
* Affective features (:mod:`runner.data.skeleton.affective`) are computed once per sample on the
  original-length first person (``affective.source=file``: the ones shipped with E-Gait) and scaled
  with statistics of the training split only.
* Malformed samples the reader skipped are named in the log and counted in ``metrics.json``
  (``skipped``, through :func:`runner.data.skips.record_skip`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from runner.data.loading import EpochSeededSampler, fit_epoch, loader_generator, sampler_key, worker_context
from runner.data.skeleton.affective import DEFAULT_DT, FeatureScaler, affective_features, feature_names
from runner.data.skeleton.layouts import LAYOUTS, get_layout
from runner.data.skeleton.readers import SkeletonCollection
from runner.data.skips import nothing_left
from runner.data.splits import SPLITS, stratified_split
from runner.data.twin import CachedTwin, data_root
from runner.errors import UserError, invalid_value, missing_dataset_root

log = logging.getLogger("runner.data")

TEMPORAL_MODES = ("tile", "uniform", "pad")
AXES = ("x", "y", "z")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


# ---- clip length ---------------------------------------------------------------------------------------
def tile_indices(length: int, num_frames: int) -> np.ndarray:
    """Frames ``0, 1, …, length-1, 0, 1, …`` up to ``num_frames`` (STEP's tiling)."""
    return np.arange(num_frames) % length


def uniform_indices(length: int, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """One frame per each of ``num_frames`` equal segments: random within it (``rng``) or its middle."""
    edges = np.linspace(0, length, num_frames + 1)
    if rng is None:
        picks = (edges[:-1] + edges[1:]) / 2
    else:
        picks = edges[:-1] + rng.random(num_frames) * (edges[1:] - edges[:-1])
    return np.clip(np.floor(picks).astype(np.int64), 0, length - 1)


def fixed_length(
    sequence: np.ndarray, num_frames: int, mode: str, rng: np.random.Generator | None
) -> np.ndarray:
    """``[M, num_frames, V, C]`` from ``sequence [M, T, V, C]`` by ``mode`` (see the module docstring)."""
    length = sequence.shape[1]
    if mode == "tile":
        return sequence[:, tile_indices(length, num_frames)]
    if mode == "uniform":
        return sequence[:, uniform_indices(length, num_frames, rng)]
    out = np.zeros((sequence.shape[0], num_frames, *sequence.shape[2:]), dtype=sequence.dtype)
    out[:, : min(length, num_frames)] = sequence[:, :num_frames]
    return out


def fixed_persons(sequence: np.ndarray, max_persons: int) -> np.ndarray:
    """The first ``max_persons`` persons, zero-padded when fewer."""
    if sequence.shape[0] >= max_persons:
        return sequence[:max_persons]
    pad = np.zeros((max_persons - sequence.shape[0], *sequence.shape[1:]), dtype=sequence.dtype)
    return np.concatenate([sequence, pad], axis=0)


class SkeletonClips(Dataset):
    """One split: clips made on the fly from the stored variable-length sequences."""

    def __init__(
        self,
        sequences: list[np.ndarray],
        affective: torch.Tensor,
        labels: np.ndarray,
        num_frames: int,
        temporal: str,
        max_persons: int,
        random_sampling: bool,
    ) -> None:
        self.sequences = sequences
        self.affective = affective
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.num_frames = num_frames
        self.temporal = temporal
        self.max_persons = max_persons
        self.random_sampling = random_sampling

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        # the training sampler hands out (index, sample seed) (EpochSeededSampler): random temporal
        # sampling is a function of (seed, epoch, sample), so a resumed fit draws what a straight one
        # does, with or without loader workers (runner.data.loading)
        index, sample_seed = sampler_key(key)
        rng = None
        if self.random_sampling:
            seed = sample_seed if sample_seed is not None else int(torch.randint(0, 2**31 - 1, ()))
            rng = np.random.default_rng(seed)
        clip = fixed_length(
            fixed_persons(self.sequences[index], self.max_persons), self.num_frames, self.temporal, rng
        )
        return {
            "joints": torch.from_numpy(np.ascontiguousarray(clip)),
            "affective": self.affective[index],
            "label": self.labels[index],
        }


class SkeletonDataModule(L.LightningDataModule):
    """Skeleton sequences of any reader (see the module docstring).

    Args:
        reader: ``reader(root) -> SkeletonCollection`` (:mod:`runner.data.skeleton.readers`).
        name: the dataset's name in messages (``egait``, ``pyskl``, ``ntu``).
        root: the real data (folder or file, as the reader wants).
        synthetic, twin, synthetic_root: use the twin (:func:`runner.data.twin.data_root`).
        layout: the skeleton layout name (:data:`runner.data.skeleton.layouts.LAYOUTS`); its joint count
            must be the data's. None: the layout with the data's joint count (16 → egait16,
            25 → ntu25, 17 → coco17).
        class_names: one name per class (None: "0", "1", …).
        num_classes: the class count (None: the largest label + 1); labels must be below it.
        split: ``{val_fraction, test_fraction, seed, train, val, test}`` — fractions of the seeded
            stratified split, or the names of a file's own splits.
        temporal, num_frames: clip making (None frames: the longest sequence).
        max_persons: persons per clip (E-Gait 1, NTU / PYSKL recipes 2).
        center: subtract the centre joint's first-frame position.
        affective: ``{with_stride, fps, normalization, source, up}`` (``up``: the vertical axis, x / y / z).
        batch_size, eval_batch_size, num_workers, pin_memory, persistent_workers: loaders.
        seed: the default ``split.seed``.
    """

    def __init__(
        self,
        reader: Callable[[str], SkeletonCollection],
        name: str = "skeleton",
        root: str | None = None,
        synthetic: bool = False,
        twin: CachedTwin | None = None,
        synthetic_root: str | None = None,
        layout: str | None = None,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        split: Mapping[str, Any] | None = None,
        temporal: str = "tile",
        num_frames: int | None = None,
        max_persons: int = 1,
        center: bool = True,
        affective: Mapping[str, Any] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if temporal not in TEMPORAL_MODES:
            raise invalid_value("dataset.temporal", temporal, "one of " + ", ".join(TEMPORAL_MODES))
        self.layout_cfg = None if layout is None else get_layout(layout).name
        split = dict(_plain(split) or {})
        self.split_cfg = {
            "val_fraction": float(split.get("val_fraction", 0.1)),
            "test_fraction": float(split.get("test_fraction", 0.1)),
            "seed": int(split.get("seed", seed)),
            **{name: split.get(name) for name in SPLITS},
        }
        for key in ("val_fraction", "test_fraction"):
            if not 0 <= self.split_cfg[key] < 1:
                raise invalid_value(f"dataset.split.{key}", self.split_cfg[key], "a number in [0, 1)")
        if self.split_cfg["val_fraction"] + self.split_cfg["test_fraction"] >= 1:
            raise invalid_value("dataset.split", split, "val_fraction + test_fraction must be below 1")
        affective = dict(_plain(affective) or {})
        up = str(affective.get("up", "y"))
        if up not in AXES:
            raise invalid_value("dataset.affective.up", up, "x, y or z")
        fps = affective.get("fps", 1 / DEFAULT_DT)
        if not isinstance(fps, int | float) or fps <= 0:
            raise invalid_value("dataset.affective.fps", fps, "a number > 0")
        self.affective_cfg = {
            "with_stride": bool(affective.get("with_stride", False)),
            "dt": 1.0 / float(fps),
            "normalization": str(affective.get("normalization", "minmax")),
            "source": str(affective.get("source", "computed")),
            "up_axis": AXES.index(up),
        }
        if self.affective_cfg["source"] not in ("computed", "file"):
            raise invalid_value("dataset.affective.source", self.affective_cfg["source"], "computed or file")
        FeatureScaler(self.affective_cfg["normalization"])  # validates the kind
        self.reader = reader
        self.name = str(name)
        self.root, self.synthetic, self.twin, self.synthetic_root = (
            root,
            bool(synthetic),
            twin,
            synthetic_root,
        )
        self.class_names_cfg = list(_plain(class_names)) if class_names is not None else None
        self.num_classes_cfg = num_classes
        self.temporal = temporal
        self.num_frames_cfg = num_frames
        self.max_persons = int(max_persons)
        self.center = bool(center)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.seed = int(seed)
        self._loaded = False
        self.datasets: dict[str, SkeletonClips] = {}

    # ---- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        """Read, check, split and featurise the data once."""
        if self._loaded:
            return
        if not self.synthetic and (self.root is None or not os.path.exists(str(self.root))):
            raise missing_dataset_root(self.name, str(self.root))
        root = data_root(self.synthetic, self.root, self.twin, self.synthetic_root)
        data = self.reader(root)
        self.source = data.source or str(root)
        if len(data) == 0:
            raise nothing_left(self.source, "usable sample", "every sample was malformed (see the log)")
        self._check_layout(data)
        self._set_classes(data.labels)
        self.coord_dims = data.coord_dims
        self.in_channels = int(data.sequences[0].shape[3])
        self.num_frames = int(self.num_frames_cfg or max(s.shape[1] for s in data.sequences))
        indices = self._split_indices(data)
        sequences = [self._centered(s) for s in data.sequences]
        raw = self._affective(data)
        train = torch.as_tensor(indices["train"])
        scaler = FeatureScaler(self.affective_cfg["normalization"]).fit(raw[train])
        features = scaler.transform(raw).float()
        self.split_sizes = {name: int(len(idx)) for name, idx in indices.items()}
        for name, idx in indices.items():
            self.datasets[name] = SkeletonClips(
                [sequences[i] for i in idx],
                features[torch.as_tensor(idx, dtype=torch.long)],
                data.labels[idx],
                self.num_frames,
                self.temporal,
                self.max_persons,
                random_sampling=(name == "train" and self.temporal == "uniform"),
            )
        self.train_class_counts = np.bincount(
            data.labels[indices["train"]], minlength=self.num_classes
        ).tolist()
        log.info(
            "%s: %d samples (%d skipped), splits %s, %d classes, clips of %d frames, %d affective features",
            self.source,
            len(data),
            len(data.skipped),
            self.split_sizes,
            self.num_classes,
            self.num_frames,
            features.shape[1],
        )
        self._loaded = True

    def _check_layout(self, data: SkeletonCollection) -> None:
        joints = int(data.sequences[0].shape[2])
        if self.layout_cfg is None:
            matching = [layout for layout in LAYOUTS.values() if layout.num_joints == joints]
            if not matching:
                raise UserError(
                    f"{data.source} has {joints} joints per frame and no layout has that many "
                    f"({', '.join(f'{n}: {lay.num_joints}' for n, lay in LAYOUTS.items())})"
                )
            self.layout = matching[0]
            return
        self.layout = get_layout(self.layout_cfg)
        if joints != self.layout.num_joints:
            raise UserError(
                f"dataset.layout={self.layout.name} has {self.layout.num_joints} joints but {data.source} has "
                f"{joints} per frame; set dataset.layout to the data's (egait16: 16, ntu25: 25, coco17: 17)"
            )

    def _set_classes(self, labels: np.ndarray) -> None:
        largest = int(labels.max())
        num_classes = self.num_classes_cfg
        if num_classes is None:
            num_classes = len(self.class_names_cfg) if self.class_names_cfg else largest + 1
        num_classes = int(num_classes)
        if largest >= num_classes:
            raise UserError(
                f"{self.source} has label {largest} but dataset.num_classes={num_classes}; "
                f"set dataset.num_classes={largest + 1} (or more)"
            )
        names = self.class_names_cfg or [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise invalid_value("dataset.class_names", names, f"one name per class ({num_classes}), or null")
        self.num_classes = num_classes
        self.class_names = [str(n) for n in names]

    def _split_indices(self, data: SkeletonCollection) -> dict[str, np.ndarray]:
        cfg = self.split_cfg
        named = {name: cfg[name] for name in SPLITS if cfg[name]}
        if not named:
            indices = stratified_split(data.labels, cfg["val_fraction"], cfg["test_fraction"], cfg["seed"])
        else:
            for name, split_name in named.items():
                if split_name not in data.splits:
                    raise invalid_value(
                        f"dataset.split.{name}",
                        split_name,
                        "a split of the file: " + (", ".join(data.splits) or "(the file has none)"),
                    )
            if "train" not in named or "test" not in named:
                raise UserError(
                    "dataset.split: name both train and test splits of the file (val is optional)"
                )
            indices = {
                name: np.asarray(data.splits[split_name], dtype=np.int64)
                for name, split_name in named.items()
            }
            if "val" not in indices:
                train = indices["train"]
                carved = stratified_split(data.labels[train], cfg["val_fraction"], 0.0, cfg["seed"])
                indices["train"], indices["val"] = train[carved["train"]], train[carved["val"]]
        for name in ("train", "test"):
            if len(indices[name]) == 0:
                raise UserError(
                    f"the {name} split of {self.source} is empty; use more data or other dataset.split fractions"
                )
        return indices

    def _centered(self, sequence: np.ndarray) -> np.ndarray:
        if not self.center:
            return sequence
        out = sequence.copy()
        dims = self.coord_dims
        out[..., :dims] -= sequence[0, 0, self.layout.center, :dims]
        return out

    def _affective(self, data: SkeletonCollection) -> torch.Tensor:
        if self.affective_cfg["source"] == "file":
            if data.affective is None:
                raise UserError(
                    f"dataset.affective.source=file but {self.source} ships no affective features "
                    "(E-Gait: dataset.reader.read_affective=true and affectiveFeatures<ftype>.h5)"
                )
            return torch.as_tensor(data.affective, dtype=torch.float64)
        return batched_affective_features(
            [s[0, :, :, : self.coord_dims] for s in data.sequences],
            self.layout,
            dt=self.affective_cfg["dt"],
            with_stride=self.affective_cfg["with_stride"],
            up_axis=self.affective_cfg["up_axis"],
        )

    # ---- Lightning ---------------------------------------------------------------------------------
    def network_kwargs(self) -> dict[str, Any]:
        """What the networks and methods need to know about the data."""
        self.load()
        return {
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "in_channels": self.in_channels,
            "num_joints": self.layout.num_joints,
            "num_frames": self.num_frames,
            "num_persons": self.max_persons,
            "num_affective": int(self.datasets["train"].affective.shape[1]),
            "layout": self.layout.name,
            "train_class_counts": list(self.train_class_counts),
        }

    @property
    def affective_names(self) -> list[str]:
        if self.affective_cfg["source"] == "file":
            return [f"affective_{i}" for i in range(int(self.datasets["train"].affective.shape[1]))]
        return feature_names(self.affective_cfg["with_stride"])

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[name]
        return DataLoader(
            dataset,
            batch_size=self.batch_size if name == "train" else self.eval_batch_size,
            # exact resume (runner.data.loading): the order and every sample's random clip are functions
            # of (seed, epoch); the loader's own generator never touches the global RNG
            sampler=EpochSeededSampler(len(dataset), self.seed, fit_epoch(self)) if shuffle else None,
            generator=loader_generator(self.seed),
            num_workers=self.num_workers,
            multiprocessing_context=worker_context(self.num_workers),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if len(self.datasets["val"]) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def batched_affective_features(
    sequences: list[np.ndarray],
    layout,
    dt: float = DEFAULT_DT,
    with_stride: bool = False,
    up_axis: int = 1,
    chunk: int = 1024,
) -> torch.Tensor:
    """``[N, F]`` float64 affective features of variable-length ``[T_i, V, C]`` sequences, computed in
    padded chunks of ``chunk`` sequences (each padded to its own longest)."""
    out = []
    for start in range(0, len(sequences), chunk):
        part = sequences[start : start + chunk]
        lengths = torch.as_tensor([s.shape[0] for s in part])
        padded = torch.zeros(len(part), int(lengths.max()), *part[0].shape[1:], dtype=torch.float64)
        for i, s in enumerate(part):
            padded[i, : s.shape[0]] = torch.from_numpy(np.asarray(s, dtype=np.float64))
        out.append(
            affective_features(padded, layout, lengths, dt=dt, with_stride=with_stride, up_axis=up_axis)
        )
    return torch.cat(out)
