"""Lightning data module of online video grounding on QVHighlights(-Unify) features (card ``ovg_hq.md``).

Everything is read once at construction: annotations, every feature file a query needs (a missing or
malformed file skips the query; the file is named in the log and the count goes to ``metrics.json``
under ``data.skipped_feature_files`` and, per split file, under ``skipped``; a split left with no query
is a one-line error), and the anchor labels (:mod:`.anchors`, cached by hash).

Training samples follow the code: for a query whose video has ``T`` clips, the chunk starting at
boundary ``i`` (``i = 1 .. T − window + 1``, every ``chunk_stride``-th) holds the windows ending at
boundaries ``i .. i + window − 1``; chunks without a positive anchor are dropped. A batch gives the whole
video left-padded with ``window − 1`` zero clips (``video [B, window − 1 + T_max, F]``), the padded
position of its first window end (``first_window``), the chunk's labels (``positive [B, window, A]``,
``targets [B, window, A, 2]``), and the query streams: ``text``, ``text_c``, the visual query drawn per
sample from ``train_visual_queries`` (or a constant one: the code's seeding bug) as ``visual`` with
``hybrid_text`` (``text_c`` when the visual query is ``image_c``, else ``text``), and ``segment_g`` for
the segment+text expert. Every stream comes with a ``*_mask`` (True on real tokens).

Evaluation batches hold whole videos (``video``, ``valid``, ``num_clips``), every loaded query stream,
the GT windows in seconds (``gt [B, G, 2]``, ``gt_count``), ``qid`` and ``duration``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from runner.data.grounding.anchors import cached_anchor_labels
from runner.data.grounding.readers import (
    MODALITY_KEYS,
    BadFeatureFile,
    GroundingRecord,
    check_folders,
    feature_path,
    l2_normalize,
    load_feature_array,
    read_annotations,
)
from runner.data.loading import worker_context
from runner.data.skips import nothing_left, record_skip
from runner.data.twin import data_root
from runner.errors import invalid_value, missing_dataset_root

log = logging.getLogger("runner.data")

VISUAL_QUERIES = ("image_r", "image_c", "image_g", "segment_g")
QUERY_MODALITIES = ("text", "text_c", *VISUAL_QUERIES)
SPLITS = ("train", "val", "test")
DEFAULT_FEATURE_DIRS = {
    "video": "clip_video",
    "text": "clip_text",
    "text_c": "clip_text_c",
    "image_r": "clip_image_r",
    "image_g": "clip_image_g",
    "image_c": "clip_image_c",
    "segment_g": "clip_segment_g",
}


class PaddedStream:
    """Variable-length feature arrays of one modality as ``[N, L_max, F]`` + lengths."""

    def __init__(self, arrays: Sequence[np.ndarray], width: int) -> None:
        lengths = [len(a) for a in arrays]
        top = max(lengths, default=1)
        data = np.zeros((len(arrays), top, width), dtype=np.float32)
        for i, a in enumerate(arrays):
            data[i, : len(a)] = a
        self.data = torch.from_numpy(data)
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, L, F], mask [B, L])`` trimmed to the longest in the batch."""
        lengths = self.lengths[index]
        top = int(lengths.max()) if len(lengths) else 1
        mask = torch.arange(top)[None, :] < lengths[:, None]
        return self.data[index, :top], mask


class GroundingSplit:
    """One split in memory: records, padded videos and query streams, anchor labels."""

    def __init__(
        self,
        records: list[GroundingRecord],
        videos: PaddedStream,
        video_index: torch.Tensor,
        streams: dict[str, PaddedStream],
        positive: torch.Tensor,
        targets: torch.Tensor,
        window: int,
    ) -> None:
        self.records, self.videos, self.video_index = records, videos, video_index
        self.streams, self.positive, self.targets, self.window = streams, positive, targets, window
        self.num_clips = videos.lengths[video_index]

    def __len__(self) -> int:
        return len(self.records)

    def video_batch(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded videos ``[B, window − 1 + T, F]`` and their ``valid`` masks."""
        clips, mask = self.videos.batch(self.video_index[queries])
        pad = self.window - 1
        video = torch.nn.functional.pad(clips, (0, 0, pad, 0))
        valid = torch.nn.functional.pad(mask, (pad, 0), value=False)
        return video, valid

    def chunks(self, stride: int) -> torch.Tensor:
        """``[N, 2]`` (query, first boundary) of every training chunk with a positive anchor."""
        w = self.window
        pairs = []
        any_pos = self.positive.any(-1)  # [Q, T]
        for q in range(len(self.records)):
            n = int(self.num_clips[q])
            if n < w:
                continue
            starts = torch.arange(1, n - w + 2, stride)
            cover = (
                any_pos[q].unfold(0, w, 1)[starts - 1].any(-1)
                if len(starts)
                else torch.zeros(0, dtype=torch.bool)
            )
            keep = starts[cover]
            pairs.append(torch.stack([torch.full_like(keep, q), keep], dim=1))
        return torch.cat(pairs) if pairs else torch.zeros((0, 2), dtype=torch.long)


class IndexDataset(Dataset):
    """Items are row indices; the collate functions build whole batches with tensor gathers."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class TrainCollate:
    """Chunk indices → a training batch (see the module docstring)."""

    def __init__(self, split: GroundingSplit, chunks: torch.Tensor, visual_queries: Sequence[str]) -> None:
        self.split, self.chunks, self.visual_queries = split, chunks, list(visual_queries)

    def __call__(self, items: list[int]) -> dict[str, Any]:
        split, w = self.split, self.split.window
        rows = self.chunks[torch.as_tensor(items, dtype=torch.long)]
        queries, starts = rows[:, 0], rows[:, 1]
        video, valid = split.video_batch(queries)
        offsets = (starts - 1).unsqueeze(1) + torch.arange(w)  # time index of each window's boundary - 1
        batch: dict[str, Any] = {
            "video": video,
            "valid": valid,
            "first_window": starts - 1 + (w - 1),
            "positive": split.positive[queries.unsqueeze(1), offsets],
            "targets": split.targets[queries.unsqueeze(1), offsets],
            "qid": torch.as_tensor([split.records[q].qid for q in queries.tolist()]),
        }
        for name in ("text", "text_c", "segment_g"):
            if name in split.streams:
                batch[name], batch[f"{name}_mask"] = split.streams[name].batch(queries)
        if self.visual_queries:
            draw = torch.randint(len(self.visual_queries), (len(items),))
            names = [self.visual_queries[i] for i in draw.tolist()]
            feats = [split.streams[n].batch(queries[i : i + 1]) for i, n in enumerate(names)]
            top = max(f.shape[1] for f, _ in feats)
            batch["visual"] = torch.cat(
                [torch.nn.functional.pad(f, (0, 0, 0, top - f.shape[1])) for f, _ in feats]
            )
            batch["visual_mask"] = torch.cat(
                [torch.nn.functional.pad(m, (0, top - m.shape[1])) for _, m in feats]
            )
            batch["visual_type"] = draw
            use_c = torch.as_tensor([n == "image_c" for n in names])
            if "text_c" in batch:
                text, text_c = batch["text"], batch["text_c"]
                top_t = max(text.shape[1], text_c.shape[1])
                pad_t = lambda t: torch.nn.functional.pad(t, (0, 0, 0, top_t - t.shape[1]))  # noqa: E731
                pad_m = lambda m: torch.nn.functional.pad(m, (0, top_t - m.shape[1]))  # noqa: E731
                batch["hybrid_text"] = torch.where(use_c[:, None, None], pad_t(text_c), pad_t(text))
                batch["hybrid_text_mask"] = torch.where(
                    use_c[:, None], pad_m(batch["text_c_mask"]), pad_m(batch["text_mask"])
                )
            else:
                batch["hybrid_text"], batch["hybrid_text_mask"] = batch["text"], batch["text_mask"]
        return batch


class EvalCollate:
    """Query indices → an evaluation batch of whole videos."""

    def __init__(self, split: GroundingSplit, clip_seconds: float) -> None:
        self.split, self.clip_seconds = split, clip_seconds

    def __call__(self, items: list[int]) -> dict[str, Any]:
        split = self.split
        queries = torch.as_tensor(items, dtype=torch.long)
        video, valid = split.video_batch(queries)
        records = [split.records[q] for q in items]
        top = max(1, max(len(r.windows) for r in records))
        gt = torch.zeros(len(items), top, 2)
        for i, r in enumerate(records):
            if r.windows:
                gt[i, : len(r.windows)] = torch.as_tensor(r.windows, dtype=torch.float32)
        batch: dict[str, Any] = {
            "video": video,
            "valid": valid,
            "num_clips": split.num_clips[queries],
            "gt": gt,
            "gt_count": torch.as_tensor([len(r.windows) for r in records]),
            "qid": torch.as_tensor([r.qid for r in records]),
            "duration": torch.as_tensor([r.duration for r in records]),
        }
        for name, stream in split.streams.items():
            batch[name], batch[f"{name}_mask"] = stream.batch(queries)
        return batch


class QVHighlightsDataModule(L.LightningDataModule):
    """QVHighlights(-Unify) clip features for online grounding (real files or the synthetic twin).

    Args:
        root: folder with the split jsonl files and the feature folders (real data).
        synthetic / synthetic_root / twin: use the twin written under ``synthetic_root``.
        splits: ``{train, val, test}`` → jsonl file names under the root.
        feature_dirs: modality → folder under the root (:data:`DEFAULT_FEATURE_DIRS`).
        modalities: query modalities to load (a query missing any of them is skipped).
        feature_dim: width of every feature array (a mismatch is a one-line error naming the file).
        clip_seconds: 2; max_clips: 75 (longer videos are cut); max_query_tokens: 32 text tokens.
        window: clips per causal window (16); anchors: (1, 2, 4, 8); pos_iou: 0.5.
        chunk_stride: step between training chunk starts (1 in the code).
        train_visual_queries: visual query types drawn per sample for hybrid / visual-only training;
            a single name reproduces the code's constant type (its seeding bug).
        l2_normalize: normalise every feature row (the code does).
        label_cache_dir: where anchor labels are cached (None: recomputed every run).
        batch_size (256), eval_batch_size, num_workers, pin_memory, persistent_workers: loaders.
        max_queries: keep only the first N queries of each split (a debug/smoke size; None = all).
    """

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        twin: Any = None,
        splits: Mapping[str, str] | None = None,
        feature_dirs: Mapping[str, str] | None = None,
        modalities: Sequence[str] = QUERY_MODALITIES,
        feature_dim: int = 512,
        clip_seconds: float = 2.0,
        max_clips: int = 75,
        max_query_tokens: int = 32,
        window: int = 16,
        anchors: Sequence[int] = (1, 2, 4, 8),
        pos_iou: float = 0.5,
        chunk_stride: int = 1,
        train_visual_queries: Sequence[str] | str = VISUAL_QUERIES,
        l2_normalize: bool = True,
        label_cache_dir: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        max_queries: int | None = None,
    ) -> None:
        super().__init__()
        self.synthetic = bool(synthetic)
        self.splits = dict(splits or {s: f"{s}.jsonl" for s in SPLITS})
        self.feature_dirs = {**DEFAULT_FEATURE_DIRS, **dict(feature_dirs or {})}
        self.modalities = [str(m) for m in modalities]
        unknown = [m for m in self.modalities if m not in QUERY_MODALITIES]
        if unknown or "text" not in self.modalities:
            raise invalid_value(
                "dataset.modalities", self.modalities, f"'text' plus any of {', '.join(QUERY_MODALITIES)}"
            )
        visual = (
            [train_visual_queries] if isinstance(train_visual_queries, str) else list(train_visual_queries)
        )
        bad = [v for v in visual if v not in VISUAL_QUERIES or v not in self.modalities]
        if bad:
            raise invalid_value(
                "dataset.train_visual_queries",
                visual,
                f"loaded visual modalities ({', '.join(VISUAL_QUERIES)})",
            )
        self.train_visual_queries = visual
        self.feature_dim, self.clip_seconds = int(feature_dim), float(clip_seconds)
        self.max_clips, self.max_query_tokens = int(max_clips), int(max_query_tokens)
        self.window, self.anchors, self.pos_iou = int(window), [int(a) for a in anchors], float(pos_iou)
        self.chunk_stride = int(chunk_stride)
        self.normalize = bool(l2_normalize)
        self.label_cache_dir = label_cache_dir
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.max_queries = None if max_queries is None else int(max_queries)

        self.root_used = data_root(self.synthetic, root, twin, synthetic_root)
        self.root_used = os.path.abspath(os.path.expanduser(self.root_used))
        first = os.path.join(self.root_used, self.splits["train"])
        if not os.path.isfile(first):
            raise missing_dataset_root("QVHighlights", first)
        check_folders(self.root_used, {m: self.feature_dirs[m] for m in ["video", *self.modalities]})
        self.skipped: dict[str, str] = {}
        self.data = {split: self._load_split(split) for split in SPLITS}
        if self.skipped:
            log.warning(
                "skipped %d query feature file(s) (missing or malformed), e.g. %s",
                len(self.skipped),
                "; ".join(f"{p}: {r}" for p, r in list(self.skipped.items())[:3]),
            )
        self.train_chunks = self.data["train"].chunks(self.chunk_stride)
        lengths = [
            round(e / self.clip_seconds) - round(s / self.clip_seconds)
            for r in self.data["train"].records
            for s, e in r.windows
        ]
        self.frequent_length = int(np.bincount(np.clip(lengths, 0, None)).argmax()) if lengths else 1
        log.info(
            "QVHighlights%s: %s queries, %d training chunks, most frequent moment length %d clips",
            " (twin)" if self.synthetic else "",
            {s: len(d) for s, d in self.data.items()},
            len(self.train_chunks),
            self.frequent_length,
        )

    # ------------------------------------------------------------------ loading
    def _read(self, path, key: str, max_rows: int) -> np.ndarray:
        array = load_feature_array(path, key, self.feature_dim, max_rows)
        return l2_normalize(array) if self.normalize else array

    def _load_split(self, split: str) -> GroundingSplit:
        path = os.path.join(self.root_used, self.splits[split])
        if not os.path.isfile(path):
            raise missing_dataset_root("QVHighlights", path)
        records = read_annotations(path)
        if self.max_queries is not None:
            records = records[: self.max_queries]
        videos: dict[str, np.ndarray] = {}
        bad_videos: set[str] = set()
        kept: list[GroundingRecord] = []
        skipped_before = set(self.skipped)
        streams: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        for record in records:
            if record.vid in bad_videos:
                continue
            try:
                if record.vid not in videos:
                    vpath = feature_path(self.root_used, self.feature_dirs["video"], "video", record)
                    videos[record.vid] = self._read(vpath, MODALITY_KEYS["video"], self.max_clips)
                arrays = {}
                for m in self.modalities:
                    qpath = feature_path(self.root_used, self.feature_dirs[m], m, record)
                    limit = self.max_query_tokens if m.startswith("text") else self.max_clips
                    arrays[m] = self._read(qpath, MODALITY_KEYS[m], limit)
            except BadFeatureFile as err:
                self.skipped[err.path] = err.reason
                if record.vid not in videos:
                    bad_videos.add(record.vid)
                continue
            kept.append(record)
            for m, a in arrays.items():
                streams[m].append(a)
        bad_files = [f"{p} ({r})" for p, r in self.skipped.items() if p not in skipped_before]
        record_skip(
            path, "queries with a missing or malformed feature file", len(records) - len(kept), bad_files
        )
        if not kept:
            raise nothing_left(path, "query", "every query's feature files were missing or malformed")
        vid_names = sorted({r.vid for r in kept})
        vid_pos = {v: i for i, v in enumerate(vid_names)}
        video_stream = PaddedStream([videos[v] for v in vid_names], self.feature_dim)
        video_index = torch.as_tensor([vid_pos[r.vid] for r in kept], dtype=torch.long)
        num_clips = [
            min(int(video_stream.lengths[vid_pos[r.vid]]), max(1, round(r.duration / self.clip_seconds)))
            for r in kept
        ]
        positive, targets = cached_anchor_labels(
            self.label_cache_dir,
            [r.windows for r in kept],
            num_clips,
            self.anchors,
            self.pos_iou,
            self.clip_seconds,
            self.max_clips,
        )
        split_data = GroundingSplit(
            kept,
            video_stream,
            video_index,
            {m: PaddedStream(a, self.feature_dim) for m, a in streams.items()},
            torch.from_numpy(positive),
            torch.from_numpy(targets),
            self.window,
        )
        split_data.num_clips = torch.as_tensor(num_clips, dtype=torch.long)
        return split_data

    # ------------------------------------------------------------------ properties
    def network_kwargs(self) -> dict[str, Any]:
        """What the network / method / metrics.json need to know about the data."""
        return {
            "feature_dim": self.feature_dim,
            "window": self.window,
            "anchors": list(self.anchors),
            "clip_seconds": self.clip_seconds,
            "frequent_length": self.frequent_length,
            "skipped_feature_files": len(self.skipped),
            "train_queries": len(self.data["train"]),
            "train_chunks": len(self.train_chunks),
        }

    def dataset(self, split: str) -> GroundingSplit:
        return self.data[split]

    # ------------------------------------------------------------------ loaders
    def _loader(self, size: int, collate: Any, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            IndexDataset(size),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            multiprocessing_context=worker_context(self.num_workers),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        collate = TrainCollate(self.data["train"], self.train_chunks, self.train_visual_queries)
        return self._loader(len(self.train_chunks), collate, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        split = self.data["val"]
        return self._loader(len(split), EvalCollate(split, self.clip_seconds), self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        split = self.data["test"]
        return self._loader(len(split), EvalCollate(split, self.clip_seconds), self.eval_batch_size, False)
