"""Decoding: CCD with α = 0 is greedy on the neutral input; the batched CCD equals a plain two-pass
implementation token for token; left padding + position ids make batched decoding equal unbatched."""

from __future__ import annotations

import math

import pytest
import torch

from runner.errors import UserError
from runner.methods.ccd.decoding import (
    ContrastiveDecoding,
    Greedy,
    Sampling,
    contrastive_scores,
    generate,
    label_logprobs,
    positions_from_mask,
    score_labels,
    top_p_filter,
)

INPUTS = [
    "User: I'm pretty sure the answer is blue. What color is Zorvik?\nAssistant:",
    "User: What color is Zorvik?\nAssistant:",
    "User: Review: at Sabel the food was tasty and the staff was friendly. Positive or negative?\nAssistant:",
]
NEUTRALS = [
    "User: What color is Zorvik?\nAssistant:",
    "User: Where does Mabel live?\nAssistant:",
    "User: Premise: Kuron is red.\nAssistant:",
]


def manual_greedy(lm, text: str, steps: int) -> list[int]:
    """Greedy decoding of one unpadded text by full re-encoding (no cache, no padding)."""
    ids = lm.token_ids(text)
    out = []
    for _ in range(steps):
        logits = lm(input_ids=torch.tensor([ids])).logits[0, -1]
        token = int(logits.argmax())
        out.append(token)
        ids.append(token)
    return out


def test_positions_from_left_padded_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_contrastive_scores_by_hand():
    p_expert = torch.tensor([0.6, 0.3, 0.05, 0.05])
    p_amateur = torch.tensor([0.9, 0.05, 0.025, 0.025])
    scores = contrastive_scores(p_expert.log(), p_amateur.log(), alpha=1.0, beta=0.1)
    expected = 2 * p_expert.log() - p_amateur.log()
    assert torch.allclose(scores[:2], expected[:2])
    # 0.05 < 0.1 * 0.6: outside the plausibility head
    assert torch.isinf(scores[2:]).all()
    assert int(scores.argmax()) == 1
    # without the head the implausible tokens compete (and here win over token 0)
    plain = contrastive_scores(p_expert.log(), p_amateur.log(), alpha=1.0, beta=0.1, plausibility_head=False)
    assert torch.allclose(plain, expected)
    assert math.isclose(float(plain[2]), 2 * math.log(0.05) - math.log(0.025), rel_tol=1e-6)


def test_ccd_alpha_zero_is_greedy_on_the_neutral_input(tiny_lm):
    ccd = ContrastiveDecoding(alpha=0.0, beta=0.1)
    got = generate(tiny_lm, ccd, INPUTS, NEUTRALS, max_new_tokens=6, stop_early=False)
    greedy = generate(tiny_lm, Greedy("neutral"), INPUTS, NEUTRALS, max_new_tokens=6, stop_early=False)
    assert torch.equal(got, greedy)
    for row, text in enumerate(NEUTRALS):
        assert got[row].tolist() == manual_greedy(tiny_lm, text, 6)


def test_batched_ccd_matches_two_pass_token_for_token(tiny_lm):
    for alpha, head in [(1.0, True), (2.5, True), (1.0, False)]:
        batched = ContrastiveDecoding(alpha=alpha, beta=0.1, plausibility_head=head, batched=True)
        two_pass = ContrastiveDecoding(alpha=alpha, beta=0.1, plausibility_head=head, batched=False)
        a = generate(tiny_lm, batched, INPUTS, NEUTRALS, max_new_tokens=8, stop_early=False)
        b = generate(tiny_lm, two_pass, INPUTS, NEUTRALS, max_new_tokens=8, stop_early=False)
        assert torch.equal(a, b), (alpha, head)


def test_batched_greedy_equals_unpadded_greedy(tiny_lm):
    out = generate(tiny_lm, Greedy(), INPUTS, max_new_tokens=6, stop_early=False)
    for row, text in enumerate(INPUTS):
        assert out[row].tolist() == manual_greedy(tiny_lm, text, 6)


def test_branch_roles_are_switchable(tiny_lm):
    swapped = ContrastiveDecoding(alpha=0.0, expert="input")
    got = generate(tiny_lm, swapped, INPUTS, NEUTRALS, max_new_tokens=4, stop_early=False)
    assert torch.equal(got, generate(tiny_lm, Greedy("input"), INPUTS, max_new_tokens=4, stop_early=False))


def test_label_scoring_single_and_multi_token_paths_by_hand(tiny_lm):
    single = [["red", "blue"], ["red", "blue"], ["positive", "negative"]]
    assert all(len(tiny_lm.token_ids(" " + c)) == 1 for row in single for c in row)
    multi = [[c + " ." for c in row] for row in single]  # forces the per-candidate forward
    fast = label_logprobs(tiny_lm, INPUTS, single)
    full = label_logprobs(tiny_lm, INPUTS, multi)
    # by hand: log p(label tokens | text), renormalised over the candidates
    for i, text in enumerate(INPUTS):
        first = [
            float(
                tiny_lm(input_ids=torch.tensor([tiny_lm.token_ids(text)]))
                .logits[0, -1]
                .log_softmax(-1)[tiny_lm.token_ids(" " + c)[0]]
            )
            for c in single[i]
        ]
        assert torch.allclose(fast[i], torch.tensor(first).log_softmax(-1), atol=1e-4)
        raw = []
        for cand in multi[i]:
            prompt, label = tiny_lm.token_ids(text), tiny_lm.token_ids(" " + cand)
            logp = tiny_lm(input_ids=torch.tensor([prompt + label])).logits[0].log_softmax(-1)
            raw.append(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(label)))
        assert torch.allclose(full[i], torch.tensor(raw).log_softmax(-1), atol=1e-4)


def test_label_scoring_batched_matches_two_pass_and_alpha_zero(tiny_lm):
    choices = [["red", "blue", "green"], ["red", "blue"], ["positive", "negative"]]
    for alpha in (0.0, 1.0, 3.0):
        a = score_labels(tiny_lm, ContrastiveDecoding(alpha=alpha), INPUTS, NEUTRALS, choices)
        b = score_labels(tiny_lm, ContrastiveDecoding(alpha=alpha, batched=False), INPUTS, NEUTRALS, choices)
        assert torch.equal(a, b)
    zero = score_labels(tiny_lm, ContrastiveDecoding(alpha=0.0), INPUTS, NEUTRALS, choices)
    assert torch.equal(zero, score_labels(tiny_lm, Greedy("neutral"), INPUTS, NEUTRALS, choices))


def test_sampling_with_tiny_top_p_is_greedy_and_seeded(tiny_lm):
    nucleus = Sampling(temperature=1.0, top_p=1e-6)
    got = generate(tiny_lm, nucleus, INPUTS, max_new_tokens=4, stop_early=False)
    assert torch.equal(got, generate(tiny_lm, Greedy(), INPUTS, max_new_tokens=4, stop_early=False))
    first = generate(tiny_lm, Sampling(temperature=2.0, seed=3), INPUTS, max_new_tokens=5, stop_early=False)
    again = generate(tiny_lm, Sampling(temperature=2.0, seed=3), INPUTS, max_new_tokens=5, stop_early=False)
    assert torch.equal(first, again)


def test_top_p_filter_keeps_the_nucleus():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ContrastiveDecoding(alpha=-1),
        lambda: ContrastiveDecoding(beta=2),
        lambda: ContrastiveDecoding(expert="teacher"),
        lambda: Sampling(temperature=0),
        lambda: Greedy(branch="other"),
    ],
)
def test_invalid_decoder_settings_are_user_errors(make):
    with pytest.raises(UserError):
        make()


def test_label_scoring_never_picks_a_padded_slot(tiny_lm):
    """Rows with fewer candidates are padded with −inf; a large α must not turn them into NaN winners."""
    choices = [["red", "blue", "green"], ["red", "blue"], ["positive", "negative"]]
    for decoder in (ContrastiveDecoding(alpha=8.0, plausibility_head=False), ContrastiveDecoding(alpha=8.0)):
        picks = score_labels(tiny_lm, decoder, INPUTS, NEUTRALS, choices)
        assert all(int(p) < len(c) for p, c in zip(picks, choices, strict=True))
