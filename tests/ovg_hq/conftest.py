"""Fixtures of the OVG-HQ tests: a tiny QVHighlights-Unify twin (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner.data.grounding import QVHighlightsDataModule, QVHighlightsTwin


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread avoids oversubscription stalls."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_TWIN = {"num_videos": (6, 3, 3), "clips_range": (24, 40), "seed": 3}


@pytest.fixture(scope="session")
def tiny_twin_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qvh") / "twin"
    QVHighlightsTwin(**TINY_TWIN).ensure(str(root))
    return root


@pytest.fixture
def tiny_datamodule(tiny_twin_root, tmp_path):
    def make(**kwargs) -> QVHighlightsDataModule:
        settings = {
            "root": str(tiny_twin_root),
            "label_cache_dir": str(tmp_path / "labels"),
            "batch_size": 4,
            "eval_batch_size": 4,
            "chunk_stride": 4,
        }
        settings.update(kwargs)
        return QVHighlightsDataModule(**settings)

    return make
