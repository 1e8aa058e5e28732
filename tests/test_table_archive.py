"""A table filled by several sweeps (runner.table_archive): records kept in ``<out>/runs``, pooled with
a new sweep, replaced by a rerun, left out when the table changed, and enough to rebuild results.md."""

from __future__ import annotations

import json

import yaml

from runner.report import build_report, main
from tests.test_claims import ACCURACY, TABLE, claim_lines, make_table_sweep


def rows_of(markdown: str) -> dict[str, str]:
    return {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}


def part(accuracy: dict, *arms: str) -> dict:
    return {arm: accuracy[arm] for arm in arms}


def test_two_sweeps_fill_one_table_and_both_are_named(tmp_path):
    out = tmp_path / "experiments" / "toy"
    make_table_sweep(tmp_path / "a", accuracy=part(ACCURACY, "method", "trivial"))
    first = build_report(tmp_path / "a", out=out)
    assert "The method" in rows_of(first) and "baseline" not in rows_of(first)

    make_table_sweep(tmp_path / "b", accuracy=part(ACCURACY, "baseline", "twin"))
    markdown = build_report(tmp_path / "b", out=out)

    rows = rows_of(markdown)
    assert {"The method", "baseline", "twin", "trivial"} <= set(rows)
    assert "0.8100 ± 0.0100" in rows["The method"]  # from sweep a, kept in the archive
    assert "**holds**" in claim_lines(markdown)["method > baseline on test/acc"]  # a's arm against b's
    assert f"sweep `{tmp_path / 'a'}`" in markdown and f"sweep `{tmp_path / 'b'}`" in markdown
    records = [json.loads(line) for line in (out / "runs" / "main.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {r["key"] for r in records} >= {"main-method-s0", "main-twin-s2"}
    assert all(r["curves"].get("val/acc") for r in records if r["key"].startswith("main-method"))


def test_a_rerun_replaces_the_records_of_the_same_jobs(tmp_path):
    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", accuracy=ACCURACY)
    build_report(tmp_path / "a", out=out)
    rerun = {"method": [0.60, 0.61, 0.62]}
    make_table_sweep(tmp_path / "b", accuracy=rerun)

    markdown = build_report(tmp_path / "b", out=out)

    assert "0.6100 ± 0.0100" in rows_of(markdown)["The method"]
    assert "**does not hold**" in claim_lines(markdown)["method > baseline on test/acc"]
    assert len((out / "runs" / "main.jsonl").read_text().splitlines()) == 12


def test_records_of_a_changed_arm_are_left_out_and_counted(tmp_path):
    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", accuracy=part(ACCURACY, "method", "baseline"))
    build_report(tmp_path / "a", out=out)
    changed = json.loads(json.dumps(TABLE))
    changed["sections"]["main"]["arms"]["method"] = {
        "overrides": ["m=method", "lr=0.1"],
        "label": "The method",
    }
    make_table_sweep(tmp_path / "b", table=changed, accuracy=part(ACCURACY, "twin", "trivial"))

    markdown = build_report(tmp_path / "b", out=out)

    assert "The method" not in rows_of(markdown) and "baseline" in rows_of(markdown)
    assert "Archived runs left out because the table has changed" in markdown and "main 3" in markdown


def test_results_are_rebuilt_from_the_records_alone(tmp_path, capsys):
    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", accuracy=ACCURACY)
    built = build_report(tmp_path / "a", out=out)
    (out / "results.md").unlink()
    (out / "results_main.png").unlink()

    assert main([str(out / "runs"), "--out", str(out)]) == 0

    rebuilt = (out / "results.md").read_text()
    assert rows_of(rebuilt) == rows_of(built)
    assert claim_lines(rebuilt) == claim_lines(built)
    assert (out / "results_main.png").stat().st_size > 1000
    assert not (out / "runs" / "report.md").exists()
    assert f"written: {out / 'results.md'}" in capsys.readouterr().out


def test_records_rebuild_into_another_folder(tmp_path):
    make_table_sweep(tmp_path / "a", accuracy=ACCURACY)
    built = build_report(tmp_path / "a", out=tmp_path / "out")

    copy = build_report(tmp_path / "out" / "runs", out=tmp_path / "copy")

    assert rows_of(copy) == rows_of(built)
    assert (tmp_path / "copy" / "runs" / "main.jsonl").read_text() == (
        tmp_path / "out" / "runs" / "main.jsonl"
    ).read_text()


def test_metrics_narrow_the_columns_but_the_records_keep_every_metric(tmp_path):
    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", accuracy=ACCURACY)

    assert main([str(tmp_path / "a"), "--metrics", "val/*", "--out", str(out)]) == 0

    header = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| arm"))
    assert "val/acc" in header and "test/acc" not in header
    assert "**holds**" in claim_lines((out / "results.md").read_text())["method > baseline on test/acc"]
    records = [json.loads(line) for line in (out / "runs" / "main.jsonl").read_text().splitlines()]
    assert all(set(r["metrics"]) == {"test/acc", "val/acc"} for r in records)
    assert yaml.safe_load((out / "runs" / "table.yaml").read_text())["metrics"] == ["test/acc", "val/acc"]


def test_the_archived_table_leaves_out_what_only_chose_the_sweeps_part(tmp_path):
    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", table={**TABLE, "select": ["main"], "records": "experiments/toy"})

    assert main([str(tmp_path / "a"), "--out", str(out)]) == 0

    archived = yaml.safe_load((out / "runs" / "table.yaml").read_text())
    assert (
        "select" not in archived and "records" not in archived and archived["sections"] == TABLE["sections"]
    )


def test_recorded_runs_are_the_jobs_a_sweep_would_launch_again(tmp_path):
    from runner.table_archive import recorded_runs, run_identity

    out = tmp_path / "out"
    make_table_sweep(tmp_path / "a", accuracy=ACCURACY)
    build_report(tmp_path / "a", out=out)
    recorded = recorded_runs(out)  # the --out folder or its runs/ both name the records
    assert recorded == recorded_runs(out / "runs") and len(recorded) == 12

    # what the sweeper launches for that row today, with other table-shaping overrides
    job = ["m=method", "seed=1", "++table.section=main", "++table.arm=method", "table=toy"]
    assert run_identity("main-method-s1", [*job, "table.records=out", "table.seeds=[1]"]) in recorded
    assert run_identity("main-method-s1", [*job, "debug=fdr"]) not in recorded  # computes something else
    assert run_identity("main-method-s7", [*job[:1], "seed=7", *job[2:]]) not in recorded  # a new seed
