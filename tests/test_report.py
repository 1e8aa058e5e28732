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


def test_report_figure_has_no_empty_panel_and_writes_the_test_values():
    from runner.report import curves_figure

    figure = curves_figure(
        {"val/acc": {"lr=0.1": {0: 0.2, 1: 0.4}, "lr=0.2": {0: 0.5}}, "val/ndcg@10": {"lr=0.1": {}}},
        {"test/acc": {"lr=0.1": [0.5, 0.7], "lr=0.2": [0.9]}},
        title="sweep",
    )
    assert [ax.get_title() for ax in figure.axes] == ["validation acc", "test acc (final, mean ± std)"]
    curves, bars = figure.axes
    assert len(curves.lines) == 2 and len(bars.patches) == 2  # a line / a bar per group, no empty panel
    assert {text.get_text() for text in bars.texts} == {"0.600", "0.900"}
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["lr=0.1", "lr=0.2"]
    assert curves_figure({"val/acc": {"lr=0.1": {}}}, {}) is None


def test_overrides_every_job_shares_are_named_once_not_in_each_group(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(
        sweep, 0, ["experiment=x", "lr=0.1", "seed=0"], {"test/acc": 0.5}, curves=[(0.2, 2.0), (0.4, 1.0)]
    )
    make_job(
        sweep, 1, ["experiment=x", "lr=0.2", "seed=0"], {"test/acc": 0.7}, curves=[(0.3, 1.9), (0.6, 0.8)]
    )
    markdown = build_report(sweep)
    assert "Every job: `experiment=x`" in markdown
    rows = [line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| lr=")]
    assert rows == ["lr=0.1", "lr=0.2"]
