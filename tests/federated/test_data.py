"""Readers on twins written in the real formats; malformed and missing files fail clearly."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from runner.data.images import (
    CifarReader,
    CovtypeReader,
    CovtypeTwin,
    MNISTDigitsTwin,
    MNISTReader,
    ProceduralCifarTwin,
    read_idx,
    write_idx,
)
from runner.data.images.cifar import HUES
from runner.errors import UserError


def test_idx_round_trip_plain_and_gz(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        write_idx(str(tmp_path / name), a)
        assert (read_idx(str(tmp_path / name)) == a).all()
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    (tmp_path / "bad").write_bytes(raw[:-3])
    with pytest.raises(UserError, match="truncated"):
        read_idx(str(tmp_path / "bad"))


def test_mnist_twin_through_the_real_reader(tmp_path):
    root = MNISTDigitsTwin(train_size=300, test_size=50, gzip_files=True).ensure(str(tmp_path / "mnist"))
    assert os.path.isfile(os.path.join(root, "train-images-idx3-ubyte.gz"))
    splits = MNISTReader(root).load()
    assert splits.x_train.shape == (300, 1, 28, 28) and splits.x_test.shape == (50, 1, 28, 28)
    assert set(splits.y_train.tolist()) == set(range(10))
    # cached: a second ensure does not rewrite
    mtime = os.path.getmtime(os.path.join(root, "recipe.json"))
    MNISTDigitsTwin(train_size=300, test_size=50, gzip_files=True).ensure(root)
    assert os.path.getmtime(os.path.join(root, "recipe.json")) == mtime


def test_covtype_twin_and_reader(tmp_path):
    root = CovtypeTwin(num_rows=700).ensure(str(tmp_path / "cov"))
    with gzip.open(os.path.join(root, "covtype.data.gz"), "rt") as fh:
        first = fh.readline().strip().split(",")
    assert len(first) == 55 and 1 <= int(first[-1]) <= 7
    splits = CovtypeReader(root, test_fraction=0.2).load()
    assert splits.x_train.shape == (560, 54) and len(splits.class_names) == 7
    assert abs(float(splits.x_train[:, 0].mean())) < 1e-4  # standardised with train statistics
    binary = CovtypeReader(root, positive_class=2).load()
    assert set(binary.y_train.tolist()) == {0, 1}


def test_covtype_twin_is_learnable_beyond_majority(tmp_path):
    from sklearn.linear_model import LogisticRegression

    splits = CovtypeReader(CovtypeTwin(num_rows=3000).ensure(str(tmp_path / "c")), seed=0).load()
    model = LogisticRegression(max_iter=300).fit(splits.x_train.numpy(), splits.y_train.numpy())
    acc = model.score(splits.x_test.numpy(), splits.y_test.numpy())
    majority = np.bincount(splits.y_test.numpy()).max() / len(splits.y_test)
    assert acc > majority + 0.15


@pytest.mark.parametrize(("variant", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_twin_through_the_real_reader(tmp_path, variant, classes):
    twin = ProceduralCifarTwin(variant=variant, train_per_class=3, test_per_class=1)
    splits = CifarReader(twin.ensure(str(tmp_path / variant)), variant=variant).load()
    assert splits.x_train.shape == (3 * classes, 3, 32, 32) and len(splits.class_names) == classes


def test_cifar_twin_colour_swap_weakens_the_colour_cue_and_keeps_the_default_twin():
    """colour_swap=0 keeps the twin written before the knob (same recipe hash: its cache is reused); a swap
    fraction gives that share of the images another class's colour family, so that a nearest-class-colour
    rule loses accuracy in proportion."""
    labels = np.repeat(np.arange(10), 40)
    default = ProceduralCifarTwin(train_per_class=1, test_per_class=1)
    assert (
        default.recipe_hash()
        == ProceduralCifarTwin(train_per_class=1, test_per_class=1, colour_swap=0.0).recipe_hash()
    )
    assert "colour_swap" not in default.recipe()

    def colour_rule_accuracy(twin) -> float:
        images = twin.render(labels, np.random.default_rng(0)).reshape(-1, 3, 32, 32).astype(np.float32)
        # the object's colour: the most saturated pixels (max - min over channels) of each image
        flat = images.reshape(len(labels), 3, -1)
        saturation = flat.max(1) - flat.min(1)
        top = np.argsort(saturation, axis=1)[:, -40:]
        colours = np.take_along_axis(flat, top[:, None, :], axis=2).mean(2)
        hues = np.stack([HUES[twin._style(c)[0]] for c in range(10)])
        nearest = np.argmin(((colours[:, None, :] - hues[None]) ** 2).sum(-1), axis=1)
        return float((nearest == labels).mean())

    clean = colour_rule_accuracy(default)
    swapped = colour_rule_accuracy(ProceduralCifarTwin(train_per_class=1, test_per_class=1, colour_swap=0.6))
    assert clean > 0.6
    assert swapped < clean - 0.3


def test_missing_roots_name_the_path_and_the_twin(tmp_path):
    for reader in (MNISTReader, CovtypeReader, CifarReader):
        with pytest.raises(UserError, match="dataset.synthetic=true"):
            reader(str(tmp_path / "nothing"))
