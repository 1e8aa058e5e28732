"""Baseline FL strategies shared by the federated methods (one module per baseline)."""
