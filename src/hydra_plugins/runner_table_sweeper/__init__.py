"""A Hydra sweeper that runs a paper's results table (``hydra/sweeper=runner_table``, selected by every
``conf/table/<paper>.yaml``): the jobs listed by the ``table`` node of the config (sections, arms, grid,
seeds; :mod:`runner.tables`), launched through any Hydra launcher (basic, joblib, ...)."""
