"""Data modules and dataset readers."""
