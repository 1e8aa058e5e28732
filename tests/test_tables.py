"""Results tables as sweeps (conf/table/*.yaml, runner.tables, hydra/sweeper=runner_table): the job list,
every table config composing, and (slow) a 2-job table through ``python -m runner -m`` + the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.errors import UserError
from runner.tables import expand, merge_overrides, sections
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
TABLES = sorted(p.stem for p in (REPO / "conf" / "table").glob("*.yaml") if not p.stem.startswith("_"))

TOY = {
    "seeds": [0, 1],
    "overrides": ["logger=csv"],
    "first": ["teacher"],
    "sections": {
        "a": {
            "overrides": ["experiment=x"],
            "grid": {"k": [1, 2]},
            "arms": {"student": ["method=s"], "teacher": {"overrides": ["method=t"], "label": "T"}},
        },
        "b": {"overrides": ["experiment=y"], "arms": {"student": ["method=s"]}},
    },
}


def test_jobs_are_sections_by_arms_by_cells_by_seeds_with_the_first_ones_in_front():
    jobs = expand(TOY)
    assert len(jobs) == 2 * 2 * 2 + 2
    assert (jobs[0].section, jobs[0].arm, jobs[0].seed, jobs[0].cell) == ("a", "teacher", 0, (("k", "1"),))
    assert [(j.arm, j.cell, j.seed) for j in jobs[1:6]] == [  # a row's jobs together
        ("student", (("k", "1"),), 0),
        ("student", (("k", "1"),), 1),
        ("student", (("k", "2"),), 0),
        ("student", (("k", "2"),), 1),
        ("teacher", (("k", "1"),), 1),
    ]
    assert jobs[1].command_overrides() == [
        "logger=csv",
        "experiment=x",
        "k=1",
        "method=s",
        "seed=0",
        "++table.section=a",
        "++table.arm=student",
    ]
    assert sections(TOY)["a"]["arms"]["teacher"]["label"] == "T"


def test_an_arms_own_grid_replaces_the_sections():
    toy = {**TOY, "sections": {"a": {**TOY["sections"]["a"]}}}
    toy["sections"]["a"]["arms"] = {
        "student": ["method=s"],
        "alone": {"overrides": ["method=a"], "grid": {}},
        "wide": {"overrides": ["method=w"], "grid": {"k": [1, 2, 3]}},
    }
    cells = {}
    for job in expand(toy):
        cells.setdefault(job.arm, []).append(job.cell)
    assert cells["student"] == [(("k", "1"),)] * 2 + [(("k", "2"),)] * 2
    assert cells["alone"] == [(), ()]
    assert cells["wide"] == [(("k", str(v)),) for v in (1, 1, 2, 2, 3, 3)]
    alone = next(j for j in expand(toy) if j.arm == "alone")
    assert "k=1" not in alone.command_overrides() and alone.folder_name() == "a-alone-s0"
    with pytest.raises(UserError, match="alone.grid"):
        expand({"sections": {"a": {"arms": {"alone": {"overrides": ["m=a"], "grid": {"k": 1}}}}}})


def test_select_and_seeds_narrow_the_table_and_each_job_has_its_own_folder():
    names = [j.folder_name() for j in expand(TOY)]
    assert len(set(names)) == len(names) and names[0] == "a-teacher-1-s0"
    part = expand({**TOY, "select": ["b"]})
    assert {j.section for j in part} == {"b"} and [j.folder_name() for j in part] == [
        "b-student-s0",
        "b-student-s1",
    ]
    assert {(j.section, j.arm) for j in expand({**TOY, "select": ["a/teacher"]})} == {("a", "teacher")}
    assert {j.seed for j in expand(TOY, seeds=[7])} == {7}
    with pytest.raises(UserError, match="no section or arm"):
        expand({**TOY, "select": ["nope"]})


def test_a_bad_arm_name_or_empty_section_is_a_user_error():
    with pytest.raises(UserError, match="arm name"):
        expand({"sections": {"a": {"arms": {"bad name": ["x=1"]}}}})
    with pytest.raises(UserError, match="no arms"):
        expand({"sections": {"a": {"arms": {}}}})


def test_command_line_overrides_win_over_the_tables():
    merged = merge_overrides(
        ["trainer.max_epochs=12", "seed=0", "logger=csv"], ["trainer.max_epochs=1", "debug=fdr"]
    )
    assert merged == ["seed=0", "logger=csv", "trainer.max_epochs=1", "debug=fdr"]


def _group_files_exist(overrides: list[str]) -> list[str]:
    """The ``group=option`` overrides of a job whose option file does not exist."""
    missing = []
    for line in overrides:
        key, _, value = line.partition("=")
        group = key.lstrip("+~")
        if "." in group or not (REPO / "conf" / group).is_dir():
            continue
        if not (REPO / "conf" / group / f"{value}.yaml").is_file():
            missing.append(line)
    return missing


@pytest.mark.parametrize("table", TABLES)
def test_each_table_config_composes_and_names_existing_configs(table, make_cfg):
    """The table composes (its sweeper, launcher and folder), its claims parse and name its arms, every
    arm's group choices exist, and the first job of each section composes and passes validation."""
    from runner.claims import parse_claim
    from runner.validation import validate_config

    cfg = make_cfg(f"table={table}")
    jobs = expand(cfg.table)
    spec = sections(cfg.table)
    arms = {arm for section in spec.values() for arm in section["arms"]}
    for claim in cfg.table.get("claims") or []:
        parsed = parse_claim(claim)
        assert {parsed.left, parsed.right} <= arms, f"{table}: claim '{parsed.text}' names an unknown arm"
    trivial = [s["trivial"] for s in spec.values() if s["trivial"]]
    assert trivial, f"{table}: no trivial baseline"
    for entry in trivial:
        assert entry.get("arm") in arms or entry.get("value") is not None
    assert not [line for job in jobs for line in _group_files_exist(job.command_overrides())]
    firsts = {}
    for job in jobs:
        firsts.setdefault(job.section, job)
    for job in firsts.values():
        validate_config(make_cfg(f"table={table}", *job.command_overrides()))


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES)
def test_every_arm_of_every_table_composes_and_validates(table, make_cfg):
    from runner.validation import validate_config

    seen = set()
    for job in expand(make_cfg(f"table={table}").table):
        if (job.section, job.arm) not in seen:
            seen.add((job.section, job.arm))
            validate_config(make_cfg(f"table={table}", *job.command_overrides()))


@pytest.mark.slow
def test_two_job_table_runs_through_the_runner_and_reports_its_claims(tmp_path, data_dir):
    """``python -m runner -m table=nlgcl`` narrowed to 2 jobs (debug=fdr), in parallel under the joblib
    launcher, then ``python -m runner.report --out``; running it again keeps the finished jobs."""
    env = {**os.environ, "RUNNER_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    env.pop("HYDRA_FULL_ERROR", None)
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        "table=nlgcl",
        "debug=fdr",
        "table.seeds=[0]",
        "table.select=[mostpop,nlgcl]",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Joblib.Parallel" in output and "2 job(s), none failed" in output
    assert f"report it with: python -m runner.report {sweep} --out experiments/nlgcl" in output
    # each job's folder is named after its row
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["yelp-mostpop-s0", "yelp-nlgcl-s0"]
    for job, arm in (("yelp-mostpop-s0", "mostpop"), ("yelp-nlgcl-s0", "nlgcl")):
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert f"experiment={arm}_yelp" in overrides and f"++table.arm={arm}" in overrides
        assert '"torch_threads": 1' in (sweep / job / "metrics.json").read_text()

    out = tmp_path / "experiments" / "nlgcl"
    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep), "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# NLGCL") and "## Claims" in markdown
    assert "`nlgcl > lightgcn on test/recall@20`: not evaluated" in markdown  # lightgcn was not run
    assert "trivial baseline `mostpop`" in markdown
    assert "| MostPop (trivial) |" in markdown and "| NLGCL |" in markdown

    # a new sweep folder with the report's records: nothing left to run
    recorded = subprocess.run(
        [*command[:-1], f"hydra.sweep.dir={tmp_path / 'sweep2'}", f"table.records={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert recorded.returncode == 0, (recorded.stdout + recorded.stderr)[-3000:]
    assert f"2 already recorded in {out} (not run again)" in recorded.stdout + recorded.stderr
    assert f"rebuild the table with: python -m runner.report {out / 'runs'} --out {out}" in recorded.stderr
    assert not (tmp_path / "sweep2").exists()  # nothing ran: no sweep folder

    # the same table grown by one arm: only the new job runs, the finished ones are kept
    grown = [
        line.replace("table.select=[mostpop,nlgcl]", "table.select=[mostpop,nlgcl,bprmf]") for line in command
    ]
    again = subprocess.run(grown, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "2 already finished (kept)" in again.stdout + again.stderr
    assert (sweep / "yelp-bprmf-s0" / "metrics.json").is_file()
    assert (sweep / "yelp-mostpop-s0" / "metrics.json").stat().st_mtime < (
        sweep / "yelp-bprmf-s0"
    ).stat().st_mtime


@pytest.mark.parametrize(
    "args, message",
    [
        (["table.select=[nope]"], "table.select=['nope']: no section or arm of the table matches"),
        (["trainer.max_epochs=1,2"], "a table sweeps its own arms and seeds"),
        (["table.records=nope"], "table.records=nope: no such folder"),
    ],
)
def test_a_table_sweep_mistake_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli(["-m", "table=nlgcl", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "sweep").glob("*/.hydra"))  # nothing ran


def test_what_a_job_runs_ignores_the_overrides_that_only_shape_the_table():
    from hydra_plugins.runner_table_sweeper.sweeper import what_runs

    first = ["experiment=x", "seed=0", "++table.section=a", "++table.arm=b", "table=t", "table.select=[b]"]
    later = ["experiment=x", "seed=0", "++table.section=a", "++table.arm=b", "table=t", "table.select=[b,c]"]
    assert what_runs(first) == what_runs(later)
    assert what_runs(first) != what_runs([*first[:1], "seed=1", *first[2:]])


LOCAL_BUDGET_KEYS = ("batch_size", "local_epochs", "local_steps", "local_lr")


@pytest.mark.parametrize("table", ["fedpall", "co_pfl", "fedsm", "byrd_nafl"])
def test_the_arms_of_a_federated_table_share_the_local_budget(table, make_cfg):
    """Fair comparisons: in each section and grid cell, every method and baseline trains with the same
    local batch, epochs, steps and learning rate (a table's learning-rate grid sets it for every arm). The
    stop-21 FedPall Digits table ran its baselines at their own default batch 32 / lr 0.05 against
    FedPall's 64 / 0.01."""
    budgets: dict[str, dict[str, tuple]] = {}
    first_cell: dict[str, tuple] = {}
    for job in expand(make_cfg(f"table={table}").table):
        seen = budgets.get(job.section, {})
        if first_cell.setdefault(job.section, job.cell) != job.cell or job.arm in seen:
            continue  # one grid cell per section is enough: a grid sets the same values for every arm
        strategy = make_cfg(f"table={table}", *job.command_overrides()).fl_strategy
        budgets.setdefault(job.section, {})[job.arm] = tuple(strategy.get(k) for k in LOCAL_BUDGET_KEYS)
    for section, by_arm in budgets.items():
        assert len(set(by_arm.values())) == 1, f"{table}/{section}: {by_arm}"
