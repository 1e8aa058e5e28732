"""``RunnerOptunaSweeper``: Optuna trials launched through any Hydra launcher (basic, joblib, ...).

Search space: ``hydra.sweeper.params`` (``key: <Hydra sweep expression>``) plus every sweep override
of the command line (a command-line key wins). Expressions map onto Optuna distributions:

* ``interval(a, b)`` -> ``FloatDistribution(a, b)``; ``int(interval(a, b))`` -> ``IntDistribution``;
  ``tag(log, interval(a, b))`` -> the same with ``log=True``;
* ``range(a, b, s)`` -> ``IntDistribution(a, last, s)`` (``FloatDistribution(step=s)`` for floats);
* ``choice(x, y)`` or ``x,y`` -> ``CategoricalDistribution``.

Non-sweep overrides are passed to every trial unchanged.

Resuming: the study lives in ``storage`` (default ``sqlite:///<sweep dir>/optuna.db``) under
``study_name``. On start, trials of an earlier process that are still RUNNING (it was killed) are
marked FAIL and their parameters queued again; only trials that
finished (COMPLETE, PRUNED, or FAIL reported by its job: user attribute ``job``) count towards
``n_trials``. Job folders are
named by the trial number, so a resumed search never overwrites an earlier job.

A job whose objective is ``None`` or NaN (the job failed, or never logged the metric) is told as
FAIL; the search stops early when more than ``max_failure_rate`` of the finished trials failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"
RESULTS_FILE = "optimization_results.yaml"
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


def distribution_of(override: Override):
    """The Optuna distribution of one Hydra sweep override (see the module docstring)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution([_plain(x) for x in sweep.list])
    if isinstance(sweep, RangeSweep):
        values = [_plain(x) for x in override.sweep_iterator()]
        if not values:
            raise ValueError(f"{override.input_line}: empty range")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(sweep.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep Optuna can sample (interval, range, choice)")


def _plain(value: Any) -> Any:
    """Hydra parser values as plain Python values (Optuna stores choices as JSON)."""
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def override_value(value: Any) -> str:
    """A sampled value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class RunnerOptunaSweeper(Sweeper):
    """See the module docstring. Arguments come from ``hydra.sweeper`` (``RunnerOptunaSweeperConf``)."""

    def __init__(
        self,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        study_name: str | None = None,
        storage: str | None = None,
        sampler: Any = None,
        params: dict[str, str] | None = None,
        max_failure_rate: float = 0.5,
    ) -> None:
        if str(direction) not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction}: use one of {', '.join(DIRECTIONS)}")
        self.direction = DIRECTIONS[str(direction)]
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.study_name = study_name
        self.storage = storage
        self.sampler_config = sampler
        self.params = dict(params or {})
        self.max_failure_rate = float(max_failure_rate)
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- search space ---------------------------------------------------------------------------
    def search_space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """(name -> distribution, fixed overrides) from ``params`` and the command line."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = {key: f"{key}={value}" for key, value in self.params.items()}
        fixed: list[str] = []
        for override in parser.parse_overrides(list(arguments)):
            key = override.get_key_element()
            if override.is_sweep_override():
                lines[key] = override.input_line
            else:
                lines.pop(key, None)
                fixed.append(override.input_line)
        space = {}
        for key, line in lines.items():
            (override,) = parser.parse_overrides([line])
            if not override.is_sweep_override():  # a single value in params: a fixed override
                fixed.append(line)
                continue
            space[key] = distribution_of(override)
        return space, fixed

    # -- the study ------------------------------------------------------------------------------
    def storage_url(self, sweep_dir: Path) -> str:
        return self.storage or f"sqlite:///{(sweep_dir / STORAGE_FILE).resolve()}"

    def load_study(self, sweep_dir: Path):
        import optuna

        sampler = self.sampler_config  # Hydra instantiates the sweeper's config recursively
        if isinstance(sampler, DictConfig | dict):
            sampler = instantiate(sampler)
        return optuna.create_study(
            study_name=self.study_name or "runner",
            storage=self.storage_url(sweep_dir),
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )

    @staticmethod
    def requeue_interrupted(study) -> int:
        """Trials a killed process left RUNNING: told FAIL, their parameters queued again."""
        from optuna.trial import TrialState

        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
        return len(stale)

    @staticmethod
    def finished_trials(study) -> list:
        from optuna.trial import TrialState

        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return [t for t in study.get_trials(deepcopy=False, states=done) if "job" in t.user_attrs]

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        space, fixed = self.search_space(arguments)
        if not space:
            raise ValueError("hydra/sweeper=runner_optuna has nothing to search: set hydra.sweeper.params")

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = self.load_study(sweep_dir)
        requeued = self.requeue_interrupted(study)
        finished = len(self.finished_trials(study))
        log.info(
            "Optuna study '%s' in %s: %d finished trial(s) of %d%s; %s %s",
            study.study_name,
            self.storage_url(sweep_dir),
            finished,
            self.n_trials,
            f", {requeued} interrupted trial(s) queued again" if requeued else "",
            self.direction,
            self.config.get("optimized_metric", "the objective"),
        )
        returns = []
        while finished < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - finished))]
            batch = [
                [*fixed, *(f"{key}={override_value(trial.params[key])}" for key in space)] for trial in trials
            ]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results, strict=True):
                trial.set_user_attr("job", str(Path(result.working_dir or "").name or trial.number))
                value = _objective(result)
                if value is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
            returns.append(results)
            finished_trials = self.finished_trials(study)
            finished = len(finished_trials)
            failed = sum(t.state == TrialState.FAIL for t in finished_trials)
            if finished and failed / finished > self.max_failure_rate:
                log.error(
                    "%d of %d trials failed (max_failure_rate %.2f): stopping",
                    failed,
                    finished,
                    self.max_failure_rate,
                )
                break
        self.write_results(study, sweep_dir)
        return returns

    def write_results(self, study, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("no trial of the study completed; no best parameters")
            return
        best = study.best_trial
        results = {
            "name": "optuna",
            "direction": self.direction,
            "metric": self.config.get("optimized_metric"),
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": dict(best.params),
            "trials_complete": len(complete),
            "storage": self.storage_url(sweep_dir),
            "study_name": study.study_name,
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        log.info("best trial %d: %s = %s with %s", best.number, results["metric"], best.value, best.params)


def _objective(result) -> float | None:
    """The job's returned objective as a float, or None when it failed or returned nothing usable."""
    from hydra.core.utils import JobStatus

    if result.status != JobStatus.COMPLETED:
        return None
    value = result.return_value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
