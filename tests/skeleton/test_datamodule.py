"""The skeleton datamodule: splits, clips, train-only feature scaling, layout checks, and the twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.data.skeleton import EGaitReader, EGaitTwin, PysklGaitTwin, PysklReader, SkeletonDataModule
from runner.data.skeleton.datamodule import fixed_length, fixed_persons, stratified_split, uniform_indices
from runner.data.skeleton.readers import SkeletonCollection
from runner.errors import UserError


def test_stratified_split_is_seeded_disjoint_and_keeps_class_shares():
    labels = np.repeat([0, 1, 2, 3], [100, 200, 50, 150])
    a = stratified_split(labels, 0.1, 0.2, seed=3)
    b = stratified_split(labels, 0.1, 0.2, seed=3)
    c = stratified_split(labels, 0.1, 0.2, seed=4)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["test"], c["test"])
    together = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(together.tolist()) == list(range(len(labels)))
    assert np.bincount(labels[a["test"]]).tolist() == [20, 40, 10, 30]
    assert np.bincount(labels[a["val"]]).tolist() == [10, 20, 5, 15]


def test_clip_making():
    seq = np.arange(5, dtype=np.float32).reshape(1, 5, 1, 1)
    assert fixed_length(seq, 12, "tile", None).ravel().tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert fixed_length(seq, 3, "tile", None).ravel().tolist() == [0, 1, 2]
    assert fixed_length(seq, 7, "pad", None).ravel().tolist() == [0, 1, 2, 3, 4, 0, 0]
    assert uniform_indices(10, 5, None).tolist() == [1, 3, 5, 7, 9]
    random = uniform_indices(10, 5, np.random.default_rng(0))
    assert all(2 * i <= f < 2 * i + 2 for i, f in enumerate(random))
    assert fixed_persons(np.ones((1, 4, 2, 3)), 2)[1].sum() == 0
    assert fixed_persons(np.ones((3, 4, 2, 3)), 2).shape[0] == 2


class FakeReader:
    """A reader returning a given collection (for datamodule tests without files)."""

    def __init__(self, collection: SkeletonCollection) -> None:
        self.collection = collection

    def __call__(self, root):
        return self.collection


def collection(num: int = 40, joints: int = 16, frames: int = 12, skipped=()) -> SkeletonCollection:
    rng = np.random.default_rng(0)
    return SkeletonCollection(
        sequences=[rng.normal(size=(1, frames + i % 3, joints, 3)).astype(np.float32) for i in range(num)],
        labels=np.arange(num) % 4,
        names=[f"s{i}" for i in range(num)],
        coord_dims=3,
        skipped=list(skipped),
        source="fake.h5",
    )


def make(tmp_path, data: SkeletonCollection, **kwargs) -> SkeletonDataModule:
    return SkeletonDataModule(reader=FakeReader(data), root=str(tmp_path), **kwargs)


def test_batches_and_network_properties(tmp_path):
    dm = make(
        tmp_path,
        collection(),
        layout="egait16",
        split={"val_fraction": 0.2, "test_fraction": 0.2},
        batch_size=4,
    )
    props = dm.network_kwargs()
    assert props["num_classes"] == 4 and props["num_joints"] == 16 and props["in_channels"] == 3
    assert props["num_frames"] == 14 and props["num_affective"] == 27 and props["layout"] == "egait16"
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["joints"].shape == (4, 1, 14, 16, 3)
    assert batch["affective"].shape == (4, 27) and batch["label"].dtype == torch.long
    assert dm.split_sizes == {"train": 24, "val": 8, "test": 8}


def test_affective_scaling_uses_the_training_split_only(tmp_path):
    dm = make(tmp_path, collection(), layout="egait16", split={"val_fraction": 0.2, "test_fraction": 0.2})
    dm.load()
    train = dm.datasets["train"].affective
    torch.testing.assert_close(train.amin(0), torch.zeros(27), atol=1e-6, rtol=0)
    torch.testing.assert_close(train.amax(0)[1:], torch.ones(26), atol=1e-6, rtol=0)
    test = dm.datasets["test"].affective
    assert (test < -1e-6).any() or (test > 1 + 1e-6).any(), "test values are scaled with train's range"


def test_centering_on_the_first_frame_centre_joint(tmp_path):
    dm = make(tmp_path, collection(), layout="egait16")
    dm.load()
    sample = dm.datasets["train"][0]["joints"]
    torch.testing.assert_close(sample[0, 0, 0], torch.zeros(3))


def test_layout_joint_mismatch_fails_in_one_line(tmp_path):
    dm = make(tmp_path, collection(joints=16), layout="ntu25")
    with pytest.raises(UserError) as err:
        dm.network_kwargs()
    message = str(err.value)
    assert "\n" not in message and "ntu25 has 25 joints" in message and "16" in message


def test_layout_inferred_from_the_joint_count(tmp_path):
    assert make(tmp_path, collection(joints=25)).network_kwargs()["layout"] == "ntu25"
    assert make(tmp_path, collection(joints=17)).network_kwargs()["layout"] == "coco17"
    with pytest.raises(UserError, match="no layout has that many"):
        make(tmp_path, collection(joints=9)).network_kwargs()


def test_labels_must_fit_num_classes(tmp_path):
    with pytest.raises(UserError, match="label 3 but dataset.num_classes=3"):
        make(tmp_path, collection(), num_classes=3).network_kwargs()
    with pytest.raises(UserError, match="dataset.class_names"):
        make(tmp_path, collection(), num_classes=4, class_names=["a", "b"]).network_kwargs()


def test_missing_root_names_the_twin(tmp_path):
    dm = SkeletonDataModule(reader=EGaitReader(), name="egait", root=str(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"egait data not found at .*nope.*dataset.synthetic=true"):
        dm.network_kwargs()


def test_named_splits_of_a_file(tmp_path):
    data = collection()
    data.splits = {"xsub_train": list(range(30)), "xsub_val": list(range(30, 40))}
    dm = make(tmp_path, data, split={"train": "xsub_train", "test": "xsub_val", "val_fraction": 0.2})
    dm.load()
    assert dm.split_sizes == {"train": 24, "val": 6, "test": 10}
    with pytest.raises(UserError, match="dataset.split.train"):
        make(tmp_path, data, split={"train": "nope", "test": "xsub_val"}).load()


def test_twin_writes_the_same_gaits_as_egait_h5_and_pyskl_pickle(tmp_path):
    recipe = {"num_gaits": 24, "num_persons": 5, "min_frames": 10, "max_frames": 14, "seed": 1}
    h5 = EGaitReader(read_affective=True)(EGaitTwin(**recipe).ensure(str(tmp_path / "h5")))
    pkl = PysklReader()(PysklGaitTwin(**recipe).ensure(str(tmp_path / "pkl")))
    assert len(h5) == len(pkl) == 24 and h5.labels.tolist() == pkl.labels.tolist()
    for a, b in zip(h5.sequences, pkl.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(pkl.splits) == {"xsub_train", "xsub_val"} and h5.affective.shape == (24, 27)
    assert {10 <= s.shape[1] <= 14 for s in h5.sequences} == {True}
