"""CO-PFL (arXiv 2510.20219): contribution-oriented personalised federated learning."""
