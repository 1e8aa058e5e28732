"""KD epoch time with online vs cached teachers, as ratios to student-only training (issue 3, item 8).

    .venv/bin/python experiments/perf/kd_cache.py                 # HMDB51 twin, CPU, twin-sized nets
    .venv/bin/python experiments/perf/kd_cache.py --compute --device cuda   # paper-sized step times

Default (epoch mode): the same data (the HMDB51 twin, ``dual_teacher_hmdb_twin``), the same student,
one process: student-only training (CE), DT-KD with online teachers, DT-KD with cached teachers
(``method.distill.cache=true``; the one-off cache fill is reported separately and not counted).
Each variant trains ``--epochs`` epochs without validation; its epoch time is the fastest epoch
after the first (the first includes worker start-up; the minimum is the least disturbed by other
processes on a shared machine). The training process's CPU time per epoch is reported too: on a
shared, oversubscribed machine it is the steadier measure of the work each variant adds.
``--out`` also writes the table (markdown) with the load average.
Goal (card, "Performance"): cached / student-only <= 1.15.

``--compute``: per-step time of the training step on random clips on ``--device`` at the paper's
sizes (X3D-S student, X3D-M and MViTv2-S teachers, 16x224x224, batch ``--batch``): student-only,
student + online teachers, student + cached outputs (read from a memory-mapped bf16 store); in
fp32 and, on a GPU, bf16 autocast and channels_last_3d.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class EpochTimer(L.Callback):
    """Wall time and CPU time of the training process (all its threads; not its loader workers,
    whose decoding work is the same in every variant) per epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self._t = time.perf_counter()
        self._cpu = time.process_time()

    def on_train_epoch_end(self, trainer, module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t)
        self.cpu_times.append(time.process_time() - self._cpu)


def epoch_mode(args: argparse.Namespace) -> None:
    from hydra.utils import instantiate

    from runner.compose import compose_run_config
    from runner.train import accepted_kwargs, build_networks, data_properties

    data_dir = Path(args.data_dir)
    variants = [
        ("student only", ["method=dt_student_alone"]),
        ("KD online teachers", ["method=dual_teacher"]),
        ("KD cached teachers", ["method=dual_teacher", "method.distill.cache=true"]),
    ]
    results, cpu_results, lines = {}, {}, []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in variants:
            overrides = [
                "experiment=dual_teacher_hmdb_twin",
                "method.distill.student_alone_reference=false",
                f"dataset.num_workers={args.workers}",
                f"dataset.persistent_workers={'true' if args.workers else 'false'}",
                *extra,
            ]
            run_dir = Path(tmp) / label.replace(" ", "_")
            cfg = compose_run_config(
                overrides, output_dir=run_dir, root_dir=REPO, data_dir=data_dir, log_dir=run_dir.parent
            )
            L.seed_everything(0, verbose=False)
            dm = instantiate(cfg.dataset)
            props = data_properties(dm)
            nets = build_networks(cfg, props)
            module = instantiate(cfg.method, **nets, **accepted_kwargs(cfg.method, props))
            timer = EpochTimer()
            trainer = L.Trainer(
                max_epochs=args.epochs,
                accelerator=args.device,
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                callbacks=[timer],
            )
            fill = time.perf_counter()
            trainer.fit(module, datamodule=dm)
            total = time.perf_counter() - fill
            results[label] = min(timer.times[1:] or timer.times)
            cpu_results[label] = min(timer.cpu_times[1:] or timer.cpu_times)
            line = (
                f"{label}: epoch wall times {[round(t, 2) for t in timer.times]} s, training-process CPU "
                f"times {[round(t, 2) for t in timer.cpu_times]} s (fit incl. setup {total:.1f} s)"
            )
            lines.append(line)
            print(line)
    base = results["student only"]
    load = os.getloadavg()
    header = (
        f"epoch time (fastest after the first), ratio to student-only (device {args.device}, "
        f"torch threads {torch.get_num_threads()}, {args.workers} loader workers, {args.epochs} epochs; "
        f"load average {load_before[0]:.1f} before, {load[0]:.1f} after, on {os.cpu_count()} CPUs):"
    )
    cpu_base = cpu_results["student only"]
    table = ["  variant                 wall/epoch  ratio   train-process CPU/epoch  ratio"] + [
        f"  {label:22s} {seconds:7.2f} s   {seconds / base:5.2f}x   {cpu_results[label]:7.2f} s"
        f"              {cpu_results[label] / cpu_base:5.2f}x"
        for label, seconds in results.items()
    ]
    ratio = results["KD cached teachers"] / base
    cpu_ratio = cpu_results["KD cached teachers"] / cpu_base
    verdict = (
        f"goal: cached <= 1.15x -> wall {ratio:.2f}x ({'met' if ratio <= 1.15 else 'NOT met'}), "
        f"CPU {cpu_ratio:.2f}x ({'met' if cpu_ratio <= 1.15 else 'NOT met'})"
    )
    print("\n" + header, *table, verdict, sep="\n")
    if args.out:
        text = [
            "# Teacher-output cache: KD epoch time (experiments/perf/kd_cache.py)",
            "",
            "```",
            *lines,
            "",
            header,
            *table,
            verdict,
            "```",
            "",
        ]
        Path(args.out).write_text("\n".join(text))
        print(f"written: {args.out}")


def compute_mode(args: argparse.Namespace) -> None:
    import numpy as np

    from runner.methods.dual_teacher import DATW
    from runner.methods.dual_teacher.losses import kd_loss
    from runner.models.video import X3D, TorchvisionVideoNet

    device = torch.device(args.device)
    classes = 51
    student = X3D(num_classes=classes, variant="s").to(device)
    teachers = {
        "cnn": X3D(num_classes=classes, variant="m").to(device).eval().requires_grad_(False),
        "vit": TorchvisionVideoNet(num_classes=classes, arch="mvit_v2_s")
        .to(device)
        .eval()
        .requires_grad_(False),
    }
    x = torch.randn(args.batch, 3, 16, 224, 224, device=device)
    y = torch.randint(0, classes, (args.batch,), device=device)
    opt = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)
    fusion = DATW()
    store = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, t in teachers.items():  # a memory-mapped bf16 store like runner's cache
            rows = 4 * args.batch
            for kind, dim in (("logits", classes), ("features", t.feature_dim)):
                m = np.memmap(Path(tmp) / f"{name}.{kind}", dtype=np.int16, mode="w+", shape=(rows, dim))
                m[:] = torch.randn(rows, dim).to(torch.bfloat16).view(torch.int16).numpy()
                store[(name, kind)] = m

        def teacher_outputs(mode: str):
            if mode == "cached":
                idx = np.sort(np.random.choice(4 * args.batch, args.batch, replace=False))
                return {
                    n: tuple(
                        torch.from_numpy(np.ascontiguousarray(store[(n, k)][idx]))
                        .view(torch.bfloat16)
                        .float()
                        .to(device, non_blocking=True)
                        for k in ("logits", "features")
                    )
                    for n in teachers
                }
            with torch.no_grad():
                out = {}
                for n, t in teachers.items():
                    f = t.forward_features(x)
                    out[n] = (t.classify(f), f)
                return out

        def step(mode: str, bf16: bool) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                f = student.forward_features(x)
                z = student.classify(f)
                loss = torch.nn.functional.cross_entropy(z, y)
                if mode != "student":
                    outs = teacher_outputs(mode)
                    fused, _ = fusion(z.float(), [outs[n][0].float() for n in teachers])
                    loss = loss + kd_loss(z.float(), fused)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def timed(mode: str, bf16: bool) -> float:
            for _ in range(args.warmup):
                step(mode, bf16)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(mode, bf16)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) / args.steps

        settings = [("fp32", False, False)]
        if device.type == "cuda":
            settings += [("bf16", True, False), ("bf16+channels_last_3d", True, True)]
        for label, bf16, channels_last in settings:
            fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
            student.to(memory_format=fmt)
            for t in teachers.values():
                t.to(memory_format=fmt)
            x = x.contiguous(memory_format=fmt)
            times = {mode: timed(mode, bf16) for mode in ("student", "online", "cached")}
            base = times["student"]
            print(
                f"[{label}] batch {args.batch} x 16x224x224 on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}:"
            )
            for mode, seconds in times.items():
                print(
                    f"  {mode:8s} {seconds * 1000:8.1f} ms/step  {args.batch / seconds:7.1f} clips/s  {seconds / base:5.2f}x"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--compute", action="store_true", help="per-step times at paper sizes on random clips"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the epoch-mode table here (markdown)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    compute_mode(args) if args.compute else epoch_mode(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
