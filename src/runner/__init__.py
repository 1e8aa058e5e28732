"""runner: Hydra + Lightning experiment runner for ten recent ML papers, offline by default."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${runner.cwd:}`: the folder the command was started in. Unlike `${hydra:runtime.cwd}` it also
# resolves before Hydra has set its runtime config (the sweep folder of a multirun is made then).
OmegaConf.register_new_resolver("runner.cwd", os.getcwd, replace=True)
