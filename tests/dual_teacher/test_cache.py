"""The teacher-output cache: round trip in bf16, and a changed teacher checkpoint or transform
never reads a stale store."""

from __future__ import annotations

import json

import pytest
import torch

from runner.data.video.datamodule import VideoClipDataset, ViewSpec
from runner.data.video.transforms import ClipTransform
from runner.methods.dual_teacher.cache import TeacherOutputCache, sha256_file, transform_hash

CLIPS = ["a/1", "a/2", "b/1"]
TEACHERS = {"cnn": (4, 6), "vit": (4, 3)}


def _outputs(clip_ids, view_index):
    """Deterministic fake teacher outputs depending on (clip, view)."""
    out = {}
    for name, (c, d) in TEACHERS.items():
        base = torch.tensor(
            [CLIPS.index(cid) * 10.0 + v for cid, v in zip(clip_ids, view_index, strict=True)]
        )
        out[name] = (base[:, None] + torch.arange(c), -base[:, None] - torch.arange(d) * 0.5)
    return out


def _fill(writer):
    for k in range(2):
        writer(CLIPS, [k] * len(CLIPS), _outputs(CLIPS, [k] * len(CLIPS)))


def _cache(root, teacher_hash="t1", tf_hash="x1"):
    return TeacherOutputCache(root, CLIPS, 2, TEACHERS, {"cnn": teacher_hash, "vit": "v"}, tf_hash)


def test_round_trip_in_bf16(tmp_path):
    cache = _cache(tmp_path)
    assert not cache.is_valid()
    cache.write(_fill)
    assert cache.is_valid()
    got = cache.read(["b/1", "a/1"], torch.tensor([1, 0]))
    want = _outputs(["b/1", "a/1"], [1, 0])
    for name in TEACHERS:
        for g, w in zip(got[name], want[name], strict=True):
            assert g.dtype == torch.float32
            assert torch.allclose(g, w.to(torch.bfloat16).float())
    with pytest.raises(KeyError):
        cache.read(["a/1"], [2])  # only views 0 and 1 exist


def test_changed_teacher_checkpoint_or_transform_is_a_cache_miss(tmp_path):
    _cache(tmp_path).write(_fill)
    assert _cache(tmp_path).is_valid()
    for other in (_cache(tmp_path, teacher_hash="t2"), _cache(tmp_path, tf_hash="x2")):
        assert not other.is_valid()
        assert other.dir != _cache(tmp_path).dir
        with pytest.raises(RuntimeError, match="stale"):
            other.read(["a/1"], [0])


def test_a_tampered_store_is_not_read(tmp_path):
    cache = _cache(tmp_path)
    cache.write(_fill)
    meta = json.loads((cache.dir / "meta.json").read_text())
    meta["teacher_hashes"]["cnn"] = "something else"
    (cache.dir / "meta.json").write_text(json.dumps(meta))
    fresh = _cache(tmp_path)
    assert not fresh.is_valid()
    with pytest.raises(RuntimeError):
        fresh.read(["a/1"], [0])


def test_an_incomplete_fill_leaves_no_store(tmp_path):
    cache = _cache(tmp_path)
    with pytest.raises(RuntimeError, match="incomplete"):
        cache.write(lambda writer: writer(CLIPS[:1], [0], _outputs(CLIPS[:1], [0])))
    assert not cache.is_valid() and not cache.dir.exists()


def test_transform_hash_changes_with_crop_views_and_checkpoint_hash_with_bytes(tmp_path):
    def dataset(crop, vit_stride=1):
        views = {"vit": (ViewSpec("vit", 4, 56, vit_stride), ClipTransform(True, 56, (64, 72)))}
        return VideoClipDataset([], True, "dense", 8, 2, ClipTransform(True, crop, (64, 72)), views)

    base = transform_hash(dataset(56), 4, 0)
    assert transform_hash(dataset(56), 4, 0) == base
    assert transform_hash(dataset(48), 4, 0) != base
    assert transform_hash(dataset(56, vit_stride=2), 4, 0) != base
    assert transform_hash(dataset(56), 2, 0) != base
    weights = tmp_path / "teacher.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    first = sha256_file(weights)
    torch.save({"w": torch.ones(3)}, weights)
    assert sha256_file(weights) != first
