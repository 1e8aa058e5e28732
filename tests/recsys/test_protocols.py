"""Each NLGCL dataset's protocol (official ``properties/*.yaml``), read from its dataset config and
applied by the real reader to a hand-made ``.inter``, against a brute-force filter written here."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from runner.compose import compose_run_config

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def brute_force(rows: list[tuple[str, str, float]], threshold: float | None, k: int) -> set[tuple[str, str]]:
    """Rating filter first (RecBole's val_interval), then the iterative user / item k-core."""
    kept = {(u, i) for u, i, r in rows if threshold is None or r >= threshold}
    while True:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        for u, i in kept:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        bad = {(u, i) for u, i in kept if users[u] < k or items[i] < k}
        if not bad:
            return kept
        kept -= bad


def hand_made(k: int) -> list[tuple[str, str, float]]:
    """A dense block of ``k + 1`` users x ``k + 1`` items rated 4, one extra user and item at the
    k-core edge, and low ratings that only the rating filter removes: user ``edge`` has exactly ``k``
    interactions of which one is rated 2, so it survives the k-core alone but not rating >= 3 first."""
    rows = [(f"u{a}", f"i{b}", 4.0) for a in range(k + 1) for b in range(k + 1)]
    rows += [("edge", f"i{b}", 4.0) for b in range(k - 1)] + [("edge", f"i{k}", 2.0)]
    rows += [(f"u{a}", "rare", 5.0) for a in range(k - 1)]  # item with k - 1 interactions: dropped
    rows += [("u0", "low", 1.0)] + [(f"u{a}", "low", 4.0) for a in range(1, k)]  # k, one of them rated 1
    return rows


def load(name: str, rows, root: Path, tmp_path: Path):
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{i}\t{r}\t{t}\n" for t, (u, i, r) in enumerate(rows)]
    (root / f"{name}.inter").write_text(HEADER + "".join(lines))
    cfg = compose_run_config(
        [f"experiment=nlgcl_{name}", f"dataset.root={root}", "dataset.synthetic=false"],
        output_dir=tmp_path / "run",
        root_dir=Path(__file__).resolve().parents[2],
        data_dir=tmp_path / "data",
    )
    return cfg.dataset, instantiate(cfg.dataset)


@pytest.mark.parametrize(
    ("name", "threshold", "k"),
    [("yelp", 3, 15), ("qb_video", None, 5), ("pinterest", None, 5), ("alibaba", None, 0)],
)
def test_dataset_protocol_on_a_hand_made_inter(name, threshold, k, tmp_path):
    rows = hand_made(max(k, 3))
    config, dm = load(name, rows, tmp_path / name, tmp_path)
    assert config.rating_threshold == threshold
    assert (config.user_k_core or 0) == k and (config.item_k_core or 0) == k
    want = brute_force(rows, threshold, k)
    stats = dm.split.stats()
    assert stats["num_interactions"] == len(want)
    assert stats["num_users"] == len({u for u, _ in want}) and stats["num_items"] == len({i for _, i in want})
    if name == "yelp":  # the order matters: k-core first would have kept "edge" and "low"
        assert len(
            brute_force([(u, i, r) for u, i, r in rows if (u, i) in brute_force(rows, None, k)], 3, 0)
        ) > len(want)
        assert config.warmup_epochs == 40
    else:
        assert config.warmup_epochs == 30


def test_real_statistics_are_the_papers_and_the_twin_has_its_own(tmp_path):
    published = {
        "yelp": (45477, 30708, 1777765),
        "pinterest": (55188, 9912, 1445622),
        "qb_video": (30324, 25731, 1581136),
        "alibaba": (300001, 81615, 1607813),
    }
    for name, (users, items, interactions) in published.items():
        cfg = compose_run_config(
            [f"experiment=nlgcl_{name}"],
            output_dir=tmp_path / name,
            root_dir=Path(__file__).resolve().parents[2],
            data_dir=tmp_path / "data",
        )
        assert dict(cfg.dataset.expected) == {
            "num_users": users,
            "num_items": items,
            "num_interactions": interactions,
        }
        twin = dict(cfg.dataset.twin_expected)
        assert (
            twin["num_users"] <= cfg.dataset.twin.num_users
            and twin["num_items"] <= cfg.dataset.twin.num_items
        )


def test_the_yelp_twin_matches_its_expected_statistics(tmp_path, caplog):
    cfg = compose_run_config(
        ["experiment=nlgcl_yelp", "dataset.synthetic=true"],
        output_dir=tmp_path / "run",
        root_dir=Path(__file__).resolve().parents[2],
        data_dir=tmp_path / "data",
    )
    with caplog.at_level("WARNING", logger="runner.data"):
        dm = instantiate(cfg.dataset)
    assert dm.split.stats() == dict(cfg.dataset.twin_expected)
    assert not [r for r in caplog.records if "after filtering" in r.getMessage()]
