"""The restricted unpickler loads the pickle-based dataset formats and refuses code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from runner.data.images.cifar import load_cifar_pickle
from runner.data.safe_pickle import load_restricted_pickle
from runner.errors import UserError


class _WritesMarker:
    """Pickles to a call of ``os.system`` that would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_batch_round_trips_protocol_2(tmp_path):
    batch = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"labels": [3, 7]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    loaded = load_cifar_pickle(str(path))
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == [3, 7]


def test_pyskl_style_pickle_round_trips(tmp_path):
    payload = {
        "split": {"xsub_train": ["a"], "xsub_val": ["b"]},
        "annotations": [
            {
                "frame_dir": "a",
                "label": np.int64(2),
                "keypoint": np.zeros((1, 5, 17, 2), np.float16),
                "keypoint_score": np.ones((1, 5, 17), np.float32),
                "total_frames": 5,
            }
        ],
    }
    path = tmp_path / "ann.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    loaded = load_restricted_pickle(path, format_name="PYSKL annotation pickle")
    assert loaded["annotations"][0]["keypoint"].dtype == np.float16
    assert int(loaded["annotations"][0]["label"]) == 2


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_cifar_meta_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({b"label_names": _WritesMarker(str(marker))}, protocol=protocol))
    with pytest.raises(UserError, match=r"batches\.meta.*refused to load posix\.system|batches\.meta.*os"):
        load_cifar_pickle(str(path))
    assert not marker.exists()


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2)[:40])
    with pytest.raises(UserError, match="test_batch is not a readable CIFAR python pickle"):
        load_cifar_pickle(str(path))


def test_non_dict_cifar_pickle_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(UserError, match="holds a list"):
        load_cifar_pickle(str(path))
