"""Claims as data (runner.claims) and the results table of a table sweep (runner.table_report), on
hand-made run folders: a claim that holds, one that does not, one within the seeds' noise."""

from __future__ import annotations

import json

import pytest
import yaml
from omegaconf import OmegaConf

from runner.claims import (
    FAILS,
    HOLDS,
    NOT_SEPARABLE,
    check_claim,
    claim_line,
    evaluations_to_reach,
    one_sample,
    parse_claim,
    trivial_lines,
    welch,
)
from runner.report import build_report, main

# ---- parsing --------------------------------------------------------------------------------------


def test_claim_lines_parse_into_sides_metrics_and_direction():
    claim = parse_claim("dual_teacher > dt_student_alone on test/acc")
    assert (claim.kind, claim.left, claim.op, claim.right) == (
        "compare",
        "dual_teacher",
        ">",
        "dt_student_alone",
    )
    assert claim.left_metric == claim.right_metric == "test/acc" and claim.margin == 0

    claim = parse_claim({"claim": "nlgcl < sgl on time/epoch_s", "paper": "faster"})
    assert claim.op == "<" and claim.paper == "faster"

    claim = parse_claim("nlgcl > lightgcn - 0.005 on test/ndcg@20")
    assert claim.margin == pytest.approx(-0.005) and claim.left_metric == "test/ndcg@20"

    claim = parse_claim("ccd[test/ccd/induced_acc] > ccd[test/greedy/induced_acc]")
    assert claim.left == claim.right == "ccd"
    assert (claim.left_metric, claim.right_metric) == ("test/ccd/induced_acc", "test/greedy/induced_acc")

    claim = parse_claim("nesterov reaches val/acc 90% before heavy_ball")
    assert claim.kind == "reaches" and claim.relative and claim.target == pytest.approx(0.9)
    assert parse_claim("nesterov reaches val/acc 0.75 before robust_sgd").target == 0.75


@pytest.mark.parametrize("line", ["a beats b", "a > b", "a > b on", "a reaches val/acc before b"])
def test_a_malformed_claim_names_itself(line):
    with pytest.raises(ValueError, match="claim"):
        parse_claim(line)


# ---- the statistics -------------------------------------------------------------------------------


def test_welch_verdicts_follow_the_direction_and_the_seeds_noise():
    high, low = [0.80, 0.81, 0.82], [0.70, 0.71, 0.69]
    assert welch(high, low, ">").verdict == HOLDS
    assert welch(low, high, ">").verdict == FAILS
    assert welch(low, high, "<").verdict == HOLDS
    noisy = welch([0.70, 0.80, 0.75], [0.72, 0.78, 0.74], ">")
    assert noisy.verdict == NOT_SEPARABLE and noisy.p_value > 0.05
    from scipy.stats import ttest_ind

    assert welch(high, low).p_value == pytest.approx(ttest_ind(high, low, equal_var=False).pvalue)
    assert welch([0.9], low).verdict == NOT_SEPARABLE  # one seed: no test
    assert welch([0.5, 0.5], [0.4, 0.4]).verdict == HOLDS  # no seed variance at all: the difference is exact
    assert welch([0.5, 0.5], [0.5, 0.5]).verdict == NOT_SEPARABLE


def test_one_sample_check_against_a_constant():
    assert one_sample([0.30, 0.32, 0.31], 0.1).verdict == HOLDS
    assert one_sample([0.09, 0.12, 0.10], 0.1).verdict == NOT_SEPARABLE


def test_evaluations_to_reach_counts_a_miss_as_one_after_the_last():
    assert evaluations_to_reach({0: 0.2, 1: 0.6, 2: 0.8}, 0.6) == 1
    assert evaluations_to_reach({0: 0.2, 1: 0.5}, 0.6) == 2


def test_margin_shifts_the_right_side():
    values = {"a": [0.800, 0.801, 0.799], "b": [0.805, 0.806, 0.804]}
    claim = parse_claim("a > b - 0.02 on m")
    assert check_claim(claim, lambda arm, metric: values[arm], arms=["a", "b"]).verdict == HOLDS
    claim = parse_claim("a > b on m")
    assert check_claim(claim, lambda arm, metric: values[arm], arms=["a", "b"]).verdict == FAILS


def test_trivial_check_names_the_arms_that_do_not_beat_it():
    values = {"pop": [0.10, 0.11, 0.10], "good": [0.30, 0.31, 0.32], "weak": [0.09, 0.13, 0.11]}
    lines = trivial_lines({"arm": "pop", "metric": "m"}, lambda a, m: values[a], list(values))
    assert "beaten clearly (Welch's t, p < 0.05) by 1 of 2: good" in lines[0]
    assert "not beaten clearly** by weak" in lines[0]
    lines = trivial_lines(
        {"value": 0.1, "label": "chance", "metric": "m", "ceiling": 0.3}, lambda a, m: values[a], ["good"]
    )
    assert "by 1 of 1" in lines[0] and "saturated" in lines[1]


# ---- a table sweep folder made by hand ------------------------------------------------------------

TABLE = {
    "name": "toy",
    "title": "Toy table",
    "seeds": [0, 1, 2],
    "metrics": ["test/acc", "val/acc"],
    "sections": {
        "main": {
            "arms": {
                "method": {"overrides": ["m=method"], "label": "The method"},
                "baseline": ["m=baseline"],
                "twin": ["m=twin"],
                "trivial": ["m=trivial"],
            }
        }
    },
    "claims": [
        {"claim": "method > baseline on test/acc", "paper": "the method wins"},  # holds
        "baseline > method on test/acc",  # does not hold
        "method > twin on test/acc",  # not separable
        "method reaches val/acc 0.8 before baseline",  # holds (epoch 1 vs 3)
    ],
    "trivial": {"arm": "trivial", "metric": "test/acc", "ceiling": 0.95},
}
ACCURACY = {
    "method": [0.80, 0.81, 0.82],
    "baseline": [0.70, 0.71, 0.69],
    "twin": [0.78, 0.84, 0.80],
    "trivial": [0.10, 0.10, 0.10],
}
CURVES = {"method": [0.5, 0.8, 0.85, 0.86], "baseline": [0.3, 0.5, 0.7, 0.8]}


def make_table_sweep(sweep, table=TABLE, accuracy=ACCURACY, tuned=None):
    """A finished table sweep as runner's table sweeper leaves it: multirun.yaml with the table, one
    numbered job folder per (arm, seed) with its overrides, metrics.json and CSV curves."""
    sweep.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create(
            {"table": table, "hydra": {"overrides": {"task": ["table=toy"]}, "launcher": {"n_jobs": 2}}}
        ),
        sweep / "multirun.yaml",
    )
    num = 0
    for arm, values in accuracy.items():
        for seed, acc in enumerate(values):
            job = sweep / str(num)
            (job / ".hydra").mkdir(parents=True)
            extra = [f"lr={tuned[arm][seed][0]}"] if tuned and arm in tuned else []
            overrides = [
                *extra,
                f"m={arm}",
                f"seed={seed}",
                "++table.section=main",
                f"++table.arm={arm}",
                "table=toy",
            ]
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            val = tuned[arm][seed][1] if tuned and arm in tuned else acc
            (job / "metrics.json").write_text(
                json.dumps({"metrics": {"test/acc": acc, "val/acc": val}, "seed": seed, "wall_time_s": 60.0})
            )
            if arm in CURVES:
                (job / "csv").mkdir()
                rows = ["epoch,step,val/acc"] + [f"{e},{e},{v}" for e, v in enumerate(CURVES[arm])]
                (job / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
            num += 1


def claim_lines(markdown: str) -> dict[str, str]:
    return {line.split("`")[1]: line for line in markdown.splitlines() if line.startswith("- `")}


def test_report_of_a_table_sweep_opens_with_the_claims_and_their_verdicts(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "experiments" / "toy"
    make_table_sweep(sweep)
    out.mkdir(parents=True)
    (out / "notes.md").write_text("## Notes\n\nProtocol differences from the paper: none (a toy).")

    markdown = build_report(sweep, out=out)

    assert markdown.startswith("# Toy table")
    assert markdown.index("## Claims") < markdown.index("| arm |")
    lines = claim_lines(markdown)
    assert (
        "**holds**" in lines["method > baseline on test/acc"]
        and "paper: the method wins" in lines["method > baseline on test/acc"]
    )
    assert "**does not hold**" in lines["baseline > method on test/acc"]
    assert "**not separable**" in lines["method > twin on test/acc"]
    assert "**holds**" in lines["method reaches val/acc 0.8 before baseline"]
    assert "Welch" in markdown and "p < 0.05" in markdown
    trivial = next(line for line in markdown.splitlines() if "trivial baseline `trivial`" in line)
    assert "by 3 of 3" in trivial
    assert "ceiling: best test/acc method 0.81 ≤ 0.95 (not saturated)" in markdown
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "0.8100 ± 0.0100" in rows["The method"] and "0,1,2" in rows["The method"]
    assert "Protocol differences from the paper" in markdown
    assert (out / "results.md").read_text() == markdown == (sweep / "report.md").read_text()
    assert (out / "results_main.png").stat().st_size > 1000
    assert "python -m runner -m table=toy" in markdown


def test_report_cli_writes_results_to_out(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_table_sweep(sweep)
    assert main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "results.md").is_file()
    assert "## Claims" in capsys.readouterr().out


def test_tuned_key_picks_each_arms_best_value_on_validation(tmp_path):
    table = {**TABLE, "tune": {"key": "lr", "select": "val/acc"}, "claims": ["method > baseline on test/acc"]}
    table["sections"] = {"main": {**TABLE["sections"]["main"], "grid": {"lr": ["0.1", "1.0"]}}}
    # every arm ran lr 0.1 (val 0.5) and lr 1.0 (val 0.9): (lr, val/acc) per job
    accuracy = {arm: [*values, *values] for arm, values in ACCURACY.items()}
    tuned = {arm: [("0.1", 0.5)] * 3 + [("1.0", 0.9)] * 3 for arm in ACCURACY}
    accuracy["method"] = [0.1, 0.1, 0.1, 0.80, 0.81, 0.82]  # at lr 1.0 (best on val) the method wins
    make_table_sweep(tmp_path / "sweep", table=table, accuracy=accuracy, tuned=tuned)
    markdown = build_report(tmp_path / "sweep")
    assert "| tuned |" in markdown and "lr=1.0" in markdown
    assert "**holds**" in claim_lines(markdown)["method > baseline on test/acc"]


def test_tuning_on_a_test_metric_is_refused(tmp_path):
    table = {**TABLE, "tune": {"key": "lr", "select": "test/acc"}}
    table["sections"] = {"main": {**TABLE["sections"]["main"], "grid": {"lr": ["0.1"]}}}
    tuned = {arm: [("0.1", 0.5)] * 3 for arm in ACCURACY}
    make_table_sweep(tmp_path / "sweep", table=table, tuned=tuned)
    assert main([str(tmp_path / "sweep")]) == 2


def test_an_arm_without_finished_runs_is_not_evaluated(tmp_path):
    accuracy = {k: v for k, v in ACCURACY.items() if k != "baseline"}
    make_table_sweep(tmp_path / "sweep", accuracy=accuracy)
    lines = claim_lines(build_report(tmp_path / "sweep"))
    assert "not evaluated" in lines["method > baseline on test/acc"]
    assert "**not separable**" in lines["method > twin on test/acc"]


def test_a_claim_checked_in_several_sections_gets_a_summary_line(tmp_path):
    arms = {"method": ["m=method"], "baseline": ["m=baseline"]}
    table = {**TABLE, "sections": {"main": {"arms": arms}, "other": {"arms": arms}}, "trivial": None}
    table["claims"] = ["method > baseline on test/acc"]
    sweep = tmp_path / "sweep"
    make_table_sweep(
        sweep, table=table, accuracy={"method": ACCURACY["method"], "baseline": ACCURACY["baseline"]}
    )
    # the same runs again as section "other", where the method is no better than the baseline
    for num, (arm, values) in enumerate(
        {"method": [0.70, 0.75, 0.72], "baseline": [0.71, 0.74, 0.73]}.items()
    ):
        for seed, acc in enumerate(values):
            job = sweep / str(100 + 3 * num + seed)
            (job / ".hydra").mkdir(parents=True)
            overrides = [f"m={arm}", f"seed={seed}", "++table.section=other", f"++table.arm={arm}"]
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (job / "metrics.json").write_text(json.dumps({"metrics": {"test/acc": acc}, "seed": seed}))
    markdown = build_report(sweep)
    assert (
        "- `method > baseline on test/acc`: holds in 1, not separable in 1 of 2 sections / cells" in markdown
    )
    assert "- [main] `method > baseline on test/acc`: **holds**" in markdown
    assert "- [other] `method > baseline on test/acc`: **not separable**" in markdown


def test_a_grid_section_gets_a_panel_per_cell_and_claims_per_cell(tmp_path):
    table = {**TABLE, "claims": ["method > baseline on test/acc"], "trivial": None}
    table["sections"] = {"main": {**TABLE["sections"]["main"], "grid": {"lr": ["0.1", "1.0"]}}}
    accuracy = {arm: [*values, *values] for arm, values in ACCURACY.items()}
    tuned = {arm: [("0.1", 0.5)] * 3 + [("1.0", 0.9)] * 3 for arm in ACCURACY}
    make_table_sweep(tmp_path / "sweep", table=table, accuracy=accuracy, tuned=tuned)
    markdown = build_report(tmp_path / "sweep")
    assert "- `method > baseline on test/acc`: holds in 2 of 2 sections / cells" in markdown
    assert "[lr=0.1]" in markdown and "[lr=1.0]" in markdown
    assert (tmp_path / "sweep" / "results_main_cells.png").stat().st_size > 1000  # val/acc curves per cell
    assert (tmp_path / "sweep" / "results_main.png").stat().st_size > 1000  # test/acc bars per cell


def test_two_metrics_of_the_same_runs_are_compared_paired_by_seed():
    from runner.claims import paired

    # seeds differ a lot from each other, the difference within each seed is small but consistent
    clean, greedy = [0.60, 0.80, 0.95], [0.59, 0.789, 0.94]
    assert welch(clean, greedy).verdict == NOT_SEPARABLE
    assert paired(clean, greedy).verdict == HOLDS
    values = {"test/a": clean, "test/b": greedy}
    claim = parse_claim("run[test/a] > run[test/b]")
    verdict = check_claim(claim, lambda arm, metric: values[metric], arms=["run"])
    assert verdict.verdict == HOLDS and verdict.detail.startswith("paired")
    exact = parse_claim("run[test/a] > run[test/a] - 0.01")  # the same metric shifted: exact in every seed
    assert check_claim(exact, lambda arm, metric: values[metric], arms=["run"]).p_value == 0.0


def test_an_arm_not_yet_run_over_the_whole_tuning_grid_is_left_out_and_listed(tmp_path):
    table = {**TABLE, "tune": {"key": "lr", "select": "val/acc"}, "claims": ["method > baseline on test/acc"]}
    table["sections"] = {"main": {**TABLE["sections"]["main"], "grid": {"lr": ["0.1", "1.0"]}}}
    accuracy = {arm: [*values, *values] for arm, values in ACCURACY.items()}
    tuned = {arm: [("0.1", 0.5)] * 3 + [("1.0", 0.9)] * 3 for arm in ACCURACY}
    accuracy["baseline"], tuned["baseline"] = ACCURACY["baseline"], [("0.1", 0.5)] * 3  # lr 1.0 not run yet
    make_table_sweep(tmp_path / "sweep", table=table, accuracy=accuracy, tuned=tuned)
    markdown = build_report(tmp_path / "sweep")
    assert "- main baseline: 1 of 2" in markdown
    assert "not evaluated" in claim_lines(markdown)["method > baseline on test/acc"]


def three_rate_table_report(tmp_path) -> str:
    """The report of a table tuned over lr {0.1, 0.5, 1.0}: every arm is best on validation at 1.0, the
    grid's largest value, except the method (0.5)."""
    table = {**TABLE, "tune": {"key": "lr", "select": "val/acc"}, "claims": ["method > baseline on test/acc"]}
    table["sections"] = {"main": {**TABLE["sections"]["main"], "grid": {"lr": ["0.1", "0.5", "1.0"]}}}
    accuracy = {arm: [*values, *values, *values] for arm, values in ACCURACY.items()}
    tuned = {arm: [("0.1", 0.5)] * 3 + [("0.5", 0.7)] * 3 + [("1.0", 0.9)] * 3 for arm in ACCURACY}
    tuned["method"] = [("0.1", 0.5)] * 3 + [("0.5", 0.95)] * 3 + [("1.0", 0.9)] * 3
    make_table_sweep(tmp_path / "sweep", table=table, accuracy=accuracy, tuned=tuned)
    return build_report(tmp_path / "sweep")


def test_rows_tuned_at_an_end_of_the_grid_are_flagged_under_the_claims(tmp_path):
    markdown = three_rate_table_report(tmp_path)

    flagged = markdown.split("**Tuned at an end of the grid.**")[1].split("\n## ")[0]
    assert "3 row(s)" in flagged
    assert "- main: the largest (1.0): baseline, twin, trivial\n" in flagged
    assert "method" not in flagged


def test_a_tuned_section_shows_the_validation_score_of_every_grid_value(tmp_path):
    markdown = three_rate_table_report(tmp_path)

    assert "Validation `val/acc` per `lr`" in markdown
    rows = [
        line
        for line in markdown.split("Validation `val/acc` per `lr`")[1].splitlines()
        if line.startswith("|")
    ]
    assert rows[0] == "| arm | 0.1 | 0.5 | 1.0 |"
    assert rows[2] == "| The method | 0.5000 ± 0.0000 | **0.9500 ± 0.0000** | 0.9000 ± 0.0000 |"
    assert rows[3] == "| baseline | 0.5000 ± 0.0000 | 0.7000 ± 0.0000 | **0.9000 ± 0.0000** |"


def test_an_arm_with_its_own_empty_grid_is_shown_untuned(tmp_path):
    """An arm whose own grid lacks the tuned key (e.g. a student trained without the tuned distillation
    weight) is reported as it ran: no tuned value, not incomplete, not at a grid end."""
    table = {**TABLE, "tune": {"key": "lr", "select": "val/acc"}, "claims": ["method > trivial on test/acc"]}
    arms = {**TABLE["sections"]["main"]["arms"], "trivial": {"overrides": ["m=trivial"], "grid": {}}}
    table["sections"] = {"main": {"arms": arms, "grid": {"lr": ["0.1", "0.5", "1.0"]}}}
    accuracy = {arm: [*values, *values, *values] for arm, values in ACCURACY.items()}
    accuracy["trivial"] = ACCURACY["trivial"]
    tuned = {arm: [("0.1", 0.5)] * 3 + [("0.5", 0.7)] * 3 + [("1.0", 0.9)] * 3 for arm in ACCURACY}
    del tuned["trivial"]
    make_table_sweep(tmp_path / "sweep", table=table, accuracy=accuracy, tuned=tuned)

    markdown = build_report(tmp_path / "sweep")

    row = next(line for line in markdown.splitlines() if line.startswith("| trivial |"))
    assert row.startswith("| trivial | – | 0,1,2 | 0.1000 ± 0.0000 |")
    assert "Left out until" not in markdown
    flagged = markdown.split("**Tuned at an end of the grid.**")[1].split("\n## ")[0]
    assert "- main: the largest (1.0): method, baseline, twin\n" in flagged
    tuning = markdown.split("Validation `val/acc` per `lr`")[1].split("\n\n")[1]
    assert "| trivial |" not in tuning and "| baseline |" in tuning
    assert "**holds**" in claim_lines(markdown)["method > trivial on test/acc"]


def test_a_claim_on_a_metric_the_runs_lack_is_not_evaluated():
    """Records from before a metric was logged: the claim line says it was not evaluated, never a
    verdict on nothing."""
    claim = parse_claim("local_only[test/personal_acc] > local_only[test/personal_majority_acc]")
    values = {("local_only", "test/personal_acc"): [0.7, 0.72, 0.71]}
    verdict = check_claim(claim, lambda arm, metric: values.get((arm, metric), []), arms=["local_only"])
    assert verdict is None
    assert "not evaluated" in claim_line(claim, verdict, "cinic10")
    assert "lack the metric" in claim_line(claim, verdict, "cinic10")
