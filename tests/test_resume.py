"""Resume is exact with each family's default data loaders: N epochs straight == 1 epoch + resume.

The video twin's defaults are ``num_workers=2, persistent_workers=true``: the test keeps them (no
``num_workers=0``). What made it inexact, found by experiment, is documented in runner.data.loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runner.train import run

SHORT = [
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=csv",
]
# the video twin at its default loader settings (2 persistent workers), small clips and network
VIDEO = [
    "experiment=video_supervised_hmdb_twin",
    "dataset.twin.num_classes=4",
    "dataset.twin.clips_per_class=4",
    "dataset.twin.num_frames=8",
    "dataset.twin.size=32",
    "dataset.twin_geometry.batch_size=4",
    "model.width_factor=0.25",
    "model.depth_factor=0.2",
]
FAMILIES = {
    "video": VIDEO,
    "federated": [
        "experiment=fedavg_mnist",
        "dataset.twin.train_size=400",
        "dataset.twin.test_size=100",
        "dataset.num_clients=4",
        "dataset.rounds_per_epoch=2",
    ],
    "recsys": [
        "experiment=lightgcn_yelp",
        "dataset.synthetic=true",
        "dataset.twin.num_users=120",
        "dataset.twin.num_items=80",
        "dataset.twin.min_interactions=5",
        "dataset.twin.interactions_per_user=8",
        "dataset.user_k_core=5",
        "dataset.item_k_core=5",
        "dataset.twin_batch_size=64",
    ],
}
FAMILIES["recsys_sgl"] = ["experiment=sgl_yelp", *FAMILIES["recsys"][1:]]
# random temporal sampling in 2 persistent loader workers: every clip drawn from a (seed, epoch, sample) seed
FAMILIES["skeleton"] = [
    "experiment=skeleton_emotion_twin",
    "method=skeleton_stgcn",
    "dataset.temporal=uniform",
    "dataset.twin.num_gaits=64",
    "dataset.twin.num_persons=8",
    "dataset.num_frames=16",
    "dataset.batch_size=4",
    "dataset.num_workers=2",
    "dataset.persistent_workers=true",
]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def straight_vs_resumed(make_cfg, tmp_path: Path, family: list[str], epochs: int) -> None:
    base = [*family, *SHORT]
    straight = make_cfg(f"trainer.max_epochs={epochs}", *base, root=tmp_path / "straight")
    run(straight)
    first = make_cfg("trainer.max_epochs=1", *base, root=tmp_path / "first")
    run(first)
    first_ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
        f"trainer.max_epochs={epochs}", f"ckpt_path={first_ckpt}", *base, root=tmp_path / "resumed"
    )
    run(resumed)

    a = weights(Path(straight.paths.output_dir) / "checkpoints" / "last.ckpt")
    b = weights(Path(resumed.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    moved = weights(first_ckpt)
    assert any(not torch.equal(a[k], moved[k]) for k in a), "the later epochs must change the weights"
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    payload = json.loads((Path(resumed.paths.output_dir) / "metrics.json").read_text())
    assert payload["resumed_from"] == str(first_ckpt)


class _Keys(torch.utils.data.Dataset):
    """Returns each sampler key as is: what a worker was asked for, in order."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, key):
        return torch.tensor(key)


def _video_style_loader(owner, workers: int = 2) -> torch.utils.data.DataLoader:
    from runner.data.loading import fit_epoch, loader_generator
    from runner.data.video.datamodule import EpochSeededSampler

    return torch.utils.data.DataLoader(
        _Keys(),
        batch_size=4,
        sampler=EpochSeededSampler(12, seed=3, epoch=fit_epoch(owner)),
        num_workers=workers,
        persistent_workers=True,
        generator=loader_generator(3),
    )


def test_a_loader_built_after_a_restore_starts_at_the_resumed_epoch():
    """Fast variant of the resume test, at the loader level with 2 persistent workers, in Lightning's
    order (iterator first, ``set_epoch`` after): the resumed loader yields epoch 1's order, and creating
    iterators never touches the global RNG (dropout masks stay aligned)."""
    from types import SimpleNamespace

    def owner(epoch: int):
        progress = SimpleNamespace(current=SimpleNamespace(processed=epoch))
        return SimpleNamespace(trainer=SimpleNamespace(fit_loop=SimpleNamespace(epoch_progress=progress)))

    straight = _video_style_loader(owner(0))
    rng = torch.get_rng_state()
    # Lightning: the first epoch of a fit creates the iterator before set_epoch (so workers prefetch
    # indices of whatever epoch the sampler holds); later epochs call set_epoch first
    iterator = iter(straight)
    straight.sampler.set_epoch(0)
    epochs = [torch.cat(list(iterator)).tolist()]
    straight.sampler.set_epoch(1)
    epochs.append(torch.cat(list(iter(straight))).tolist())
    assert epochs[0] != epochs[1]
    resumed = _video_style_loader(owner(1))  # built after the checkpoint's loop state was restored
    iterator = iter(resumed)  # a resumed fit's first epoch: iterator first, too
    resumed.sampler.set_epoch(1)
    assert torch.cat(list(iterator)).tolist() == epochs[1]
    assert torch.equal(torch.get_rng_state(), rng)


def test_recsys_order_and_negatives_are_functions_of_seed_epoch_and_batch():
    """Fast variant of the recsys resume test: the epoch's permutation and a batch's negatives come from
    ``(seed, epoch, batch start)`` alone, whatever the global RNG did before; the recsys loaders create
    iterators without touching the global RNG (the models' own draws stay aligned on resume)."""
    from runner.data.recsys.datamodule import RangeBatches, RecsysDataModule
    from runner.data.recsys.negatives import ExactNegativeSampler
    from runner.methods.recsys import RecommenderModule

    module = RecommenderModule(torch.nn.Linear(1, 1), num_users=6, num_items=9, seed=3)
    sampler = ExactNegativeSampler(torch.tensor([0, 0, 1, 5]), torch.tensor([1, 2, 3, 8]), 6, 9)
    users = torch.arange(6).repeat(20)

    def draw(epoch: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(40, generator=module.seeded_generator(epoch))
        return order, sampler.sample(users, module.seeded_generator(epoch, start))

    order, negatives = draw(1, 64)
    torch.rand(1000)  # whatever the global stream did in between (a loader's base seed, dropout)
    again = draw(1, 64)
    assert torch.equal(order, again[0]) and torch.equal(negatives, again[1])
    assert not torch.equal(order, draw(2, 64)[0]) and not torch.equal(negatives, draw(1, 128)[1])
    other_seed = RecommenderModule(torch.nn.Linear(1, 1), num_users=6, num_items=9, seed=4)
    assert not torch.equal(order, torch.randperm(40, generator=other_seed.seeded_generator(1)))

    rng = torch.get_rng_state()
    for _ in range(3):
        list(iter(RecsysDataModule._loader(None, RangeBatches(10, 3))))
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.slow
def test_video_resume_is_exact_with_the_default_loaders(make_cfg, tmp_path):
    """3 epochs straight == 1 + resume to 3, with the video twin's 2 persistent loader workers (before
    the fix the resumed run re-drew epoch 0's order and augmentations in its first epoch)."""
    cfg = make_cfg(*VIDEO, root=tmp_path / "probe")
    assert cfg.dataset.num_workers == 2 and cfg.dataset.persistent_workers is True
    straight_vs_resumed(make_cfg, tmp_path, VIDEO, epochs=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "family",
    # recsys: the order and negatives are (seed, epoch, batch)-seeded (before, a resumed fit drew them
    # after the training iterator's base-seed draw from the global RNG, see runner.methods.recsys.module);
    # recsys_sgl: SGL's edge-dropout views come from the restored global RNG, which loader iterators
    # no longer touch
    # skeleton: before, a worker drew each clip's frames from its own global RNG
    ["federated", "recsys", "recsys_sgl", "skeleton"],
)
def test_resume_is_exact_for_every_family(make_cfg, tmp_path, family):
    straight_vs_resumed(make_cfg, tmp_path, FAMILIES[family], epochs=2)


def test_resume_auto_picks_last_checkpoint_of_the_task(make_cfg, tmp_path):
    fast = [*VIDEO, *SHORT, "dataset.num_workers=0"]  # which checkpoint, not loader exactness
    first = make_cfg("trainer.max_epochs=1", *fast, root=tmp_path)
    # a run folder of this task under the log dir, as Hydra lays them out
    first.paths.output_dir = str(Path(first.paths.log_dir) / first.task_name / "runs" / "earlier")
    run(first)
    again = make_cfg("trainer.max_epochs=2", "resume=auto", *fast, root=tmp_path)
    run(again)
    payload = json.loads((Path(again.paths.output_dir) / "metrics.json").read_text())
    assert payload["resumed_from"].endswith("runs/earlier/checkpoints/last.ckpt")
