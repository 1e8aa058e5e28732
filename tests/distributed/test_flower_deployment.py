"""A real Flower deployment on loopback: a SuperLink and two SuperNodes as separate processes
(``python -m runner.flower superlink|supernode``), 3 rounds of FedAvg on the MNIST twin with its two
clients split between the nodes (``python -m runner.flower run``), the same weights as the in-process
run, and a clean shutdown (no process left, ports free).

``--insecure`` here only: the documented recipe (README "Beyond one machine") uses TLS certificates
and SuperNode authentication (``python -m runner.flower certs|register``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

OVERRIDES = [
    "experiment=fedavg_mnist",
    "dataset.num_clients=2",
    "trainer.max_epochs=1",
    "dataset.rounds_per_epoch=3",
    "torch_threads=1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.")}


def test_superlink_and_two_supernodes_on_loopback(tmp_path, data_dir):
    pytest.importorskip("flwr")
    psutil = pytest.importorskip("psutil")
    home = tmp_path / ".flower"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    flower = [sys.executable, "-m", "runner.flower"]
    link_port, node_ports = free_port(), [free_port(), free_port()]
    superlink = f"127.0.0.1:{link_port}"
    started: list[subprocess.Popen] = []
    logs = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed at the end
        logs.append(log)
        proc = subprocess.Popen(
            [*flower, *args, "--insecure", "--home", str(home)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    tree: set[int] = set()
    try:
        start("superlink", ["superlink", "--port", str(link_port)])
        wait_for_port(link_port, 120)
        for i, port in enumerate(node_ports):
            start(
                f"supernode{i}",
                ["supernode", "--superlink", superlink, "--partition-id", str(i), "--num-partitions", "2"]
                + ["--port", str(port)],
            )
        out = tmp_path / "flower_run"
        run = subprocess.run(
            [*flower, "run", "--insecure", "--home", str(home), "--superlink", superlink]
            + [
                "--root-dir",
                str(tmp_path),
                "--data-dir",
                str(data_dir),
                "--output-dir",
                str(out),
                "--",
                *OVERRIDES,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert (out / "metrics.json").is_file()
        for proc in started:  # every Flower process these commands started, helpers included
            tree.add(proc.pid)
            tree.update(child.pid for child in psutil.Process(proc.pid).children(recursive=True))
        assert len(tree) > len(started)  # SuperExec helpers were started (and must go too)
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for log in logs:
            log.close()

    # no orphans: Flower's helpers exit when their parent has gone (they poll it)
    deadline = time.monotonic() + 60
    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(1)
        alive = [
            p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
    leftovers = [" ".join(psutil.Process(p).cmdline()[:3]) for p in alive]
    for p in alive:  # do not leave them to the next test either
        os.kill(p, signal.SIGKILL)
    assert not leftovers, f"processes left running: {leftovers}"
    for port in (link_port, *node_ports):
        assert port_is_free(port), f"port {port} still bound"

    # the federation's result is the in-process run's
    reference = tmp_path / "inprocess"
    reference.mkdir()
    result = run_cli(OVERRIDES, cwd=reference, data_dir=data_dir, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (expected,) = reference.glob("logs/*/runs/*/checkpoints/last.ckpt")
    ours, theirs = weights(expected), weights(out / "checkpoints" / "last.ckpt")
    for name in ours:
        torch.testing.assert_close(theirs[name], ours[name], rtol=0, atol=0, msg=name)
