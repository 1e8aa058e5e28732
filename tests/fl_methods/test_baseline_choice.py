"""Every FL experiment composes and builds its strategy with each baseline its README row names:
an experiment's method-specific settings must not leak into another strategy's constructor."""

from __future__ import annotations

import hydra
import pytest

from runner.federated.strategy import Strategy
from tests.fl_methods.test_co_pfl_strategy import STRATEGY_CONFIGS as CO_PFL_STRATEGIES

BASELINES = {
    "fedsm_cifar10lt": ["fedsm", "fedsm_no_semantics", "fedavg", "fedprox"],
    "fedsm_cifar100lt": ["fedsm", "fedsm_no_semantics", "fedavg", "fedprox"],
    **{
        f"fedpall_{name}": [
            "fedpall",
            "fedpall_no_adv",
            "fedpall_no_proto",
            "fedpall_no_mix",
            "local_only",
            "fedavg",
            "fedprox",
            "fedbn",
            "fedproto",
            "moon",
            "fedrep",
        ]
        for name in ("digits", "office", "pacs")
    },
    **{f"co_pfl_{name}": CO_PFL_STRATEGIES for name in ("cifar10", "cifar10c", "cinic10", "miniimagenet")},
}

CASES = [(experiment, strategy) for experiment, names in BASELINES.items() for strategy in names]


@pytest.mark.parametrize(("experiment", "strategy"), CASES, ids=[f"{e}-{s}" for e, s in CASES])
def test_experiment_builds_with_baseline(make_cfg, experiment, strategy):
    cfg = make_cfg(f"experiment={experiment}", f"fl_strategy={strategy}")
    built = hydra.utils.instantiate(cfg.fl_strategy)
    assert isinstance(built, Strategy)
    assert built.batch_size == cfg.fl_strategy.batch_size
    # the experiment's unit of local work reaches every baseline (FedRep counts its head steps on top)
    assert built.local_epochs == cfg.fl_strategy.local_epochs
    if cfg.fl_strategy.local_epochs is not None:
        assert built.local_steps is None


def test_fedpall_office_values_reach_fedpall_only(make_cfg):
    fedpall = make_cfg("experiment=fedpall_office").fl_strategy
    assert (fedpall.beta, fedpall.mu, fedpall.server_epochs) == (0.1, 0.1, 3)
    assert make_cfg("experiment=fedpall_digits").fl_strategy.beta == 0.3
    assert make_cfg("experiment=fedpall_office", "fl_strategy=fedprox").fl_strategy.mu == 0.01
