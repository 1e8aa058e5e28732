"""Video decoding with PyAV.

torchvision >= 0.28 dropped ``read_video``, so clips are decoded here directly with PyAV
(``import av``, FFmpeg bindings). Every failure to read a file -- a missing or truncated file,
random bytes, a container with no video stream, a stream with zero decodable frames -- becomes a
:class:`CorruptVideoError` naming the path, so the data loader can skip the file and report it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import av
import numpy as np
import torch

__all__ = ["CorruptVideoError", "decode_clip", "count_frames", "video_fps"]


class CorruptVideoError(Exception):
    """A video file that cannot be decoded (missing, truncated, empty, not a video)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode video {path}: {reason}")
        self.path = str(path)
        self.reason = reason


# Exceptions FFmpeg/PyAV raise on bad input; all are converted into CorruptVideoError.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    OSError,
    EOFError,
    ValueError,
    IndexError,
    StopIteration,
)


def _open(path: str):
    try:
        container = av.open(str(path), mode="r")
    except _DECODE_ERRORS as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise CorruptVideoError(path, "no video stream")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def video_fps(path: str) -> float:
    """Frames per second of the first video stream of ``path`` (0.0 if unknown)."""
    container = _open(path)
    try:
        return _stream_fps(container.streams.video[0])
    finally:
        container.close()


def count_frames(path: str) -> int:
    """Number of frames in the first video stream of ``path``.

    Uses the container's frame count when it has one (AVI and MP4 headers do), otherwise counts
    the demuxed video packets (no decoding). Raises :class:`CorruptVideoError` if the file cannot be
    opened or has no frames.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        n = int(stream.frames or 0)
        if n <= 0:
            n = 0
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
    except _DECODE_ERRORS as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc
    finally:
        container.close()
    if n <= 0:
        raise CorruptVideoError(path, "zero frames")
    return n


def _frame_index(frame, stream, fps: float, fallback: int) -> int:
    """0-based frame index of a decoded frame from its timestamp (``fallback`` if it has none)."""
    pts = frame.pts
    if pts is None or not fps or stream.time_base is None:
        return fallback
    start = stream.start_time or 0
    return int(round(float((pts - start) * stream.time_base) * fps))


def decode_clip(
    path: str,
    frame_indices: Sequence[int] | torch.Tensor | None = None,
    start_sec: float | None = None,
    stop_sec: float | None = None,
) -> torch.Tensor:
    """Decode frames of ``path`` into a ``torch.uint8`` tensor ``[T, H, W, 3]`` (RGB).

    - ``frame_indices`` (0-based, any order, repeats allowed): return exactly those frames, in that
      order. Decoding stops after the largest index; for a large first index the container is first
      seeked to the preceding keyframe. Indices at most ``max(2, 5 %)`` frames past the last
      decodable frame are clamped to it (container frame counts may be off by a frame or two); a
      stream ending earlier than that counts as truncated.
    - ``start_sec`` / ``stop_sec`` (stop exclusive): return every frame whose timestamp lies in the
      window.
    - neither: return every frame.

    The file is opened and decoded once. Raises :class:`CorruptVideoError` for files that cannot be
    decoded or yield no frames.
    """
    wanted: np.ndarray | None = None
    if frame_indices is not None:
        wanted = np.asarray(
            frame_indices.tolist() if isinstance(frame_indices, torch.Tensor) else frame_indices,
            dtype=np.int64,
        ).reshape(-1)
        if wanted.size == 0:
            raise ValueError("decode_clip: frame_indices is empty")
        if wanted.min() < 0:
            raise ValueError("decode_clip: frame indices must be >= 0")

    container = _open(path)
    frames: dict[int, np.ndarray] = {}
    ordered: list[np.ndarray] = []
    last_frame = None  # most recent decoded frame (av.VideoFrame), for clamping
    last_idx = -1
    try:
        stream = container.streams.video[0]
        # No frame threading: FFmpeg worker threads fight torch's OpenMP pool (10x slower on CPU);
        # data-loader workers parallelise decoding instead.
        fps = _stream_fps(stream)
        lo_sec = None
        needed: set[int] = set()
        hi = -1
        if wanted is not None:
            needed = set(wanted.tolist())
            hi = int(wanted.max())
            lo = int(wanted.min())
            if fps and lo / fps > 2.0:
                lo_sec = lo / fps
        elif start_sec is not None and start_sec > 2.0:
            lo_sec = start_sec
        seeked = False
        if lo_sec is not None and stream.time_base is not None:
            # Seek to the keyframe at or before the first wanted frame (1 s of slack).
            target = int(max(lo_sec - 1.0, 0.0) / stream.time_base) + (stream.start_time or 0)
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                seeked = True
            except _DECODE_ERRORS:
                container.seek(0)
        counter = 0
        for frame in container.decode(stream):
            # Without a seek the running count is exact; after one, timestamps give the index.
            idx = _frame_index(frame, stream, fps, counter) if seeked else counter
            counter = idx + 1
            if wanted is not None:
                if idx > hi:
                    break
                last_frame, last_idx = frame, idx
                if idx in needed:
                    frames[idx] = frame.to_ndarray(format="rgb24")
                    if len(frames) == len(needed):
                        break
            else:
                t = float(frame.pts * stream.time_base) if frame.pts is not None else idx / (fps or 1.0)
                if start_sec is not None and t < start_sec - 1e-6:
                    continue
                if stop_sec is not None and t >= stop_sec - 1e-6:
                    break
                ordered.append(frame.to_ndarray(format="rgb24"))
    except _DECODE_ERRORS as exc:
        raise CorruptVideoError(path, f"{type(exc).__name__}: {exc}") from exc
    finally:
        container.close()

    if wanted is None:
        if not ordered:
            raise CorruptVideoError(path, "zero frames decoded")
        return torch.from_numpy(np.stack(ordered))
    if not frames and last_frame is None:
        raise CorruptVideoError(path, "zero frames decoded")
    if len(frames) < len(needed) and hi - last_idx > max(2, hi // 20):
        raise CorruptVideoError(path, f"truncated: stream ends at frame {last_idx}, frame {hi} was requested")
    last = (
        last_frame.to_ndarray(format="rgb24")
        if len(frames) < len(needed) and last_frame is not None
        else None
    )
    available = sorted(frames)
    out = []
    for i in wanted.tolist():
        if i in frames:
            out.append(frames[i])
        elif last is not None and i > last_idx:
            out.append(last)  # the file ended before frame i: repeat the last decoded frame
        else:
            below = [k for k in available if k < i]
            out.append(frames[below[-1]] if below else frames[available[0]] if available else last)
    return torch.from_numpy(np.stack(out))


def seconds_to_frame(sec: float, fps: float) -> int:
    """Frame index (0-based) of the frame shown at time ``sec`` for a stream at ``fps``."""
    return int(math.floor(sec * fps + 1e-6))
