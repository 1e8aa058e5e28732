"""Skeleton-emotion speed, as ratios against baselines timed in the same run:

1. ST-GCN training throughput (sequences / s of forward + backward + Adam step) at batch ``--batch-size``
   against a per-sample loop (the same sequences one at a time);
2. STEP's 27 affective features, batched (:func:`runner.data.skeleton.affective.affective_features`
   over padded batches, as the datamodule computes them) against a per-sample Python loop over
   frames in STEP's style (``compute_aff_features``: one NumPy call per frame and feature) and against
   calling the batched function once per sample.

    .venv/bin/python experiments/perf/skeleton.py                          # CPU, one torch thread
    .venv/bin/python experiments/perf/skeleton.py --device cuda --precision bf16 --batch-size 256

Inputs are twin gaits (:func:`runner.data.skeleton.twin.generate_gaits`, 16 E-Gait joints). The
network is the twin-sized ST-GCN of ``experiment=skeleton_emotion_twin`` (``--full`` for the paper's
ten blocks). On CUDA, training runs under ``torch.autocast(bfloat16)`` with ``--precision bf16`` and
times are taken after ``torch.cuda.synchronize()``.

Every time is the best of ``--repeats`` runs. On CPU both wall seconds and CPU seconds of the process
(``time.process_time``) are taken; with one torch thread on a shared machine the CPU seconds are the
work done and barely depend on other jobs, so ratios use them (wall seconds are printed beside). The
numbers, machine, load average and command go to ``--out`` (markdown) when given.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from runner.data.skeleton.affective import affective_features  # noqa: E402
from runner.data.skeleton.datamodule import batched_affective_features  # noqa: E402
from runner.data.skeleton.layouts import EGAIT16  # noqa: E402
from runner.data.skeleton.twin import generate_gaits  # noqa: E402
from runner.models.skeleton import STGCN  # noqa: E402

DT = 1 / 30


def timed(fn, repeats: int, device: str) -> tuple[float, float]:
    """(best wall s, CPU s of that run) of ``fn()``."""
    best = (math.inf, math.inf)
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        sample = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, sample)
    return best


# ---- STEP-style per-sample, per-frame loop (the baseline of item 2) ---------------------------------
def _angle(v1: np.ndarray, v2: np.ndarray) -> float:
    cos = np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _area(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    return float(np.linalg.norm(np.cross(b - a, c - a)) / 2)


def step_style_features(frames: np.ndarray) -> list[float]:
    """The 27 features of one ``[T, 16, 3]`` gait with a Python loop over frames (STEP's structure)."""
    per_frame = []
    up = np.array([0.0, 1.0, 0.0])
    for f in frames:
        per_frame.append(
            [
                float(np.prod(f.max(0) - f.min(0))),
                _angle(f[4] - f[2], f[7] - f[2]),
                _angle(f[2] - f[4], f[7] - f[4]),
                _angle(f[2] - f[7], f[4] - f[7]),
                _angle(f[3] - f[0], up),
                _angle(f[3] - f[2], f[1] - f[2]),
                float(np.linalg.norm(f[6] - f[0])),
                float(np.linalg.norm(f[9] - f[0])),
                float(np.linalg.norm(f[12] - f[0])),
                float(np.linalg.norm(f[15] - f[0])),
                _area(f[9], f[2], f[6]),
                _area(f[15], f[0], f[12]),
            ]
        )
    out = list(np.mean(per_frame, axis=0))
    for order in (1, 2, 3):
        for joint in (6, 9, 3, 12, 15):
            values = []
            for t in range(order, len(frames)):
                diff = frames[t - order : t + 1, joint]  # the order + 1 frames ending at t
                for _ in range(order):
                    diff = (diff[1:] - diff[:-1]) / DT
                values.append(float(np.linalg.norm(diff[0])))
            out.append(float(np.mean(values)))
    return out


# ---- measurements -------------------------------------------------------------------------------------
def bench_features(sequences: list[np.ndarray], repeats: int) -> dict[str, tuple[float, float]]:
    as64 = [s.astype(np.float64) for s in sequences]
    results = {
        "batched": timed(lambda: batched_affective_features(as64, EGAIT16), repeats, "cpu"),
        "per-sample call of the batched function": timed(
            lambda: [affective_features(torch.from_numpy(s)[None], EGAIT16) for s in as64], repeats, "cpu"
        ),
        "per-sample, per-frame Python loop (STEP style)": timed(
            lambda: [step_style_features(s) for s in as64], 1, "cpu"
        ),
    }
    # the loop and the batched function agree (the comparison is between equal computations)
    reference = np.asarray([step_style_features(s) for s in as64[:3]])
    np.testing.assert_allclose(
        batched_affective_features(as64[:3], EGAIT16).numpy(), reference, rtol=1e-6, atol=1e-9
    )
    return results


def bench_stgcn(args, clips: torch.Tensor) -> dict[str, tuple[float, float]]:
    device = args.device
    kwargs = {} if args.full else {"channels": [32, 32, 64, 64], "stride_per_block": [1, 2, 1, 2]}
    net = STGCN(4, 3, 16, "egait16", **kwargs).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    labels = torch.randint(0, 4, (clips.shape[0],), device=device)
    clips = clips.to(device)
    autocast = args.precision == "bf16"

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def batched() -> None:
        for start in range(0, clips.shape[0], args.batch_size):
            step(clips[start : start + args.batch_size], labels[start : start + args.batch_size])

    def per_sample() -> None:
        for i in range(args.loop_sequences):
            step(clips[i : i + 1], labels[i : i + 1])

    net.train()
    batched()  # warm-up (allocator, oneDNN / cuDNN plans)
    return {"batched": timed(batched, args.repeats, device), "per-sample loop": timed(per_sample, 1, device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequences", type=int, default=256, help="training sequences per timed pass")
    parser.add_argument("--loop-sequences", type=int, default=64, help="sequences of the per-sample loop")
    parser.add_argument("--feature-gaits", type=int, default=200, help="gaits for the feature timing")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--full", action="store_true", help="the paper's ten-block ST-GCN")
    parser.add_argument("--out", type=Path, default=None, help="write the results as markdown here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    gaits = generate_gaits(max(args.sequences, args.feature_gaits), 20, min_frames=32, max_frames=48, seed=0)
    clips = torch.from_numpy(np.stack([s[: args.frames] for s in gaits.sequences[: args.sequences]]))[:, None]

    lines = [
        "# Skeleton-emotion speed (experiments/perf/skeleton.py)",
        "",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; torch {torch.__version__}, "
        f"{args.threads} thread(s); device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
        + f", precision {args.precision}",
        "",
    ]
    use_cpu_time = args.device == "cpu"
    key = 1 if use_cpu_time else 0
    unit = "CPU s" if use_cpu_time else "wall s"

    stgcn = bench_stgcn(args, clips)
    batched_rate = args.sequences / stgcn["batched"][key]
    loop_rate = args.loop_sequences / stgcn["per-sample loop"][key]
    lines += [
        f"## ST-GCN training ({'paper size' if args.full else 'twin size'}, clips of {args.frames} frames)",
        "",
        "| path | sequences | wall s | CPU s | sequences / s |",
        "|---|---|---|---|---|",
        f"| batch {args.batch_size} | {args.sequences} | {stgcn['batched'][0]:.2f} | {stgcn['batched'][1]:.2f} | {batched_rate:.1f} |",
        f"| per-sample loop | {args.loop_sequences} | {stgcn['per-sample loop'][0]:.2f} | {stgcn['per-sample loop'][1]:.2f} | {loop_rate:.1f} |",
        "",
        f"**batched / per-sample: {batched_rate / loop_rate:.1f}x** sequences per second ({unit}).",
        "",
    ]
    features = bench_features(gaits.sequences[: args.feature_gaits], args.repeats)
    base = features["batched"][key]
    lines += [
        f"## Affective features ({args.feature_gaits} gaits of 32-48 frames, 27 features)",
        "",
        "| path | wall s | CPU s | gaits / s | batched is faster by |",
        "|---|---|---|---|---|",
    ]
    for name, (wall, cpu) in features.items():
        seconds = cpu if use_cpu_time else wall
        lines.append(
            f"| {name} | {wall:.3f} | {cpu:.3f} | {args.feature_gaits / seconds:.0f} | {seconds / base:.1f}x |"
        )
    lines += [
        "",
        "The STEP-style loop and the batched function give the same features (checked in this run, rtol 1e-6).",
    ]
    if args.device == "cpu":
        lines += [
            "",
            "CPU only: the GPU variant (`--device cuda --precision bf16 --batch-size 256`, ST-GCN under bf16 "
            "autocast) is written but was not measured in this run.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
