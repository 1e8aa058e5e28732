"""Export the deployable student of a distillation checkpoint (issue 3, item 3).

    python -m runner.export <student .ckpt> <out .pt>

Keeps only the student network's tensors (``student.*``, prefix stripped): the training-only parts
(the SDB and the projectors of SDD / OFA, under ``terms.*``) are dropped — and the frozen teachers
were never stored — so the exported network has exactly the parameters of the student trained
alone and no inference cost from the distillation. The output is ``{"state_dict", "meta"}``, loadable
with ``student.checkpoint=<out>`` (``runner.models.checkpoint.load_local_weights``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from runner.checkpointing import AtomicCheckpointIO, load_checkpoint
from runner.errors import UserError

STUDENT_PREFIX = "student."


def student_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The student's tensors of a Lightning checkpoint (``state_dict`` with ``student.`` keys)."""
    state = checkpoint.get("state_dict", checkpoint)
    student = {k[len(STUDENT_PREFIX) :]: v for k, v in state.items() if k.startswith(STUDENT_PREFIX)}
    if not student:
        raise UserError("the checkpoint holds no student.* tensors: is it a distillation checkpoint?")
    return student


def export_student(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike) -> dict[str, Any]:
    """Write the student of ``checkpoint_path`` to ``out_path`` (atomically); return its meta."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    # weights_only: a crafted checkpoint cannot run code; Lightning's few own types are allow-listed
    checkpoint = load_checkpoint(path)
    state = student_state_dict(checkpoint)
    meta = {
        "source": str(path),
        "student_class": checkpoint.get("student_class"),
        "teachers": checkpoint.get("teachers", {}),
        "num_parameters": int(sum(v.numel() for k, v in state.items() if _is_parameter(k))),
        "num_tensors": len(state),
    }
    AtomicCheckpointIO().save_checkpoint({"state_dict": state, "meta": meta}, Path(out_path))
    return meta


def _is_parameter(key: str) -> bool:
    """Buffers of BatchNorm (running stats, counters) are not parameters."""
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a distillation run's .ckpt (e.g. <run>/checkpoints/last.ckpt)")
    parser.add_argument("out", help="where to write the deployable student (.pt)")
    args = parser.parse_args(argv)
    try:
        meta = export_student(args.checkpoint, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: student {meta['student_class']} with {meta['num_parameters']:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
