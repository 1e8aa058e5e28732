"""Readers, filters, per-user split and the synthetic twin of runner.data.recsys on tiny fixtures."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from runner.data.recsys import (
    RecsysDataModule,
    RecsysTwin,
    filter_by_rating,
    k_core_filter,
    read_atomic_inter,
    read_lightgcn_txt,
    split_per_user,
)
from runner.errors import UserError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_atomic_reader_parses_tokens_ratings_and_timestamps(tmp_path):
    path = write(tmp_path / "toy.inter", HEADER + "u2\ti9\t4\t100\nu1\ti9\t2.5\t50\nu2\ti3\t5\t70\n")
    data = read_atomic_inter(path)
    assert data.num_users == 2 and data.num_items == 2 and len(data) == 3
    assert list(data.user_tokens[data.user]) == ["u2", "u1", "u2"]
    assert list(data.item_tokens[data.item]) == ["i9", "i9", "i3"]
    np.testing.assert_allclose(data.rating, [4, 2.5, 5])
    np.testing.assert_allclose(data.timestamp, [100, 50, 70])


def test_atomic_reader_without_optional_columns(tmp_path):
    data = read_atomic_inter(write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n3\t2\n"))
    assert data.rating is None and data.timestamp is None and data.num_items == 1


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("user_id:token\titem_id:tokn\n1\t2\n", ["line 1", "unknown field type 'tokn'", "token, token_seq"]),
        (
            "user_id:token\trating:float\n1\t2\n",
            ["line 1", "missing column 'item_id'", "add a item_id:token"],
        ),
        (HEADER + "1\t2\t3\t4\n1\t3\t5\n", ["line 3", "malformed line", "fix or delete"]),
        (HEADER + "1\t2\t3\t4\n1\t3\tgood\t5\n", ["line 3", "rating='good' is not a number"]),
        ("user_id\titem_id:token\n1\t2\n", ["line 1", "has no type"]),
        (HEADER, ["no interactions"]),
    ],
)
def test_atomic_reader_errors_name_file_line_and_fix(tmp_path, text, needles):
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(UserError) as info:
        read_atomic_inter(path)
    message = str(info.value)
    assert path in message
    for needle in needles:
        assert needle in message


def test_k_core_filter_is_iterative_and_deduplicates(tmp_path):
    # c has 1 item (falls) → z keeps only b (falls) → b keeps only x (falls); a-x is duplicated
    lines = ["a\tx", "a\ty", "a\tx", "b\tx", "b\tz", "c\tz", "d\tx", "d\ty"]
    path = write(tmp_path / "k.inter", "user_id:token\titem_id:token\n" + "\n".join(lines) + "\n")
    data = read_atomic_inter(path)
    kept = k_core_filter(data, user_k=2, item_k=2)
    pairs = sorted(zip(kept.user_tokens[kept.user], kept.item_tokens[kept.item], strict=True))
    assert pairs == [("a", "x"), ("a", "y"), ("d", "x"), ("d", "y")]


def test_k_core_filter_that_empties_every_user_is_a_user_error(tmp_path):
    path = write(tmp_path / "k.inter", "user_id:token\titem_id:token\n1\t1\n2\t2\n")
    with pytest.raises(UserError, match=r"k\.inter.*left every user empty.*lower dataset\.user_k_core"):
        k_core_filter(read_atomic_inter(path), 5, 5)


def test_rating_threshold(tmp_path):
    path = write(tmp_path / "r.inter", HEADER + "1\t1\t1\t0\n1\t2\t4\t0\n2\t2\t3\t0\n")
    data = filter_by_rating(read_atomic_inter(path), 3)
    assert len(data) == 2 and data.num_users == 2 and data.num_items == 1
    no_rating = write(tmp_path / "n.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(UserError, match="rating_threshold"):
        filter_by_rating(read_atomic_inter(no_rating), 3)


def test_split_per_user_follows_recbole_counts_and_seed():
    counts = [10, 3, 2, 1, 25]
    user = np.repeat(np.arange(len(counts)), counts)
    parts = split_per_user(user, len(counts), (0.8, 0.1, 0.1), seed=7)
    per_user = [np.bincount(parts[user == u], minlength=3).tolist() for u in range(len(counts))]
    # RecBole _calcu_split_ids: int(r*n) for val/test, the rest train; tiny parts get one if train keeps >1
    assert per_user == [[8, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 0], [21, 2, 2]]
    np.testing.assert_array_equal(parts, split_per_user(user, len(counts), (0.8, 0.1, 0.1), seed=7))
    assert not np.array_equal(parts, split_per_user(user, len(counts), (0.8, 0.1, 0.1), seed=8))


def test_lightgcn_reader_and_its_errors(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2 3\n1 0 2\n")
    (tmp_path / "test.txt").write_text("0 4\n1 3\n")
    data, is_test = read_lightgcn_txt(str(tmp_path))
    assert data.num_users == 2 and data.num_items == 5 and len(data) == 7
    assert is_test.tolist() == [False] * 5 + [True] * 2
    (tmp_path / "test.txt").write_text("0 4\n1 x\n")
    with pytest.raises(UserError, match=r"test\.txt, line 2: malformed line"):
        read_lightgcn_txt(str(tmp_path))


def test_lightgcn_format_datamodule_keeps_the_file_test_set(tmp_path):
    rng = np.random.default_rng(0)
    train = "\n".join(f"{u} " + " ".join(map(str, rng.choice(30, 12, replace=False))) for u in range(20))
    (tmp_path / "train.txt").write_text(train + "\n")
    (tmp_path / "test.txt").write_text("\n".join(f"{u} {30 + u % 5}" for u in range(20)) + "\n")
    dm = RecsysDataModule("toy", root=str(tmp_path), format="lightgcn")
    assert dm.split.test.shape[1] == 20 and bool((dm.split.test[1] >= 30).all())
    assert dm.split.val.shape[1] > 0 and dm.split.train.shape[1] + dm.split.val.shape[1] == 240


def test_missing_root_names_the_path_and_the_twin(tmp_path):
    with pytest.raises(UserError, match=r"yelp\.inter.*dataset\.synthetic=true"):
        RecsysDataModule("yelp", root=str(tmp_path / "nowhere"))


def test_expected_statistics_mismatch_is_warned(tmp_path, caplog):
    write(tmp_path / "toy.inter", HEADER + "".join(f"{u}\t{i}\t5\t0\n" for u in range(6) for i in range(5)))
    with caplog.at_level(logging.WARNING, logger="runner.data"):
        dm = RecsysDataModule("toy", root=str(tmp_path), expected={"num_users": 6, "num_items": 99})
    assert dm.num_users == 6 and dm.num_items == 5
    warned = [r.getMessage() for r in caplog.records if "num_items=5" in r.getMessage()]
    assert warned and "99" in warned[0]
    assert not any("num_users" in r.getMessage() for r in caplog.records)


def test_twin_is_cached_and_regenerated_when_the_recipe_changes(tmp_path):
    root = tmp_path / "twin"
    twin = RecsysTwin(
        "toy", num_users=80, num_items=60, num_communities=4, interactions_per_user=12, min_interactions=5
    )
    twin.ensure(str(root))
    path = root / "toy.inter"
    first = path.read_text()
    stamp = os.stat(path).st_mtime_ns
    twin.ensure(str(root))
    assert os.stat(path).st_mtime_ns == stamp
    other = RecsysTwin(
        "toy",
        num_users=80,
        num_items=60,
        num_communities=4,
        interactions_per_user=12,
        min_interactions=5,
        seed=1,
    )
    beside = other.ensure(str(root))
    assert path.read_text() == first  # the first twin is left as it was
    path = os.path.join(beside, "toy.inter")
    assert open(path).read() != first
    data = read_atomic_inter(str(path))
    assert data.num_users == 80 and data.rating is not None and len(data) >= 80 * 5


def test_twin_has_popularity_skew_and_refuses_foreign_folders(tmp_path):
    twin = RecsysTwin("toy", num_users=400, num_items=300, interactions_per_user=20, min_interactions=10)
    user, item, rating, _ = twin.sample()
    counts = np.sort(np.bincount(item, minlength=300))[::-1]
    assert counts[:30].sum() > 0.2 * counts.sum()  # top 10 % of the items: well over 10 % of the clicks
    assert len(np.unique(user * 300 + item)) == len(user)  # no duplicate pair
    assert set(np.unique(rating)) <= {1, 2, 3, 4, 5}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="refusing"):
        twin.ensure(str(foreign))


def test_datamodule_exposes_sizes_graph_and_index_range_batches(tmp_path):
    twin = RecsysTwin(
        "toy", num_users=50, num_items=40, num_communities=3, interactions_per_user=10, min_interactions=5
    )
    dm = RecsysDataModule(
        "toy",
        synthetic=True,
        synthetic_root=str(tmp_path / "t"),
        twin=twin,
        batch_size=4096,
        twin_batch_size=64,
        eval_batch_users=16,
    )
    kwargs = dm.network_kwargs()
    assert kwargs["num_users"] == 50 and kwargs["num_items"] == dm.num_items
    assert kwargs["train_graph"].shape[0] == 2 and kwargs["train_graph"].dtype == torch.long
    batches = list(dm.train_dataloader())
    assert batches[0] == {"start": 0, "end": 64}
    assert batches[-1]["end"] == dm.split.train.shape[1]
    assert [b["start"] for b in dm.val_dataloader()] == [0, 16, 32, 48]
    total = sum(p.shape[1] for p in dm.split.parts.values())
    assert abs(dm.split.val.shape[1] / total - 0.1) < 0.05


def test_ddp_evaluation_chunks_cover_every_user_once(tmp_path):
    from types import SimpleNamespace

    from lightning.fabric.utilities.data import has_iterable_dataset

    twin = RecsysTwin(
        "toy", num_users=50, num_items=40, num_communities=3, interactions_per_user=10, min_interactions=5
    )
    dm = RecsysDataModule(
        "toy", synthetic=True, synthetic_root=str(tmp_path / "t"), twin=twin, eval_batch_users=7
    )
    single = list(dm.val_dataloader())
    assert not has_iterable_dataset(dm.val_dataloader())
    covered = []
    for rank in range(3):  # 8 chunks over 3 ranks: 3 + 3 + 2, no padding with repeated chunks
        dm.trainer = SimpleNamespace(world_size=3, global_rank=rank)
        loader = dm.test_dataloader()
        assert has_iterable_dataset(loader)  # Lightning then injects no DistributedSampler
        chunks = list(loader)
        assert len(chunks) == len(loader.dataset)
        covered += chunks
    assert sorted(covered, key=lambda b: b["start"]) == single
    users = [u for b in covered for u in range(b["start"], b["end"])]
    assert sorted(users) == list(range(dm.num_users))
