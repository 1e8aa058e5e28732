"""Layering: shared networks and data code never import from the method packages above them."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "runner"
LOWER_LAYERS = ("models", "data")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_models_and_data_do_not_import_methods():
    upward = [
        f"{path.relative_to(SRC.parent)}: {module}"
        for layer in LOWER_LAYERS
        for path in sorted((SRC / layer).rglob("*.py"))
        for module in imported_modules(path)
        if module == "runner.methods" or module.startswith("runner.methods.")
    ]
    assert not upward, "a lower layer imports from runner.methods:\n" + "\n".join(upward)


def test_recsys_losses_live_with_the_models_and_are_re_exported():
    from runner.methods import recsys as methods_recsys
    from runner.models.recsys import losses

    for name in losses.__all__:
        assert getattr(methods_recsys, name) is getattr(losses, name)
