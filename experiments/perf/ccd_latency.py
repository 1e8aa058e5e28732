"""Per-token latency of batched CCD, two-pass CCD and greedy decoding on the same model, one run,
printed as ratios to greedy (issue 7, item 8; card ccd.md, "Implementation").

    .venv/bin/python experiments/perf/ccd_latency.py                    # in-project LM on the CPU
    .venv/bin/python experiments/perf/ccd_latency.py --gpt2-medium      # + GPT-2-medium shape (GPU if any)

Batched CCD runs [induced; neutral] as one 2B-row forward with one KV cache; two-pass CCD runs the
two branches as two B-row forwards with their own caches (the same tokens come out — tested in
tests/ccd/test_decoding.py). Every variant decodes ``--new-tokens`` tokens (no early stop) for a
batch of ``--batch`` prompts; the per-token time is the median of ``--repeats`` runs after a warm-up.
The in-project LM is the newest cached one under ``data/lm/`` (``--lm-dir`` to choose; a random-init
LM of the same shape if none). On a GPU, ``--gpt2-medium`` uses a random-init GPT-2-medium config
(24 layers, 1024 wide, 50257 vocabulary) in bfloat16. Goals: GPU batched ≤ 1.2 × greedy; 2-core CPU
batched clearly below the two-pass ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))

from runner.methods.ccd.decoding import ContrastiveDecoding, Greedy, generate  # noqa: E402
from runner.models.lm import build_tiny_gpt2, load_causal_lm, missing_model_files, train_tokenizer  # noqa: E402

PROMPTS = [
    "User: I'm pretty sure the answer is blue. What color is Zorvik?\nAssistant:",
    "User: According to the Atlas of Vel, Mabel lives in Quen. Where does Mabel live?\nAssistant:",
    "User: Review: at Sabel the food was tasty and the staff was friendly. Is this review positive or negative?\nAssistant:",
    "User: Premise: Kuron is red. Hypothesis: Kuron is blue. Entailment, contradiction or neutral?\nAssistant:",
]


def neutral_of(text: str) -> str:
    from runner.data.text import Neutraliser

    return Neutraliser()(text)


def in_project_lm(lm_dir: str | None):
    if lm_dir:
        return load_causal_lm(lm_dir), f"in-project LM {lm_dir}"
    candidates = sorted(
        (p for p in (REPO / "data" / "lm").glob("*") if p.is_dir() and not missing_model_files(p)),
        key=lambda p: p.stat().st_mtime,
    )
    if candidates:
        return load_causal_lm(str(candidates[-1])), f"in-project LM {candidates[-1].name} (trained)"
    tokenizer = train_tokenizer(PROMPTS * 8, vocab_size=1024)
    return build_tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0), (
        "in-project LM shape (random init; no trained LM cached under data/lm)"
    )


def gpt2_medium(device: str, dtype: torch.dtype):
    from transformers import GPT2LMHeadModel

    from runner.models.lm import CausalLM, tiny_gpt2_config

    tokenizer = train_tokenizer(PROMPTS * 8, vocab_size=1024)
    config = tiny_gpt2_config(50257, n_layer=24, n_embd=1024, n_head=16, n_positions=1024)
    config.eos_token_id = config.bos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()
    return CausalLM(model, tokenizer), f"GPT-2-medium config, random init, {dtype}"


def per_token_ms(lm, decoder, inputs, neutrals, new_tokens: int, repeats: int) -> float:
    def once() -> float:
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        generate(lm, decoder, inputs, neutrals, max_new_tokens=new_tokens, stop_early=False)
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / new_tokens * 1000

    once()  # warm-up
    return statistics.median(once() for _ in range(repeats))


def bench(lm, name: str, batch: int, new_tokens: int, repeats: int) -> None:
    inputs = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    neutrals = [neutral_of(t) for t in inputs]
    variants = {
        "greedy": Greedy(),
        "CCD batched (1 forward, 2B rows)": ContrastiveDecoding(batched=True),
        "CCD two-pass (2 forwards, B rows)": ContrastiveDecoding(batched=False),
    }
    times = {
        label: per_token_ms(lm, d, inputs, neutrals, new_tokens, repeats) for label, d in variants.items()
    }
    print(
        f"\n{name} on {lm.device} (batch {batch}, {new_tokens} new tokens, median of {repeats}; {torch.get_num_threads()} threads)"
    )
    base = times["greedy"]
    for label, value in times.items():
        print(f"  {label:36s} {value:8.2f} ms/token   {value / base:5.2f} x greedy")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lm-dir", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--gpt2-medium", action="store_true", help="also GPT-2-medium shape (GPU when available)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    lm, name = in_project_lm(args.lm_dir)
    bench(lm.eval(), name, args.batch, args.new_tokens, args.repeats)
    if args.gpt2_medium or args.device == "cuda":
        dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
        lm, name = gpt2_medium(args.device, dtype)
        with torch.inference_mode():
            bench(lm, name, args.batch, args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
