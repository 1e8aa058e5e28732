"""The cache every synthetic twin shares: seeded generation into a temp folder, atomic install,
regeneration only when the recipe changes.

A twin subclasses :class:`CachedTwin` and implements :meth:`recipe` (every parameter that
determines the files, including a recipe version) and :meth:`write` (write the dataset, in the
real format, into an empty folder). :meth:`ensure` does the rest: ``recipe.json`` in the root
holds the recipe's hash; a root whose hash differs is regenerated in a temporary folder beside it
and renamed into place, so readers never see a half-written dataset; if another process finishes
first with the same recipe its copy is kept; a non-empty folder that is not a twin is never
overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod

from runner.errors import UserError, invalid_value

log = logging.getLogger("runner.data")

RECIPE_FILE = "recipe.json"


class CachedTwin(ABC):
    """Base class of the synthetic twins (see the module docstring)."""

    #: a short name for log lines
    twin_name: str = "synthetic"

    @abstractmethod
    def recipe(self) -> dict:
        """Every parameter that determines the generated files (JSON-serialisable)."""

    @abstractmethod
    def write(self, out: str) -> None:
        """Write the dataset in its real on-disk format into the empty folder ``out``."""

    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()

    def is_current(self, root: str) -> bool:
        """True when ``root`` holds a complete twin of this recipe."""
        try:
            with open(os.path.join(root, RECIPE_FILE)) as fh:
                return json.load(fh).get("hash") == self.recipe_hash()
        except (OSError, ValueError, AttributeError):
            return False

    def generate(self, out: str) -> None:
        """Write the twin into ``out`` and, last, its ``recipe.json``."""
        self.write(out)
        with open(os.path.join(out, RECIPE_FILE), "w") as fh:
            json.dump({"hash": self.recipe_hash(), "recipe": self.recipe()}, fh, indent=2, sort_keys=True)

    def ensure(self, root: str) -> str:
        """Make sure ``root`` holds this twin (generating it if absent or stale); returns ``root``."""
        root = os.path.abspath(os.path.expanduser(str(root)))
        if self.is_current(root):
            return root
        if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, RECIPE_FILE)):
            raise UserError(
                f"refusing to write the synthetic twin into non-empty {root} (no {RECIPE_FILE} there)"
            )
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
        try:
            started = time.perf_counter()
            self.generate(tmp)
            log.info(
                "generated the %s twin at %s in %.1fs", self.twin_name, root, time.perf_counter() - started
            )
            self._install(tmp, root)
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        return root

    def _install(self, tmp: str, root: str) -> None:
        try:
            os.rename(tmp, root)  # atomic when root does not exist (or is an empty folder)
            return
        except OSError:
            pass
        if self.is_current(root):
            return  # another process won the race with the same recipe: keep theirs
        trash = f"{root}.old-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(root, trash)  # a stale twin: move it aside
        except FileNotFoundError:
            trash = ""
        try:
            os.rename(tmp, root)
        except OSError:
            if not self.is_current(root):
                raise
        if trash:
            shutil.rmtree(trash, ignore_errors=True)


def data_root(synthetic: bool, root: str | None, twin: CachedTwin | None, synthetic_root: str | None) -> str:
    """The folder a datamodule reads: the twin's (generated if needed) when ``synthetic``, else ``root``.

    Every dataset config carries ``synthetic``, ``root``, ``twin`` and ``synthetic_root``; a twin
    asked for without its generator or folder is a one-line config error.
    """
    if not synthetic:
        return str(root)
    if twin is None or synthetic_root is None:
        raise invalid_value("dataset.synthetic", synthetic, "needs dataset.twin and dataset.synthetic_root")
    return twin.ensure(str(synthetic_root))
