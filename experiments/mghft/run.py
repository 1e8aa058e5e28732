"""MGHFT on the SER30K twin: every baseline and ablation, 3 seeds -> results.md + results.png.

    .venv/bin/python experiments/mghft/run.py                 # the sweeps, then the report
    .venv/bin/python experiments/mghft/run.py --report-only   # the table again from the last sweep
    .venv/bin/python experiments/mghft/run.py --seeds 0 --epochs 2 --out /tmp/mghft_smoke   # quick check

What it runs — nothing but the user's commands (a Hydra multirun through ``python -m runner`` and
``python -m runner.report``):

    python -m runner -m experiment=mghft_ser30k_twin method=<every method below> seed=0,1,2 \\
        hydra/launcher=joblib hydra.launcher.n_jobs=<jobs> hydra.sweep.dir=<runs>
    python -m runner -m experiment=mghft_ser30k_twin method=sticker_clip_probe \\
        method.clip_model=ViT-S-32 seed=0,1,2 ... hydra.sweep.subdir=clip_${hydra.job.num}
    python -m runner.report <runs> --metrics test/acc test/macro_f1

(the CLIP probe runs in its own sweep because its tower size is a key only it has). Each job runs
with one torch thread (OMP_NUM_THREADS=1); ``--jobs`` jobs at a time. ``results.md`` is the
report's table with a header naming the commands and settings, followed by ``notes.md`` (the
reading of the numbers, written by hand after the sweep); ``results.png`` is the report's figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

METHODS = [
    "sticker_majority",
    "sticker_text_mlp",
    "sticker_visual_pvt",
    "sticker_late_fusion",
    "mghft",
    "mghft_no_multiview",
    "mghft_no_lra",
    "mghft_no_stage_losses",
    "mghft_no_fusion",
]
METRICS = ["test/acc", "test/macro_f1"]


def runner(args: list[str], jobs_env: dict[str, str]) -> int:
    command = [sys.executable, "-m", "runner", *args]
    print("$ python -m runner " + " ".join(args), flush=True)
    return subprocess.run(command, cwd=REPO, env=jobs_env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (joblib launcher)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override trainer.max_epochs (default: the experiment's)"
    )
    parser.add_argument("--runs", type=Path, default=REPO / "logs" / "mghft_table", help="sweep folder")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md / results.png go")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--skip-clip", action="store_true", help="leave out the CLIP linear probe")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["experiment=mghft_ser30k_twin", f"seed={args.seeds}", f"hydra.sweep.dir={args.runs}"]
    common += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]
    if args.epochs:
        common.append(f"trainer.max_epochs={args.epochs}")
    started = time.time()
    status = 0
    if not args.report_only:
        if args.runs.exists():
            shutil.rmtree(args.runs)
        status |= runner(["-m", *common, "method=" + ",".join(METHODS)], env)
        if not args.skip_clip:
            clip = [
                "method=sticker_clip_probe",
                "method.clip_model=ViT-S-32",
                "hydra.sweep.subdir=clip_${hydra.job.num}",
            ]
            status |= runner(["-m", *common, *clip], env)
    print(f"$ python -m runner.report {args.runs} --metrics {' '.join(METRICS)}", flush=True)
    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(args.runs), "--metrics", *METRICS],
        cwd=REPO,
        env=env,
        check=False,
    )
    if report.returncode:
        return report.returncode
    minutes = (time.time() - started) / 60
    table = (args.runs / "report.md").read_text().split("\n", 2)[2]  # drop the report's own title line
    header = [
        "# MGHFT on the SER30K twin",
        "",
        "Produced by `experiments/mghft/run.py` "
        + (
            "(report only)"
            if args.report_only
            else f"in {minutes:.0f} min wall, {args.jobs} runs at a time, one torch thread each"
        )
        + f": `python -m runner -m experiment=mghft_ser30k_twin method=... seed={args.seeds}` sweeps and "
        "`python -m runner.report`. Test accuracy and macro-F1 (mean ± sample std over seeds) of the "
        "checkpoint with the best validation accuracy. Twin: 3,000 rendered stickers (2,100 / 300 / 600), "
        "7 classes, majority class 30 %; CPU-sized PVT v1 at 64 px (see conf/experiment/mghft_ser30k_twin.yaml).",
        "",
    ]
    notes = HERE / "notes.md"
    body = header + [table.strip(), ""]
    if notes.is_file():
        body += [notes.read_text().strip(), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(body).replace("](report.png)", "](results.png)"))
    if (args.runs / "report.png").is_file():
        shutil.copyfile(args.runs / "report.png", args.out / "results.png")
    print(f"written: {args.out / 'results.md'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
