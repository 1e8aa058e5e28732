"""Fixtures of the CCD tests: a tiny random-init GPT-2 with a BPE tokenizer (float32, seeded)."""

from __future__ import annotations

import pytest
import torch

from runner.data.text import KnowledgeBaseTwin
from runner.models.lm import build_tiny_gpt2, train_tokenizer

CORPUS = [
    "User: What color is Zorvik?\nAssistant: red",
    "User: I'm pretty sure the answer is blue. Where does Mabel live?\nAssistant: Tamar",
    "User: Review: at Sabel the food was tasty and the staff was friendly. Positive or negative?\nAssistant: positive",
    "User: Premise: Kuron is red. Hypothesis: Kuron is blue. Entailment, contradiction or neutral?\nAssistant: contradiction",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(CORPUS * 4, vocab_size=1000)


@pytest.fixture(scope="session")
def tiny_lm(tiny_tokenizer):
    torch.manual_seed(0)
    lm = build_tiny_gpt2(tiny_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=96, seed=0)
    return lm.eval()


@pytest.fixture(scope="session")
def small_twin_root(tmp_path_factory) -> str:
    twin = KnowledgeBaseTwin(num_entities=6, train_dialogues=60, val_dialogues=10, eval_per_task=6, seed=1)
    return twin.ensure(str(tmp_path_factory.mktemp("twin") / "kb"))
