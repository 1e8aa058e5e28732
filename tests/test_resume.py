"""Resume: 2 epochs straight == 1 epoch + resume for 1 epoch (same weights), and resume=auto."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from runner.train import run
from tests.conftest import TINY_MODEL, TINY_TWIN

SHORT = [
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=csv",
]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_equivalence(make_cfg, tmp_path):
    straight = make_cfg("trainer.max_epochs=2", *SHORT, *TINY_TWIN, *TINY_MODEL, root=tmp_path / "straight")
    run(straight)
    first = make_cfg("trainer.max_epochs=1", *SHORT, *TINY_TWIN, *TINY_MODEL, root=tmp_path / "first")
    run(first)
    first_ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
        "trainer.max_epochs=2",
        f"ckpt_path={first_ckpt}",
        *SHORT,
        *TINY_TWIN,
        *TINY_MODEL,
        root=tmp_path / "resumed",
    )
    run(resumed)

    a = weights(Path(straight.paths.output_dir) / "checkpoints" / "last.ckpt")
    b = weights(Path(resumed.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    moved = weights(first_ckpt)
    assert any(not torch.equal(a[k], moved[k]) for k in a), "the second epoch must change the weights"
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert json.loads((Path(resumed.paths.output_dir) / "metrics.json").read_text())["resumed_from"] == str(
        first_ckpt
    )


def test_resume_auto_picks_last_checkpoint_of_the_task(make_cfg, tmp_path):
    first = make_cfg("trainer.max_epochs=1", *SHORT, *TINY_TWIN, *TINY_MODEL, root=tmp_path)
    # a run folder of this task under the log dir, as Hydra lays them out
    first.paths.output_dir = str(Path(first.paths.log_dir) / first.task_name / "runs" / "earlier")
    run(first)
    again = make_cfg("trainer.max_epochs=2", "resume=auto", *SHORT, *TINY_TWIN, *TINY_MODEL, root=tmp_path)
    run(again)
    payload = json.loads((Path(again.paths.output_dir) / "metrics.json").read_text())
    assert payload["resumed_from"].endswith("runs/earlier/checkpoints/last.ckpt")
