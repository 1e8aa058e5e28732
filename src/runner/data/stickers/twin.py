"""Synthetic twins of SER30K (its json + topic-folder layout) and MET-MEME (csv layout).

Generative story (issue 12, item 2). A sticker set ("topic") has one character: a species shape and
a colour. Each sticker gets an emotion ``y`` from unbalanced class priors (SER30K-like: the most
frequent class is ~30 %). The label is carried

* partly by the image: the drawn expression (eyes, brows, mouth, marks) shows ``y`` with probability
  ``p_image``, otherwise an emotion drawn uniformly; an optional caption word (``caption_prob``)
  shows ``y`` with probability ``p_image``, else a random emotion's word;
* partly by the four view descriptions (intention / style / main role / gesture): each is phrased
  for ``y`` with probability ``p_view``, otherwise for a uniformly drawn emotion, independently.

So each view alone is weak (Bayes accuracy ~0.41 at the defaults), the four views together better
(~0.59), the image alone ~0.70 and everything together ~0.77 (Bayes rates of the generative
model, majority class 0.30): fusion has something to add, and nothing saturates. The character and
colour (named in the style and main-role views) carry no label information.

SER30K layout: ``Images/<topic>/<file>.png``, ``Annotations/image-level/{train,val,test}.json``
(``text`` = the caption, ``anno1..3`` noisy annotator labels, ``anno`` the label, 1-based) and
``Annotations_mg/image-level/{split}.json`` (``text`` = the multi-view description). The split is a
seeded 70/10/20 split of all stickers.

MET-MEME layout: ``<L>images/image_ (<i>).jpg``, ``<L>_text.csv`` (gbk), ``label_<L>.csv``
(``"1(happiness)"``) and ``views_<L>.json`` (the descriptions, in the marker format).
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from runner.data.images.common import CachedTwin
from runner.data.stickers.render import (
    COLOURS,
    PHRASES,
    SPECIES,
    caption_word,
    render_sticker,
    view_descriptions,
)

SER30K_TWIN_CLASSES = ("happiness", "neutral", "sadness", "anger", "surprise", "fear", "disgust")
SER30K_TWIN_PRIORS = (0.30, 0.20, 0.14, 0.12, 0.10, 0.08, 0.06)


@dataclass
class Sticker:
    """One generated sticker: its label, the emotion its face shows, the emotion each view is
    phrased for, the image, the caption word (or None) and the four view descriptions."""

    index: int
    topic: str
    label: int
    face: int
    view_labels: tuple[int, int, int, int]
    image: Image.Image
    caption: str | None
    views: tuple[str, str, str, str]


class _StickerGenerator:
    """The shared generative story (module docstring)."""

    def __init__(
        self,
        class_names,
        class_priors,
        num_images,
        num_topics,
        image_size,
        p_image,
        p_view,
        caption_prob,
        seed,
    ) -> None:
        self.class_names = [str(c) for c in class_names]
        for name in self.class_names:
            if name not in PHRASES:
                raise ValueError(f"no twin phrases for emotion {name!r} (known: {sorted(PHRASES)})")
        self.priors = [float(p) for p in class_priors]
        if len(self.priors) != len(self.class_names):
            raise ValueError("class_priors needs one value per class")
        self.num_images, self.num_topics = int(num_images), int(num_topics)
        self.image_size = int(image_size)
        self.p_image, self.p_view, self.caption_prob = float(p_image), float(p_view), float(caption_prob)
        self.seed = int(seed)

    def _noisy(self, rng: random.Random, y: int, p: float) -> int:
        return y if rng.random() < p else rng.randrange(len(self.class_names))

    def stickers(self):
        """Yield one :class:`Sticker` per image, in index order (seeded)."""
        rng = random.Random(self.seed)
        colours = list(COLOURS)
        topics = [(f"{t:03d}-{rng.choice(colours)}-{rng.choice(SPECIES)}") for t in range(self.num_topics)]
        for i in range(self.num_images):
            topic = topics[i % self.num_topics]
            _, colour, species = topic.split("-", 2)
            y = rng.choices(range(len(self.class_names)), weights=self.priors)[0]
            face = self._noisy(rng, y, self.p_image)
            caption = None
            if rng.random() < self.caption_prob:
                caption = caption_word(rng, self.class_names[self._noisy(rng, y, self.p_image)])
            image = render_sticker(
                rng, self.image_size, species, COLOURS[colour], self.class_names[face], caption
            )
            view_labels = tuple(self._noisy(rng, y, self.p_view) for _ in range(4))
            views = view_descriptions(rng, tuple(self.class_names[v] for v in view_labels), species, colour)
            yield Sticker(i, topic, y, face, view_labels, image, caption, views)

    def split_of(self, n: int) -> list[str]:
        """A seeded 70/10/20 assignment of ``n`` stickers to train / val / test."""
        order = list(range(n))
        random.Random(self.seed + 1).shuffle(order)
        n_train, n_val = round(0.7 * n), round(0.1 * n)
        split = [""] * n
        for rank, i in enumerate(order):
            split[i] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        return split


class _TwinBase(CachedTwin):
    def __init__(
        self,
        class_names=SER30K_TWIN_CLASSES,
        class_priors=SER30K_TWIN_PRIORS,
        num_images: int = 3000,
        num_topics: int = 60,
        image_size: int = 80,
        p_image: float = 0.65,
        p_view: float = 0.3,
        caption_prob: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.params = {
            "class_names": [str(c) for c in class_names],
            "class_priors": [float(p) for p in class_priors],
            "num_images": int(num_images),
            "num_topics": int(num_topics),
            "image_size": int(image_size),
            "p_image": float(p_image),
            "p_view": float(p_view),
            "caption_prob": float(caption_prob),
            "seed": int(seed),
        }
        self.generator = _StickerGenerator(**self.params)

    def recipe(self) -> dict:
        return dict(self.params)


class SER30KTwin(_TwinBase):
    """The SER30K-layout sticker twin (module docstring)."""

    RECIPE_VERSION = 3

    def write(self, out: str) -> None:
        root = Path(out)
        gen = self.generator
        entries: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        described: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        split = gen.split_of(gen.num_images)
        annotator = random.Random(gen.seed + 2)
        for st in gen.stickers():
            i, topic, y, caption = st.index, st.topic, st.label, st.caption
            folder = root / "Images" / topic
            folder.mkdir(parents=True, exist_ok=True)
            name = f"sticker_{i:05d}.png"
            st.image.save(folder / name)
            annos = [
                y + 1 if annotator.random() < 0.8 else annotator.randrange(len(gen.class_names)) + 1
                for _ in range(3)
            ]
            entry = {
                "topic": topic,
                "file_name": name,
                "text": caption or "",
                "anno1": annos[0],
                "anno2": annos[1],
                "anno3": annos[2],
                "anno": y + 1,
            }
            entries[split[i]].append(entry)
            described[split[i]].append({**entry, "text": " ".join(st.views)})
        for folder, payload in (("Annotations", entries), ("Annotations_mg", described)):
            (root / folder / "image-level").mkdir(parents=True, exist_ok=True)
            for name, items in payload.items():
                (root / folder / "image-level" / f"{name}.json").write_text(
                    json.dumps({"annotations": items}, ensure_ascii=False)
                )


class MetMemeTwin(_TwinBase):
    """The MET-MEME-layout twin (module docstring): one language's files."""

    RECIPE_VERSION = 3

    def __init__(self, language: str = "E", **kwargs) -> None:
        super().__init__(**kwargs)
        self.language = str(language)
        self.params["language"] = self.language

    def write(self, out: str) -> None:
        root = Path(out)
        gen, lang = self.generator, self.language
        images = root / f"{lang}images"
        images.mkdir(parents=True, exist_ok=True)
        texts, labels, views_json = io.StringIO(), io.StringIO(), {}
        text_writer, label_writer = csv.writer(texts), csv.writer(labels)
        text_writer.writerow(["file_name", "text"])
        label_writer.writerow(["file_name", "sentiment category", "sentiment degree", "intention detection"])
        for st in gen.stickers():
            name = f"image_ ({st.index}).jpg"
            st.image.save(images / name, quality=92)
            text_writer.writerow([name, st.caption or ""])
            label_writer.writerow(
                [name, f"{st.label + 1}({gen.class_names[st.label]})", "1(slightly)", "2(expressive)"]
            )
            views_json[name] = " ".join(st.views)
        (root / f"{lang}_text.csv").write_bytes(texts.getvalue().encode("gbk"))
        (root / f"label_{lang}.csv").write_bytes(labels.getvalue().encode("gbk"))
        (root / f"views_{lang}.json").write_text(json.dumps(views_json, ensure_ascii=False))
