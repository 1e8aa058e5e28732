"""Skeleton sequences: layouts, readers (E-Gait h5, PYSKL pickle, NTU text), STEP's affective
features, the procedural gait twin and the datamodule."""

from runner.data.skeleton.datamodule import SkeletonDataModule, stratified_split
from runner.data.skeleton.layouts import LAYOUTS, SkeletonLayout, get_layout
from runner.data.skeleton.readers import (
    EGaitReader,
    NTUSkeletonReader,
    PysklReader,
    SkeletonCollection,
    read_ntu_skeleton,
)
from runner.data.skeleton.twin import EGaitTwin, NTUGaitTwin, PysklGaitTwin, generate_gaits

__all__ = [
    "LAYOUTS",
    "EGaitReader",
    "EGaitTwin",
    "NTUGaitTwin",
    "NTUSkeletonReader",
    "PysklGaitTwin",
    "PysklReader",
    "SkeletonCollection",
    "SkeletonDataModule",
    "SkeletonLayout",
    "generate_gaits",
    "get_layout",
    "read_ntu_skeleton",
    "stratified_split",
]
