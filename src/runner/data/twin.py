"""The cache every synthetic twin shares: seeded generation into a temp folder, atomic install,
one folder per recipe (generated once, never rewritten).

A twin subclasses :class:`CachedTwin` and implements :meth:`recipe` (every parameter that
determines the files, including a recipe version) and :meth:`write` (write the dataset, in the
real format, into an empty folder). :meth:`ensure` does the rest: ``recipe.json`` in the root
holds the recipe's hash; a twin is generated in a temporary folder and renamed into place, so readers
never see a half-written dataset; if another process finishes first with the same recipe its copy is
kept; a non-empty folder that is not a twin is never overwritten.

A written twin is never changed or replaced. When the root already holds another recipe, this one goes
to ``<root>-<first 12 hex digits of its hash>`` beside it (:func:`variant_root`), and :meth:`ensure`
returns where the twin is. Replacing the folder in place, as the cache once did, let two runs of
different twin sizes at once (a table sweep, two sessions) swap the folder under each other, and a run
that reads its files lazily (videos, stickers) could read the other recipe's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
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
        """The folder that holds this twin, generated if needed: ``root`` when it holds this recipe or
        nothing yet, else :func:`variant_root` (``root`` holds another recipe and is left as it is)."""
        root = os.path.abspath(os.path.expanduser(str(root)))
        if self.is_current(root):
            return root
        if _holds_files(root):
            if not os.path.isfile(os.path.join(root, RECIPE_FILE)):
                raise UserError(
                    f"refusing to write the synthetic twin into non-empty {root} (no {RECIPE_FILE} there)"
                )
            variant = variant_root(root, self.recipe_hash())
            if self.is_current(variant):
                log.info("the %s twin is at %s (%s holds another recipe)", self.twin_name, variant, root)
                return variant
            log.info(
                "%s holds another %s twin recipe (kept as is); this one goes to %s",
                root,
                self.twin_name,
                variant,
            )
            root = variant
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
        try:
            started = time.perf_counter()
            self.generate(tmp)
            where = self._install(tmp, root)
            log.info(
                "generated the %s twin at %s in %.1fs", self.twin_name, where, time.perf_counter() - started
            )
            return where
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    def _install(self, tmp: str, root: str) -> str:
        """Rename the finished ``tmp`` to ``root`` (absent or an empty folder); where another process
        filled ``root`` first, keep its copy of this recipe, or install beside a different one."""
        for target in dict.fromkeys((root, variant_root(root, self.recipe_hash()))):  # once each
            try:
                os.rename(tmp, target)  # atomic; fails when target is a non-empty folder
                return target
            except OSError:
                if self.is_current(target):
                    return target  # another process won the race with the same recipe: keep theirs
        raise UserError(
            f"could not install the synthetic twin at {root}: it and its variant hold other files"
        )


def variant_root(root: str, recipe_hash: str) -> str:
    """Where a twin goes when ``root`` holds another recipe: ``<root>-<first 12 hex digits>``. A
    variant's own variant is itself, so a recipe has at most these two places."""
    suffix = f"-{recipe_hash[:12]}"
    return root if root.endswith(suffix) else f"{root}{suffix}"


def _holds_files(folder: str) -> bool:
    return os.path.isdir(folder) and bool(os.listdir(folder))


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
