"""FedPall (arXiv 2507.04781, ICCV 2025): prototype-based adversarial and collaborative learning."""
