"""runner.data.twin.CachedTwin: generate once, regenerate on a new recipe, never clobber foreign data."""

from __future__ import annotations

import os

import pytest

from runner.data.twin import CachedTwin
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


def test_new_recipe_regenerates(tmp_path):
    root = CountingTwin(3).ensure(str(tmp_path / "twin"))
    other = CountingTwin(4)
    other.ensure(root)
    assert other.writes == 1
    assert open(os.path.join(root, "data.txt")).read() == "4"


def test_refuses_to_overwrite_a_folder_that_is_not_a_twin(tmp_path):
    foreign = tmp_path / "real_data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing"):
        CountingTwin(1).ensure(str(foreign))
    assert (foreign / "precious.txt").read_text() == "keep me"
