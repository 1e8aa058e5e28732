"""FedSM (arXiv 2510.27240): semantics-guided feature mixup for long-tail federated learning."""

from runner.methods.fedsm.strategy import FedSM, class_name_embeddings

__all__ = ["FedSM", "class_name_embeddings"]
