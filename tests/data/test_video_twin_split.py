"""The video twins' test share (``dataset.twin.test_fraction``): a larger test split at the same
training size, read back through the real HMDB51 split files; the default keeps its recipe hash."""

from __future__ import annotations

from collections import Counter

import pytest

from runner.data.video.readers import HMDB51Reader
from runner.data.video.synthetic import ProceduralVideoTwin
from runner.errors import UserError


def test_test_fraction_sets_the_hmdb_split_and_only_then_the_recipe(tmp_path):
    twin = ProceduralVideoTwin(
        "hmdb51", num_classes=2, clips_per_class=5, num_frames=2, size=16, test_fraction=0.6
    )
    reader = HMDB51Reader(root=twin.ensure(str(tmp_path / "hmdb")), split=1)
    assert Counter(r.label for r in reader.records("train")) == {0: 2, 1: 2}
    assert Counter(r.label for r in reader.records("test")) == {0: 3, 1: 3}
    default = ProceduralVideoTwin("hmdb51", num_classes=2, clips_per_class=5, num_frames=2, size=16)
    assert "test_fraction" not in default.recipe()  # the usual 70/30 twins keep their cached files
    assert default.recipe_hash() != twin.recipe_hash()
    with pytest.raises(UserError, match="test_fraction"):
        ProceduralVideoTwin("hmdb51", test_fraction=0.0)
