"""COVTYPE (UCI Forest Covertype, Blackard & Dean 1999) as shipped, and a twin in that format.

``covtype.data`` or ``covtype.data.gz``: 581,012 comma-separated rows of 55 integers, no header —
10 quantitative columns (elevation, aspect, slope, horizontal / vertical distance to hydrology,
distance to roadways, hillshade 9am / noon / 3pm, distance to fire points), 4 wilderness-area one-hot
columns, 40 soil-type one-hot columns, and the cover type 1–7.

The reader makes a seeded random train/test split (``test_fraction``; the dataset ships none),
standardises the 10 quantitative columns with train statistics, and maps labels to 0–6 — or to a
binary one-vs-rest task with ``positive_class`` (1–7).

:class:`CovtypeTwin`: rows with class-dependent structure modelled on the real data: per-class
elevation, slope, distance and hillshade distributions that overlap, class-dependent wilderness
and soil-type frequencies; the class prior is the real one flattened (``prior_temperature``) so
the rare classes are present.
"""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
import torch

from runner.data.files import read_text
from runner.errors import UserError, invalid_value, missing_dataset_root

from .common import ArraySplits, CachedTwin

__all__ = ["CovtypeReader", "CovtypeTwin"]

COVER_TYPES = [
    "spruce_fir",
    "lodgepole_pine",
    "ponderosa_pine",
    "cottonwood_willow",
    "aspen",
    "douglas_fir",
    "krummholz",
]
NUM_QUANTITATIVE = 10
NUM_COLUMNS = 55
# real class frequencies of covtype.data
REAL_PRIOR = np.array([0.3646, 0.4876, 0.0615, 0.0047, 0.0163, 0.0299, 0.0353])
# per class: mean elevation (m), mean slope (deg), mean horizontal distance to roads (m),
# mean distance to fire points (m). Elevation: approximately the real class means (the feature that
# separates cover types best); the other three: plausible values in the real ranges, not measured.
CLASS_MEANS = np.array(
    [
        [3129, 13, 2614, 2009],
        [2920, 13, 2429, 2168],
        [2394, 20, 943, 910],
        [2223, 18, 914, 859],
        [2787, 16, 1349, 1577],
        [2419, 19, 1037, 1055],
        [3361, 14, 2738, 2070],
    ],
    dtype=np.float64,
)


class CovtypeReader:
    """Loads ``covtype.data[.gz]`` (see the module docstring)."""

    def __init__(
        self, root: str, test_fraction: float = 0.2, positive_class: int | None = None, seed: int = 0
    ):
        self.root = str(root)
        self.path = next(
            (
                p
                for p in (os.path.join(self.root, n) for n in ("covtype.data", "covtype.data.gz"))
                if os.path.isfile(p)
            ),
            None,
        )
        if self.path is None:
            raise missing_dataset_root("covtype", os.path.join(self.root, "covtype.data[.gz]"))
        if not 0 < float(test_fraction) < 1:
            raise invalid_value("dataset.reader.test_fraction", test_fraction, "a number in (0, 1)")
        if positive_class is not None and positive_class not in range(1, 8):
            raise invalid_value("dataset.reader.positive_class", positive_class, "null or an integer in 1..7")
        self.test_fraction = float(test_fraction)
        self.positive_class = positive_class
        self.seed = int(seed)

    def load(self) -> ArraySplits:
        import pandas as pd

        text = read_text(self.path)  # a corrupted .gz or non-text bytes: one line naming the file
        try:
            frame = pd.read_csv(io.StringIO(text), header=None, dtype=np.float64)
        except pd.errors.EmptyDataError:
            raise UserError(
                f"{self.path} is empty; expected {NUM_COLUMNS} comma-separated columns per line"
            ) from None
        except (ValueError, pd.errors.ParserError) as err:
            raise UserError(f"{self.path}, line {_first_bad_line(text)}: not a covtype row ({err})") from None
        if frame.shape[1] != NUM_COLUMNS:
            raise UserError(f"{self.path}: expected {NUM_COLUMNS} columns, found {frame.shape[1]}")
        values = frame.to_numpy()
        empty = np.argwhere(np.isnan(values))
        if len(empty):
            line, column = (int(v) + 1 for v in empty[0])
            raise UserError(
                f"{self.path}, line {line}: column {column} is empty ({len(empty)} empty field(s))"
            )
        features, cover = values[:, :-1], values[:, -1]
        wrong = np.flatnonzero((cover < 1) | (cover > 7) | (cover != np.round(cover)))
        if wrong.size:
            raise UserError(
                f"{self.path}, line {wrong[0] + 1}: cover type {cover[wrong[0]]:g} is not one of 1..7 "
                f"({wrong.size} such line(s))"
            )
        cover = cover.astype(np.int64)
        if self.positive_class is None:
            labels, names = cover - 1, list(COVER_TYPES)
        else:
            labels = (cover == self.positive_class).astype(np.int64)
            names = ["other", COVER_TYPES[self.positive_class - 1]]
        order = np.random.default_rng(self.seed).permutation(len(labels))
        n_test = int(round(len(labels) * self.test_fraction))
        test, train = order[:n_test], order[n_test:]
        mu = features[train, :NUM_QUANTITATIVE].mean(0)
        sd = features[train, :NUM_QUANTITATIVE].std(0) + 1e-8
        features = features.copy()
        features[:, :NUM_QUANTITATIVE] = (features[:, :NUM_QUANTITATIVE] - mu) / sd
        x = torch.from_numpy(features.astype(np.float32))
        y = torch.from_numpy(labels)
        return ArraySplits(x[train], y[train], x[test], y[test], names)


def _first_bad_line(text: str) -> int:
    """1-based number of the first line that is not NUM_COLUMNS numbers (for error messages)."""
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split(",")
        try:
            if len(fields) != NUM_COLUMNS or any(not f.strip() or float(f) != float(f) for f in fields):
                return number
        except ValueError:
            return number
    return 1


class CovtypeTwin(CachedTwin):
    """A COVTYPE-format CSV with class-dependent structure (see the module docstring)."""

    def __init__(
        self, num_rows: int = 20000, prior_temperature: float = 0.5, gzip_file: bool = True, seed: int = 0
    ) -> None:
        self.num_rows = int(num_rows)
        self.prior_temperature = float(prior_temperature)
        self.gzip_file = bool(gzip_file)
        self.seed = int(seed)

    def recipe(self) -> dict:
        return dict(vars(self))

    def rows(self) -> np.ndarray:
        """``int64 [num_rows, 55]`` rows as in covtype.data."""
        rng = np.random.default_rng(self.seed)
        prior = REAL_PRIOR**self.prior_temperature
        prior /= prior.sum()
        n = self.num_rows
        cls = rng.choice(7, size=n, p=prior)
        means = CLASS_MEANS[cls]
        elevation = rng.normal(means[:, 0], 160)
        aspect = rng.uniform(0, 360, n)
        slope = np.clip(rng.normal(means[:, 1], 7), 0, 66)
        h_hydro = np.abs(rng.normal(0, 250, n)) + 0.08 * (elevation - 2000)
        v_hydro = rng.normal(0.1 * h_hydro, 40)
        roads = np.abs(rng.normal(means[:, 2], 900))
        # hillshades depend on aspect and slope as on real terrain
        rad = np.deg2rad(aspect)
        shade9 = np.clip(220 + 30 * np.cos(rad - np.pi / 4) * slope / 20 + rng.normal(0, 15, n), 0, 254)
        noon = np.clip(225 - 0.8 * slope + rng.normal(0, 12, n), 0, 254)
        shade3 = np.clip(140 - 40 * np.cos(rad - np.pi / 4) * slope / 20 + rng.normal(0, 25, n), 0, 254)
        fire = np.abs(rng.normal(means[:, 3], 800))
        quantitative = np.stack(
            [elevation, aspect, slope, h_hydro, v_hydro, roads, shade9, noon, shade3, fire], 1
        )
        # wilderness areas (4) and soil types (40): class-dependent categorical frequencies
        class_rng = np.random.default_rng(12345)  # the classes' "geography" is fixed, not seeded
        wild_p = class_rng.dirichlet(np.full(4, 0.6), size=7)
        soil_p = class_rng.dirichlet(np.full(40, 0.15), size=7)
        wild = np.array([rng.choice(4, p=wild_p[c]) for c in cls])
        soil = np.array([rng.choice(40, p=soil_p[c]) for c in cls])
        out = np.zeros((n, NUM_COLUMNS), dtype=np.int64)
        out[:, :NUM_QUANTITATIVE] = np.rint(quantitative).astype(np.int64)
        out[np.arange(n), NUM_QUANTITATIVE + wild] = 1
        out[np.arange(n), NUM_QUANTITATIVE + 4 + soil] = 1
        out[:, -1] = cls + 1
        return out

    def write(self, out: str) -> None:
        text = "\n".join(",".join(map(str, row)) for row in self.rows().tolist()) + "\n"
        if self.gzip_file:
            with gzip.open(os.path.join(out, "covtype.data.gz"), "wt") as fh:
                fh.write(text)
        else:
            with open(os.path.join(out, "covtype.data"), "w") as fh:
                fh.write(text)
