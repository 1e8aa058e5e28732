"""Pieces shared by the image / tabular readers and twins: the loaded splits and the twin cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass

import torch

from runner.errors import UserError

log = logging.getLogger("runner.data")

__all__ = ["ArraySplits", "CachedTwin"]


@dataclass
class ArraySplits:
    """A dataset loaded as tensors: ``x_*`` float32 (normalised), ``y_*`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]


class CachedTwin:
    """A seeded generator writing a dataset in its real on-disk format, cached by recipe hash.

    Subclasses define :meth:`recipe` (every generation parameter) and :meth:`write` (files into an
    empty folder). :meth:`ensure` regenerates only when ``recipe.json``'s hash differs, writing into
    a temporary folder beside the root that is renamed into place (readers never see half a twin).
    """

    RECIPE_VERSION = 1

    def recipe(self) -> dict:
        raise NotImplementedError

    def write(self, out: str) -> None:
        raise NotImplementedError

    def recipe_hash(self) -> str:
        payload = {"class": type(self).__name__, "version": self.RECIPE_VERSION, **self.recipe()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _is_current(self, root: str) -> bool:
        try:
            with open(os.path.join(root, "recipe.json")) as fh:
                return json.load(fh).get("hash") == self.recipe_hash()
        except (OSError, ValueError):
            return False

    def ensure(self, root: str) -> str:
        """Make sure ``root`` holds this twin; returns ``root``."""
        root = os.path.abspath(root)
        if self._is_current(root):
            return root
        if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, "recipe.json")):
            raise UserError(
                f"refusing to write the synthetic twin into non-empty {root} (no recipe.json there)"
            )
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
        try:
            log.info("writing synthetic twin %s into %s", type(self).__name__, root)
            self.write(tmp)
            with open(os.path.join(tmp, "recipe.json"), "w") as fh:
                json.dump({"hash": self.recipe_hash(), "recipe": self.recipe()}, fh, indent=2, sort_keys=True)
            if os.path.isdir(root):
                if self._is_current(root):  # another process wrote the same twin meanwhile
                    shutil.rmtree(tmp, ignore_errors=True)
                    return root
                trash = f"{root}.stale-{uuid.uuid4().hex[:8]}"
                os.rename(root, trash)
                shutil.rmtree(trash, ignore_errors=True)
            try:
                os.rename(tmp, root)
            except OSError:
                if not self._is_current(root):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return root
