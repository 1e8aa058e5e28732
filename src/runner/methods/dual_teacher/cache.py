"""Teacher-output cache (issue 3, item 5; card "Performance").

``distill.cache=true`` precomputes, once, the frozen teachers' logits and pooled features for
``K`` fixed augmented views of every training clip and stores them in bf16 in memory-mapped files;
training then draws, per clip and epoch, one of those K views (:class:`FixedViewSampler`) and reads
the teachers' outputs instead of running them.

Keys: an entry is addressed by (clip id, view index) inside a store whose directory name is a
hash of (every teacher's checkpoint sha256, the transform hash, K). ``meta.json`` repeats these
and is written last (atomic rename of the whole directory), so a store is either complete and
current or ignored: a changed teacher checkpoint or a changed transform (crop, scale jitter,
frames, stride, views, normalisation, view seeds) never reads a stale cache.

A view is fixed by its seed ``view_seed(clip_id, k, seed)``: the data pipeline's crop, scale and
flip are a function of that seed alone (``VideoClipDataset[(index, seed)]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

CACHE_VERSION = 1


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON rendering with sorted keys (non-JSON values via ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def view_seed(clip_id: str, view_index: int, seed: int) -> int:
    """The augmentation seed of view ``view_index`` of ``clip_id`` (independent of dataset order)."""
    return int(hashlib.sha256(f"{seed}:{clip_id}:{view_index}".encode()).hexdigest()[:15], 16)


def transform_description(dataset: Any) -> dict[str, Any]:
    """Everything that determines a training view of a :class:`VideoClipDataset`."""

    def tf(t: Any) -> dict[str, Any]:
        return {k: v for k, v in sorted(vars(t).items())}

    return {
        "sampling": dataset.sampling,
        "num_frames": dataset.num_frames,
        "stride": dataset.stride,
        "transform": tf(dataset.transform),
        "views": {
            name: {"spec": tf(spec), "transform": tf(t)} for name, (spec, t) in sorted(dataset.views.items())
        },
    }


def transform_hash(dataset: Any, num_views: int, seed: int) -> str:
    return stable_hash({"transform": transform_description(dataset), "num_views": num_views, "seed": seed})


class TeacherOutputCache:
    """A memory-mapped bf16 store of teacher logits + pooled features per (clip id, view index).

    Args:
        root: the folder holding every store (e.g. ``${paths.data_dir}/teacher_cache``).
        clip_ids: the training clips, in dataset order.
        num_views: K fixed augmented views per clip.
        teachers: name -> ``(num_classes, feature_dim)``.
        teacher_hashes: name -> sha256 of the teacher's checkpoint file.
        transform_hash: :func:`transform_hash` of the training dataset.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        clip_ids: Sequence[str],
        num_views: int,
        teachers: Mapping[str, tuple[int, int]],
        teacher_hashes: Mapping[str, str],
        transform_hash: str,
    ):
        self.clip_ids = [str(c) for c in clip_ids]
        self.row_of = {c: i for i, c in enumerate(self.clip_ids)}
        self.num_views = int(num_views)
        self.teachers = {k: (int(v[0]), int(v[1])) for k, v in teachers.items()}
        self.meta = {
            "version": CACHE_VERSION,
            "teacher_hashes": dict(sorted(teacher_hashes.items())),
            "transform_hash": transform_hash,
            "num_views": self.num_views,
            "clips_hash": stable_hash(self.clip_ids),
            "teachers": {k: list(v) for k, v in sorted(self.teachers.items())},
        }
        self.key = stable_hash(self.meta)[:24]
        self.dir = Path(root) / self.key
        self._maps: dict[str, np.memmap] = {}

    # ---- files ----
    def _file(self, directory: Path, teacher: str, kind: str) -> Path:
        return directory / f"{teacher}.{kind}.bf16"

    def _shape(self, teacher: str, kind: str) -> tuple[int, int]:
        c, d = self.teachers[teacher]
        return (len(self.clip_ids) * self.num_views, c if kind == "logits" else d)

    def is_valid(self) -> bool:
        """True when the store exists, is complete and was written for exactly these keys."""
        try:
            meta = json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return meta == self.meta

    # ---- writing ----
    def write(self, fill: Any) -> None:
        """Create the store: ``fill(writer)`` calls ``writer(clip_ids, view_index, outputs)`` with
        ``outputs = {teacher: (logits [B, C], features [B, D])}``; files appear atomically."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}.tmp-", dir=self.dir.parent))
        os.chmod(tmp, 0o755)
        try:
            maps = {
                (t, kind): np.memmap(
                    self._file(tmp, t, kind), dtype=np.int16, mode="w+", shape=self._shape(t, kind)
                )
                for t in self.teachers
                for kind in ("logits", "features")
            }
            written = np.zeros((len(self.clip_ids), self.num_views), dtype=bool)

            def writer(
                clip_ids: Sequence[str], view_index: Sequence[int], outputs: Mapping[str, Any]
            ) -> None:
                rows = self.rows(clip_ids, view_index)
                for t, (logits, feats) in outputs.items():
                    for kind, value in (("logits", logits), ("features", feats)):
                        bits = value.detach().to("cpu", torch.bfloat16).view(torch.int16).numpy()
                        maps[(t, kind)][rows] = bits
                for c, k in zip(clip_ids, view_index, strict=True):
                    written[self.row_of[c], int(k)] = True

            fill(writer)
            if not written.all():
                raise RuntimeError(
                    f"teacher cache incomplete: {int((~written).sum())} (clip, view) entries missing"
                )
            for m in maps.values():
                m.flush()
            maps.clear()
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))
            if self.dir.exists() and not self.is_valid():
                shutil.rmtree(self.dir, ignore_errors=True)  # a stale or broken store of the same key
            try:
                os.replace(tmp, self.dir)
            except OSError:
                if not self.is_valid():  # else another process wrote the same store first: keep it
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._maps = {}

    # ---- reading ----
    def rows(self, clip_ids: Sequence[str], view_index: Sequence[int] | torch.Tensor) -> np.ndarray:
        views = [int(v) for v in (view_index.tolist() if torch.is_tensor(view_index) else view_index)]
        if any(not 0 <= v < self.num_views for v in views):
            raise KeyError(f"view index outside [0, {self.num_views})")
        return np.asarray([self.row_of[c] * self.num_views + v for c, v in zip(clip_ids, views, strict=True)])

    def read(
        self,
        clip_ids: Sequence[str],
        view_index: Sequence[int] | torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{teacher: (logits, features)}`` as CPU tensors of ``dtype`` (float32 by default; bfloat16
        is the stored precision, half the bytes to move to a device). Refuses a stale/incomplete store.
        ``view_index`` must be on the CPU (a device tensor would cost a host sync)."""
        if not self._maps:
            if not self.is_valid():
                raise RuntimeError(f"teacher cache {self.dir} is missing or stale; rebuild it")
            self._maps = {
                f"{t}.{kind}": np.memmap(
                    self._file(self.dir, t, kind), dtype=np.int16, mode="r", shape=self._shape(t, kind)
                )
                for t in self.teachers
                for kind in ("logits", "features")
            }
        rows = self.rows(clip_ids, view_index)
        out = {}
        for t in self.teachers:
            pair = []
            for kind in ("logits", "features"):
                bits = torch.from_numpy(np.ascontiguousarray(self._maps[f"{t}.{kind}"][rows]))
                pair.append(bits.view(torch.bfloat16).to(dtype))
            out[t] = (pair[0], pair[1])
        return out


class FixedViewDataset(Dataset):
    """Wraps a :class:`VideoClipDataset`: item ``(index, k)`` is the clip's fixed view ``k``, with
    ``view_index`` added to the sample."""

    def __init__(self, base: Any, seed: int):
        self.base = base
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, k = key
        sample = self.base[(int(index), view_seed(self.base.records[int(index)].clip_id, int(k), self.seed))]
        if "corrupt" not in sample:
            sample["view_index"] = int(k)
        return sample


class FixedViewSampler(Sampler[tuple[int, int]]):
    """Shuffles clips per ``(seed, epoch)`` and picks one of the K cached views for each."""

    def __init__(self, length: int, num_views: int, seed: int = 0, epoch: int = 0):
        self.length, self.num_views, self.seed = int(length), int(num_views), int(seed)
        self.epoch = int(epoch)  # the epoch it starts at (resume with loader workers: runner.data.loading)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 17)
        order = torch.randperm(self.length, generator=g).tolist()
        views = torch.randint(0, self.num_views, (self.length,), generator=g).tolist()
        return iter(zip(order, views, strict=True))


def collate_with_view_index(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`collate_video_batch` plus ``view_index`` (LongTensor) of the kept samples."""
    from runner.data.video import collate_video_batch

    batch = collate_video_batch(samples)
    batch["view_index"] = torch.tensor(
        [int(s["view_index"]) for s in samples if "corrupt" not in s], dtype=torch.long
    )
    return batch


class CachedTeacherCollate:
    """:func:`collate_with_view_index` plus the teachers' cached outputs for the batch's (clip, view)
    pairs, ``batch["teacher_outputs"] = {teacher: (logits, features)}`` in bf16.

    The memory-mapped read happens in the DataLoader (its workers, ahead of the training step, with
    the batch's other tensors pinned and moved by the same transfer): the training step neither
    reads files nor syncs the host to turn a device tensor of view indices into rows."""

    def __init__(self, cache: TeacherOutputCache):
        self.cache = cache

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = collate_with_view_index(samples)
        if batch["video"].shape[0] > 0:
            batch["teacher_outputs"] = self.cache.read(
                batch["clip_id"], batch["view_index"], dtype=torch.bfloat16
            )
        return batch
