"""FedPall as an FL-engine strategy (card ``fedpall.md``; official code DistriAI/FedPall, ``ours`` in
``exps/federated_main.py`` and ``update_weights_ours_debug`` in ``exps/update.py``).

Model: :class:`~runner.models.small.fedpall_nets.FedPallNet` (``extractor``, ``classifier``,
``discriminator``). One round:

1. **Broadcast** (start of local training): each client starts from its own extractor and classifier
   (personal state: never averaged) with the classifier's non-BN weights overwritten by the server's
   global classifier (``classifier_update: server``) and the global discriminator.
2. **Local training** (``objective``) with the discriminator frozen (its coordinates are detached
   and never stepped) while its gradient flows into ``h``::

       L = CE(f(x), y) + β · KL(u ‖ softmax(D(h))) + μ · InfoNCE(h, P; T)

   ``P`` are the global prototypes of the previous round (none in the first round: no InfoNCE term).
3. **Upload**: each client's features of its whole training set under its new local model give its
   class means and counts → global prototypes ``P_c = Σ_n N_{n,c} normalize(μ_{n,c}) / Σ_n N_{n,c}``
   (:func:`runner.federated.prototypes.global_prototypes`); then each client uploads masked mixed
   features ``f̃ = m ⊙ (λ h + (1 − λ) P_y)`` with one mask ``m`` (keep ≈ 90 %) and one
   ``λ ~ U[0.8, 1]`` per client per round (the official code draws one λ per client;
   ``lambda_per_sample: true`` draws one per sample), all from the round's generator.
4. **Server** (:meth:`server_update`): trains the global classifier with CE on ``(f̃, y)`` and the
   discriminator with CE on ``(f̃, client id)`` — SGD, momentum 0.9, weight decay 1e-5, minibatches of
   ``batch_size``, ``server_epochs`` epochs, momentum kept across rounds (the official optimizers
   live for the whole run) — for the next round's broadcast.

Evaluation (``client_evaluation_parameters``, the engine default): each client's model after its
local training (own extractor and classifier, own BatchNorm running statistics, eval mode), as the
official code evaluates; the global model (``val/acc``) has an untrained extractor and is not a
FedPall quantity. The official code reports the best round by *test* accuracy; the experiments
choose it on each client's validation split instead (``dataset.val_fraction``, ``test_ckpt=best``).

BatchNorm running statistics: no client statistic is shared (the extractor's and the classifier's
are personal, as their parameters; the official broadcast skips every ``bn`` key); the
discriminator's are the server's (trained with it on the uploads) and clients' local copies,
which only see batch statistics in train mode, are not aggregated (:meth:`aggregate_buffers`).

Switches (card ablations): ``beta: 0`` (no adversarial term; the discriminator is then not trained),
``mu: 0`` (no prototype contrast), ``classifier_update``: ``server`` (FedPall) | ``average`` (no
mixed-feature classifier training: the classifier's non-BN weights are FedAvg-averaged instead;
the discriminator is still trained on the uploads) |
``local`` (the official ``ablation2``: the local classifier is never replaced).

Switches around the official code: ``info_nce`` — ``official`` (default; unnormalised prototypes in
the denominator, :func:`prototype_info_nce`) | ``normalised`` (cosine form); ``mask_sampling`` —
``exact`` (default; ``⌊mask_keep·d⌋`` ones) | ``bernoulli``. Local work: ``local_epochs`` over each
client's data (card: 5 on Digits, 10 on Office / PACS). Remaining deviations: prototypes and uploaded
features come from an eval-mode pass over the client's training set (the official code takes the
uploaded features — and the prototypes computed from them — from a train-mode pass, i.e. with batch
statistics); an epoch's last partial minibatch is filled up to ``batch_size`` (engine).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from runner.errors import invalid_value
from runner.federated.prototypes import class_means, global_prototypes
from runner.federated.simulator import LocalResult, LocalTask
from runner.federated.strategy import RoundPlan, Strategy
from runner.methods.baselines.fedproto import LazyBuffers, client_features, personal_in_model_dtype
from runner.methods.fedpall.losses import (
    MASK_SAMPLING,
    client_confusion_kl,
    feature_mask,
    mixed_features,
    prototype_info_nce,
)

__all__ = ["CLASSIFIER_UPDATES", "INFO_NCE_FORMS", "FedPall", "fedpall_objective"]

CLASSIFIER_UPDATES = ("server", "average", "local")
INFO_NCE_FORMS = ("official", "normalised")


def fedpall_objective(
    beta: float,
    mu: float,
    temperature: float,
    frozen: torch.Tensor,
    prototypes: torch.Tensor | None,
    info_nce: str = "official",
):
    """One client's FedPall minibatch loss (module docstring, step 2).

    ``frozen`` is a bool ``(d,)`` mask of the discriminator's coordinates: they enter the forward pass
    detached, so the discriminator gets no gradient while ``h`` gets the adversarial one.
    ``prototypes`` ``[C, d_h]`` (shared by all clients) or None (no InfoNCE term); ``info_nce``
    ``official`` | ``normalised`` (:func:`~runner.methods.fedpall.losses.prototype_info_nce`)."""
    normalise_negatives = info_nce == "normalised"

    def objective(forward, flat, x, y, context) -> torch.Tensor:
        params = torch.where(frozen, flat.detach(), flat)
        if beta:
            logits, h, d_logits = forward(params, x, return_features=True, discriminate=True)
        else:
            logits, h = forward(params, x, return_features=True)
        loss = F.cross_entropy(logits, y)
        if beta:
            loss = loss + beta * client_confusion_kl(d_logits)
        if mu and prototypes is not None:
            loss = loss + mu * prototype_info_nce(h, y, prototypes, temperature, normalise_negatives)
        return loss

    return objective


def _prefix_mask(layout, prefix: str) -> torch.Tensor:
    parts = [
        torch.full((k,), n.startswith(prefix + ".")) for n, k in zip(layout.names, layout.numels, strict=True)
    ]
    return torch.cat(parts)


def _sub_params(layout, prefix: str, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name inside the submodule: tensor}`` from the submodule's coordinates ``vector``."""
    names = [n for n in layout.names if n.startswith(prefix + ".")]
    shapes = [s for n, s in zip(layout.names, layout.shapes, strict=True) if n.startswith(prefix + ".")]
    numels = [k for n, k in zip(layout.names, layout.numels, strict=True) if n.startswith(prefix + ".")]
    pieces = torch.split(vector, numels)
    return {n[len(prefix) + 1 :]: t.reshape(s) for n, t, s in zip(names, pieces, shapes, strict=True)}


class FedPall(LazyBuffers, Strategy):
    """FedPall (module docstring).

    Args:
        beta: weight β of the adversarial KL term (Digits 0.3, Office / PACS 0.1).
        mu: weight μ of the prototype InfoNCE term (Digits 0.7, Office / PACS 0.1).
        temperature: InfoNCE temperature T (3).
        info_nce: ``official`` (unnormalised prototypes in the denominator) | ``normalised``.
        mask_keep: fraction of feature dimensions an uploaded mask keeps (0.9).
        mask_sampling: ``exact`` (``⌊mask_keep·d⌋`` ones) | ``bernoulli`` (each kept with ``mask_keep``).
        lambda_range: range of the mixing coefficient λ ([0.8, 1.0]).
        lambda_per_sample: one λ per sample instead of one per client and round.
        classifier_update: ``server`` | ``average`` | ``local`` (module docstring).
        server_epochs: epochs of the server's classifier / discriminator training (Digits 1, Office / PACS 3).
        server_train_lr: their learning rate (null = ``local_lr``, as the official code).
        server_momentum, server_weight_decay: their SGD momentum (0.9) and weight decay (1e-5).
        server_batch_size: their minibatch size (null = ``batch_size``).
        extractor / classifier / discriminator: module names in the model; norm: the name fragment
            of the classifier's BatchNorm layers (kept personal, never broadcast).
        **base: :class:`~runner.federated.strategy.Strategy` arguments; ``personal_parameters``
            defaults to ``[extractor, classifier]`` (the client's whole model).
    """

    lazy_buffers = ("prototypes",)

    def __init__(
        self,
        beta: float = 0.3,
        mu: float = 0.7,
        temperature: float = 3.0,
        mask_keep: float = 0.9,
        lambda_range: tuple[float, float] = (0.8, 1.0),
        lambda_per_sample: bool = False,
        classifier_update: str = "server",
        server_epochs: int = 1,
        server_train_lr: float | None = None,
        server_momentum: float = 0.9,
        server_weight_decay: float = 1e-5,
        server_batch_size: int | None = None,
        extractor: str = "extractor",
        classifier: str = "classifier",
        discriminator: str = "discriminator",
        norm: str = "bn",
        info_nce: str = "official",
        mask_sampling: str = "exact",
        **base: Any,
    ) -> None:
        if base.get("personal_parameters") in (None, []):
            base["personal_parameters"] = [extractor, classifier]
        super().__init__(**base)
        if classifier_update not in CLASSIFIER_UPDATES:
            raise invalid_value(
                "fl_strategy.classifier_update", classifier_update, "one of " + ", ".join(CLASSIFIER_UPDATES)
            )
        for key, value in (("beta", beta), ("mu", mu), ("server_weight_decay", server_weight_decay)):
            if float(value) < 0:
                raise invalid_value(f"fl_strategy.{key}", value, "a number >= 0")
        if info_nce not in INFO_NCE_FORMS:
            raise invalid_value("fl_strategy.info_nce", info_nce, "one of " + ", ".join(INFO_NCE_FORMS))
        if mask_sampling not in MASK_SAMPLING:
            raise invalid_value(
                "fl_strategy.mask_sampling", mask_sampling, "one of " + ", ".join(MASK_SAMPLING)
            )
        self.info_nce = info_nce
        self.mask_sampling = mask_sampling
        if not 0.0 < float(mask_keep) <= 1.0:
            raise invalid_value("fl_strategy.mask_keep", mask_keep, "a number in (0, 1]")
        lo, hi = (float(v) for v in lambda_range)
        if not 0.0 <= lo <= hi <= 1.0:
            raise invalid_value(
                "fl_strategy.lambda_range", list(lambda_range), "[lo, hi] with 0 <= lo <= hi <= 1"
            )
        if int(server_epochs) < 0:
            raise invalid_value("fl_strategy.server_epochs", server_epochs, "an integer >= 0")
        self.beta = float(beta)
        self.mu = float(mu)
        self.temperature = float(temperature)
        self.mask_keep = float(mask_keep)
        self.lambda_range = (lo, hi)
        self.lambda_per_sample = bool(lambda_per_sample)
        self.classifier_update = classifier_update
        self.server_epochs = int(server_epochs)
        self.server_train_lr = float(server_train_lr) if server_train_lr is not None else self.local_lr
        self.server_momentum = float(server_momentum)
        self.server_weight_decay = float(server_weight_decay)
        self.server_batch_size = int(server_batch_size or self.batch_size)
        self.names = {"extractor": extractor, "classifier": classifier, "discriminator": discriminator}
        self.norm = norm
        self._masks: dict[str, torch.Tensor] | None = None
        self._pending: tuple[RoundPlan, torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    # ---- state -----------------------------------------------------------------------------------
    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        personal_in_model_dtype(self, initial)
        self.register_buffer("prototypes", torch.zeros(0, dtype=initial.dtype))
        # SGD momentum of the server's classifier / discriminator training (their coordinates)
        self.register_buffer("server_velocity", torch.zeros_like(initial))

    def masks(self, layout) -> dict[str, torch.Tensor]:
        """Bool ``(d,)`` masks: ``extractor``, ``classifier``, ``discriminator``, ``broadcast``
        (the classifier's non-BN coordinates)."""
        if self._masks is None:
            masks = {key: _prefix_mask(layout, name) for key, name in self.names.items()}
            norm = layout.mask([f"{self.names['classifier']}.{self.norm}"])
            masks["broadcast"] = masks["classifier"] & ~norm
            missing = [
                self.names[k] for k in ("extractor", "classifier", "discriminator") if not masks[k].any()
            ]
            if missing:
                raise invalid_value(
                    "model", "FedPallNet", f"a model with submodules {missing} (FedPall needs all three)"
                )
            if not bool(self.personal_mask[masks["extractor"] | masks["classifier"]].all()):
                raise invalid_value(
                    "fl_strategy.personal_parameters",
                    self.personal_parameters,
                    f"names covering {self.names['extractor']} and {self.names['classifier']} (never averaged)",
                )
            self._masks = masks
        return self._masks

    # ---- client side -----------------------------------------------------------------------------
    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        masks = {k: v.to(plan.start.device) for k, v in self.masks(module.layout).items()}
        if self.classifier_update != "local":  # broadcast the global classifier's non-BN weights
            global_flat = module.global_flat().to(plan.start.dtype)
            plan.start[:, masks["broadcast"]] = global_flat[masks["broadcast"]]
        frozen = masks["discriminator"]
        trainable = (~frozen).to(plan.start.dtype)
        lr, wd = self.local_lr, self.local_weight_decay

        def step(params, grads, state, s):  # local SGD that never moves the discriminator
            if wd:
                grads = grads + wd * params
            return params - lr * grads * trainable, state

        prototypes = self.prototypes.to(plan.start.dtype) if self.prototypes.numel() else None
        return LocalTask(
            objective=fedpall_objective(
                self.beta, self.mu, self.temperature, frozen, prototypes, self.info_nce
            ),
            step=step,
        )

    def client_messages(self, plan, rows, pseudo_grads, result: LocalResult | None = None):
        final = plan.start[rows] - self.local_lr * pseudo_grads if result is None else result.final
        self._pending = (plan, plan.clients[rows], final, None if result is None else result.buffers)
        messages = super().client_messages(plan, rows, pseudo_grads, result)
        if self.classifier_update == "average":  # ablation: FedAvg on the classifier's non-BN weights
            broadcast = self._masks["broadcast"].to(messages.device)
            messages[:, broadcast] = pseudo_grads[:, broadcast]
        return messages

    # ---- server side -----------------------------------------------------------------------------
    def aggregate_buffers(self, plan, rows, buffers, weights, global_buffers):
        """Keep the clients' (personal) statistics; the global ones — the server-trained
        discriminator's — are not replaced by the clients' local copies (module docstring)."""
        super().aggregate_buffers(plan, rows, buffers, weights, global_buffers)
        return global_buffers

    @torch.no_grad()
    def uploads(
        self, module, plan, clients, finals, buffers=None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 3: updates the global prototypes; returns the uploaded ``(f̃, labels, client ids)``.
        ``buffers``: the clients' running statistics after local training (None: no BatchNorm)."""
        feats, labels = [], []
        means, counts = [], []
        for i, client in enumerate(clients.tolist()):
            h, y = client_features(module, client, finals[i], None if buffers is None else buffers[i])
            m, n = class_means(h, y, module.num_classes)
            feats.append(h)
            labels.append(y)
            means.append(m)
            counts.append(n)
        self.prototypes = global_prototypes(torch.stack(means), torch.stack(counts))
        mixed, ids = [], []
        lo, hi = self.lambda_range
        for i, client in enumerate(clients.tolist()):
            mask = feature_mask(
                feats[i].shape[1], self.mask_keep, plan.generator, feats[i].device, self.mask_sampling
            )
            if self.lambda_per_sample:
                lam = (lo, hi)
            else:
                value = lo + (hi - lo) * float(torch.rand((), generator=plan.generator))
                lam = (value, value)
            mixed.append(
                mixed_features(
                    feats[i], labels[i], self.prototypes, mask.to(feats[i].dtype), lam, plan.generator
                )
            )
            ids.append(torch.full_like(labels[i], client))
        return torch.cat(mixed), torch.cat(labels), torch.cat(ids)

    def _train_head(self, module, name: str, x: torch.Tensor, y: torch.Tensor, generator) -> None:
        """SGD with momentum on the submodule ``name`` of the global model: CE of ``name(x)`` vs ``y``."""
        layout = module.layout
        mask = self._masks[name].to(x.device)
        submodule = getattr(module.net, self.names[name])
        flat = module.global_flat()
        params = flat[mask].to(x.dtype)
        velocity = self.server_velocity[mask].to(x.dtype)
        lr, momentum, wd = self.server_train_lr, self.server_momentum, self.server_weight_decay
        for _ in range(self.server_epochs):
            order = torch.randperm(len(y), generator=generator).to(x.device)
            for chunk in order.split(self.server_batch_size):
                if len(chunk) < 2:  # BatchNorm needs two samples
                    continue
                leaf = params.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = functional_call(
                        submodule, _sub_params(layout, self.names[name], leaf), (x[chunk],)
                    )
                    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[chunk]), leaf)
                velocity = momentum * velocity + grad + wd * params
                params = params.detach() - lr * velocity
        flat = flat.clone()
        flat[mask] = params.to(flat.dtype)
        self.server_velocity[mask] = velocity.to(self.server_velocity.dtype)
        module.set_global_flat(flat)

    def server_update(self, module, round_index: int) -> None:
        """Steps 3–4: prototypes, uploads, server training of the classifier and discriminator."""
        if self._pending is None:
            return
        plan, clients, finals, buffers = self._pending
        self._pending = None
        self.masks(module.layout)
        mixed, labels, ids = self.uploads(module, plan, clients, finals, buffers)
        if self.classifier_update == "server":
            self._train_head(module, "classifier", mixed, labels, plan.generator)
        if self.beta:
            self._train_head(module, "discriminator", mixed, ids, plan.generator)
