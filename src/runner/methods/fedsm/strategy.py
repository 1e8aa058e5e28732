"""FedSM on the FL engine (card ``fedsm.md``, arXiv 2510.27240): FedAvg backbone + semantics-guided
classifier retraining in the last part of training.

Every round the backbone (the whole network) trains with FedAvg: plain cross-entropy local SGD and
the data-size weighted mean (base :class:`~runner.federated.strategy.Strategy`). From round
``retrain_from_round`` on (default: the last ``retrain_fraction`` of the rounds — the card's
"retraining in the last part of training"), the server-side hook :meth:`FedSM.server_update` runs,
after the round's aggregation, for the round's participating clients ``n``:

1. client features with the current global backbone ``f = φ(x)`` on all of the client's training
   samples, class means ``μ_{n,c}`` and counts ``N_{n,c}`` (:func:`runner.federated.prototypes.class_means`);
2. global prototypes ``P_c = Σ_n N_{n,c} normalize(μ_{n,c}) / Σ_n N_{n,c}`` over the participants
   (:func:`~runner.federated.prototypes.global_prototypes`);
3. per client, semantic pseudo-features (:func:`~runner.methods.fedsm.semantics.pseudo_features`): for each
   class ``c``, ``per_class`` local features ``j`` drawn without replacement with probability
   ``∝ S[c, y_j]`` (``S``: :func:`~runner.methods.fedsm.semantics.semantic_relevance` of the class-name
   text embeddings, diagonal = row mean), ``z = λ P_c + (1 − λ) f_j/‖f_j‖``, ``λ ~ U[0.35, 0.95]``,
   label ``c``;
4. per client, a fresh linear classifier retrained on its real features + pseudo-features
   (:func:`~runner.methods.fedsm.semantics.retrain_linear_classifier`);
5. the server averages the retrained classifiers weighted by the clients' data sizes.

The averaged retrained classifier is what evaluation uses (:meth:`evaluation_parameters`: the global
backbone + that classifier, so ``val/acc``, ``test/acc`` and ``*/acc_{many,medium,few}`` measure it),
while the global model's own classifier keeps training with FedAvg (the card: "the retrained
classifier is used for evaluation while the backbone keeps training with FedAvg").

Text embeddings: the class names are encoded once by ``text_encoder`` (a Hydra ``_partial_``
constructor: offline all-MiniLM-L6-v2 by default, documented as a substitute for CLIP's text tower;
:class:`~runner.models.text.OpenCLIPTextEncoder` with a local checkpoint when configured) and cached in
memory and, with ``embedding_cache_dir``, on disk.

Ablation switch ``semantic_selection=false`` — the card's "classifier retraining without semantics"
ablation: the same pipeline with the category-selection probabilities made uniform (``S`` replaced by
a constant matrix, so the mixed-in local features are drawn uniformly regardless of their class).
It is labelled "CReFF-style" in the issue but is *not* CReFF (Shang et al. 2022), which learns
federated features by gradient matching; that method is not implemented here.

Exploration beyond the card (off by default): ``selection_temperature=T`` draws with probability
``∝ exp(S[c, y_j] / T)`` instead of ``∝ S[c, y_j]``. Text-encoder cosine similarities are flat (MiniLM on
the CIFAR-10 names: 0.2–0.67), so the card's weights only mildly favour a class's semantic neighbours;
a small ``T`` tests whether sharper semantic selection matters.

Documented readings (the card leaves them open):

* ``pseudo_scale="feature_norm"`` (default): pseudo-features are unit-scale (``P_c`` and ``f_j/‖f_j‖``)
  while the classifier reads raw backbone features at evaluation; each client's pseudo-features are
  multiplied by the mean norm of its real features so real and pseudo-features share a scale
  (``"none"``: the card's formula verbatim).
* Real features enter the retraining unnormalised (what the classifier sees at evaluation).
* Prototypes come from the round's participants only (the clients that upload statistics).

Randomness: all draws of the hook (feature selection, λ, classifier init and minibatch order) come from
a generator seeded by (seed, round), so a resumed run repeats them exactly; the participants are the
round's sample (:func:`~runner.federated.strategy.round_generator`). The averaged classifier is kept in
persistent buffers (checkpointed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from runner.errors import UserError, invalid_value
from runner.federated.prototypes import class_means, global_prototypes
from runner.federated.strategy import Strategy, round_generator
from runner.models.text.embeddings import _EMBEDDINGS, class_name_embeddings  # noqa: F401 (re-exported)

from .semantics import pseudo_features, retrain_linear_classifier, semantic_relevance

log = logging.getLogger("runner.fedsm")

__all__ = ["FedSM", "class_name_embeddings"]

_HOOK_SALT = 7_654_321  # separates the hook's generator from the round's training generator


class FedSM(Strategy):
    """FedSM (module docstring).

    Args:
        text_encoder: zero-argument constructor of an object with ``encode(list[str]) -> [C, e]``
            (Hydra ``_partial_``; default the offline MiniLM encoder).
        class_names: the class names; None = the datamodule's (``trainer.datamodule.splits.class_names``).
        retrain_from_round: first round (0-based) whose server hook retrains the classifier; None =
            for the last ``max(1, round(retrain_fraction × total))`` rounds, ``total`` = ``total_rounds`` or the
            trainer's round count.
        retrain_fraction: the last part of training that retrains (used when retrain_from_round is None).
        total_rounds: the run's round count, for scripts without a Trainer.
        semantic_selection: False = the card's "retraining without semantics" ablation (uniform selection).
        selection_temperature: None = the card's weights ``∝ S[c, y_j]``; a number ``T`` = sharpened
            weights ``∝ exp(S[c, y_j] / T)`` (an exploration beyond the card, module docstring).
        per_class: pseudo-features per class and client (card: 100; capped by the client's sample count).
        lam_range: λ's uniform range (card: [0.35, 0.95]).
        classifier_epochs, classifier_lr, classifier_batch_size: the local classifier retraining
            (SGD with momentum 0.9, cross-entropy).
        pseudo_scale: ``feature_norm`` | ``none`` (module docstring).
        classifier: name fragment of the classifier's parameters (``<classifier>.weight`` / ``.bias``).
        feature_batch_size: chunk size of the feature pass.
        embedding_cache_dir: disk cache of the class-name embeddings (None = memory only).
        **base: :class:`~runner.federated.strategy.Strategy` arguments (FedAvg's local SGD).
    """

    def __init__(
        self,
        text_encoder: Callable[[], Any] | None = None,
        class_names: Sequence[str] | None = None,
        retrain_from_round: int | None = None,
        retrain_fraction: float = 0.2,
        total_rounds: int | None = None,
        semantic_selection: bool = True,
        selection_temperature: float | None = None,
        per_class: int = 100,
        lam_range: Sequence[float] = (0.35, 0.95),
        classifier_epochs: int = 10,
        classifier_lr: float = 0.1,
        classifier_batch_size: int = 64,
        pseudo_scale: str = "feature_norm",
        classifier: str = "classifier",
        feature_batch_size: int = 1000,
        embedding_cache_dir: str | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if self.personal_parameters:
            raise invalid_value(
                "fl_strategy.personal_parameters", self.personal_parameters, "[] (FedSM shares all)"
            )
        if not 0.0 < float(retrain_fraction) <= 1.0:
            raise invalid_value("fl_strategy.retrain_fraction", retrain_fraction, "a number in (0, 1]")
        if pseudo_scale not in ("feature_norm", "none"):
            raise invalid_value("fl_strategy.pseudo_scale", pseudo_scale, "feature_norm or none")
        lo, hi = (float(v) for v in lam_range)
        if not 0.0 <= lo <= hi <= 1.0:
            raise invalid_value("fl_strategy.lam_range", list(lam_range), "[lo, hi] with 0 <= lo <= hi <= 1")
        if text_encoder is None:
            from runner.models.text import MiniLMTextEncoder

            text_encoder = MiniLMTextEncoder
        self.text_encoder = text_encoder
        self.class_names = list(class_names) if class_names is not None else None
        self.retrain_from_round = None if retrain_from_round is None else int(retrain_from_round)
        self.retrain_fraction = float(retrain_fraction)
        self.total_rounds = None if total_rounds is None else int(total_rounds)
        self.semantic_selection = bool(semantic_selection)
        if selection_temperature is not None and float(selection_temperature) <= 0:
            raise invalid_value(
                "fl_strategy.selection_temperature", selection_temperature, "null or a number > 0"
            )
        self.selection_temperature = None if selection_temperature is None else float(selection_temperature)
        self.per_class = int(per_class)
        self.lam_range = (lo, hi)
        self.classifier_epochs = int(classifier_epochs)
        self.classifier_lr = float(classifier_lr)
        self.classifier_batch_size = int(classifier_batch_size)
        self.pseudo_scale = pseudo_scale
        self.classifier_name = classifier
        self.feature_batch_size = int(feature_batch_size)
        self.embedding_cache_dir = embedding_cache_dir

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        # the averaged retrained classifier (written into a full flat vector) and whether it exists
        self.register_buffer("retrained", torch.zeros_like(initial))
        self.register_buffer("has_retrained", torch.zeros((), dtype=torch.bool))

    # ---- when ------------------------------------------------------------------------------------
    def _total_rounds(self, module) -> int | None:
        if self.total_rounds is not None:
            return self.total_rounds
        trainer = getattr(module, "_trainer", None)
        if trainer is None:
            return None
        if trainer.fast_dev_run:
            return int(trainer.fast_dev_run)
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return int(trainer.max_steps)
        per_epoch = int(getattr(trainer.datamodule, "rounds_per_epoch", 1))
        return int(trainer.max_epochs) * per_epoch

    def first_retraining_round(self, module) -> int:
        """The first round whose server hook retrains (class docstring)."""
        if self.retrain_from_round is not None:
            return self.retrain_from_round
        total = self._total_rounds(module)
        if total is None:
            raise UserError(
                "FedSM needs fl_strategy.retrain_from_round or fl_strategy.total_rounds when run without a Trainer"
            )
        return int(total - max(1, round(self.retrain_fraction * total)))

    # ---- semantics -------------------------------------------------------------------------------
    def _names(self, module) -> list[str]:
        if self.class_names is not None:
            return self.class_names
        trainer = getattr(module, "_trainer", None)
        splits = getattr(getattr(trainer, "datamodule", None), "splits", None)
        if splits is None:
            raise UserError(
                "FedSM needs the class names: set fl_strategy.class_names or train with a datamodule"
            )
        return list(splits.class_names)

    def selection_relevance(self, module) -> torch.Tensor:
        """``[C, C]`` category-selection weights: ``S`` (semantic) or a constant (ablation)."""
        c = module.num_classes
        if not self.semantic_selection:
            return torch.ones(c, c)
        names = self._names(module)
        if len(names) != c:
            raise invalid_value("fl_strategy.class_names", names, f"{c} names (one per class)")
        relevance = semantic_relevance(
            class_name_embeddings(self.text_encoder, names, self.embedding_cache_dir)
        )
        if self.selection_temperature is not None:  # exploration beyond the card: sharpened selection
            relevance = torch.exp((relevance - relevance.amax(1, keepdim=True)) / self.selection_temperature)
        return relevance

    # ---- server hook -----------------------------------------------------------------------------
    def hook_generator(self, round_index: int) -> torch.Generator:
        """The seeded generator of the round's server hook (a function of (seed, round))."""
        return round_generator(self.seed + _HOOK_SALT, round_index)

    @torch.no_grad()
    def client_features(self, module, flat: torch.Tensor, client: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All training features ``[n, d]`` and labels ``[n]`` of one client under ``flat`` (eval
        mode: the global model's running statistics, where it has any)."""
        data = module.client_data
        idx = data.indices_of(client)
        with module.eval_mode():
            feats = [
                module.forward_flat(flat, data.x[chunk], return_features=True)[1]
                for chunk in idx.split(self.feature_batch_size)
            ]
        return torch.cat(feats).detach(), data.y[idx]

    def retrain(
        self, module, flat: torch.Tensor, clients: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Steps 1-5 of the module docstring for ``clients``; returns ``flat`` with its classifier
        coordinates replaced by the data-size weighted mean of the clients' retrained classifiers."""
        c = module.num_classes
        relevance = self.selection_relevance(module).to(flat.device, flat.dtype)
        per_client = [self.client_features(module, flat, int(k)) for k in clients.tolist()]
        means, counts = zip(*(class_means(f, y, c) for f, y in per_client), strict=True)
        prototypes = global_prototypes(torch.stack(means), torch.stack(counts))
        weights, biases = [], []
        with torch.enable_grad():
            for feats, labels in per_client:
                z, zy = pseudo_features(
                    feats, labels, prototypes, relevance, self.per_class, self.lam_range, generator=generator
                )
                if self.pseudo_scale == "feature_norm":
                    z = z * feats.norm(dim=1).mean()
                head = retrain_linear_classifier(
                    torch.cat([feats, z]),
                    torch.cat([labels, zy]),
                    c,
                    epochs=self.classifier_epochs,
                    lr=self.classifier_lr,
                    batch_size=self.classifier_batch_size,
                    generator=generator,
                )
                weights.append(head.weight.detach())
                biases.append(head.bias.detach())
        sizes = module.client_sizes[clients.to(module.client_sizes.device)].to(flat.device, flat.dtype)
        share = sizes / sizes.sum()
        weight = torch.einsum("k,kij->ij", share, torch.stack(weights))
        bias = share @ torch.stack(biases)
        return self.with_classifier(module, flat, weight, bias)

    def with_classifier(
        self, module, flat: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """``flat`` with ``<classifier>.weight`` / ``.bias`` set to ``weight`` / ``bias``."""
        out = flat.clone()
        layout = module.layout
        offset = 0
        found = 0
        for name, numel in zip(layout.names, layout.numels, strict=True):
            if self.classifier_name in name and name.endswith((".weight", ".bias")):
                value = weight if name.endswith(".weight") else bias
                out[offset : offset + numel] = value.reshape(-1).to(out.dtype)
                found += 1
            offset += numel
        if found != 2:
            raise invalid_value(
                "fl_strategy.classifier",
                self.classifier_name,
                "the name of the model's final nn.Linear (weight + bias)",
            )
        return out

    def server_update(self, module, round_index: int) -> None:
        if round_index < self.first_retraining_round(module):
            return
        clients = self.sample_clients(round_generator(self.seed, round_index))  # the round's participants
        flat = module.global_flat()
        self.retrained.copy_(self.retrain(module, flat, clients, self.hook_generator(round_index)))
        self.has_retrained.fill_(True)

    # ---- evaluation ------------------------------------------------------------------------------
    def classifier_mask(self, module) -> torch.Tensor:
        return module.layout.mask([self.classifier_name])

    def evaluation_parameters(self, module, global_params: torch.Tensor) -> torch.Tensor:
        """The global backbone with the averaged retrained classifier (once one exists)."""
        if not bool(self.has_retrained):
            return global_params
        out = global_params.clone()
        mask = self.classifier_mask(module).to(out.device)
        out[mask] = self.retrained.to(out.device, out.dtype)[mask]
        return out
