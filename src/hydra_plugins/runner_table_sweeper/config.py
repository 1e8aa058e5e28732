"""Config schema of ``hydra/sweeper=runner_table`` (registered in Hydra's ConfigStore).

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module before it
is in ``sys.modules``, and OmegaConf needs the annotations as real types.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class RunnerTableSweeperConf:
    _target_: str = "hydra_plugins.runner_table_sweeper.sweeper.RunnerTableSweeper"
    # skip a job whose folder already holds its metrics.json with the same overrides (a killed table
    # continues when the same command is run again with hydra.sweep.dir=<that folder>)
    resume: bool = True


ConfigStore.instance().store(
    group="hydra/sweeper", name="runner_table", node=RunnerTableSweeperConf, provider="runner"
)
