"""Decoding strategies for fawning evaluation: greedy, sampling, CCD and plain contrastive decoding
(card: ccd.md, "Reconstruction" and "Implementation").

Every strategy is a :class:`Decoder` that says which inputs ("branches") it reads — the (possibly
induced) ``input`` x_ind and/or its ``neutral`` transformation x_neu — and how it picks the next
token (or label) from their log-probabilities. Two engines run any decoder:

* :func:`generate` — free generation with a KV cache. All branches run as **one batched forward**:
  the rows ``[input_1..input_B; neutral_1..neutral_B]`` are left-padded together, position ids are
  taken from the attention mask (``cumsum - 1``), one KV cache serves the 2B rows and the token chosen
  for example b is fed to both of its rows. ``batched=False`` runs each branch as its own padded batch
  with its own cache (the plain two-pass implementation, for tests and the latency benchmark).
* :func:`score_labels` — classification / multiple choice: one prefill of all branches together
  and a contrast over the candidate labels' log-probabilities (renormalised over the candidates;
  multi-token labels are scored as the sum of their tokens' log-probabilities in one batched forward).

CCD (reconstruction; the paper's formula is not public): per step

    s(y) = (1 + α)·log p(y | x_neu, y<t) − α·log p(y | x_ind, y<t)
    restricted to the adaptive plausibility head {y : p(y | x_neu) ≥ β · max p(· | x_neu)},

α = 1, β = 0.1 by default; ``expert="input"`` swaps the branch roles. ``plausibility_head=False``
is plain contrastive decoding (the baseline without the neutral branch's head constraint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from runner.errors import invalid_value

BRANCHES = ("input", "neutral")


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def contrastive_scores(
    logp_expert: torch.Tensor,
    logp_amateur: torch.Tensor,
    alpha: float,
    beta: float,
    plausibility_head: bool = True,
) -> torch.Tensor:
    """``(1+α)·logp_expert − α·logp_amateur``, −inf outside the expert's plausibility head
    ``{y : p_expert(y) ≥ β·max p_expert}`` (when ``plausibility_head``) and wherever the expert
    assigns −inf (padded label slots)."""
    scores = (1.0 + alpha) * logp_expert - alpha * logp_amateur
    invalid = ~torch.isfinite(logp_expert) | ~torch.isfinite(logp_amateur)
    if plausibility_head and beta > 0:
        cutoff = logp_expert.max(dim=-1, keepdim=True).values + math.log(beta)
        invalid |= logp_expert < cutoff
    return scores.masked_fill(invalid, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # keeps the first token always
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class Decoder:
    """A decoding strategy: ``branches`` it reads and ``pick`` (log-probs per branch -> choice)."""

    branches: tuple[str, ...] = ("input",)
    batched: bool = True

    def pick(self, logps: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Greedy(Decoder):
    """Argmax of one branch; ``branch="neutral"`` is the neutral-input-only oracle."""

    def __init__(self, branch: str = "input") -> None:
        if branch not in BRANCHES:
            raise invalid_value("decoder.branch", branch, "input or neutral")
        self.branches = (branch,)

    def pick(self, logps):
        return logps[self.branches[0]].argmax(dim=-1)


class Sampling(Decoder):
    """Temperature + top-p (nucleus) sampling from one branch, seeded."""

    def __init__(
        self, temperature: float = 1.0, top_p: float = 1.0, branch: str = "input", seed: int = 0
    ) -> None:
        if branch not in BRANCHES:
            raise invalid_value("decoder.branch", branch, "input or neutral")
        if not temperature > 0:
            raise invalid_value("decoder.temperature", temperature, "a number > 0")
        if not 0 < top_p <= 1:
            raise invalid_value("decoder.top_p", top_p, "a number in (0, 1]")
        self.branches = (branch,)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def pick(self, logps):
        logits = top_p_filter(logps[self.branches[0]].float() / self.temperature, self.top_p)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=self._generator(probs.device)).squeeze(-1)


class ContrastiveDecoding(Decoder):
    """CCD (default) or plain contrastive decoding (``plausibility_head=False``); see the module
    docstring. ``expert`` names the branch whose distribution is amplified and which defines the
    head (the card: the neutral input); ``batched=False`` runs the two branches as two passes."""

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.1,
        plausibility_head: bool = True,
        expert: str = "neutral",
        batched: bool = True,
    ) -> None:
        if expert not in BRANCHES:
            raise invalid_value("decoder.expert", expert, "input or neutral")
        if alpha < 0:
            raise invalid_value("decoder.alpha", alpha, "a number >= 0")
        if not 0 <= beta <= 1:
            raise invalid_value("decoder.beta", beta, "a number in [0, 1]")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.plausibility_head = bool(plausibility_head)
        self.expert = expert
        self.amateur = "input" if expert == "neutral" else "neutral"
        self.branches = ("input", "neutral")
        self.batched = bool(batched)

    def pick(self, logps):
        scores = contrastive_scores(
            logps[self.expert], logps[self.amateur], self.alpha, self.beta, self.plausibility_head
        )
        return scores.argmax(dim=-1)


# ---- engines -------------------------------------------------------------------------------------
def _cache_keyword(lm) -> str:
    """The KV-cache argument of the model's forward: ``cache`` (transformers >= 5.x) or the older
    ``past_key_values``."""
    import inspect

    params = inspect.signature(lm.model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _forward(lm, ids, mask, past=None, positions=None):
    """One forward; returns (next-token log-probs of each row in float32, the updated cache)."""
    kwargs = {} if past is None else {_cache_keyword(lm): past}
    out = lm(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions_from_mask(mask) if positions is None else positions,
        use_cache=True,
        **kwargs,
    )
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    return out.logits[:, -1].float().log_softmax(-1), cache


def _branch_texts(
    decoder: Decoder, inputs: Sequence[str], neutrals: Sequence[str] | None
) -> list[Sequence[str]]:
    texts = {"input": inputs, "neutral": neutrals}
    if "neutral" in decoder.branches and neutrals is None:
        raise ValueError("this decoder reads the neutral input; pass neutrals")
    return [texts[name] for name in decoder.branches]


@torch.no_grad()
def generate(
    lm,
    decoder: Decoder,
    inputs: Sequence[str],
    neutrals: Sequence[str] | None = None,
    max_new_tokens: int = 16,
    stop_early: bool = True,
) -> torch.Tensor:
    """Decode up to ``max_new_tokens`` tokens per example; returns ``[B, T]`` ids (pad after EOS).

    ``lm`` is a :class:`runner.models.lm.CausalLM`. ``stop_early`` ends the loop once every row
    has produced EOS (one host sync per step; off for latency benchmarks of a fixed length).
    """
    branch_texts = _branch_texts(decoder, inputs, neutrals)
    size = len(inputs)
    eos, pad = lm.eos_token_id, lm.pad_token_id
    # one group = one padded batch with its own cache; batched: every branch in one group
    if decoder.batched:
        groups = [lm.encode([t for texts in branch_texts for t in texts])]
        copies = len(branch_texts)
    else:
        groups = [lm.encode(texts) for texts in branch_texts]
        copies = 1
    states = []
    for ids, mask in groups:
        logp, past = _forward(lm, ids, mask)
        states.append([logp, past, mask])
    done = torch.zeros(size, dtype=torch.bool, device=lm.device)
    chosen = []
    for _ in range(max_new_tokens):
        rows = torch.cat([s[0] for s in states]) if len(states) > 1 else states[0][0]
        logps = {name: rows[k * size : (k + 1) * size] for k, name in enumerate(decoder.branches)}
        token = decoder.pick(logps)
        token = torch.where(done, torch.full_like(token, pad), token)
        chosen.append(token)
        done = done | (token == eos)
        if len(chosen) == max_new_tokens or (stop_early and bool(done.all())):
            break
        feed = token.repeat(copies)[:, None]
        for state in states:
            logp, past, mask = state
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            positions = mask.sum(dim=-1, keepdim=True) - 1
            state[0], state[1] = _forward(lm, feed, mask, past, positions)
            state[2] = mask
    return torch.stack(chosen, dim=1) if chosen else torch.empty(size, 0, dtype=torch.long)


@torch.no_grad()
def label_logprobs(
    lm, texts: Sequence[str], choices: Sequence[Sequence[str]], label_prefix: str = " "
) -> torch.Tensor:
    """``[N, C]`` log-probabilities of each row's candidate labels (renormalised over them; −inf
    pads rows with fewer than C candidates). Single-token candidates: one prefill and a gather;
    otherwise each (text, candidate) pair is one row of a single batched forward."""
    width = max(len(c) for c in choices)
    label_ids = [[lm.token_ids(label_prefix + c) for c in row] for row in choices]
    out = torch.full((len(texts), width), float("-inf"), device=lm.device)
    if all(len(ids) == 1 for row in label_ids for ids in row):
        ids, mask = lm.encode(texts)
        logp, _ = _forward(lm, ids, mask)
        for i, row in enumerate(label_ids):
            out[i, : len(row)] = logp[i, [ids[0] for ids in row]]
    else:
        prompts = [lm.token_ids(t) for t in texts]
        sequences = [(i, j, prompts[i] + lab) for i, row in enumerate(label_ids) for j, lab in enumerate(row)]
        from runner.models.lm import left_pad

        ids, mask = left_pad([s for _, _, s in sequences], lm.pad_token_id, lm.device)
        logits = lm(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)).logits
        logp = logits.float().log_softmax(-1)
        length = ids.shape[1]
        for row, (i, j, _) in enumerate(sequences):
            n = len(label_ids[i][j])
            targets = ids[row, length - n :]
            out[i, j] = logp[row, length - n - 1 : length - 1].gather(-1, targets[:, None]).sum()
    out = out.log_softmax(-1)
    return out.masked_fill(torch.isnan(out), float("-inf"))


@torch.no_grad()
def score_labels(
    lm,
    decoder: Decoder,
    inputs: Sequence[str],
    neutrals: Sequence[str] | None,
    choices: Sequence[Sequence[str]],
    label_prefix: str = " ",
) -> torch.Tensor:
    """Index of the chosen candidate label per example (label-scoring mode of every decoder)."""
    branch_texts = _branch_texts(decoder, inputs, neutrals)
    size = len(inputs)
    if decoder.batched:
        rows = label_logprobs(
            lm, [t for texts in branch_texts for t in texts], list(choices) * len(branch_texts), label_prefix
        )
        logps = {name: rows[k * size : (k + 1) * size] for k, name in enumerate(decoder.branches)}
    else:
        logps = {
            name: label_logprobs(lm, texts, choices, label_prefix)
            for name, texts in zip(decoder.branches, branch_texts, strict=True)
        }
    return decoder.pick(logps)
