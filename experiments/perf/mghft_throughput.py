"""Training throughput of MGHFT against the visual-only PVT, same input size, one process (issue 12, item 9).

    .venv/bin/python experiments/perf/mghft_throughput.py                       # 448 px PVT v1-small, CPU fp32
    .venv/bin/python experiments/perf/mghft_throughput.py --device cuda --bf16 --batch 32   # the paper's setting
    .venv/bin/python experiments/perf/mghft_throughput.py --twin                # the CPU twin's sizes (64 px)

Both models are the ones ``method=mghft`` and ``method=sticker_visual_pvt`` build (the same PVT v1
config, the same recipe: AdamW step, label-smoothing CE, MGHFT's stage losses). The text side is
cached in a real run (the frozen encoder never runs during training), so MGHFT gets random view
features of the encoder's width; both get the same random images. Each variant runs ``--warmup``
untimed steps, then ``--steps`` timed ones; the printed ratio is MGHFT's time per image over the
visual-only PVT's (goal: <= 1.3). ``--out`` appends the result as a markdown row.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from runner.methods.mghft import MGHFT, VisualOnlyPVT
from runner.models.vision import PyramidVisionTransformer

PAPER = {"img_size": 224}  # PVT v1-small defaults; position embeddings interpolated to the input
TWIN = {"img_size": 64, "embed_dims": (16, 32, 80, 128), "depths": (1, 1, 2, 1), "drop_path_rate": 0.05}


def build(kind: str, sizes: dict, image_size: int, text_dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = PyramidVisionTransformer(**sizes)
    if kind == "mghft":
        return MGHFT(backbone, num_classes=7, text_dim=text_dim, image_size=image_size)
    return VisualOnlyPVT(backbone, num_classes=7)


def time_training(model: torch.nn.Module, batch: dict, args: argparse.Namespace) -> float:
    """Seconds per image of forward + backward + AdamW step (after warm-up)."""
    device = torch.device(args.device)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> None:
        with autocast:
            logits, aux = model.logits_and_aux(batch)
            loss = model.criterion(logits.float(), batch["label"])
            if aux is not None:
                loss = loss + model.aux_loss_weight * aux.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / (args.steps * batch["image"].shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--twin", action="store_true", help="the CPU twin's sizes (64 px, narrow PVT)")
    parser.add_argument("--size", type=int, default=None, help="input size (default 448, --twin: 64)")
    parser.add_argument(
        "--batch", type=int, default=None, help="images per step (default: 32 on CUDA, 2 on CPU; twin 64)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the release trains with AMP)")
    parser.add_argument(
        "--text-dim", type=int, default=768, help="cached text feature width (BERT 768, MiniLM 384)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="append a markdown row to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sizes = TWIN if args.twin else PAPER
    size = args.size or (64 if args.twin else 448)
    args.batch = args.batch or (64 if args.twin else (32 if cuda else 2))
    args.steps = args.steps or (10 if cuda or args.twin else 3)
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(args.batch, 3, size, size, generator=g),
        "views": torch.randn(args.batch, 4, args.text_dim, generator=g),
        "full_text": torch.randn(args.batch, args.text_dim, generator=g),
        "label": torch.randint(0, 7, (args.batch,), generator=g),
    }
    per_image = {}
    for kind in ("visual", "mghft"):
        model = build(kind, sizes, size, args.text_dim)
        per_image[kind] = time_training(model, batch, args)
        del model
        if cuda:
            torch.cuda.empty_cache()
    ratio = per_image["mghft"] / per_image["visual"]
    device = (
        torch.cuda.get_device_name()
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    load = "" if cuda else f", load average {os.getloadavg()[0]:.1f}"
    setting = f"{'twin PVT' if args.twin else 'PVT v1-small'} {size}px, batch {args.batch}, {'bf16' if args.bf16 else 'fp32'}"
    print(f"{setting} on {device}{load}")
    print(f"visual-only PVT: {1 / per_image['visual']:.3g} training images/s")
    print(f"MGHFT:           {1 / per_image['mghft']:.3g} training images/s")
    print(f"MGHFT / visual-only time per image: {ratio:.2f}x (goal <= 1.3x)")
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(
                f"| {setting} | {device}{load} | {1 / per_image['visual']:.3g} | {1 / per_image['mghft']:.3g} | {ratio:.2f} |\n"
            )


if __name__ == "__main__":
    main()
