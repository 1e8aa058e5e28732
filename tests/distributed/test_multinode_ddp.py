"""Multi-node Lightning DDP for real: two torchrun "nodes" on localhost (``--nnodes=2
--nproc-per-node=1``, c10d rendezvous, gloo) run ``trainer=ddp_multinode`` for a supervised twin
experiment and a distillation experiment whose teachers are trained on first use. Each must train,
leave one set of checkpoints and one ``metrics.json`` (rank 0) in the shared run folder, and end with
the weights of the same command under ``trainer=ddp_sim`` (2 spawned CPU processes).

Every process runs one torch thread (``OMP_NUM_THREADS=1``: ``trainer=ddp_sim``'s spawned workers
do not apply ``torch_threads``). The teachers are trained by the torchrun run (rank 0) and reused
from the cache by the ``ddp_sim`` run; a teacher's training draws nothing from the run's random
stream, so both runs train the student on the same batches. Tolerance ``atol=1e-4``: gloo's
all-reduce and the launchers differ, the math does not."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_MODEL, TINY_TWIN, run_cli

pytestmark = pytest.mark.slow

COMMON = ["debug=limit", "trainer.max_epochs=1", "torch_threads=1", *TINY_TWIN]
EXPERIMENTS = {
    "supervised": ["experiment=video_supervised_hmdb_twin", *COMMON, *TINY_MODEL],
    "distillation": [
        "experiment=dual_teacher_hmdb_twin",
        *COMMON,
        "student.width_factor=0.25",
        "student.depth_factor=0.2",
        "method.teachers.cnn.net.width_factor=0.25",
        "method.teachers.cnn.net.depth_factor=0.2",
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_nodes(overrides: list[str], root: Path, data_dir: Path, run_dir: Path) -> list[str]:
    """Start both "nodes" (one torchrun each, as on two machines) and wait; returns their outputs."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id=runner-{port}",
        "--max-restarts=0",
        "-m",
        "runner",
        *overrides,
        "trainer=ddp_multinode",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
    ]
    env = {**os.environ, "RUNNER_ROOT": str(root), "WANDB_MODE": "offline", "MASTER_ADDR": "127.0.0.1"}
    env.pop("HYDRA_FULL_ERROR", None)
    nodes = [
        subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for node in nodes:
            out, _ = node.communicate(timeout=1500)
            outputs.append(out)
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    for node, out in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, out[-5000:]
    return outputs


def net_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


@pytest.mark.parametrize("kind", sorted(EXPERIMENTS))
def test_torchrun_two_nodes_matches_ddp_sim(kind, tmp_path, data_dir, monkeypatch):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    # one torch thread in every process (ddp_sim's spawned workers do not apply torch_threads=1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    overrides = EXPERIMENTS[kind]
    root = tmp_path / "multinode"
    root.mkdir()
    run_dir = root / "run"
    outputs = torchrun_two_nodes(overrides, root, data_dir, run_dir)

    # one set of results, from rank 0, in the shared run folder, and nothing elsewhere
    checkpoints = sorted(p.relative_to(root) for p in root.rglob("*.ckpt"))
    assert checkpoints and all(p.parts[0] == "run" for p in checkpoints), checkpoints
    assert len(list(root.rglob("metrics.json"))) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    losses = [v for k, v in metrics.items() if k.startswith("train/loss")]
    assert "test/acc" in metrics and losses and all(math.isfinite(v) for v in losses), metrics
    if kind == "distillation":
        # the teachers were trained once, on rank 0, and the other rank used its checkpoints
        text = "\n".join(outputs) + (run_dir / "debug.log").read_text()
        assert "training it with the supervised recipe" in text
        assert "using the checkpoint rank 0 trained" in text

    reference = tmp_path / "ddp_sim"
    reference.mkdir()
    # fit only: under ddp_spawn, Lightning's CSV logger in the test workers cannot extend the
    # metrics.csv the fit workers wrote (a Lightning limitation); the weights are fit's
    result = run_cli(
        [*overrides, "trainer=ddp_sim", "test=false"], cwd=reference, data_dir=data_dir, timeout=1500
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (expected,) = reference.glob("logs/*/runs/*/checkpoints/last.ckpt")
    ours, theirs = net_weights(run_dir / "checkpoints" / "last.ckpt"), net_weights(expected)
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-4, msg=name)
