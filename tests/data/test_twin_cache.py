"""runner.data.twin.CachedTwin: generate once, a new recipe beside the old twin, never clobber foreign data."""

from __future__ import annotations

import os

import pytest

from runner.data.twin import CachedTwin, variant_root
from runner.errors import UserError


class CountingTwin(CachedTwin):
    def __init__(self, value: int):
        self.value = value
        self.writes = 0

    def recipe(self) -> dict:
        return {"version": 1, "value": self.value}

    def write(self, out: str) -> None:
        self.writes += 1
        with open(os.path.join(out, "data.txt"), "w") as fh:
            fh.write(str(self.value))


def test_generates_once_then_reuses(tmp_path):
    twin = CountingTwin(3)
    root = twin.ensure(str(tmp_path / "twin"))
    assert twin.ensure(root) == root
    assert twin.writes == 1
    assert open(os.path.join(root, "data.txt")).read() == "3"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "no temp folder left behind"


def test_a_new_recipe_goes_beside_the_old_twin_which_is_never_changed(tmp_path):
    """Two recipes asked for in turn (two runs of different twin sizes at once) each get their own
    folder, generated once; the first twin's files are never touched, so a run still reading them
    cannot be handed the other recipe's files."""
    first = CountingTwin(3)
    root = first.ensure(str(tmp_path / "twin"))
    stamp = os.stat(os.path.join(root, "data.txt")).st_mtime_ns
    other = CountingTwin(4)
    beside = other.ensure(root)
    assert beside == variant_root(root, other.recipe_hash()) and beside.startswith(root + "-")
    for _ in range(2):
        assert first.ensure(root) == root and other.ensure(root) == beside
    assert first.writes == 1 and other.writes == 1
    assert open(os.path.join(root, "data.txt")).read() == "3"
    assert os.stat(os.path.join(root, "data.txt")).st_mtime_ns == stamp
    assert open(os.path.join(beside, "data.txt")).read() == "4"
    assert other.ensure(beside) == beside  # asked for at its own folder: found there
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in (root, beside))


def test_a_race_lost_to_another_recipe_installs_beside_it(tmp_path):
    """Another process installs a different recipe at the root while this one generates: this twin
    goes beside it instead of replacing it."""
    root = str(tmp_path / "twin")
    rival = CountingTwin(5)

    class RacingTwin(CountingTwin):
        def write(self, out: str) -> None:
            rival.ensure(root)  # lands first, while this one is still writing
            super().write(out)

    mine = RacingTwin(6)
    where = mine.ensure(root)
    assert where == variant_root(root, mine.recipe_hash())
    assert open(os.path.join(root, "data.txt")).read() == "5"
    assert open(os.path.join(where, "data.txt")).read() == "6"


def test_refuses_to_overwrite_a_folder_that_is_not_a_twin(tmp_path):
    foreign = tmp_path / "real_data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing"):
        CountingTwin(1).ensure(str(foreign))
    assert (foreign / "precious.txt").read_text() == "keep me"
