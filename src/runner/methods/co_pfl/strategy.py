"""CO-PFL on the FL engine (arXiv 2510.20219; card ``papers/co_pfl.md``).

One round for the participating clients ``n`` (every reconstruction is a switch, card "Reconstruction"):

1. **Start point** — the global shared entries plus the client's personal entries:
   ``θ_n⁰ = m_n ⊙ p_n + (1 − m_n) ⊙ w`` (``m_n`` the client's personal mask, ``p_n`` its last local
   model kept in the client state ``local``).
2. **Local training with MAMO** (``local_optimizer=mask_aware``): Adam-style first / second moments and
   bias-correction counts kept *separately* for the shared and the personal coordinates
   (:class:`~runner.methods.co_pfl.personalisation.MaskAwareAdam`, here on stacked rows as the
   ``LocalTask.step``); the personal group's moments persist in the client state across rounds, the
   shared group's are reset every round because the server overwrites the shared entries
   (``reset_shared_moments``; reconstruction). ``local_optimizer=adam``: one mask-unaware Adam whose moments
   are reset every round (a fresh client optimizer per round, PFLlib's practice) — the "w/o MAMO"
   ablation; ``local_optimizer=sgd``: plain local SGD.
3. **PWPM** (``mask_mode=parameter``): FedSelect-style growth, per parameter tensor, of the client's
   personal mask: the top-``p`` fraction of the still-shared entries by ``|θ_after − θ_before|`` becomes
   personal until the tensor's personal fraction reaches the budget ``r``
   (:func:`~runner.methods.co_pfl.personalisation.grow_personal_mask`); ``maskable`` restricts which
   tensors may personalise (null: all). ``mask_mode=layer``: the tensors named by ``layer_personal``
   are personal for every client (FedPer-like head); ``mask_mode=none``: no personal entries (the
   "w/o mask" ablation; the personalised model is then the global model). The mask grown this round is
   the one the client uploads and the one this round's aggregation uses (reconstruction).
4. **COWA** (``weighting=contribution``): ``Γ_grad_n = 1 − cos(Δ_n, mean_{m≠n} Δ_m)`` on the shared
   updates ``Δ_n = (1 − m_n) ⊙ (θ_n − θ_n⁰)``; ``Γ_data_n`` = the loss (``data_score=loss``) or error
   (``error``) of the leave-one-out aggregate ``w_{−n}`` (the masked data-size weighted average of the
   other clients) completed with client ``n``'s personal entries (``loo_personal``), on a batch of
   ``data_batch_size``
   of client n's training samples; ``α = softmax(λ_g z(Γ_grad) + λ_d z(Γ_data))`` (``weight_mode=
   softmax``) or the normalised product (``product``)
   (:func:`~runner.methods.co_pfl.contribution.contribution_weights`). ``weighting=data_size`` (FedAvg
   weights: the "w/o contribution weights" ablation) or ``uniform`` replace α.
5. **Server**: ``w ← masked_weighted_average(θ, m, α, w)`` — each entry averaged over the clients
   that share it, weighted by α; entries nobody shares keep their value. The engine's server
   optimizer is SGD with ``server_lr``; the strategy returns the direction ``(w − w_new) / server_lr`` so
   the step lands exactly on ``w_new``.

Personalised evaluation (``client_evaluation_parameters``): ``m_n ⊙ p_n + (1 − m_n) ⊙ w``.

Deviations / reconstructions (card): p, r, λ and the Adam constants are not published; the defaults
below are FedSelect-like guesses (p = 0.05 per round, r = 0.5). Byzantine clients are not modelled.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.simulator import LocalResult, LocalTask
from runner.federated.strategy import RoundPlan, Strategy

from .contribution import WEIGHT_MODES, contribution_weights, gradient_contribution
from .personalisation import grow_personal_mask, masked_weighted_average

__all__ = ["COPFL", "mask_aware_adam_step"]

MASK_MODES = ("parameter", "layer", "none")
LOCAL_OPTIMIZERS = ("mask_aware", "adam", "sgd")
WEIGHTINGS = ("contribution", "data_size", "uniform")
DATA_SCORES = ("loss", "error")


def mask_aware_adam_step(lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0):
    """MAMO as a LocalTask ``step`` on stacked rows (row-wise ops only).

    ``state = (personal, m_s, v_s, t_s, m_p, v_p, t_p)``: the ``(C, d)`` personal mask (float 0/1,
    passed through unchanged), the shared and the personal groups' first / second moments ``(C, d)``
    and step counts ``(C, 1)``. Each group's moments and count change only at that group's
    coordinates (and its count only when the group is non-empty), as in
    :class:`~runner.methods.co_pfl.personalisation.MaskAwareAdam`."""
    beta1, beta2 = betas

    def step(params, grads, state, s):
        personal, m_s, v_s, t_s, m_p, v_p, t_p = state
        if weight_decay:
            grads = grads + weight_decay * params
        is_p = personal > 0.5
        is_s = ~is_p
        outs = []
        for members, m, v, t in ((is_s, m_s, v_s, t_s), (is_p, m_p, v_p, t_p)):
            t = t + members.any(dim=-1, keepdim=True).to(t.dtype)
            m = torch.where(members, beta1 * m + (1 - beta1) * grads, m)
            v = torch.where(members, beta2 * v + (1 - beta2) * grads.square(), v)
            tc = t.clamp_min(1)
            direction = (m / (1 - beta1**tc)) / ((v / (1 - beta2**tc)).sqrt() + eps)
            outs.append((m, v, t, direction))
        (m_s, v_s, t_s, d_s), (m_p, v_p, t_p, d_p) = outs
        params = params - lr * torch.where(is_p, d_p, d_s)
        return params, (personal, m_s, v_s, t_s, m_p, v_p, t_p)

    return step


class COPFL(Strategy):
    """CO-PFL: PWPM masks, COWA weights, MAMO local optimizer (module docstring).

    Args:
        mask_mode: ``parameter`` (PWPM) | ``layer`` (fixed personal tensors ``layer_personal``) | ``none``.
        rate: personalisation rate p (fraction of the still-shared entries grown per round).
        budget: personalisation budget r (max personal fraction of each tensor).
        maskable: name fragments of the tensors PWPM may personalise (null: every tensor).
        layer_personal: name fragments personal in ``mask_mode=layer``.
        weighting: ``contribution`` (COWA) | ``data_size`` | ``uniform``.
        weight_mode: ``softmax`` | ``product`` (how Γ_grad and Γ_data combine).
        lambda_grad, lambda_data: λ_g, λ_d of the softmax mode.
        data_score: ``loss`` | ``error`` of w_{−n} on client n's batch (Γ_data).
        data_batch_size: samples of client n's data that score w_{−n}.
        loo_personal: complete w_{−n} with client n's personal entries before scoring (the model client
            n would hold without its own shared contribution); false: score w_{−n} as it is.
        local_optimizer: ``mask_aware`` (MAMO) | ``adam`` (mask-unaware, reset per round) | ``sgd``.
        betas, eps: Adam constants; reset_shared_moments: MAMO resets the shared group every round.
        **base: :class:`~runner.federated.strategy.Strategy` arguments (``local_lr`` is the Adam step
            size with an Adam-style momentum; ``personal_parameters`` must stay empty: masks replace it).
    """

    def __init__(
        self,
        mask_mode: str = "parameter",
        rate: float = 0.05,
        budget: float = 0.5,
        maskable: list[str] | None = None,
        layer_personal: list[str] | None = None,
        weighting: str = "contribution",
        weight_mode: str = "softmax",
        lambda_grad: float = 1.0,
        lambda_data: float = 1.0,
        data_score: str = "loss",
        data_batch_size: int = 64,
        loo_personal: bool = True,
        local_optimizer: str = "mask_aware",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        reset_shared_moments: bool = True,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        for key, value, allowed in (
            ("mask_mode", mask_mode, MASK_MODES),
            ("weighting", weighting, WEIGHTINGS),
            ("weight_mode", weight_mode, WEIGHT_MODES),
            ("data_score", data_score, DATA_SCORES),
            ("local_optimizer", local_optimizer, LOCAL_OPTIMIZERS),
        ):
            if value not in allowed:
                raise invalid_value(f"fl_strategy.{key}", value, "one of " + ", ".join(allowed))
        if not 0.0 <= float(rate) <= 1.0:
            raise invalid_value("fl_strategy.rate", rate, "a number in [0, 1]")
        if not 0.0 <= float(budget) <= 1.0:
            raise invalid_value("fl_strategy.budget", budget, "a number in [0, 1]")
        if self.personal_parameters:
            raise invalid_value(
                "fl_strategy.personal_parameters",
                self.personal_parameters,
                "[] (CO-PFL's personal entries come from its masks: mask_mode / layer_personal)",
            )
        self.mask_mode = mask_mode
        self.rate = float(rate)
        self.budget = float(budget)
        self.maskable = None if maskable is None else list(maskable)
        self.layer_personal = list(layer_personal or ["classifier"])
        self.weighting = weighting
        self.weight_mode = weight_mode
        self.lambda_grad = float(lambda_grad)
        self.lambda_data = float(lambda_data)
        self.data_score = data_score
        self.data_batch_size = int(data_batch_size)
        self.loo_personal = bool(loo_personal)
        self.local_optimizer = local_optimizer
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.reset_shared_moments = bool(reset_shared_moments)
        self._round: dict[str, Any] = {}  # transient per-round values (never saved)

    # ---- state ------------------------------------------------------------------------------------
    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        d = initial.numel()
        self.state.add("local", (d,), initial)
        self.state.add("mask", (d,), 0.0)  # 1 = personal entry of that client
        if self.local_optimizer == "mask_aware":
            for name in ("m_shared", "v_shared", "m_personal", "v_personal"):
                self.state.add(name, (d,), 0.0)
            self.state.add("t_shared", (1,), 0.0)
            self.state.add("t_personal", (1,), 0.0)
        self._layer_mask = None
        self._tensor_slices: list[tuple[int, int]] = []

    def _layout_info(self, module) -> None:
        """Fixed-per-run layout facts: the tensor slices PWPM grows in, the layer-wise mask."""
        if self._tensor_slices or module is None:
            return
        layout = module.layout
        offset = 0
        for name, numel in zip(layout.names, layout.numels, strict=True):
            if self.maskable is None or any(p in name for p in self.maskable):
                self._tensor_slices.append((offset, offset + numel))
            offset += numel
        self._layer_mask = layout.mask(self.layer_personal).to(torch.float32)

    def personal_masks(self, clients: torch.Tensor) -> torch.Tensor:
        """``(C, d)`` float 0/1 personal masks of ``clients``."""
        return self.state.get("mask", clients)

    def personalised(self, clients: torch.Tensor, global_params: torch.Tensor) -> torch.Tensor:
        """``m_n ⊙ p_n + (1 − m_n) ⊙ w`` for each client (start point and evaluation model)."""
        mask = self.personal_masks(clients.to(global_params.device)) > 0.5
        local = self.state.get("local", clients.to(global_params.device))
        return torch.where(mask, local, global_params.expand_as(local))

    # ---- round ------------------------------------------------------------------------------------
    def configure_train(self, round_index: int, global_params: torch.Tensor) -> RoundPlan:
        plan = super().configure_train(round_index, global_params)
        plan.start = self.personalised(plan.clients, global_params)
        self._round = {"global": global_params.detach().clone()}
        return plan

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask | None:
        self._layout_info(module)
        self._round["module"] = module
        if self.local_optimizer == "sgd":
            return None
        clients = plan.clients[rows]
        start = plan.start[rows]
        zeros = torch.zeros_like(start)
        count = torch.zeros(start.shape[0], 1, dtype=start.dtype, device=start.device)
        if self.local_optimizer == "adam":  # mask-unaware: one group, fresh moments every round
            state = (zeros, zeros, zeros, count, zeros, zeros, count)
        else:
            personal = self.personal_masks(clients).to(start.dtype)
            if self.reset_shared_moments:
                m_s, v_s, t_s = zeros, zeros, count
            else:
                m_s, v_s = self.state.get("m_shared", clients), self.state.get("v_shared", clients)
                t_s = self.state.get("t_shared", clients)
            m_p, v_p = self.state.get("m_personal", clients), self.state.get("v_personal", clients)
            t_p = self.state.get("t_personal", clients)
            state = (personal, m_s, v_s, t_s, m_p, v_p, t_p)
        step = mask_aware_adam_step(self.local_lr, self.betas, self.eps, self.local_weight_decay)
        return LocalTask(step=step, state=tuple(t.to(start.dtype) for t in state))

    def grow_masks(self, masks: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """PWPM growth of ``(C, d)`` masks from the local changes ``delta`` (per tensor, per client)."""
        if self.mask_mode == "none":
            return torch.zeros_like(masks)
        if self.mask_mode == "layer":
            return self._layer_mask.to(masks).expand_as(masks).clone()
        grown = masks > 0.5
        for i in range(masks.shape[0]):
            for lo, hi in self._tensor_slices:
                grown[i, lo:hi] = grow_personal_mask(grown[i, lo:hi], delta[i, lo:hi], self.rate, self.budget)
        return grown.to(masks.dtype)

    def client_messages(self, plan, rows, pseudo_grads, result: LocalResult | None = None) -> torch.Tensor:
        clients = plan.clients[rows]
        start = plan.start[rows]
        final = start - self.local_lr * pseudo_grads if result is None else result.final
        if self.local_optimizer == "mask_aware" and result is not None and result.state:
            _, m_s, v_s, t_s, m_p, v_p, t_p = result.state
            for name, value in (
                ("m_shared", m_s),
                ("v_shared", v_s),
                ("t_shared", t_s),
                ("m_personal", m_p),
                ("v_personal", v_p),
                ("t_personal", t_p),
            ):
                self.state.set(name, clients, value)
        masks = self.grow_masks(self.personal_masks(clients), final - start)
        self.state.set("mask", clients, masks)
        self.state.set("local", clients, final)
        self._round.update(clients=clients, final=final, start=start, masks=masks)
        # the message: the shared part of the update (personal entries never leave the client)
        return pseudo_grads * (1 - masks)

    # ---- COWA -------------------------------------------------------------------------------------
    @torch.no_grad()
    def data_scores(self, module, clients, final, masks, sizes, previous, generator) -> torch.Tensor:
        """``Γ_data [C]``: loss / error of w_{−n} (+ client n's personal entries) on n's data."""
        count = final.shape[0]
        idx = module.client_data.sample_indices(clients, 1, self.data_batch_size, generator)[:, 0]
        scores = torch.empty(count, dtype=final.dtype, device=final.device)
        personal = masks > 0.5
        for n in range(count):
            others = sizes.clone()
            others[n] = 0
            w_minus = masked_weighted_average(final, personal, others, previous)
            model = torch.where(personal[n], final[n], w_minus) if self.loo_personal else w_minus
            with module.eval_mode():  # running statistics, if any: the global model's
                logits = module.forward_flat(model, module.client_data.x[idx[n]])
            y = module.client_data.y[idx[n]]
            if self.data_score == "loss":
                scores[n] = F.cross_entropy(logits, y)
            else:
                scores[n] = (logits.argmax(-1) != y).float().mean()
        return scores

    def aggregation_weights(self, plan: RoundPlan, weights: torch.Tensor | None) -> torch.Tensor:
        """α over this round's senders: COWA, data size or uniform (``weighting``)."""
        r = self._round
        final, start, masks, clients = r["final"], r["start"], r["masks"], r["clients"]
        sizes = (
            weights.to(final.dtype)
            if weights is not None
            else torch.ones(len(clients), dtype=final.dtype, device=final.device)
        )
        if self.weighting == "uniform":
            return torch.full_like(sizes, 1.0 / len(sizes))
        if self.weighting == "data_size" or len(clients) < 2:
            return sizes / sizes.sum()
        updates = (final - start) * (1 - masks)
        grad_scores = gradient_contribution(updates)
        data_scores = self.data_scores(r["module"], clients, final, masks, sizes, r["global"], plan.generator)
        alpha = contribution_weights(
            grad_scores, data_scores, self.lambda_grad, self.lambda_data, self.weight_mode
        )
        r.update(grad_scores=grad_scores, data_scores=data_scores, alpha=alpha)
        return alpha

    def aggregate_train(self, plan: RoundPlan, messages: torch.Tensor, weights: torch.Tensor | None):
        """The masked α-weighted average, returned as the server optimizer's direction."""
        r = self._round
        alpha = self.aggregation_weights(plan, weights)
        new_global = masked_weighted_average(r["final"], r["masks"] > 0.5, alpha, r["global"])
        r["module"] = None  # drop the reference after the round
        return (r["global"] - new_global) / self.server_lr

    # ---- evaluation -------------------------------------------------------------------------------
    def client_evaluation_parameters(self, module, clients, global_params) -> torch.Tensor:
        """Global shared entries + the client's personal entries."""
        return self.personalised(clients, global_params)
