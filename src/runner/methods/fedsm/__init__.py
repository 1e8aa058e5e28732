"""FedSM (arXiv 2510.27240): semantics-guided feature mixup for long-tail federated learning."""
