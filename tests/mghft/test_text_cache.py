"""The frozen text encoder and its feature cache: computed once, invalidated by encoder or text changes."""

from __future__ import annotations

import json
import zlib

import pytest
import torch

from runner.data.stickers.text_features import FrozenTextEncoder, TextFeatureCache, entry_key
from runner.errors import UserError


class CountingEncoder(FrozenTextEncoder):
    """A FrozenTextEncoder over a fake model folder whose encode() counts the texts it encodes."""

    def __init__(self, model_dir, **kwargs):
        super().__init__(model_dir, **kwargs)
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded += list(texts)
        salt = zlib.crc32(self.fingerprint().encode())
        return torch.tensor(
            [[zlib.crc32(t.encode()) % 997, len(t), salt % 101] for t in texts], dtype=torch.float32
        )


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 3, "num_hidden_layers": 6}))
    (folder / "model.safetensors").write_bytes(b"weights-v1")
    return folder


ITEMS = [("t/a.png", "intention", "happy"), ("t/a.png", "style", "bright"), ("t/b.png", "intention", "sad")]


def test_features_are_computed_once_and_reused(tmp_path, model_dir):
    encoder = CountingEncoder(str(model_dir))
    first = TextFeatureCache(tmp_path / "cache", encoder).features(ITEMS)
    assert encoder.encoded == ["happy", "bright", "sad"] and first.shape == (3, 3)
    again = CountingEncoder(str(model_dir))  # a new process: same files, same recipe
    second = TextFeatureCache(tmp_path / "cache", again).features(list(reversed(ITEMS)))
    assert again.encoded == []
    torch.testing.assert_close(second, first.flip(0))


def test_a_changed_text_is_a_new_entry_and_only_it_is_encoded(tmp_path, model_dir):
    encoder = CountingEncoder(str(model_dir))
    TextFeatureCache(tmp_path / "cache", encoder).features(ITEMS)
    edited = [*ITEMS[:2], ("t/b.png", "intention", "very sad")]
    later = CountingEncoder(str(model_dir))
    cache = TextFeatureCache(tmp_path / "cache", later)
    feats = cache.features(edited)
    assert later.encoded == ["very sad"] and cache.last_encoded == 1
    assert feats[2, 1] == len("very sad")
    assert entry_key("t/b.png", "intention", "sad") != entry_key("t/b.png", "intention", "very sad")
    assert entry_key("t/b.png", "intention", "sad") != entry_key("t/b.png", "style", "sad")


@pytest.mark.parametrize("change", ["weights", "config", "layers", "max_length"])
def test_a_changed_encoder_never_reads_the_old_features(tmp_path, model_dir, change):
    old = CountingEncoder(str(model_dir))
    old_feats = TextFeatureCache(tmp_path / "cache", old).features(ITEMS)
    kwargs = {}
    if change == "weights":
        (model_dir / "model.safetensors").write_bytes(b"weights-v2")
    elif change == "config":
        (model_dir / "config.json").write_text(json.dumps({"hidden_size": 3, "num_hidden_layers": 6, "x": 1}))
    elif change == "layers":
        kwargs["layers"] = 2
    else:
        kwargs["max_length"] = 64
    new = CountingEncoder(str(model_dir), **kwargs)
    assert new.fingerprint() != old.fingerprint()
    cache = TextFeatureCache(tmp_path / "cache", new)
    new_feats = cache.features(ITEMS)
    assert new.encoded == ["happy", "bright", "sad"]
    assert not torch.equal(new_feats, old_feats)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one store per encoder


def test_a_damaged_store_is_rebuilt(tmp_path, model_dir):
    encoder = CountingEncoder(str(model_dir))
    cache = TextFeatureCache(tmp_path / "cache", encoder)
    cache.features(ITEMS)
    cache.file.write_bytes(b"garbage")
    again = CountingEncoder(str(model_dir))
    TextFeatureCache(tmp_path / "cache", again).features(ITEMS)
    assert len(again.encoded) == 3


def test_encoder_folder_errors_are_one_line(tmp_path, model_dir):
    with pytest.raises(UserError, match="has no config.json"):
        FrozenTextEncoder(str(tmp_path))
    with pytest.raises(UserError, match="layers=9"):
        FrozenTextEncoder(str(model_dir), layers=9)


def test_minilm_default_encodes_mean_of_last_layers():
    encoder = FrozenTextEncoder(layers=4, device="cpu")
    assert encoder.dim == 384
    feats = encoder.encode(["a happy cat jumping", "a sad cat crying", "a happy cat jumping"])
    assert feats.shape == (3, 384) and feats.dtype == torch.float32
    torch.testing.assert_close(feats[0], feats[2])
    assert not torch.allclose(feats[0], feats[1])
    last_only = FrozenTextEncoder(layers=1, device="cpu").encode(["a happy cat jumping"])
    assert not torch.allclose(last_only[0], feats[0])
