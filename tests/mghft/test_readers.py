"""SER30K / MET-MEME readers on tiny hand-written fixtures, and unreadable images in the loader."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from runner.data.stickers import MetMemeReader, SER30KReader, split_views
from runner.data.stickers.datamodule import StickerDataset, build_transform, collate_stickers
from runner.errors import UserError

DESCRIPTION = (
    "Preamble. #The sticker's intention: greet. #The sticker's style: flat. "
    "#The sticker's main role: a cat. #The sticker's gesture: waving."
)


def write_ser30k(root, entries, described=None):
    for folder, payload in (("Annotations", entries), ("Annotations_mg", described)):
        if payload is None:
            continue
        (root / folder / "image-level").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val", "test"):
            (root / folder / "image-level" / f"{split}.json").write_text(json.dumps({"annotations": payload}))
    for e in entries:
        (root / "Images" / e["topic"]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), (200, 10, 10)).save(root / "Images" / e["topic"] / e["file_name"])


def entry(topic="01-cat", name="a.png", anno=3, text=""):
    return {
        "topic": topic,
        "file_name": name,
        "text": text,
        "anno1": anno,
        "anno2": anno,
        "anno3": anno,
        "anno": anno,
    }


def test_split_views_keeps_markers_and_fills_missing():
    views = split_views(DESCRIPTION)
    assert views == (
        "#The sticker's intention: greet.",
        "#The sticker's style: flat.",
        "#The sticker's main role: a cat.",
        "#The sticker's gesture: waving.",
    )
    assert split_views("#The sticker's gesture: only this") == (
        "",
        "",
        "",
        "#The sticker's gesture: only this",
    )
    assert split_views("") == ("", "", "", "")


def test_ser30k_reader_labels_paths_and_views(tmp_path):
    entries = [entry(anno=1, name="a.png"), entry(anno=7, name="b.png", topic="02-dog")]
    described = [{**entries[0], "text": DESCRIPTION}, {**entries[1], "text": "no markers"}]
    write_ser30k(tmp_path, entries, described)
    reader = SER30KReader(str(tmp_path))
    records = reader.records("train")
    assert [r.label for r in records] == [0, 6] and reader.num_classes == 7
    assert records[0].path == str(tmp_path / "Images" / "01-cat" / "a.png")
    assert records[0].key == "01-cat/a.png" and records[0].views[2] == "#The sticker's main role: a cat."
    assert records[1].views == ("", "", "", "") and records[1].description == "no markers"
    assert reader.has_views


def test_ser30k_without_descriptions_has_no_views(tmp_path):
    write_ser30k(tmp_path, [entry()])
    reader = SER30KReader(str(tmp_path))
    assert not reader.has_views and reader.records("val")[0].views == ("", "", "", "")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"anno": None}, "has no label"),
        ({"anno": 9}, "not one of the 7 classes"),
        ({"anno": "x"}, "not a class number"),
    ],
)
def test_ser30k_bad_label_is_one_line_naming_file_and_entry(tmp_path, bad, message):
    write_ser30k(tmp_path, [entry(name="ok.png"), {**entry(name="bad.png"), **bad}])
    with pytest.raises(UserError, match=message) as err:
        SER30KReader(str(tmp_path)).records("test")
    text = str(err.value)
    assert "\n" not in text and "test.json" in text and "entry 1 (01-cat/bad.png)" in text


def test_ser30k_missing_root_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="dataset.synthetic=true"):
        SER30KReader(str(tmp_path / "nowhere"))


def write_metmeme(root, n=20, language="E", views=True, bad_row=None):
    images = root / f"{language}images"
    images.mkdir(parents=True)
    texts = ["file_name,text,,,"]
    labels = ["file_name,sentiment category,sentiment degree,,"]
    names = [f"image_ ({i}).jpg" for i in range(n)]
    categories = ["1(happiness)", "2(love)", "3(anger)", "4(sorrow)", "5(fear)", "6(hate)", "7(surprise)"]
    for i, name in enumerate(names):
        Image.new("RGB", (10, 10), (i, 0, 0)).save(images / name)
        texts.append(f'{name},"文字 {i}\nline two",,,')
        labels.append(f"{name},{categories[i % 7]},1(slightly),,")
    if bad_row is not None:
        labels.append(bad_row)
    labels.append(",,,,")  # a blank spreadsheet row
    (root / f"{language}_text.csv").write_bytes("\n".join(texts).encode("gbk"))
    (root / f"label_{language}.csv").write_bytes("\n".join(labels).encode("gbk"))
    if views:
        (root / f"views_{language}.json").write_text(json.dumps({names[0]: DESCRIPTION}))
    return names


def test_metmeme_reader_gbk_labels_and_seeded_split(tmp_path):
    names = write_metmeme(tmp_path, n=40)
    reader = MetMemeReader(str(tmp_path), language="E", split_seed=1)
    splits = {s: reader.records(s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [28, 4, 8]
    keys = [r.key for v in splits.values() for r in v]
    assert sorted(keys) == sorted(f"E/{n}" for n in names)
    again = MetMemeReader(str(tmp_path), language="E", split_seed=1)
    assert [r.key for r in again.records("test")] == [r.key for r in splits["test"]]
    other = MetMemeReader(str(tmp_path), language="E", split_seed=2)
    assert [r.key for r in other.records("test")] != [r.key for r in splits["test"]]
    by_key = {r.key: r for v in splits.values() for r in v}
    first = by_key[f"E/{names[0]}"]
    assert first.label == 0 and first.views[0] == "#The sticker's intention: greet."
    third = by_key[f"E/{names[2]}"]
    assert third.label == 2 and third.views == ("文字 2\nline two",) * 4  # no description: the meme text


def test_metmeme_unknown_category_names_file_and_row(tmp_path):
    write_metmeme(tmp_path, n=3, bad_row="image_ (9).jpg,8(boredom),1,,")
    with pytest.raises(UserError, match=r"label_E.csv: row 5 \(image_ \(9\).jpg\): label '8' is not one of"):
        MetMemeReader(str(tmp_path))


def test_metmeme_missing_label_names_file_and_row(tmp_path):
    write_metmeme(tmp_path, n=3, bad_row="image_ (9).jpg,,1,,")
    with pytest.raises(UserError, match=r"row 5 \(image_ \(9\).jpg\) has no label"):
        MetMemeReader(str(tmp_path))


def test_unreadable_images_are_skipped_and_named(tmp_path):
    write_ser30k(tmp_path, [entry(name="a.png"), entry(name="b.png"), entry(name="gone.png")])
    (tmp_path / "Images" / "01-cat" / "b.png").write_bytes(b"not a png")
    (tmp_path / "Images" / "01-cat" / "gone.png").unlink()
    records = SER30KReader(str(tmp_path)).records("train")
    dataset = StickerDataset(records, build_transform(False, 32), torch.zeros(3, 5, 4))
    batch = collate_stickers([dataset[i] for i in range(3)])
    assert batch["image"].shape == (1, 3, 32, 32) and batch["label"].tolist() == [2]
    assert batch["views"].shape == (1, 4, 4) and batch["full_text"].shape == (1, 4)
    assert sorted(batch["corrupt"]) == sorted([records[1].path, records[2].path])
    empty = collate_stickers([dataset[1]])
    assert empty["label"].numel() == 0 and empty["corrupt"] == [records[1].path]


def test_train_transform_survives_randaugment_at_full_posterize():
    from runner.data.stickers.datamodule import _posterize

    transform = build_transform(True, 32)
    ops = [op for step in transform.transforms for op in getattr(step, "ops", [])]
    assert any(op.aug_fn is _posterize for op in ops)
    image = Image.new("RGB", (40, 40), (100, 150, 200))
    assert _posterize(image, 0).getextrema() == ((0, 0), (0, 0), (0, 0))
    assert transform(image).shape == (3, 32, 32)
