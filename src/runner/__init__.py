"""runner: Hydra + Lightning experiment runner for ten recent ML papers, offline by default."""

__version__ = "0.1.0"
