"""Sticker / meme emotion data (MGHFT): SER30K and MET-MEME readers, their twins, cached view features."""

from runner.data.stickers.datamodule import StickerDataModule, build_transform, collate_stickers
from runner.data.stickers.readers import (
    METMEME_CLASSES,
    SER30K_CLASSES,
    MetMemeReader,
    SER30KReader,
    StickerRecord,
    split_views,
)
from runner.data.stickers.text_features import FrozenTextEncoder, TextFeatureCache
from runner.data.stickers.twin import MetMemeTwin, SER30KTwin

__all__ = [
    "METMEME_CLASSES",
    "SER30K_CLASSES",
    "FrozenTextEncoder",
    "MetMemeReader",
    "MetMemeTwin",
    "SER30KReader",
    "SER30KTwin",
    "StickerDataModule",
    "StickerRecord",
    "TextFeatureCache",
    "build_transform",
    "collate_stickers",
    "split_views",
]
