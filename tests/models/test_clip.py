"""The open_clip loader (runner.models.clip) on a randomly initialised model (``pretrained=None``,
a tiny architecture registered for the test): weights from a local file, FedSM's CLIP text encoder
through the fedsm_clip config, and the one-line errors that name the config key."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from hydra.utils import instantiate

from runner.errors import UserError
from runner.models.clip import load_open_clip
from runner.models.text import OpenCLIPTextEncoder

TINY = "runner-test-tiny-clip"
TINY_WIDE = "runner-test-tiny-clip-wide"
KEY = "fl_strategy.text_encoder.checkpoint"


def tiny_config(width: int) -> dict:
    return {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": width, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": 2, "layers": 1},
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomly initialised tiny CLIP (pretrained=None) saved as a local weight file."""
    folder = tmp_path_factory.mktemp("clip")
    for name, width in ((TINY, 32), (TINY_WIDE, 48)):
        (folder / f"{name}.json").write_text(json.dumps(tiny_config(width)))
        open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def test_weights_come_from_the_local_file(checkpoint):
    path, reference = checkpoint
    loaded = load_open_clip(TINY, path, config_key=KEY)
    for name, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert not loaded.training


def test_fedsm_clip_text_encoder_from_the_config(make_cfg, checkpoint):
    path, reference = checkpoint
    cfg = make_cfg(
        "experiment=fedsm_cifar10lt",
        "fl_strategy=fedsm_clip",
        f"fl_strategy.text_encoder.checkpoint={path}",
        f"fl_strategy.text_encoder.model_name={TINY}",
    )
    encoder = instantiate(cfg.fl_strategy.text_encoder)()
    assert isinstance(encoder, OpenCLIPTextEncoder)
    embeddings = encoder.encode(["cat", "dog", "pickup_truck"])
    assert embeddings.shape == (3, 16)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    tokens = open_clip.get_tokenizer(TINY)(["a photo of a pickup truck."])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_text(tokens), dim=-1)
    assert torch.allclose(embeddings[2], expected[0], atol=1e-5)


def test_missing_checkpoint_names_the_key(tmp_path, checkpoint):
    with pytest.raises(UserError, match=KEY.replace(".", r"\.")) as info:
        OpenCLIPTextEncoder(TINY, str(tmp_path / "nope.bin"))
    assert "fedsm.text_encoder" not in str(info.value)
    with pytest.raises(UserError, match="is not set"):
        load_open_clip(TINY, None, config_key=KEY)


def test_random_initialisation_only_when_allowed(checkpoint):
    model = load_open_clip(TINY, None, config_key="method.clip_checkpoint", allow_random_init=True)
    assert model.visual(torch.zeros(1, 3, 32, 32)).shape == (1, 16)


def test_wrong_architecture_and_unknown_name_are_one_line_errors(checkpoint):
    path, _ = checkpoint
    with pytest.raises(UserError) as info:
        load_open_clip(TINY_WIDE, path, config_key=KEY)
    message = str(info.value)
    assert "does not load into fl_strategy.text_encoder.model_name" in message and "\n" not in message
    with pytest.raises(UserError, match="unknown open_clip model fl_strategy.text_encoder.model_name"):
        load_open_clip("ViT-Nope", path, config_key=KEY)
