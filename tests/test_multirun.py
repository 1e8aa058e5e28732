"""A 2-job multirun where one job fails: the other runs, the sweep names the failure, exit 1;
then `python -m runner.report` summarises the sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_MODEL, TINY_TWIN, run_cli


def test_multirun_with_a_failing_job_then_report(tmp_path, data_dir):
    result = run_cli(
        [
            "-m",
            "experiment=video_supervised_hmdb",
            "debug=fdr",
            "method.optimizer.lr=0.05,-1",
            *TINY_TWIN,
            *TINY_MODEL,
        ],
        tmp_path,
        data_dir=data_dir,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 of 2 job(s) failed" in output
    assert "method.optimizer.lr=-1" in output

    sweeps = sorted((tmp_path / "logs" / "debug" / "multiruns").iterdir())
    assert len(sweeps) == 1
    sweep = sweeps[0]
    assert (sweep / "0" / "metrics.json").is_file()
    assert (sweep / "1" / "FAILED.txt").is_file()

    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    assert "method.optimizer.lr=0.05" in report.stdout
    assert "test/acc" in report.stdout
    assert "Failed jobs (1)" in report.stdout
    assert Path(sweep / "report.md").is_file()
