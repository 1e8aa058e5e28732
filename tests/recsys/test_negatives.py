"""Exact uniform negative sampling (runner.data.recsys.negatives) against a brute-force candidate list."""

from __future__ import annotations

import torch

from runner.data.recsys.negatives import ExactNegativeSampler


def test_every_negative_is_a_candidate_and_the_draw_is_uniform():
    num_users, num_items = 4, 10
    train = {0: [0, 1, 2, 3, 4, 5, 6, 7], 1: [9], 2: [], 3: [2, 2, 5, 9, 0]}  # user 0: two candidates
    users = torch.tensor([u for u, items in train.items() for _ in items])
    items = torch.tensor([i for items in train.values() for i in items])
    sampler = ExactNegativeSampler(users, items, num_users, num_items)
    draws = 20_000
    query = torch.arange(num_users).repeat_interleave(draws)
    negatives = sampler.sample(query, generator=torch.Generator().manual_seed(0))
    for u in range(num_users):
        candidates = sorted(set(range(num_items)) - set(train[u]))
        got = negatives[query == u]
        assert set(got.tolist()) == set(candidates)  # every candidate reachable, nothing else
        freq = torch.bincount(got, minlength=num_items)[candidates].double() / draws
        assert torch.allclose(freq, torch.full_like(freq, 1 / len(candidates)), atol=0.02)  # uniform


def test_a_user_who_trained_on_every_item_gets_a_uniform_item():
    sampler = ExactNegativeSampler(torch.zeros(3, dtype=torch.long), torch.arange(3), 2, 3)
    negatives = sampler.sample(torch.zeros(300, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert set(negatives.tolist()) == {0, 1, 2}


def test_large_id_space_without_a_dense_bitmap():
    g = torch.Generator().manual_seed(1)
    num_users, num_items = 50_000, 40_000  # 2e9 cells: exact without a user x item table
    users = torch.randint(0, num_users, (200_000,), generator=g)
    items = torch.randint(0, num_items, (200_000,), generator=g)
    sampler = ExactNegativeSampler(users, items, num_users, num_items)
    negatives = sampler.sample(users, generator=g)
    train = set(zip(users.tolist(), items.tolist(), strict=True))
    assert not any((u, i) in train for u, i in zip(users.tolist(), negatives.tolist(), strict=True))
