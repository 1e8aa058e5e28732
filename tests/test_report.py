"""runner.report on a hand-made sweep folder: grouping, mean ± std, failures, figure."""

from __future__ import annotations

import json
import statistics

import yaml

from runner.report import build_report, main


def make_job(sweep, num, overrides, metrics, curves=None, failed=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if failed:
        (job / "FAILED.txt").write_text(failed + "\n\ntraceback")
        return
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    (job / "metrics.json").write_text(json.dumps({"metrics": metrics, "seed": seed}))
    if curves:
        (job / "csv").mkdir()
        lines = ["epoch,step,val/acc,train/loss_epoch"] + [
            f"{e},{e * 10},{a},{loss}" for e, (a, loss) in enumerate(curves)
        ]
        (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_report_groups_by_overrides_other_than_seed(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["lr=0.1", "seed=0"], {"test/acc": 0.5}, curves=[(0.2, 2.0), (0.4, 1.0)])
    make_job(sweep, 1, ["lr=0.1", "seed=1"], {"test/acc": 0.7}, curves=[(0.3, 1.9), (0.6, 0.8)])
    make_job(sweep, 2, ["lr=0.2", "seed=0"], {"test/acc": 0.9}, curves=[(0.5, 1.5), (0.9, 0.3)])
    make_job(sweep, 3, ["lr=0.2", "seed=1"], {}, failed="UserError: invalid value method.optimizer.lr=-1")

    markdown = build_report(sweep)
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| lr=")}
    expected_std = statistics.stdev([0.5, 0.7])
    assert f"0.6000 ± {expected_std:.4f}" in rows["lr=0.1"]
    assert "0.9000 ± –" in rows["lr=0.2"]
    assert "job 3" in markdown and "invalid value" in markdown
    assert (sweep / "report.md").read_text() == markdown
    assert (sweep / "report.png").stat().st_size > 1000

    assert main([str(sweep)]) == 0
    assert "lr=0.1" in capsys.readouterr().out


def test_report_on_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
