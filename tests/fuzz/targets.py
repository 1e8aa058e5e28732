"""Every reader the fuzz suite exercises, and how to load its twin's files (issue 18, item 8).

ADDING A READER: append one :class:`FuzzTarget` to ``TARGETS`` (or call :func:`register` from a test
module of your package). A target names the config that builds the twin (``overrides``: an experiment
or dataset plus small twin sizes), the twin files to damage (``files``: globs relative to the twin
root), and ``load(cfg, root) -> int``, which reads a (damaged) copy of the twin with the real reader,
in-process, and returns how many samples it loaded. Helpers below cover the usual reader shapes
(arrays, video records, text examples, interaction files). ``out_of_range`` may rewrite a file with
a value outside the format's range (a label past the class count); without it the suite uses a
generic text edit for text files and skips that mutation for binary ones.
"""

from __future__ import annotations

import pickle
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    overrides: tuple[str, ...]
    files: tuple[str, ...]
    load: Callable[[DictConfig, Path], int]
    out_of_range: Callable[[Path, random.Random], None] | None = None
    # where the twin sits inside the generated root (e.g. CIFAR's cifar-10-batches-py)
    twin_attr: str = "twin"
    notes: str = ""
    skip_mutations: tuple[str, ...] = field(default_factory=tuple)


TARGETS: list[FuzzTarget] = []


def register(target: FuzzTarget) -> FuzzTarget:
    TARGETS.append(target)
    return target


# ----------------------------------------------------------------------------- load helpers
def load_arrays(cfg: DictConfig, root: Path) -> int:
    """Readers with ``reader(root=...).load() -> ArraySplits`` (MNIST, COVTYPE, CIFAR, domains)."""
    splits = instantiate(cfg.dataset.reader)(root=str(root)).load()
    return int(len(splits.y_train) + len(splits.y_test))


def load_text(cfg: DictConfig, root: Path) -> int:
    """Text readers: ``reader(root) -> list[TextExample]``."""
    return len(instantiate(cfg.dataset.reader)(root))


def load_text_file(name: str) -> Callable[[DictConfig, Path], int]:
    """A text reader given the twin's file ``name`` (the twin names its files differently)."""
    return lambda cfg, root: len(instantiate(cfg.dataset.reader)(root / name))


def load_videos(cfg: DictConfig, root: Path) -> int:
    """Video readers: records of every subset, each decoded (a corrupt clip is skipped and named)."""
    from runner.data.skips import record_skip
    from runner.data.video.datamodule import VideoClipDataset
    from runner.data.video.transforms import ClipTransform

    reader = instantiate(cfg.dataset.reader)(root=str(root))
    good = 0
    for subset in ("train", "test"):
        dataset = VideoClipDataset(
            reader.records(subset), subset == "train", "dense", 4, 1, ClipTransform(False, 16, 16, 0.0)
        )
        corrupt = []
        for i in range(len(dataset)):
            sample = dataset[i]
            if "corrupt" in sample:
                corrupt.append(sample["corrupt"])
            else:
                good += 1
        record_skip(reader.name, f"corrupt {subset} videos", len(corrupt), corrupt)
    return good


def load_atomic_inter(cfg: DictConfig, root: Path) -> int:
    from runner.data.recsys.readers import read_atomic_inter

    return len(read_atomic_inter(str(root / f"{cfg.dataset.name}.inter")))


# ----------------------------------------------------------------------------- out-of-range edits
def idx_label_out_of_range(path: Path, rng: random.Random) -> None:
    """An MNIST idx label file with one label of 200 (classes are 0..9)."""
    data = bytearray(path.read_bytes())
    if data[:4] == b"\x00\x00\x08\x01" and len(data) > 8:
        data[8 + rng.randrange(len(data) - 8)] = 200
        path.write_bytes(bytes(data))


def cifar_label_out_of_range(path: Path, rng: random.Random) -> None:
    """A CIFAR batch with one label past the class count (written by pickle: writing is safe)."""
    from runner.data.images.cifar import load_cifar_pickle

    batch = load_cifar_pickle(str(path))
    for key in (b"labels", b"fine_labels"):
        if key in batch:
            labels = list(batch[key])
            labels[rng.randrange(len(labels))] = 999
            batch[key] = labels
            with open(path, "wb") as fh:
                pickle.dump(batch, fh, protocol=2)
            return


def npy_label_out_of_range(path: Path, rng: random.Random) -> None:
    if path.name == "labels.npy":
        labels = np.load(path)
        labels[rng.randrange(len(labels))] = 999
        np.save(path, labels)


def csv_column_out_of_range(column: str, value: str = "-7") -> Callable[[Path, random.Random], None]:
    """A CSV with a header: ``column`` of one random row becomes ``value``."""

    def mutate(path: Path, rng: random.Random) -> None:
        import csv
        import io

        if path.suffix != ".csv":
            return
        rows = list(csv.reader(io.StringIO(path.read_text())))
        if len(rows) < 2 or column not in rows[0]:
            return
        rows[rng.randrange(1, len(rows))][rows[0].index(column)] = value
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        path.write_text(out.getvalue())

    return mutate


def jsonl_field(field_path: str, value) -> Callable[[Path, random.Random], None]:
    """One random record of a jsonl file gets ``value`` at ``field_path`` (dotted): e.g. a null question."""

    def mutate(path: Path, rng: random.Random) -> None:
        import json

        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            return
        i = rng.randrange(len(lines))
        record = json.loads(lines[i])
        node = record
        *parents, leaf = field_path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        lines[i] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n")

    return mutate


def text_number_out_of_range(path: Path, rng: random.Random) -> None:
    """Generic: the last integer field of a random data line becomes -7 (labels, ids, flags)."""
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if re.search(r"\d", line)][1:]
    if not candidates:
        return
    i = rng.choice(candidates)
    matches = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", lines[i]))
    if matches:
        m = matches[-1]
        lines[i] = lines[i][: m.start()] + "-7" + lines[i][m.end() :]
        path.write_text("".join(lines))


SMALL_VIDEO = (
    "dataset.twin.num_classes=3",
    "dataset.twin.clips_per_class=3",
    "dataset.twin.num_frames=8",
    "dataset.twin.size=32",
)

register(
    FuzzTarget(
        "mnist_idx",
        ("dataset=mnist", "dataset.twin.train_size=300", "dataset.twin.test_size=100"),
        ("train-images*", "t10k-labels*"),
        load_arrays,
        idx_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "covtype_csv",
        ("dataset=covtype", "dataset.twin.num_rows=400"),
        ("covtype.data*",),
        load_arrays,
        text_number_out_of_range,
    )
)
register(
    FuzzTarget(
        "cifar10_pickle",
        ("dataset=cifar10", "dataset.twin.train_per_class=4", "dataset.twin.test_per_class=2"),
        ("**/data_batch_1", "**/test_batch", "**/batches.meta"),
        load_arrays,
        cifar_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "cifar100_pickle",
        ("dataset=cifar100", "dataset.twin.train_per_class=2", "dataset.twin.test_per_class=1"),
        ("**/train", "**/meta"),
        load_arrays,
        cifar_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "hmdb51_avi",
        ("dataset=hmdb51", *SMALL_VIDEO),
        ("testTrainMulti_7030_splits/*split1.txt", "videos/*/*clip000.avi"),
        load_videos,
        text_number_out_of_range,
    )
)
register(
    FuzzTarget(
        "epic_kitchens_csv",
        ("dataset=epic_kitchens", *SMALL_VIDEO),
        ("EPIC_100_train.csv", "*/videos/*.MP4"),
        load_videos,
        csv_column_out_of_range("verb_class"),
    )
)
register(
    FuzzTarget(
        "kinetics400_csv",
        ("dataset=kinetics400", *SMALL_VIDEO),
        ("train.csv", "train/*/*.mp4"),
        load_videos,
        csv_column_out_of_range("time_start"),
    )
)
register(
    FuzzTarget(
        "recsys_atomic_inter",
        (
            "dataset=yelp",
            "dataset.twin.num_users=60",
            "dataset.twin.num_items=40",
            "dataset.twin.interactions_per_user=6",
            "dataset.twin.min_interactions=3",
        ),
        ("*.inter",),
        load_atomic_inter,
    )
)
register(
    FuzzTarget(
        "text_internal_jsonl",
        ("dataset=sycophancy_internal", "dataset.twin.train_dialogues=50", "dataset.twin.eval_per_task=6"),
        ("eval.jsonl",),
        load_text,
        jsonl_field("label", []),
    )
)
register(
    FuzzTarget(
        "text_anthropic_jsonl",
        ("dataset=sycophancy_anthropic", "dataset.twin.train_dialogues=50", "dataset.twin.eval_per_task=6"),
        ("anthropic_sycophancy.jsonl",),
        load_text_file("anthropic_sycophancy.jsonl"),
        jsonl_field("question", None),
    )
)
register(
    FuzzTarget(
        "text_sycophancy_eval_jsonl",
        ("dataset=sycophancy_eval", "dataset.twin.train_dialogues=50", "dataset.twin.eval_per_task=6"),
        ("sycophancy_eval_answer.jsonl",),
        load_text_file("sycophancy_eval_answer.jsonl"),
        jsonl_field("prompt", []),
    )
)
register(
    FuzzTarget(
        "domain_folders_png",
        ("dataset=digits5", "dataset.twin.per_domain=20"),
        ("mnist/train/*/*.png", "usps/test/*/*.png"),
        load_arrays,
        notes="class folders list no files: a deleted image is simply absent",
        skip_mutations=("delete",),
    )
)
register(
    FuzzTarget(
        "cifar10c_npy",
        (
            "dataset=cifar10c",
            "dataset.twin.cifar_twin.train_per_class=2",
            "dataset.twin.cifar_twin.test_per_class=3",
        ),
        ("labels.npy", "gaussian_noise.npy"),
        load_arrays,
        npy_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "mini_imagenet_csv",
        ("dataset=mini_imagenet", "dataset.twin.per_class=5", "dataset.reader.size=16"),
        ("train.csv", "images/*0.jpg"),
        load_arrays,
    )
)


# ----------------------------------------------------------------------------- the newest papers' readers
def load_grounding(cfg: DictConfig, root: Path) -> int:
    """QVHighlights(-Unify): the data module reads every split's jsonl and feature files."""
    # built as a partial, then called: the real CLI unwraps Hydra's InstantiationException the same way
    build = instantiate(cfg.dataset, root=str(root), synthetic=False, label_cache_dir=None, _partial_=True)
    datamodule = build()
    return sum(len(datamodule.dataset(split)) for split in ("train", "val", "test"))


def load_stickers(cfg: DictConfig, root: Path) -> int:
    """Sticker readers (SER30K json, MET-MEME csv): the records of every split, each image opened as
    the data loader does (an unreadable image is skipped and named)."""
    from runner.data.skips import record_skip
    from runner.data.stickers.datamodule import StickerDataset

    reader = instantiate(cfg.dataset.reader)(root=str(root))
    good = 0
    for split in ("train", "val", "test"):
        dataset = StickerDataset(reader.records(split), lambda image: image.size, None)
        corrupt = [s["corrupt"] for s in (dataset[i] for i in range(len(dataset))) if "corrupt" in s]
        good += len(dataset) - len(corrupt)
        record_skip(str(root), f"unreadable {split} images", len(corrupt), corrupt)
    return good


def load_skeleton(cfg: DictConfig, root: Path) -> int:
    """Skeleton readers (E-Gait h5, PYSKL pickle, NTU text) through the data module's split."""
    datamodule = instantiate(cfg.dataset, root=str(root), synthetic=False)
    datamodule.load()  # the data are read here, not at construction
    return sum(datamodule.split_sizes.values())


def json_annotation_out_of_range(key: str, value) -> Callable[[Path, random.Random], None]:
    """A ``{"annotations": [...]}`` json file: ``key`` of one random entry becomes ``value``."""

    def mutate(path: Path, rng: random.Random) -> None:
        import json

        if path.suffix != ".json":
            return
        payload = json.loads(path.read_text())
        entries = payload.get("annotations") or []
        if entries:
            entries[rng.randrange(len(entries))][key] = value
            path.write_text(json.dumps(payload))

    return mutate


def h5_label_out_of_range(path: Path, rng: random.Random) -> None:
    """An E-Gait labels h5 with one label of -7."""
    import h5py

    if not path.name.startswith("labels"):
        return
    with h5py.File(path, "r+") as fh:
        keys = sorted(fh.keys())
        key = keys[rng.randrange(len(keys))]
        del fh[key]
        fh[key] = -7


def pyskl_label_out_of_range(path: Path, rng: random.Random) -> None:
    """A PYSKL pickle with one label of -7 (written by pickle: writing is safe)."""
    from runner.data.safe_pickle import load_restricted_pickle

    payload = load_restricted_pickle(path, format_name="PYSKL annotation pickle")
    annotations = payload["annotations"]
    annotations[rng.randrange(len(annotations))]["label"] = -7
    with open(path, "wb") as fh:
        pickle.dump(payload, fh)


def only_suffix(
    suffix: str, mutate: Callable[[Path, random.Random], None]
) -> Callable[[Path, random.Random], None]:
    """``mutate`` for files ending in ``suffix``; other files of the target are left alone."""
    return lambda path, rng: mutate(path, rng) if path.name.endswith(suffix) else None


def ser30k_out_of_range(path: Path, rng: random.Random) -> None:
    """A label past the 7 classes in a labelled split file; a description of a sticker the split does
    not list in a multi-view file (its sticker is left without views)."""
    if "Annotations_mg" in path.parts:
        json_annotation_out_of_range("file_name", "no_such_sticker.png")(path, rng)
    else:
        json_annotation_out_of_range("anno", 9)(path, rng)


def ntu_count_out_of_range(path: Path, rng: random.Random) -> None:
    """An NTU .skeleton file with one frame / body / joint count of -7 (the lines holding one integer)."""
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    counts = [i for i, line in enumerate(lines) if line.strip().isdigit()]
    if counts:
        lines[rng.choice(counts)] = "-7\n"
        path.write_text("".join(lines))


SMALL_STICKERS = ("dataset.twin.num_images=40", "dataset.twin.num_topics=4", "dataset.twin.image_size=32")
SMALL_GAITS = (
    "dataset.twin.num_gaits=40",
    "dataset.twin.num_persons=8",
    "dataset.twin.min_frames=12",
    "dataset.twin.max_frames=16",
)

register(
    FuzzTarget(
        "qvhighlights_jsonl_npz",
        (
            "dataset=qvhighlights",
            "dataset.twin.num_videos=[8,4,4]",
            "dataset.twin.clips_range=[24,40]",
        ),
        ("train.jsonl", "clip_video/*.npz", "clip_text/*.npz"),
        load_grounding,
        only_suffix(".jsonl", jsonl_field("relevant_windows", [[30, 4]])),
    )
)
register(
    FuzzTarget(
        "ser30k_json",
        ("dataset=ser30k", *SMALL_STICKERS),
        ("Annotations/image-level/train.json", "Annotations_mg/image-level/val.json", "Images/*/*.png"),
        load_stickers,
        ser30k_out_of_range,
    )
)
register(
    FuzzTarget(
        "metmeme_csv",
        ("dataset=metmeme", *SMALL_STICKERS),
        ("label_E.csv", "E_text.csv", "Eimages/*.jpg"),
        load_stickers,
        only_suffix("label_E.csv", csv_column_out_of_range("sentiment category", "9(unknown)")),
    )
)
register(
    FuzzTarget(
        "metmeme_views_json",
        ("dataset=metmeme", *SMALL_STICKERS),
        ("views_E.json",),
        load_stickers,
        notes="views_<L>.json is optional (absent: each view is the meme's own text, documented)",
        skip_mutations=("delete",),
    )
)
register(
    FuzzTarget(
        "egait_h5",
        ("dataset=egait", *SMALL_GAITS),
        ("features.h5", "labels.h5"),
        load_skeleton,
        h5_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "pyskl_pickle",
        ("dataset=pyskl", *SMALL_GAITS),
        ("*.pkl",),
        load_skeleton,
        pyskl_label_out_of_range,
    )
)
register(
    FuzzTarget(
        "ntu_skeleton_txt",
        ("dataset=ntu_skeleton", *SMALL_GAITS),
        ("*.skeleton",),
        load_skeleton,
        ntu_count_out_of_range,
        notes="a folder of files, none listed: a deleted file is simply absent",
        skip_mutations=("delete",),
    )
)
