"""Multi-domain image data: folder / CSV / .npy readers on twins written in the real formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from runner.data.domains.cifar10c import CORRUPTIONS, CIFAR10CTwin, read_cifar10c
from runner.data.domains.digits5 import DOMAINS, Digits5Twin
from runner.data.domains.folders import read_class_folders, read_domain_folders
from runner.data.domains.mini_imagenet import read_mini_imagenet
from runner.data.domains.styled_objects import (
    PACS_CLASSES,
    PACS_DOMAINS,
    PARTS_PER_CLASS,
    StyledObjectsTwin,
    class_templates,
    mini_imagenet_wnids,
)
from runner.errors import UserError


def test_digits5_twin_has_five_drifting_domains(tmp_path):
    root = Digits5Twin(per_domain=20, seed=0).ensure(str(tmp_path / "digits5"))
    train = read_domain_folders(root, list(DOMAINS), "train", size=28, dataset_name="digits5")
    test = read_domain_folders(root, list(DOMAINS), "test", size=28, dataset_name="digits5")
    for domain in DOMAINS:
        assert train[domain].images.shape[1:] == (28, 28, 3)
        assert len(train[domain]) + len(test[domain]) == 20
        assert train[domain].class_names == [str(d) for d in range(10)]
    # the same digits look different per domain: mean colour statistics differ clearly
    means = np.stack([train[d].images.reshape(-1, 3).mean(0) for d in DOMAINS])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert (distances[~np.eye(len(DOMAINS), dtype=bool)] > 5).all(), distances


def test_pacs_twin_read_by_the_domain_reader(tmp_path):
    twin = StyledObjectsTwin("domains", PACS_CLASSES, PACS_DOMAINS, per_class=6, size=32)
    root = twin.ensure(str(tmp_path / "pacs"))
    data = read_domain_folders(root, list(PACS_DOMAINS), "train", size=32, dataset_name="pacs")
    assert set(data) == set(PACS_DOMAINS)
    for arrays in data.values():
        assert arrays.class_names == sorted(PACS_CLASSES)
        assert np.bincount(arrays.labels, minlength=7).tolist() == [4] * 7  # 70 % of 6
    # sketch is mostly white, photo is not
    assert data["sketch"].images.mean() > data["photo"].images.mean() + 40


def _same_part(a: dict, b: dict) -> bool:
    return (
        a["kind"] == b["kind"]
        and np.array_equal(a["centre"], b["centre"])
        and np.array_equal(a["half"], b["half"])
    )


def test_styled_object_classes_overlap_but_differ():
    templates = class_templates(10, seed=0)
    for k in range(1, 10):  # every class shares all but one part with an earlier class
        shared = [
            sum(_same_part(p, q) for p, q in zip(templates[k], templates[j], strict=True)) for j in range(k)
        ]
        assert max(shared) == PARTS_PER_CLASS - 1, (k, shared)
    signatures = {tuple((p["kind"], *p["centre"].round(6)) for p in t) for t in templates}
    assert len(signatures) == 10  # no two classes alike


def test_styled_twin_test_fraction_sets_the_split_and_the_recipe(tmp_path):
    twin = StyledObjectsTwin(
        "domains", PACS_CLASSES, {"photo": "photo"}, per_class=10, size=16, test_fraction=0.6
    )
    root = twin.ensure(str(tmp_path / "pacs"))
    train = read_domain_folders(root, ["photo"], "train", size=16, dataset_name="pacs")["photo"]
    test = read_domain_folders(root, ["photo"], "test", size=16, dataset_name="pacs")["photo"]
    assert np.bincount(train.labels).tolist() == [4] * 7 and np.bincount(test.labels).tolist() == [6] * 7
    default = StyledObjectsTwin("domains", PACS_CLASSES, {"photo": "photo"}, per_class=10, size=16)
    assert default.recipe_hash() != twin.recipe_hash()
    with pytest.raises(UserError, match="test_fraction"):
        StyledObjectsTwin("domains", PACS_CLASSES, {"photo": "photo"}, test_fraction=1.0)


def test_domain_reader_errors(tmp_path):
    with pytest.raises(UserError, match="dataset.synthetic=true"):
        read_domain_folders(tmp_path / "missing", ["photo"], "train", dataset_name="pacs")
    (tmp_path / "pacs" / "photo").mkdir(parents=True)
    with pytest.raises(UserError, match="domain folder"):
        read_domain_folders(tmp_path / "pacs", ["photo"], "train", dataset_name="pacs")


def test_unreadable_image_is_skipped(tmp_path):
    root = StyledObjectsTwin("cinic10", ["cat", "dog"], per_class=5, size=16).ensure(str(tmp_path / "cinic"))
    clean = read_class_folders(f"{root}/train", size=16)
    (tmp_path / "cinic" / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    again = read_class_folders(f"{root}/train", size=16)
    assert len(again) == len(clean) == 6
    assert {s: len(read_class_folders(f"{root}/{s}", size=16)) for s in ("train", "valid", "test")} == {
        "train": 6,
        "valid": 2,
        "test": 2,
    }


def test_mini_imagenet_pooled_split(tmp_path):
    names = mini_imagenet_wnids(4)
    root = StyledObjectsTwin("mini_imagenet", names, per_class=10, size=24).ensure(str(tmp_path / "mini"))
    data = read_mini_imagenet(root, size=24, test_fraction=0.2, seed=0)
    assert data["train"].class_names == names
    assert np.bincount(data["test"].labels).tolist() == [2] * 4
    assert len(data["train"]) == 32
    with open(f"{root}/val.csv", "a") as fh:
        fh.write("only_a_filename\n")
    with pytest.raises(UserError, match=r"val.csv: line \d+"):
        read_mini_imagenet(root, size=24)


def write_fake_cifar(folder, n=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, n).tolist(),
    }
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch, fh)
    return batch


@pytest.mark.parametrize(
    "name",
    [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "gaussian_blur",
        "defocus_blur",
        "contrast",
        "pixelate",
        "jpeg_compression",
    ],
)
def test_corruptions_grow_with_severity(name):
    rng = np.random.default_rng(0)
    # a smooth image, so blur and pixelation have structure to destroy
    xx, yy = np.meshgrid(np.linspace(0, 6, 32), np.linspace(0, 6, 32))
    base = (
        (127 + 60 * np.sin(2 * xx) + 60 * np.cos(3 * yy))[None, :, :, None]
        .repeat(8, 0)
        .repeat(3, -1)
        .astype(np.uint8)
    )
    distance = [
        np.abs(CORRUPTIONS[name](base, s, np.random.default_rng(1)).astype(float) - base).mean()
        for s in (1, 5)
    ]
    assert distance[0] > 0 and distance[1] > distance[0], (name, distance)
    assert CORRUPTIONS[name](base, 3, rng).dtype == np.uint8


def test_cifar10c_twin_round_trip(tmp_path):
    batch = write_fake_cifar(tmp_path / "cifar-10-batches-py")
    root = CIFAR10CTwin(str(tmp_path / "cifar-10-batches-py"), ["contrast", "gaussian_noise"]).ensure(
        str(tmp_path / "c10c")
    )
    data = read_cifar10c(root, ["contrast"], severities=[1, 5])
    assert set(data) == {"contrast@1", "contrast@5"}
    assert data["contrast@5"].images.shape == (20, 32, 32, 3)
    assert data["contrast@1"].labels.tolist() == batch[b"labels"]
    assert data["contrast@5"].images.std() < data["contrast@1"].images.std()
    with pytest.raises(UserError, match="available: contrast, gaussian_noise"):
        read_cifar10c(root, ["fog"])
