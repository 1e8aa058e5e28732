"""VideoDataModule: batches, views, corrupt files, config errors, the Hydra configs."""

import functools
import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from runner.data.video import VideoDataModule, collate_video_batch
from runner.data.video.readers import EpicKitchens100Reader, HMDB51Reader, Kinetics400Reader
from runner.data.video.synthetic import ProceduralVideoTwin
from runner.errors import UserError

TINY = dict(num_classes=4, clips_per_class=4, num_frames=8, size=32, fps=8, seed=0)
CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def _dm(root, reader=HMDB51Reader, layout="hmdb51", **kw):
    args = dict(
        reader=functools.partial(reader),
        root=None,
        synthetic=True,
        synthetic_root=str(root),
        twin=ProceduralVideoTwin(layout, **TINY),
        num_frames=4,
        stride=2,
        crop_size=24,
        short_side=(28, 32),
        batch_size=4,
    )
    args.update(kw)
    return VideoDataModule(**args)


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm") / "hmdb51"
    ProceduralVideoTwin("hmdb51", **TINY).ensure(str(root))
    return root


def test_batches_and_views(hmdb_root):
    dm = _dm(hmdb_root, views={"teacher": {"num_frames": 2, "crop_size": 28, "temporal_stride": 2}})
    assert dm.num_classes == 4 and len(dm.class_names) == 4 and dm.root_used == str(hmdb_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 4, 24, 24) and batch["video"].dtype == torch.float32
    assert batch["video_teacher"].shape == (4, 3, 2, 28, 28)
    assert batch["label"].dtype == torch.long and batch["label"].shape == (4,)
    assert len(batch["clip_id"]) == 4 and batch["corrupt"] == []
    val = list(dm.val_dataloader())
    assert sum(len(b["label"]) for b in val) == 4
    assert sum(len(b["label"]) for b in dm.test_dataloader()) == 4
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(val[0]["video"], again["video"])  # eval is deterministic


def test_uniform_sampling_and_subset_cap(hmdb_root):
    dm = _dm(hmdb_root, sampling="uniform", num_frames=3, max_clips_per_subset=5)
    assert len(dm.dataset("train")) == 5
    assert dm.dataset("val")[0]["video"].shape == (3, 3, 24, 24)


def test_val_fraction_holds_out_training_clips_per_class(hmdb_root):
    plain = _dm(hmdb_root)
    train_all = {r.clip_id: r.label for r in plain.subset_records("train")}
    dm = _dm(hmdb_root, val_fraction=0.34, seed=5)
    train = {r.clip_id: r.label for r in dm.subset_records("train")}
    val = {r.clip_id: r.label for r in dm.subset_records("val")}
    assert not set(train) & set(val) and {**train, **val} == train_all  # a partition of the training clips
    per_class = [sum(1 for label in val.values() if label == c) for c in range(4)]
    in_train = [sum(1 for label in train_all.values() if label == c) for c in range(4)]
    assert per_class == [round(n * 0.34) for n in in_train] and min(per_class) >= 1
    assert dm.subset_records("test") == plain.subset_records("test")
    assert plain.subset_records("val") == plain.subset_records("test")  # HMDB51 has no val split
    other_seed = _dm(hmdb_root, val_fraction=0.34, seed=6)  # the run seed does not move the split
    assert [r.clip_id for r in other_seed.subset_records("val")] == sorted(val, key=list(train_all).index)
    moved = _dm(hmdb_root, val_fraction=0.34, split_seed=1)
    assert {r.clip_id for r in moved.subset_records("val")} != set(val)
    assert not dm.dataset("val").train and dm.dataset("train").train  # val clips get the eval transform
    assert len(dm.dataset("train")) == len(train)
    from runner.methods.dual_teacher.teacher_training import data_identity

    # teachers cached for the whole training split are not reused by a run that holds clips out of it
    assert data_identity(dm)["train_clips"] != data_identity(plain)["train_clips"]
    assert data_identity(dm)["train_clips"] == data_identity(other_seed)["train_clips"]
    with pytest.raises(UserError, match="dataset.val_fraction"):
        _dm(hmdb_root, val_fraction=1.0)
    with pytest.raises(UserError, match="holds out at least one"):
        _dm(hmdb_root, val_fraction=0.01).subset_records("val")


def test_bad_sampling_is_user_error(hmdb_root):
    with pytest.raises(UserError, match="dataset.sampling"):
        _dm(hmdb_root, sampling="random")


def test_missing_real_root(tmp_path):
    with pytest.raises(UserError) as err:
        VideoDataModule(reader=functools.partial(Kinetics400Reader), root=str(tmp_path / "k400"))
    assert str(tmp_path / "k400") in str(err.value) and "dataset.synthetic=true" in str(err.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_files_are_skipped(tmp_path, workers, caplog):
    root = tmp_path / "hmdb51"
    dm = _dm(root, num_workers=workers, batch_size=64)
    recs = dm.reader.records("test")
    truncated, garbage = recs[0].path, recs[1].path
    with open(truncated, "r+b") as fh:
        fh.truncate(12)
    with open(garbage, "wb") as fh:
        fh.write(os.urandom(4096))
    with caplog.at_level("WARNING", logger="runner.data"):
        batches = list(dm.test_dataloader())
    assert len(batches) == 1
    b = batches[0]
    assert sorted(b["corrupt"]) == sorted([truncated, garbage])
    assert b["video"].shape[0] == len(recs) - 2 == len(b["clip_id"])
    if workers == 0:
        assert truncated in caplog.text


def test_collate_all_corrupt():
    b = collate_video_batch([{"corrupt": "a.mp4"}, {"corrupt": "b.mp4"}])
    assert b["video"].shape[0] == 0 and b["label"].shape == (0,) and b["corrupt"] == ["a.mp4", "b.mp4"]


def test_epic_segments_through_datamodule(tmp_path):
    dm = _dm(
        tmp_path / "epic",
        reader=functools.partial(EpicKitchens100Reader, target="action"),
        layout="epic_kitchens",
    )
    assert dm.num_classes == 4
    item = dm.dataset("val")[0]
    assert item["video"].shape == (3, 4, 24, 24) and 0 <= item["label"] < 4


@pytest.mark.parametrize("name", ["hmdb51", "epic_kitchens", "kinetics400"])
def test_hydra_configs_instantiate_the_twin(tmp_path, name):
    cfg = OmegaConf.create(
        {"seed": 0, "paths": {"data_dir": str(tmp_path)}, "dataset": OmegaConf.load(CONF / f"{name}.yaml")}
    )
    ds = cfg.dataset
    assert ds.reader._partial_ is True and ds.twin.layout == name
    ds.synthetic = True
    ds.twin.update(TINY)
    ds.twin_geometry = None  # this test sets the clip geometry itself
    ds.update(
        num_frames=4,
        stride=2,
        crop_size=24,
        short_side=[28, 32],
        batch_size=2,
        num_workers=0,
        pin_memory=False,
    )
    dm = instantiate(ds)
    assert isinstance(dm, VideoDataModule) and dm.num_classes >= 2
    assert dm.root_used == os.path.join(str(tmp_path), "synthetic", name)
    b = next(iter(dm.val_dataloader()))
    assert b["video"].shape == (2, 3, 4, 24, 24)
    ds.synthetic = False
    with pytest.raises(Exception) as err:  # Hydra wraps it in InstantiationException, cause kept
        instantiate(ds)
    cause = err.value
    while not isinstance(cause, UserError) and cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, UserError) and "dataset.synthetic=true" in str(cause)


def _first_train_batch_size(root: str) -> int:
    dm = _dm(Path(root), num_workers=1)
    dm.setup("fit")
    return int(next(iter(dm.train_dataloader()))["label"].shape[0])


def test_loader_workers_start_inside_a_joblib_job(hmdb_root):
    """A table sweep runs each job in a joblib (loky) worker, whose default multiprocessing context cannot
    start torch's loader workers ('Process' object has no attribute 'env'): every dual-teacher table job
    failed so. The loaders ask runner.data.loading.worker_context for a plain one."""
    from joblib import Parallel, delayed

    sizes = Parallel(n_jobs=2, backend="loky")(
        delayed(_first_train_batch_size)(str(hmdb_root)) for _ in range(2)
    )
    assert sizes == [4, 4]


def test_worker_context_replaces_only_lokys_start_method(monkeypatch):
    """Under hydra/launcher=joblib the default multiprocessing context is loky's, which cannot start
    torch's loader workers: every loader with workers then asks for a plain context."""
    import multiprocessing

    from runner.data.loading import worker_context

    assert worker_context(2) is None  # a normal process keeps its start method
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "loky")
    assert worker_context(2).get_start_method() in ("fork", "spawn")
    assert worker_context(0) is None  # no workers, no context
