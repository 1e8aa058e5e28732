"""Readers of the recommendation data formats the NLGCL card uses (card: "Data").

* RecBole atomic files: ``<name>.inter``, tab-separated, a typed header
  (``user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float``), one interaction a line.
* The LightGCN format: ``train.txt`` / ``test.txt``, one line per user: ``user item item ...``.

Then the RecBole-style filters (rating threshold, iterative user/item k-core) and the per-user
random 80/10/10 split (RecBole ``RS`` ordering, ``group_by: user``), all vectorised with numpy.
Every mistake in a file raises :class:`runner.errors.UserError` naming the file, the line and the fix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from runner.data.skips import record_skip
from runner.errors import UserError

log = logging.getLogger("runner.data")

__all__ = [
    "ATOMIC_TYPES",
    "Interactions",
    "read_atomic_inter",
    "read_lightgcn_txt",
    "filter_by_rating",
    "k_core_filter",
    "split_per_user",
]

# RecBole's atomic field types (https://recbole.io/docs/user_guide/data/atomic_files.html)
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass
class Interactions:
    """User-item interactions as parallel numpy arrays of dense ids (``0..num_users-1`` etc.).

    ``user_tokens`` / ``item_tokens`` map a dense id back to the token in the file.
    ``rating`` / ``timestamp`` are ``None`` when the file has no such column.
    """

    user: np.ndarray
    item: np.ndarray
    user_tokens: np.ndarray
    item_tokens: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def num_users(self) -> int:
        return len(self.user_tokens)

    @property
    def num_items(self) -> int:
        return len(self.item_tokens)

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, keep: np.ndarray) -> Interactions:
        """The interactions where ``keep`` is True, with ids re-densified."""
        user, item = self.user[keep], self.item[keep]
        used_users, user = np.unique(user, return_inverse=True)
        used_items, item = np.unique(item, return_inverse=True)
        return Interactions(
            user=user.astype(np.int64),
            item=item.astype(np.int64),
            user_tokens=self.user_tokens[used_users],
            item_tokens=self.item_tokens[used_items],
            rating=None if self.rating is None else self.rating[keep],
            timestamp=None if self.timestamp is None else self.timestamp[keep],
            source=self.source,
            notes=list(self.notes),
        )


def _densify(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(dense ids, token of each id) in order of first appearance-independent sorted tokens."""
    vocab, ids = np.unique(np.asarray(tokens, dtype=object).astype(str), return_inverse=True)
    return ids.astype(np.int64), vocab


def read_atomic_inter(path: str, user_field: str = "user_id", item_field: str = "item_id") -> Interactions:
    """Read a RecBole atomic ``.inter`` file.

    The header names every column as ``name:type`` with a type in :data:`ATOMIC_TYPES`. The user and
    item columns are required; ``rating`` and ``timestamp`` (float) are read when present, other
    columns are checked for shape and ignored.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such .inter file; check dataset.root and dataset.name")
    with open(path, encoding="utf-8") as fh:
        try:
            header_line = fh.readline().rstrip("\n").rstrip("\r")
        except UnicodeDecodeError:
            raise UserError(f"{path}, line 1: not UTF-8 text; is it a RecBole .inter file?") from None
        if not header_line.strip():
            raise UserError(
                f"{path}, line 1: empty header; the first line must name the columns, "
                "e.g. user_id:token<TAB>item_id:token<TAB>rating:float"
            )
        if "\t" not in header_line and "," in header_line:
            raise UserError(
                f"{path}, line 1: the columns are separated by commas; RecBole .inter files are "
                "tab-separated (user_id:token<TAB>item_id:token<TAB>...)"
            )
        names, types = [], []
        for column, spec in enumerate(header_line.split("\t"), start=1):
            if ":" not in spec:
                raise UserError(
                    f"{path}, line 1, column {column}: header field {spec!r} has no type; "
                    f"write it as name:type with type one of {', '.join(ATOMIC_TYPES)}"
                )
            name, kind = spec.rsplit(":", 1)
            if kind not in ATOMIC_TYPES:
                raise UserError(
                    f"{path}, line 1, column {column}: unknown field type {kind!r} in {spec!r}; "
                    f"use one of {', '.join(ATOMIC_TYPES)}"
                )
            names.append(name)
            types.append(kind)
        for required in (user_field, item_field):
            if required not in names:
                raise UserError(
                    f"{path}, line 1: missing column {required!r} (header has {', '.join(names)}); "
                    f"add a {required}:token column or set dataset.user_field / dataset.item_field"
                )
        columns: list[list[str]] = [[] for _ in names]
        width = len(names)
        for line_no, line in _text_lines(fh, path, start=2):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != width:
                raise UserError(
                    f"{path}, line {line_no}: malformed line with {len(parts)} tab-separated field(s), "
                    f"the header has {width}; fix or delete that line"
                )
            for column, value in zip(columns, parts, strict=True):
                column.append(value)
    if not columns[0]:
        raise UserError(f"{path}: the file has a header but no interactions; add interaction lines")

    def bad_number(name: str, values: list[str], convert) -> UserError:
        for offset, value in enumerate(values):
            try:
                convert(value)
            except ValueError:
                return UserError(
                    f"{path}, line {offset + 2}: {name}={value!r} is not a number; fix or delete that line"
                )
        return UserError(f"{path}: column {name!r} could not be read as numbers")

    floats: dict[str, np.ndarray] = {}
    for index, (name, kind) in enumerate(zip(names, types, strict=True)):
        if kind == "float":
            try:
                floats[name] = np.asarray(columns[index], dtype=np.float64)
            except ValueError:
                raise bad_number(name, columns[index], float) from None
        elif kind == "float_seq":
            try:
                [float(v) for value in columns[index] for v in value.split(" ") if v]
            except ValueError:
                raise bad_number(
                    name, columns[index], lambda x: [float(v) for v in x.split(" ") if v]
                ) from None
    for name in (user_field, item_field):
        values = columns[names.index(name)]
        for offset, value in enumerate(values):
            if not value.strip():
                raise UserError(f"{path}, line {offset + 2}: empty {name}; fix or delete that line")
    user, user_tokens = _densify(columns[names.index(user_field)])
    item, item_tokens = _densify(columns[names.index(item_field)])
    return Interactions(
        user=user,
        item=item,
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        rating=floats.get("rating"),
        timestamp=floats.get("timestamp"),
        source=path,
    )


def _text_lines(handle, path: str, start: int):
    """``(line number, line)`` of an open text file; bytes that are not UTF-8 name the line."""
    number = start
    try:
        for line in handle:
            yield number, line
            number += 1
    except UnicodeDecodeError:
        raise UserError(f"{path}, line {number}: not UTF-8 text; is it the right file?") from None


def _read_lightgcn_file(path: str) -> tuple[list[int], list[int]]:
    if not os.path.isfile(path):
        raise UserError(
            f"{path}: no such file; the LightGCN format needs train.txt and test.txt in dataset.root"
        )
    users: list[int] = []
    items: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in _text_lines(fh, path, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(p) for p in parts]
            except ValueError:
                raise UserError(
                    f"{path}, line {line_no}: malformed line {line.strip()[:60]!r}; each line must be "
                    "integer ids 'user item item ...'; fix or delete that line"
                ) from None
            if min(ids) < 0:
                raise UserError(f"{path}, line {line_no}: negative id; ids must be integers >= 0")
            users.extend([ids[0]] * (len(ids) - 1))
            items.extend(ids[1:])
    return users, items


def read_lightgcn_txt(root: str) -> tuple[Interactions, np.ndarray]:
    """Read ``<root>/train.txt`` and ``<root>/test.txt`` (LightGCN format: ``user item item ...``).

    Returns all interactions (ids as in the files, densified to ``0..max``) and a boolean array that is
    True for interactions of ``test.txt`` (the format's own fixed split).
    """
    train_u, train_i = _read_lightgcn_file(os.path.join(root, "train.txt"))
    test_u, test_i = _read_lightgcn_file(os.path.join(root, "test.txt"))
    if not train_u:
        raise UserError(f"{os.path.join(root, 'train.txt')}: no interactions; add 'user item ...' lines")
    user = np.asarray(train_u + test_u, dtype=np.int64)
    item = np.asarray(train_i + test_i, dtype=np.int64)
    is_test = np.zeros(len(user), bool)
    is_test[len(train_u) :] = True
    num_users, num_items = int(user.max()) + 1, int(item.max()) + 1
    return (
        Interactions(
            user=user,
            item=item,
            user_tokens=np.arange(num_users).astype(str),
            item_tokens=np.arange(num_items).astype(str),
            source=os.path.join(root, "train.txt"),
        ),
        is_test,
    )


def filter_by_rating(data: Interactions, threshold: float | None) -> Interactions:
    """Keep interactions with ``rating >= threshold`` (RecBole ``val_interval: {rating: [t, inf)}``)."""
    if threshold is None:
        return data
    if data.rating is None:
        raise UserError(
            f"{data.source}, line 1: dataset.rating_threshold={threshold} needs a rating:float column; "
            "add one or set dataset.rating_threshold=null"
        )
    return data.subset(data.rating >= float(threshold))


def k_core_filter(data: Interactions, user_k: int | None, item_k: int | None) -> Interactions:
    """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions (RecBole
    ``user_inter_num_interval: [k, inf)`` / ``item_inter_num_interval``), deduplicating pairs first.

    Raises UserError when the filter leaves no interaction (every user left empty).
    """
    # duplicated (user, item) pairs count once (RecBole removes duplicates by default: keep first)
    pairs = data.user * max(data.num_items, 1) + data.item
    _, first = np.unique(pairs, return_index=True)
    keep = np.zeros(len(data), bool)
    keep[first] = True
    record_skip(
        data.source or "interactions", "duplicate (user, item) rows (first kept)", len(data) - len(first)
    )
    user_k, item_k = int(user_k or 0), int(item_k or 0)
    while user_k > 1 or item_k > 1:
        user_counts = np.bincount(data.user[keep], minlength=data.num_users)
        item_counts = np.bincount(data.item[keep], minlength=data.num_items)
        bad = keep & ((user_counts[data.user] < user_k) | (item_counts[data.item] < item_k))
        if not bad.any():
            break
        keep &= ~bad
    if not keep.any():
        raise UserError(
            f"{data.source}: the {user_k}-core (users) / {item_k}-core (items) filter left every user empty; "
            "lower dataset.user_k_core / dataset.item_k_core (or check the file holds enough interactions)"
        )
    if keep.all():
        return data
    return data.subset(keep)


def split_per_user(
    user: np.ndarray, num_users: int, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 2020
) -> np.ndarray:
    """Per-user random split (RecBole ``order: RS``, ``group_by: user``): each user's interactions are
    shuffled and cut by ``ratios``. Returns the part index (0 = train, 1 = val, 2 = test) of each
    interaction.

    Counts follow RecBole's ``_calcu_split_ids``: ``int(r * n)`` for every part but the first, which
    takes the rest; a part with ``0 < r * n < 1`` still gets one interaction while the first keeps more
    than one.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    ratios = ratios / ratios.sum()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(user)), user))  # by user, random within a user
    counts = np.bincount(user, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(user), np.int64)
    rank[order] = np.arange(len(user)) - np.repeat(starts, counts)
    part_counts = np.floor(ratios[None, :] * counts[:, None]).astype(np.int64)
    part_counts[:, 0] = counts - part_counts[:, 1:].sum(1)
    for j in range(1, len(ratios)):  # RecBole: give a tiny part one interaction when possible
        exact = ratios[-j] * counts
        bump = (part_counts[:, 0] > 1) & (exact > 0) & (exact < 1)
        part_counts[bump, -j] += 1
        part_counts[bump, 0] -= 1
    bounds = np.cumsum(part_counts, axis=1)
    user_bounds = bounds[user]
    return (rank[:, None] >= user_bounds).sum(1).astype(np.int64)
