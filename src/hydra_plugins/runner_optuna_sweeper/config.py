"""Config schema of ``hydra/sweeper=runner_optuna`` (registered in Hydra's ConfigStore).

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module before it
is in ``sys.modules``, and OmegaConf needs the annotations as real types.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional  # noqa: UP035 - OmegaConf structured-config types

from hydra.core.config_store import ConfigStore


@dataclass
class RunnerOptunaSweeperConf:
    _target_: str = "hydra_plugins.runner_optuna_sweeper.sweeper.RunnerOptunaSweeper"
    # maximize | minimize (max | min accepted); hydra/sweeper/optuna_tpe.yaml sets ${optimized_mode}
    direction: str = "maximize"
    # trials in total, counted over every process that worked on the study (a resumed search runs the rest)
    n_trials: int = 20
    # trials handed to the launcher at once (hydra/launcher=joblib runs them in parallel)
    n_jobs: int = 1
    study_name: Optional[str] = None  # noqa: UP045
    # null: sqlite:///<sweep dir>/optuna.db
    storage: Optional[str] = None  # noqa: UP045
    sampler: Any = None
    params: Dict[str, str] = field(default_factory=dict)  # noqa: UP006
    max_failure_rate: float = 0.5


ConfigStore.instance().store(
    group="hydra/sweeper", name="runner_optuna", node=RunnerOptunaSweeperConf, provider="runner"
)
