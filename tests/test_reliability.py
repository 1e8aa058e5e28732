"""Issue 18: no code from checkpoints, bad checkpoints in one line, resume=auto fallback, stale temp
files, unfinished sweep jobs, no silent success, and the real-data paths of issue 17 item 8."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.checkpointing import RESUME_KEYS, clean_stale_tmp_files, find_resume_checkpoint, load_checkpoint
from runner.data.skips import reset_skips, skipped
from runner.errors import UserError


def training_checkpoint(**extra) -> dict:
    return {**{key: {} for key in RESUME_KEYS}, **extra}


class Marker:
    """A pickle payload that would create a file when unpickled without restrictions."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# ------------------------------------------------------------------ item 1: no code from a checkpoint
def test_export_refuses_a_malicious_checkpoint(tmp_path):
    from runner.export import export_student

    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {"student.w": torch.ones(1)}, "student_class": Marker(marker)}, crafted)
    with pytest.raises(UserError) as info:
        export_student(crafted, tmp_path / "out.pt")
    assert not marker.exists()
    assert str(crafted) in str(info.value) and "\n" not in str(info.value)


def test_resuming_from_a_malicious_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "last.ckpt"
    torch.save(training_checkpoint(callbacks={"x": Marker(marker)}), crafted)
    with pytest.raises(UserError, match="safe load"):
        load_checkpoint(crafted, require=RESUME_KEYS)
    assert not marker.exists()


# ------------------------------------------------------------------ item 3: bad checkpoints
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign", "not_a_dict"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / "bad.ckpt"
    torch.save(training_checkpoint(state_dict={"w": torch.ones(1000)}), path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":
        torch.save({"w": torch.ones(3)}, path)  # plain weights, not a training checkpoint
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path, require=RESUME_KEYS)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_resume_auto_falls_back_to_the_previous_good_checkpoint(tmp_path, caplog):
    logs = tmp_path / "logs"
    good = logs / "task" / "runs" / "a" / "checkpoints" / "last.ckpt"
    bad = logs / "task" / "runs" / "b" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((good, bad)):
        path.parent.mkdir(parents=True)
        torch.save(training_checkpoint(state_dict={"w": torch.ones(100)}), path)
        os.utime(path, (1000 + i, 1000 + i))
    bad.write_bytes(bad.read_bytes()[:100])  # the newest was cut off mid-copy
    os.utime(bad, (2000, 2000))
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(str(tmp_path / "fresh"), str(logs), "task") == str(good)
    assert str(bad) in caplog.text and "falling back to the previous good checkpoint" in caplog.text
    good.write_bytes(b"")
    with pytest.raises(UserError, match="only unreadable checkpoints"):
        find_resume_checkpoint(str(tmp_path / "fresh"), str(logs), "task")


def test_stale_tmp_files_of_an_interrupted_write_are_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = folder / ".last.ckpt.999999999.abcd.tmp"  # no such process
    old_style = folder / ".last.ckpt.xyz.tmp"  # written before the pid was in the name
    live = folder / f".last.ckpt.{os.getppid()}.abcd.tmp"  # a write in progress elsewhere
    for path in (dead, old_style, live):
        path.write_bytes(b"partial")
    (folder / "last.ckpt").write_bytes(b"kept")
    removed = clean_stale_tmp_files(folder)
    assert sorted(removed) == sorted([dead, old_style])
    assert live.exists() and (folder / "last.ckpt").exists()


# ------------------------------------------------------------------ item 2: unfinished sweep jobs
def test_report_lists_jobs_that_did_not_finish(tmp_path):
    from runner.report import build_report

    for name, files in {"0": ["metrics.json"], "1": ["FAILED.txt"], "2": []}.items():
        job = tmp_path / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
        for f in files:
            payload = {"metrics": {"test/acc": 0.5}, "seed": 0} if f == "metrics.json" else None
            (job / f).write_text(json.dumps(payload) if payload else "RuntimeError: boom\n")
    markdown = build_report(tmp_path)
    assert "did not finish (1" in markdown and "- job 2: did not finish" in markdown
    assert "job 1: RuntimeError: boom" in markdown


# ------------------------------------------------------------------ item 5 / issue 17 item 8: readers
def test_mnist_files_with_dotted_names_are_found(tmp_path):
    from runner.data.images.mnist import MNISTReader, write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(str(tmp_path / f"{split}-images.idx3-ubyte"), rng.integers(0, 255, (n, 28, 28)))
        write_idx(str(tmp_path / f"{split}-labels.idx1-ubyte"), rng.integers(0, 10, n))
    splits = MNISTReader(str(tmp_path)).load()
    assert len(splits.y_train) == 6 and len(splits.y_test) == 4


def test_mnist_label_out_of_range_names_the_file_and_record(tmp_path):
    from runner.data.images.mnist import MNISTReader, write_idx

    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(str(tmp_path / f"{split}-images-idx3-ubyte"), np.zeros((n, 28, 28)))
        write_idx(str(tmp_path / f"{split}-labels-idx1-ubyte"), np.array([1, 2, 12, 3, 4, 5][:n]))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: record 2 has label 12"):
        MNISTReader(str(tmp_path)).load()


def test_a_corrupted_gz_names_the_file(tmp_path):
    from runner.data.images.covtype import CovtypeReader

    path = tmp_path / "covtype.data.gz"
    rows = "\n".join(
        ",".join(str(v) for v in row) for row in np.random.default_rng(0).integers(0, 9, (2000, 55))
    )
    data = gzip.compress(rows.encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"covtype.data.gz is a corrupted or truncated .gz file"):
        CovtypeReader(str(tmp_path)).load()


def test_an_empty_csv_field_names_the_line(tmp_path):
    from runner.data.images.covtype import CovtypeReader

    rows = [",".join(["1"] * 54 + ["2"])] * 5
    rows[3] = ",".join(["1"] * 20 + [""] + ["1"] * 33 + ["2"])
    (tmp_path / "covtype.data").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"covtype.data, line 4: column 21 is empty"):
        CovtypeReader(str(tmp_path)).load()


def test_a_comma_separated_inter_file_says_tabs_are_expected(tmp_path):
    from runner.data.recsys.readers import read_atomic_inter

    path = tmp_path / "yelp.inter"
    path.write_text("user_id:token,item_id:token\n1,2\n")
    with pytest.raises(UserError, match="tab-separated"):
        read_atomic_inter(str(path))


def test_dropped_duplicate_rows_are_counted(tmp_path):
    from runner.data.recsys.readers import k_core_filter, read_atomic_inter

    path = tmp_path / "yelp.inter"
    path.write_text("user_id:token\titem_id:token\n1\t2\n1\t2\n1\t3\n2\t2\n")
    reset_skips()
    k_core_filter(read_atomic_inter(str(path)), 0, 0)
    assert [e["count"] for e in skipped() if "duplicate" in e["reason"]] == [1]


def _k400_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writeheader()
        writer.writerows(rows)


def test_kinetics400_common_download_layout_loads(tmp_path):
    """Clips flat in train/ and val/, CSVs (train.csv, val.csv) in annotations/."""
    from runner.data.video.readers import Kinetics400Reader

    rows = [
        {"label": "abseiling", "youtube_id": "aaa", "time_start": 10, "time_end": 20, "split": "train"},
        {"label": "air drumming", "youtube_id": "bbb", "time_start": 0, "time_end": 10, "split": "train"},
    ]
    _k400_csv(tmp_path / "annotations" / "train.csv", rows)
    _k400_csv(tmp_path / "annotations" / "val.csv", [{**rows[0], "youtube_id": "ccc", "split": "val"}])
    for folder, ytid, (start, end) in (
        ("train", "aaa", (10, 20)),
        ("train", "bbb", (0, 10)),
        ("val", "ccc", (10, 20)),
    ):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"{ytid}_{start:06d}_{end:06d}.mp4").write_bytes(b"clip")
    reader = Kinetics400Reader(str(tmp_path))
    assert reader.class_names == ["abseiling", "air drumming"]
    assert [r.clip_id for r in reader.records("train")] == ["aaa_000010_000020", "bbb_000000_000010"]
    assert len(reader.records("val")) == 1


def test_a_csv_row_with_a_missing_column_names_file_and_line(tmp_path):
    from runner.data.video.readers import Kinetics400Reader

    _k400_csv(tmp_path / "train.csv", [{"label": "a", "youtube_id": "x", "time_start": 0, "time_end": 10}])
    with open(tmp_path / "train.csv", "a") as fh:
        fh.write("b,y,5\n")  # time_end and split missing
    with pytest.raises(UserError, match=r"train.csv, line 3: (missing column|empty field).*time_end"):
        Kinetics400Reader(str(tmp_path))


def test_an_epic_segment_past_its_video_end_is_skipped_alone_by_narration_id(tmp_path, data_dir):
    from runner.data.video.datamodule import VideoClipDataset, collate_video_batch
    from runner.data.video.readers import EpicKitchens100Reader
    from runner.data.video.synthetic import ProceduralVideoTwin
    from runner.data.video.transforms import ClipTransform

    twin = ProceduralVideoTwin(
        layout="epic_kitchens", num_classes=3, clips_per_class=2, num_frames=8, size=32
    )
    root = Path(twin.ensure(str(data_dir / "epic_segment_twin")))
    copy = tmp_path / "epic"
    shutil.copytree(root, copy)
    train_csv = copy / "EPIC_100_train.csv"
    rows = list(csv.DictReader(open(train_csv)))
    video_rows = [r for r in rows if r["video_id"] == rows[0]["video_id"]]
    assert len(video_rows) >= 2, "the twin puts several segments in one video"
    past = video_rows[0]["narration_id"]
    video_rows[0]["start_frame"], video_rows[0]["stop_frame"] = "5000", "5100"
    with open(train_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    reader = EpicKitchens100Reader(str(copy))
    dataset = VideoClipDataset(
        reader.records("train"), False, "dense", 4, 1, ClipTransform(False, 16, 16, 0.0)
    )
    batch = collate_video_batch([dataset[i] for i in range(len(dataset))])
    assert len(batch["corrupt"]) == 1 and batch["corrupt"][0].startswith(past)
    same_video = {r["narration_id"] for r in video_rows[1:]}
    assert same_video <= set(batch["clip_id"]), "the other segments of that video still load"


# ------------------------------------------------------------------ item 4: no silent success
def test_a_run_where_every_video_is_corrupt_fails_instead_of_exiting_0(make_cfg, tmp_path, data_dir):
    from runner.data.video.synthetic import ProceduralVideoTwin
    from runner.train import run

    twin = ProceduralVideoTwin(layout="hmdb51", num_classes=3, clips_per_class=3, num_frames=8, size=32)
    root = tmp_path / "hmdb"
    shutil.copytree(twin.ensure(str(data_dir / "hmdb_corrupt_twin")), root)
    for video in root.glob("videos/*/*.avi"):
        video.write_bytes(b"not a video")
    cfg = make_cfg(
        "experiment=video_supervised_hmdb",
        f"dataset.root={root}",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
        "trainer.max_epochs=1",
        "logger=csv",
    )
    with pytest.raises(UserError, match="no training batch was produced"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_missing_listed_videos_reach_metrics_json(make_cfg, tmp_path, data_dir):
    from runner.data.video.synthetic import ProceduralVideoTwin
    from runner.train import run

    twin = ProceduralVideoTwin(layout="hmdb51", num_classes=3, clips_per_class=4, num_frames=8, size=32)
    root = tmp_path / "hmdb"
    shutil.copytree(twin.ensure(str(data_dir / "hmdb_missing_twin")), root)
    removed = sorted(root.glob("videos/*/*clip000.avi"))
    for video in removed:
        video.unlink()
    cfg = make_cfg(
        "experiment=video_supervised_hmdb",
        f"dataset.root={root}",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
        "dataset.crop_size=32",
        "dataset.short_side=32",
        "dataset.num_frames=4",
        "model=x3d_xs",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.limit_val_batches=1",
        "logger=csv",
    )
    run(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    entry = next(e for e in payload["skipped"] if "missing" in e["reason"])
    assert entry["count"] == len(removed)


def test_hparams_of_config_built_objects_are_made_plain_for_weights_only_checkpoints(tmp_path):
    """Every method and datamodule is built from config and gets OmegaConf containers; runner.train
    makes their saved hyperparameters plain, so resume / test_ckpt=best reload the checkpoint with
    weights_only=True (skeleton and sticker checkpoints failed with 'Unsupported global ListConfig')."""
    import lightning as L
    from omegaconf import OmegaConf

    from runner.checkpointing import load_checkpoint, make_hparams_plain

    class Tiny(L.LightningModule):
        def __init__(self, names, optimizer):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(2, 2)

    module = Tiny(OmegaConf.create(["a", "b"]), OmegaConf.create({"lr": 0.1, "betas": [0.9, 0.99]}))
    make_hparams_plain(module, None)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    loaded = load_checkpoint(tmp_path / "tiny.ckpt")
    assert loaded["hyper_parameters"] == {"names": ["a", "b"], "optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}}
