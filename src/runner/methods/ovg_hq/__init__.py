"""OVG-HQ-Unify: online video grounding with hybrid-modal queries (arXiv 2508.11903; card ovg_hq.md)."""
