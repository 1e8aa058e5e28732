"""Image datasets with domain / distribution shift for the federated methods (FedPall, CO-PFL).

Readers for the real on-disk formats and synthetic twins written in those formats:

* class-folder layouts: Digits-5 / Office-Caltech-10 / PACS (``<root>/<domain>/<split>/<class>/*.png``),
  CINIC-10 (``<root>/{train,valid,test}/<class>/*.png``) — :mod:`.folders`;
* Mini-ImageNet (``images/`` + ``train.csv`` / ``val.csv`` / ``test.csv``) — :mod:`.mini_imagenet`;
* CIFAR-10-C (``<corruption>.npy`` + ``labels.npy``) and its corruption functions — :mod:`.cifar10c`;
* twins: Digits-5 from scikit-learn's real handwritten digits rendered into five domains
  (:mod:`.digits5`), procedural object classes rendered in four styles (:mod:`.styled_objects`).
"""

from runner.data.domains.folders import ImageArrays, read_class_folders, read_domain_folders

__all__ = ["ImageArrays", "read_class_folders", "read_domain_folders"]
