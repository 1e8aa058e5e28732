"""The CI contract: .ci/run does what the README says (`make test`), and the GitHub workflow runs that
same script, with CPU torch wheels, a pip cache, ruff, and the slow tier on a schedule."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())


def test_ci_run_is_the_readme_test_command():
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert commands[-1] == "make test"
    assert "make test " in (REPO / "README.md").read_text()


def test_github_workflow_mirrors_ci_run_with_cpu_wheels_cache_lint_and_a_nightly_slow_tier():
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "cron" in triggers["schedule"][0]
    assert "download.pytorch.org/whl/cpu" in flow["env"]["PIP_EXTRA_INDEX_URL"]
    jobs = flow["jobs"]
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in jobs.items()}
    assert "bash .ci/run" in runs["test"]
    assert any("ruff check" in r for r in runs["lint"]) and any(
        "ruff format --check" in r for r in runs["lint"]
    )
    assert any("-m slow" in r for r in runs["slow"]) and "schedule" in jobs["slow"]["if"]
    for job in jobs.values():
        setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
        assert setup["with"]["cache"] == "pip"
