"""Partitioners: coverage, seeding, the Dirichlet retry bound."""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import UserError
from runner.federated.partition import (
    IID,
    ByDomain,
    Dirichlet,
    LongTailDirichlet,
    Pathological,
    class_count_table,
)

LABELS = np.repeat(np.arange(10), 60)


def covers_once(parts, n):
    allidx = np.concatenate(parts)
    return len(allidx) == n and len(np.unique(allidx)) == n


def test_iid_is_seeded_and_balanced():
    a, b = IID()(LABELS, 7, seed=1), IID()(LABELS, 7, seed=1)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert covers_once(a, len(LABELS)) and max(map(len, a)) - min(map(len, a)) <= 1


def test_dirichlet_skews_labels_and_respects_min_size():
    parts = Dirichlet(alpha=0.1, min_size=5)(LABELS, 5, seed=0)
    assert covers_once(parts, len(LABELS)) and min(map(len, parts)) >= 5
    table = class_count_table(LABELS, parts, 10)
    assert (table.max(1) / table.sum(1)).mean() > 0.3  # far from uniform 0.1


def test_dirichlet_fails_clearly_after_retries():
    with pytest.raises(UserError, match="min_size=100 samples in 3 tries"):
        Dirichlet(alpha=0.05, min_size=100, max_retries=3)(LABELS, 6, seed=0)


def test_pathological_gives_few_classes():
    parts = Pathological(classes_per_client=2)(LABELS, 10, seed=0)
    assert covers_once(parts, len(LABELS))
    assert max((np.bincount(LABELS[p], minlength=10) > 0).sum() for p in parts) <= 4


def test_long_tail_then_dirichlet():
    lt = LongTailDirichlet(imbalance_factor=10, alpha=1.0, min_size=1)
    kept = lt.keep(LABELS, 0)
    counts = np.bincount(LABELS[kept], minlength=10)
    assert counts[0] == 60 and counts[-1] == 6
    parts = lt(LABELS, 4, seed=0)
    assert covers_once([np.searchsorted(kept, p) for p in parts], len(kept))


def test_by_domain():
    domains = np.repeat(np.arange(3), 5)
    parts = ByDomain()(np.zeros(15, dtype=int), 3, 0, domains=domains)
    assert [p.tolist() for p in parts][1] == [5, 6, 7, 8, 9]
