"""OVG-HQ-Unify streaming latency and training throughput (issue 11, item 9).

Per-clip latency of streaming inference with the carried memory (:class:`StreamingGrounder`: one new
clip encoded, one window through the memory blocks / decoder / refinement) against the baseline that
recomputes the whole causal history from scratch at every clip (the whole-video forward over the
clips seen so far; with TTT memory the state at clip t depends on every earlier window, so without a
carried state this is what answering at clip t costs). Same network, same run; the ratio is
streaming / recompute, averaged over the clips of a ``--clips``-clip video (75 = 150 s, the card's
maximum), plus the recompute cost at the last clip. Goal: ratio <= 0.2 at 75 clips.
It also checks that both give the same outputs, and measures training throughput (windows/s of a
training step: forward, backward, AdamW) at ``--train-batch`` chunks of 16 windows.

    .venv/bin/python experiments/perf/ovg_streaming.py                      # paper width 256, CPU
    .venv/bin/python experiments/perf/ovg_streaming.py --device cuda --bf16 --streams 256 --train-batch 256

``--streams B`` runs B query streams in lock-step (batched); ``--bf16`` uses bfloat16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from runner.methods.ovg_hq.network import OVGHQNet, QueryInput
from runner.methods.ovg_hq.streaming import StreamingGrounder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=75)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--memory", default="ttt")
    parser.add_argument("--streams", type=int, default=1, help="query streams processed together")
    parser.add_argument("--train-batch", type=int, default=32, help="training chunks per step")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the video (best kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    torch.manual_seed(0)
    net = OVGHQNet(hidden=args.hidden, num_heads=args.heads, memory=args.memory).to(device).eval()
    b, w = args.streams, net.window
    clips = torch.randn(b, args.clips, 512, device=device)
    query = QueryInput(
        text=torch.randn(b, 12, 512, device=device),
        text_mask=torch.ones(b, 12, dtype=torch.bool, device=device),
    )

    def stream_pass() -> list[torch.Tensor]:
        grounder = StreamingGrounder(net, query, emit_moments=False)
        outs = []
        for t in range(args.clips):
            grounder.step(clips[:, t])
            outs.append(grounder.last_outputs["logits"])
        return outs

    def recompute_at(t: int) -> torch.Tensor:
        with torch.no_grad():
            padded = torch.nn.functional.pad(clips[:, :t], (0, 0, w - 1, 0))
            return net(padded, query)["logits"][:, -1]

    with autocast:
        stream_pass()  # warm-up
        recompute_at(args.clips)
        stream_times = []
        for _ in range(args.repeats):
            stream_times.append(timed(stream_pass, device) / args.clips)
        streaming = min(stream_times)
        recompute = []
        for t in range(1, args.clips + 1):
            recompute.append(min(timed(lambda t=t: recompute_at(t), device) for _ in range(args.repeats)))
        outs = stream_pass()
        check = max(
            float((outs[t - 1] - recompute_at(t)).abs().max()) for t in (1, args.clips // 2, args.clips)
        )
    mean_recompute = statistics.fmean(recompute)
    print(
        f"device {device}, width {args.hidden}, memory {args.memory}, {b} stream(s), bf16={args.bf16}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"streaming (carried memory): {streaming * 1e3:.2f} ms per clip")
    print(
        f"recompute from scratch:     {mean_recompute * 1e3:.2f} ms per clip on average over {args.clips} clips, "
        f"{recompute[-1] * 1e3:.2f} ms at clip {args.clips}"
    )
    print(
        f"ratio streaming / recompute: {streaming / mean_recompute:.3f} (average), "
        f"{streaming / recompute[-1]:.3f} (at clip {args.clips}); goal <= 0.2"
    )
    print(f"max |logit difference| streaming vs recompute: {check:.2e}")

    # training throughput: one step = forward + backward + AdamW over train_batch chunks of 16 windows
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    bt = args.train_batch
    video = torch.randn(bt, w - 1 + 31, 512, device=device)
    tq = QueryInput(
        text=torch.randn(bt, 12, 512, device=device),
        text_mask=torch.ones(bt, 12, dtype=torch.bool, device=device),
    )
    first = torch.full((bt,), w - 1, device=device, dtype=torch.long)

    def train_step() -> None:
        with autocast:
            out = net(video, tq, first_window=first, num_windows=16)
            loss = out["logits"].float().square().mean() + out["spans"].float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_step()
    step = min(timed(train_step, device) for _ in range(args.train_steps))
    print(
        f"training: {bt * 16 / step:.0f} windows/s ({bt} chunks x 16 windows per step, {step:.3f} s per step)"
    )


if __name__ == "__main__":
    main()
