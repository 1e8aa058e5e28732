"""The sticker twins: written in the real layouts, read back by the real readers, with the designed signal."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runner.data.stickers import MetMemeReader, MetMemeTwin, SER30KReader, SER30KTwin
from runner.data.stickers.render import PHRASES


@pytest.fixture(scope="module")
def ser30k_twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin") / "ser30k"
    twin = SER30KTwin(num_images=700, num_topics=14, image_size=48, seed=3)
    twin.ensure(str(root))
    return twin, root


def test_twin_is_written_in_ser30k_layout_and_read_back(ser30k_twin):
    twin, root = ser30k_twin
    assert (root / "Annotations" / "image-level" / "train.json").is_file()
    assert (root / "Annotations_mg" / "image-level" / "test.json").is_file()
    reader = SER30KReader(str(root), class_names=twin.params["class_names"])
    splits = {s: reader.records(s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [490, 70, 140]  # seeded 70/10/20
    rec = splits["train"][0]
    assert rec.path.startswith(str(root / "Images")) and "/" in rec.key
    with Image.open(rec.path) as img:
        assert img.size == (48, 48) and img.mode == "RGB"
    assert all(v.startswith("#The sticker's") for v in rec.views)
    topics = {r.key.split("/")[0] for v in splits.values() for r in v}
    assert len(topics) == 14
    assert twin.is_current(str(root))  # cached: a second ensure() does not regenerate


def test_class_priors_are_unbalanced_like_ser30k(ser30k_twin):
    twin, root = ser30k_twin
    reader = SER30KReader(str(root), class_names=twin.params["class_names"])
    labels = [r.label for s in ("train", "val", "test") for r in reader.records(s)]
    freq = np.bincount(labels, minlength=7) / len(labels)
    assert freq.argmax() == 0 and 0.24 < freq[0] < 0.36 and freq[6] < 0.1  # majority baseline ~0.30


def _view_emotion(view: str, names: list[str]) -> int:
    """The emotion whose phrase appears in a view (templates: PHRASES[emotion][view])."""
    field = {"intention": 0, "style": 1, "main role": 2, "gesture": 3}[view.split(":")[0].split("'s ")[1]]
    hits = [i for i, n in enumerate(names) if any(p in view for p in PHRASES[n][field])]
    assert len(hits) == 1, view
    return hits[0]


def test_each_view_is_weak_and_the_four_together_are_stronger(ser30k_twin):
    twin, root = ser30k_twin
    names = twin.params["class_names"]
    reader = SER30KReader(str(root), class_names=names)
    records = [r for s in ("train", "val", "test") for r in reader.records(s)]
    # each view shows the label's phrase with p_view + (1 - p_view) / 7 ~ 0.4
    for v in range(4):
        agree = np.mean([_view_emotion(r.views[v], names) == r.label for r in records])
        assert 0.28 < agree < 0.52, (v, agree)
    # the Bayes classifier of the generative story, from one view vs from the four views
    priors = np.log(np.array(twin.params["class_priors"]))
    p = twin.params["p_view"]
    emotions = np.array([[_view_emotion(v, names) for v in r.views] for r in records])
    labels = np.array([r.label for r in records])

    def bayes_accuracy(views: list[int]) -> float:
        scores = np.tile(priors, (len(records), 1))
        for v in views:
            likelihood = np.full((len(records), 7), (1 - p) / 7)
            likelihood[np.arange(len(records)), emotions[:, v]] += p
            scores += np.log(likelihood)
        return float((scores.argmax(1) == labels).mean())

    single = max(bayes_accuracy([v]) for v in range(4))
    together = bayes_accuracy([0, 1, 2, 3])
    assert single < 0.5 and together > single + 0.1, (single, together)


def test_the_image_and_the_views_follow_the_label_with_their_probabilities(ser30k_twin):
    twin, _ = ser30k_twin
    stickers = list(twin.generator.stickers())  # the same seeded draws as the written files
    face = np.mean([s.face == s.label for s in stickers])
    views = np.mean([v == s.label for s in stickers for v in s.view_labels])
    # P(shown = label) = p + (1 - p) / 7: 0.70 for the image, 0.40 for each view
    assert 0.64 < face < 0.76 and 0.36 < views < 0.44, (face, views)
    assert all(s.image.size == (48, 48) for s in stickers[:5])


def test_metmeme_twin_is_read_by_the_metmeme_reader(tmp_path):
    names = ["happiness", "love", "anger", "sorrow", "fear", "hate", "surprise"]
    MetMemeTwin(language="C", class_names=names, num_images=60, num_topics=5, image_size=40).ensure(
        str(tmp_path / "m")
    )
    assert (tmp_path / "m" / "C_text.csv").read_bytes().decode("gbk").startswith("file_name,text")
    reader = MetMemeReader(str(tmp_path / "m"), language="C", class_names=names)
    records = [r for s in ("train", "val", "test") for r in reader.records(s)]
    assert len(records) == 60 and all(r.views[0].startswith("#The sticker's intention") for r in records)
    assert {r.path.rsplit("/", 2)[-2] for r in records} == {"Cimages"}
