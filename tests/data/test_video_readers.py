"""Readers on tiny synthetic twins written in each dataset's real format; twin caching."""

import csv
import json
import os

import pytest

from runner.data.video.decode import CorruptVideoError, count_frames, decode_clip
from runner.data.video.readers import EpicKitchens100Reader, HMDB51Reader, Kinetics400Reader, parse_timestamp
from runner.data.video.synthetic import ProceduralVideoTwin
from runner.errors import UserError

TINY = dict(num_classes=4, clips_per_class=4, num_frames=8, size=32, fps=8, seed=0)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    base = tmp_path_factory.mktemp("twins")
    return {
        layout: ProceduralVideoTwin(layout, **TINY).ensure(str(base / layout))
        for layout in ("hmdb51", "epic_kitchens", "kinetics400")
    }


def test_hmdb51_reader(twins):
    r = HMDB51Reader(twins["hmdb51"], split=1)
    assert r.num_classes == 4 and len(r.class_names) == 4
    train, val, test = r.records("train"), r.records("val"), r.records("test")
    assert len(train) == 4 * 3 and len(test) == 4 * 1
    assert val == test  # HMDB51 has no validation split
    assert {rec.label for rec in train} == {0, 1, 2, 3}
    assert not {rec.path for rec in train} & {rec.path for rec in test}
    assert all(rec.path.endswith(".avi") and os.path.isfile(rec.path) for rec in train)
    assert r.class_names[train[0].label] == train[0].clip_id.split("/")[0]
    # the three splits are different shuffles
    splits = [
        frozenset(x.path for x in HMDB51Reader(twins["hmdb51"], split=s).records("test")) for s in (1, 2, 3)
    ]
    assert len(set(splits)) > 1


def test_hmdb51_split_flags(twins, tmp_path):
    import shutil

    root = tmp_path / "h"
    shutil.copytree(twins["hmdb51"], root)
    cls = HMDB51Reader(str(root)).class_names[0]
    f = root / "testTrainMulti_7030_splits" / f"{cls}_test_split2.txt"
    lines = f.read_text().splitlines()
    names = [ln.split()[0] for ln in lines]
    f.write_text(f"{names[0]} 0\n{names[1]} 1\n{names[2]} 2 \n{names[3]} 0\n")
    r = HMDB51Reader(str(root), split=2)
    train = [x for x in r.records("train") if x.label == 0]
    test = [x for x in r.records("test") if x.label == 0]
    assert [os.path.basename(x.path) for x in train] == [names[1]]
    assert [os.path.basename(x.path) for x in test] == [names[2]]


def test_hmdb51_bad_split(twins):
    with pytest.raises(UserError, match="dataset.reader.split"):
        HMDB51Reader(twins["hmdb51"], split=4)


def test_epic_reader_targets(twins):
    root = twins["epic_kitchens"]
    verb = EpicKitchens100Reader(root, target="verb")
    noun = EpicKitchens100Reader(root, target="noun")
    action = EpicKitchens100Reader(root, target="action")
    assert verb.num_classes == 2 and noun.num_classes == 2  # 4 classes = 2 shapes x 2 motions
    assert action.num_classes == 4
    with open(os.path.join(root, "EPIC_100_train.csv"), newline="") as fh:
        rows = {r["narration_id"]: r for r in csv.DictReader(fh)}
    pairs = sorted({(int(r["verb_class"]), int(r["noun_class"])) for r in rows.values()})
    recs = action.records("train")
    assert (
        len(recs) == 12
        and len(action.records("val")) == 4
        and action.records("test") == action.records("val")
    )
    for rec in recs:
        row = rows[rec.clip_id]
        assert pairs[rec.label] == (int(row["verb_class"]), int(row["noun_class"]))
        assert rec.start_frame == int(row["start_frame"]) - 1 and rec.stop_frame == int(row["stop_frame"])
        assert rec.path.endswith(f"{row['participant_id']}/videos/{row['video_id']}.MP4")
        assert rec.stop_frame <= count_frames(rec.path)
    assert {r.label for r in verb.records("train")} == {0, 1}


def test_epic_action_drops_unseen_val_pairs(twins, tmp_path, caplog):
    import shutil

    root = tmp_path / "e"
    shutil.copytree(twins["epic_kitchens"], root)
    path = root / "EPIC_100_validation.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["verb_class"] = "7"  # a pair never seen in train
    rows[1]["start_frame"] = rows[1]["stop_frame"] = ""  # timestamps fallback
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with caplog.at_level("WARNING", logger="runner.data"):
        r = EpicKitchens100Reader(str(root), target="action")
    assert len(r.records("val")) == len(rows) - 1
    assert "skipped 1" in caplog.text
    rec = next(x for x in r.records("val") if x.clip_id == rows[1]["narration_id"])
    assert rec.start_frame is None and rec.start_sec == pytest.approx(
        parse_timestamp(rows[1]["start_timestamp"])
    )


def test_parse_timestamp():
    assert parse_timestamp("00:01:02.50") == pytest.approx(62.5)
    assert parse_timestamp("01:00:00.00") == pytest.approx(3600.0)


def test_kinetics_reader_and_missing_files(twins, tmp_path, caplog):
    r = Kinetics400Reader(twins["kinetics400"])
    assert r.num_classes == 4 and r.class_names == sorted(r.class_names)
    train = r.records("train")
    assert len(train) == 12 and len(r.records("val")) == 4
    assert all(r.class_names[x.label] == os.path.basename(os.path.dirname(x.path)) for x in train)
    import shutil

    root = tmp_path / "k"
    shutil.copytree(twins["kinetics400"], root)
    os.remove(train[0].path.replace(twins["kinetics400"], str(root)))
    with caplog.at_level("WARNING", logger="runner.data"):
        r2 = Kinetics400Reader(str(root))
    assert len(r2.records("train")) == 11
    assert "skipped 1 listed clips missing on disk" in caplog.text


@pytest.mark.parametrize("cls,kw", [(HMDB51Reader, {}), (EpicKitchens100Reader, {}), (Kinetics400Reader, {})])
def test_missing_root_is_one_clear_user_error(tmp_path, cls, kw):
    missing = tmp_path / "nope"
    with pytest.raises(UserError) as err:
        cls(str(missing), **kw)
    msg = str(err.value)
    assert str(missing) in msg and "dataset.synthetic=true" in msg and "\n" not in msg


def test_decode_frames_and_counts(twins):
    rec = HMDB51Reader(twins["hmdb51"]).records("train")[0]
    assert count_frames(rec.path) == 8
    full = decode_clip(rec.path)
    assert full.shape == (8, 32, 32, 3) and str(full.dtype) == "torch.uint8"
    part = decode_clip(rec.path, [5, 1, 1, 9])  # one past the end: clamped to the last frame
    assert (part[0] == full[5]).all() and (part[1] == full[1]).all() and (part[3] == full[7]).all()
    assert decode_clip(rec.path, start_sec=0.25, stop_sec=0.5).shape[0] == 2


def test_decode_corrupt(tmp_path, twins):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(CorruptVideoError) as err:
        decode_clip(str(bad), [0])
    assert err.value.path == str(bad)
    src = HMDB51Reader(twins["hmdb51"]).records("train")[0].path
    trunc = tmp_path / "trunc.avi"
    trunc.write_bytes(open(src, "rb").read()[:20])
    with pytest.raises(CorruptVideoError):
        count_frames(str(trunc))
    with pytest.raises(CorruptVideoError):
        decode_clip(str(tmp_path / "absent.avi"))
    half = tmp_path / "half.avi"  # header intact, stream cut short
    half.write_bytes(open(src, "rb").read()[: os.path.getsize(src) // 3])
    with pytest.raises(CorruptVideoError):
        decode_clip(str(half), [0, 7])


def test_twin_cache_and_regeneration(tmp_path):
    root = str(tmp_path / "t")
    twin = ProceduralVideoTwin("kinetics400", **TINY)
    assert twin.ensure(root) == root
    recipe = os.path.join(root, "recipe.json")
    some_video = next(
        os.path.join(d, f)
        for d, _, fs in os.walk(os.path.join(root, "train"))
        for f in fs
        if f.endswith(".mp4")
    )
    m1, v1 = os.stat(recipe).st_mtime_ns, os.stat(some_video).st_mtime_ns
    twin.ensure(root)
    assert os.stat(recipe).st_mtime_ns == m1 and os.stat(some_video).st_mtime_ns == v1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp dirs left
    changed = ProceduralVideoTwin("kinetics400", **{**TINY, "seed": 1})
    beside = changed.ensure(root)
    assert beside != root
    with open(os.path.join(beside, "recipe.json")) as fh:
        assert json.load(fh)["recipe"]["seed"] == 1
    assert os.stat(some_video).st_mtime_ns == v1  # the first twin stays as it was
    assert not os.path.exists(some_video.replace(root, beside))  # new random youtube ids
    assert len(os.listdir(tmp_path)) == 2


def test_twin_refuses_foreign_dir(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(UserError):
        ProceduralVideoTwin("hmdb51", **TINY).ensure(str(tmp_path))


def test_twin_is_deterministic(tmp_path):
    a = ProceduralVideoTwin("hmdb51", **TINY).ensure(str(tmp_path / "a"))
    b = ProceduralVideoTwin("hmdb51", **TINY).ensure(str(tmp_path / "b"))
    ra, rb = HMDB51Reader(a).records("train"), HMDB51Reader(b).records("train")
    assert [x.clip_id for x in ra] == [x.clip_id for x in rb]
    assert (decode_clip(ra[3].path) == decode_clip(rb[3].path)).all()
