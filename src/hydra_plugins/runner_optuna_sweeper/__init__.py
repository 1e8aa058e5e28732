"""A Hydra sweeper over current Optuna (``hydra/sweeper=runner_optuna``), found by Hydra through the
``hydra_plugins`` namespace package. hydra-optuna-sweeper 1.3 pins optuna<3; this one uses Optuna's
ask/tell interface of Optuna 4/5 and keeps the study in SQLite inside the sweep folder, so a killed
search continues where it stopped (run the same command again with ``hydra.sweep.dir=<that folder>``).
"""
