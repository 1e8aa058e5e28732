"""Video datasets: PyAV decoding, temporal sampling, clip transforms, dataset readers for
HMDB51 / EPIC-KITCHENS-100 / Kinetics-400, their procedural synthetic twins, and the Lightning
:class:`VideoDataModule`."""

from .datamodule import VideoDataModule, collate_video_batch
from .decode import CorruptVideoError, count_frames, decode_clip
from .readers import EpicKitchens100Reader, HMDB51Reader, Kinetics400Reader, VideoRecord
from .synthetic import ProceduralVideoTwin

__all__ = [
    "VideoDataModule",
    "collate_video_batch",
    "CorruptVideoError",
    "count_frames",
    "decode_clip",
    "VideoRecord",
    "HMDB51Reader",
    "EpicKitchens100Reader",
    "Kinetics400Reader",
    "ProceduralVideoTwin",
]
