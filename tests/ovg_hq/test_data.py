"""QVHighlights readers, the data module and the twin (written in the real layout, read back)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from runner.data.grounding import QVHighlightsDataModule, read_annotations
from runner.data.grounding.readers import BadFeatureFile, load_feature_array
from runner.errors import UserError


def test_twin_is_written_in_the_real_layout(tiny_twin_root):
    for folder in (
        "clip_video",
        "clip_text",
        "clip_text_c",
        "clip_image_r",
        "clip_image_g",
        "clip_image_c",
        "clip_segment_g",
    ):
        assert any((tiny_twin_root / folder).glob("*.npz")), folder
    line = json.loads((tiny_twin_root / "train.jsonl").read_text().splitlines()[0])
    for key in (
        "qid",
        "query",
        "duration",
        "vid",
        "relevant_windows",
        "relevant_clip_ids",
        "saliency_scores",
        "segment_query",
        "complementary_text",
    ):
        assert key in line
    with np.load(tiny_twin_root / "clip_text" / f"qid{line['qid']}.npz") as text:
        assert text["last_hidden_state"].shape[1] == 512 and text["pooler_output"].shape == (512,)
    with np.load(tiny_twin_root / "clip_video" / f"{line['vid']}.npz") as video:
        assert video["features"].shape == (round(line["duration"] / 2), 512)


def test_twin_queries_point_at_their_moments(tiny_twin_root):
    """Segment queries come from inside a GT window and look like its clips, not like the rest."""
    for record in read_annotations(tiny_twin_root / "train.jsonl"):
        video = load_feature_array(tiny_twin_root / "clip_video" / f"{record.vid}.npz", "features", 512)
        seg_s, seg_e = record.segment_query
        assert any(s <= seg_s and seg_e <= e for s, e in record.windows)
        image = load_feature_array(tiny_twin_root / "clip_image_r" / f"qid{record.qid}.npz", "features", 512)[
            0
        ]
        inside = np.zeros(len(video), bool)
        for s, e in record.windows:
            inside[round(s / 2) : round(e / 2)] = True
        sim = video @ image
        assert sim[inside].mean() > sim[~inside].mean() + 0.2


def test_datamodule_batches(tiny_datamodule):
    dm = tiny_datamodule()
    props = dm.network_kwargs()
    assert props["skipped_feature_files"] == 0 and props["train_chunks"] > 0
    batch = next(iter(dm.train_dataloader()))
    b = batch["video"].shape[0]
    assert batch["positive"].shape == (b, 16, 4) and batch["targets"].shape == (b, 16, 4, 2)
    assert batch["positive"].flatten(1).any(1).all()  # chunks without a positive are dropped
    assert batch["video"].shape[1] == 15 + batch["valid"].sum(1).max()
    assert not batch["valid"][:, :15].any()  # left zero padding
    assert batch["visual"].shape[0] == b and batch["hybrid_text"].shape[0] == b
    ev = next(iter(dm.val_dataloader()))
    for key in (
        "text",
        "text_c",
        "image_r",
        "image_c",
        "image_g",
        "segment_g",
        "gt",
        "gt_count",
        "num_clips",
        "qid",
    ):
        assert key in ev


def test_hybrid_text_is_complementary_for_image_c(tiny_datamodule):
    dm = tiny_datamodule(train_visual_queries=["image_c"])
    batch = next(iter(dm.train_dataloader()))
    n = batch["text_c"].shape[1]
    torch.testing.assert_close(batch["hybrid_text"][:, :n], batch["text_c"])
    dm = tiny_datamodule(train_visual_queries="image_r")  # the code's constant type
    batch = next(iter(dm.train_dataloader()))
    assert (batch["visual_type"] == 0).all() and batch["visual"].shape[1] == 1


def test_bad_feature_files_are_skipped_and_counted(tiny_twin_root, tmp_path, caplog):
    root = tmp_path / "copy"
    shutil.copytree(tiny_twin_root, root)
    records = read_annotations(root / "train.jsonl")
    (root / "clip_image_g" / f"qid{records[0].qid}.npz").unlink()  # missing
    (root / "clip_text" / f"qid{records[1].qid}.npz").write_bytes(b"not a zip")  # malformed
    np.savez(root / "clip_segment_g" / f"qid{records[2].qid}.npz", wrong_key=np.zeros((2, 512)))
    with caplog.at_level(logging.WARNING, logger="runner.data"):
        dm = QVHighlightsDataModule(root=str(root), label_cache_dir=None, batch_size=4, chunk_stride=4)
    assert dm.network_kwargs()["skipped_feature_files"] == 3
    assert len(dm.dataset("train")) == len(records) - 3
    assert "skipped 3 query feature file(s)" in caplog.text and "qid" in caplog.text


def test_width_mismatch_is_one_line_naming_the_file(tiny_twin_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_twin_root, root)
    qid = read_annotations(root / "train.jsonl")[0].qid
    np.savez(root / "clip_image_r" / f"qid{qid}.npz", features=np.zeros((1, 256), np.float32))
    with pytest.raises(UserError) as err:
        QVHighlightsDataModule(root=str(root), label_cache_dir=None)
    message = str(err.value)
    assert "\n" not in message and f"qid{qid}.npz" in message and "dataset.feature_dim=512" in message


def test_missing_root_and_folder_are_user_errors(tmp_path, tiny_twin_root):
    with pytest.raises(UserError, match="dataset.synthetic=true"):
        QVHighlightsDataModule(root=str(tmp_path / "nowhere"))
    root = tmp_path / "copy"
    shutil.copytree(tiny_twin_root, root)
    shutil.rmtree(root / "clip_image_c")
    with pytest.raises(UserError, match="dataset.feature_dirs.image_c"):
        QVHighlightsDataModule(root=str(root))


def test_reader_errors(tmp_path):
    path = tmp_path / "f.npz"
    with pytest.raises(BadFeatureFile, match="missing"):
        load_feature_array(path, "features", 4)
    np.savez(path, features=np.full((2, 4), np.nan))
    with pytest.raises(BadFeatureFile, match="non-finite"):
        load_feature_array(path, "features", 4)
    np.savez(path, features=np.ones(4))  # a 1-D array is one row (pooler_output style)
    assert load_feature_array(path, "features", 4).shape == (1, 4)
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"qid": 1, "vid": "v"}\n')
    with pytest.raises(UserError, match="duration"):
        read_annotations(bad)
