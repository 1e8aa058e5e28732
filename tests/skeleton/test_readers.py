"""Readers on tiny fixtures: E-Gait h5, PYSKL pickle (and a malicious one), NTU .skeleton text."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest

from runner.data.skeleton.readers import (
    EGaitReader,
    MalformedSample,
    NTUSkeletonReader,
    PysklReader,
    read_ntu_skeleton,
)
from runner.data.skeleton.twin import write_ntu_skeleton
from runner.errors import UserError


def write_egait(folder, gaits: dict, labels: dict, ftype: str = "", affective: dict | None = None) -> None:
    with h5py.File(folder / f"features{ftype}.h5", "w") as ff:
        for key, value in gaits.items():
            ff.create_dataset(key, data=value)
    with h5py.File(folder / f"labels{ftype}.h5", "w") as fl:
        for key, value in labels.items():
            fl.create_dataset(key, data=value)
    if affective is not None:
        with h5py.File(folder / f"affectiveFeatures{ftype}.h5", "w") as fa:
            for key, value in affective.items():
                fa.create_dataset(key, data=value)


def gait(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(frames, 48)).astype(np.float32)


# ---- E-Gait -----------------------------------------------------------------------------------------
def test_egait_reads_gaits_and_labels_by_key(tmp_path):
    write_egait(tmp_path, {"a": gait(10, 1), "b": gait(7, 2)}, {"b": 3, "a": 1}, ftype="ELMD")
    data = EGaitReader(ftype="ELMD")(tmp_path)
    assert data.names == ["a", "b"]
    assert data.labels.tolist() == [1, 3]
    assert data.sequences[0].shape == (1, 10, 16, 3) and data.sequences[1].shape == (1, 7, 16, 3)
    # frame-major rows: row t = joints 0..15, each x y z
    np.testing.assert_array_equal(data.sequences[0][0, 4, 5], gait(10, 1)[4, 15:18])
    assert data.coord_dims == 3 and data.skipped == [] and data.affective is None


def test_egait_pairs_by_position_when_keys_differ(tmp_path):
    write_egait(tmp_path, {"g0": gait(5), "g1": gait(6)}, {"l0": 2, "l1": 0})
    assert EGaitReader()(tmp_path).labels.tolist() == [2, 0]


def test_egait_malformed_gaits_are_skipped_and_named(tmp_path):
    nan = gait(8)
    nan[3, 7] = np.nan
    write_egait(
        tmp_path,
        {
            "good": gait(9),
            "short": gait(2),
            "width": np.zeros((9, 47), np.float32),
            "nan": nan,
            "badlabel": gait(9),
        },
        {"good": 0, "short": 1, "width": 1, "nan": 2, "badlabel": -1},
    )
    data = EGaitReader()(tmp_path)
    assert data.names == ["good"]
    reasons = dict(data.skipped)
    assert set(reasons) == {"short", "width", "nan", "badlabel"}
    assert "frames" in reasons["short"] and "shape" in reasons["width"]
    assert "non-finite" in reasons["nan"] and "label" in reasons["badlabel"]


def test_skipped_gaits_are_counted_per_reason_for_metrics_json(tmp_path):
    from runner.data.skips import reset_skips, skipped

    nan = gait(8)
    nan[0, 0] = np.inf
    write_egait(
        tmp_path, {"ok": gait(9), "n1": nan, "n2": nan, "s": gait(3)}, {"ok": 0, "n1": 1, "n2": 1, "s": 2}
    )
    reset_skips()
    EGaitReader()(tmp_path)
    entries = {e["reason"]: e for e in skipped()}
    reset_skips()
    assert entries["samples with NaN / inf coordinates"]["count"] == 2
    assert entries["samples with NaN / inf coordinates"]["examples"] == ["n1", "n2"]
    assert entries["samples with fewer than 4 frames"]["count"] == 1
    assert {e["source"] for e in entries.values()} == {str(tmp_path)}


def test_egait_affective_file(tmp_path):
    write_egait(
        tmp_path,
        {"a": gait(9), "b": gait(9)},
        {"a": 0, "b": 1},
        affective={"a": np.arange(27.0), "b": np.ones(27)},
    )
    data = EGaitReader(read_affective=True)(tmp_path)
    assert data.affective.shape == (2, 27) and data.affective[0, 3] == 3


def test_egait_missing_files_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match=r"featuresELMD\.h5 not found.*dataset\.synthetic=true"):
        EGaitReader(ftype="ELMD")(tmp_path)


def test_egait_key_count_mismatch(tmp_path):
    write_egait(tmp_path, {"a": gait(5), "b": gait(5)}, {"x": 1})
    with pytest.raises(UserError, match="2 gaits but .* 1 labels"):
        EGaitReader()(tmp_path)


# ---- PYSKL -------------------------------------------------------------------------------------------
def annotation(name: str, label: int, shape=(2, 12, 17, 2), score: bool = True) -> dict:
    rng = np.random.default_rng(len(name))
    ann = {
        "frame_dir": name,
        "label": np.int64(label),
        "keypoint": rng.normal(size=shape).astype(np.float16),
        "total_frames": shape[1],
        "img_shape": (1080, 1920),
    }
    if score and shape[-1] == 2:
        ann["keypoint_score"] = rng.random(shape[:3]).astype(np.float32)
    return ann


def write_pickle(path, payload) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def test_pyskl_2d_with_scores_and_splits(tmp_path):
    anns = [annotation("v1", 0), annotation("v2", 5), annotation("v3", 2, shape=(1, 9, 17, 2))]
    write_pickle(
        tmp_path / "ann.pkl", {"split": {"train": ["v1", "v3"], "val": ["v2", "gone"]}, "annotations": anns}
    )
    data = PysklReader()(tmp_path)  # the folder's only .pkl
    assert data.names == ["v1", "v2", "v3"] and data.labels.tolist() == [0, 5, 2]
    assert data.sequences[0].shape == (2, 12, 17, 3) and data.coord_dims == 2
    np.testing.assert_allclose(data.sequences[0][..., 2], anns[0]["keypoint_score"])
    assert data.splits == {"train": [0, 2], "val": [1]}
    without = PysklReader(with_score=False)(tmp_path / "ann.pkl")
    assert without.sequences[0].shape == (2, 12, 17, 2)


def test_pyskl_3d(tmp_path):
    write_pickle(tmp_path / "ntu.pkl", {"annotations": [annotation("a", 1, shape=(2, 20, 25, 3))]})
    data = PysklReader()(tmp_path / "ntu.pkl")
    assert data.sequences[0].shape == (2, 20, 25, 3) and data.coord_dims == 3 and data.splits == {}


def test_pyskl_malformed_annotations_are_skipped_and_named(tmp_path):
    no_score = annotation("noscore", 1, score=False)
    bad_shape = annotation("flat", 1)
    bad_shape["keypoint"] = np.zeros((12, 17, 2))
    no_label = annotation("nolabel", 1)
    del no_label["label"]
    other_joints = annotation("coco_vs_ntu", 1, shape=(1, 12, 25, 2))
    anns = [annotation("ok1", 0), annotation("ok2", 1), no_score, bad_shape, no_label, other_joints, "junk"]
    write_pickle(tmp_path / "a.pkl", {"annotations": anns})
    data = PysklReader()(tmp_path / "a.pkl")
    assert data.names == ["ok1", "ok2"]
    assert [name for name, _ in data.skipped] == [
        "noscore",
        "flat",
        "nolabel",
        "annotation[6]",
        "coco_vs_ntu",
    ]


def test_pyskl_not_the_format(tmp_path):
    write_pickle(tmp_path / "x.pkl", [1, 2, 3])
    with pytest.raises(UserError, match=r"x\.pkl.*'annotations' list"):
        PysklReader()(tmp_path / "x.pkl")
    write_pickle(tmp_path / "y.pkl", {})
    with pytest.raises(UserError, match="exactly one .pkl"):
        PysklReader()(tmp_path)


class _WritesMarker:
    """Pickles to a call of ``os.system`` that would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["annotation", "top"])
def test_malicious_pyskl_pickle_is_refused_and_runs_nothing(tmp_path, where):
    marker = tmp_path / "pwned"
    ann = annotation("v1", 0)
    if where == "annotation":
        ann["img_shape"] = _WritesMarker(str(marker))
        payload = {"annotations": [ann]}
    else:
        payload = _WritesMarker(str(marker))
    write_pickle(tmp_path / "evil.pkl", payload)
    with pytest.raises(
        UserError, match=r"evil\.pkl: refused to load (posix|os)\.system.*PYSKL annotation pickle"
    ):
        PysklReader()(tmp_path / "evil.pkl")
    assert not marker.exists()


# ---- NTU ---------------------------------------------------------------------------------------------
def ntu_text(frames: list[list[np.ndarray]]) -> str:
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body in bodies:
            lines += ["72057594037931101 0 1 1 1 1 0 -0.2 0.1 2", str(len(body))]
            lines += [
                " ".join(f"{v:.4f}" for v in joint) + " 250.1 180.2 1000 500 0.1 0.2 0.3 0.9 2"
                for joint in body
            ]
    return "\n".join(lines) + "\n"


def test_ntu_text_with_one_and_two_bodies(tmp_path):
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(25, 3)).round(4) for _ in range(3))
    path = tmp_path / "S001C001P001R001A007.skeleton"
    path.write_text(ntu_text([[a], [b, c], [a]]))
    joints = read_ntu_skeleton(path)
    assert joints.shape == (2, 3, 25, 3)
    np.testing.assert_allclose(joints[0, 1], b, atol=1e-4)
    np.testing.assert_allclose(joints[1, 1], c, atol=1e-4)
    assert not joints[1, 0].any()  # no second body in frame 0


def test_ntu_reader_labels_from_names_and_skips_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    frames = [[rng.normal(size=(25, 3))] for _ in range(6)]
    (tmp_path / "S001C002P003R001A007.skeleton").write_text(ntu_text(frames))
    (tmp_path / "S002C001P004R002A060.skeleton").write_text(ntu_text(frames))
    (tmp_path / "S002C001P004R002A001.skeleton").write_text(ntu_text(frames)[:300])  # truncated
    (tmp_path / "nocode.skeleton").write_text(ntu_text(frames))
    data = NTUSkeletonReader()(tmp_path)
    assert data.labels.tolist() == [6, 59]
    assert {name for name, _ in data.skipped} == {"S002C001P004R002A001.skeleton", "nocode.skeleton"}
    assert "truncated" in dict(data.skipped)["S002C001P004R002A001.skeleton"]


def test_ntu_writer_round_trips(tmp_path):
    joints = np.random.default_rng(2).normal(size=(5, 25, 3)).astype(np.float32)
    write_ntu_skeleton(str(tmp_path / "x.skeleton"), joints)
    np.testing.assert_allclose(read_ntu_skeleton(tmp_path / "x.skeleton")[0], joints, atol=1e-5)


def test_ntu_garbage_is_malformed(tmp_path):
    (tmp_path / "g.skeleton").write_text("three\n")
    with pytest.raises(MalformedSample, match="not an NTU"):
        read_ntu_skeleton(tmp_path / "g.skeleton")


def test_ntu_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no NTU .skeleton files"):
        NTUSkeletonReader()(tmp_path)
