"""Training the in-project fawning LM (card: ccd.md, "Data": "a tiny causal LM trained in-project on
text where the assistant agrees with a user's wrong claim part of the time, so it really fawns").

:class:`LMTraining` is the LightningModule of the ``ccd_train_lm`` experiment (next-token loss on
the assistant's answer). :func:`trained_twin_lm` is the ``model`` of the CCD experiments: it returns
the LM trained on the twin, training it first when its cache directory
``<cache_root>/<recipe hash>/`` (a HF model dir written atomically) is absent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from runner.data.text.datamodule import DEFAULT_PROMPT, DialogueDataModule
from runner.models.lm import CausalLM, build_tiny_gpt2, load_causal_lm, missing_model_files
from runner.nested import announce_stages, debug_limits, describe_limits, nested_trainer
from runner.utils import isolated_rng

from .decoding import positions_from_mask

log = logging.getLogger(__name__)

RECIPE_VERSION = 1


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1):
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0 (per step)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LMTraining(L.LightningModule):
    """Next-token training of a :class:`~runner.models.lm.CausalLM` on dialogue batches
    ``{"input_ids", "attention_mask", "labels"}`` (labels −100 outside the answer).

    Logs ``{split}/loss`` and ``{split}/answer_acc`` (teacher-forced argmax accuracy on the answer
    tokens). ``export_dir`` (optional) receives the trained model as a HF directory after fit.
    """

    def __init__(
        self,
        net: CausalLM,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.export_dir = export_dir

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["attention_mask"]
        out = self.net(
            input_ids=batch["input_ids"],
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            labels=batch["labels"],
        )
        targets = batch["labels"][:, 1:]
        predicted = out.logits[:, :-1].argmax(-1)
        answer = targets != -100
        # no boolean indexing (a host sync) and no NaN for a batch without answer tokens
        accuracy = ((predicted == targets) & answer).sum() / answer.sum().clamp_min(1)
        return out.loss, accuracy

    def training_step(self, batch, batch_idx):
        loss, accuracy = self._step(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/answer_acc", accuracy)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, accuracy = self._step(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/answer_acc", accuracy, prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx):
        loss, accuracy = self._step(batch)
        self.log("test/loss", loss, sync_dist=True)
        self.log("test/answer_acc", accuracy, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_end(self) -> None:
        if self.export_dir and self.trainer.is_global_zero:
            self.net.save(self.export_dir)
            log.info("trained LM written to %s", self.export_dir)


def lm_recipe(twin_root: str, architecture: dict, training: dict, seed: int, prompt_template: str) -> dict:
    """Everything that determines the trained LM (the twin by its own recipe hash)."""
    with open(os.path.join(twin_root, "recipe.json")) as handle:
        twin_hash = json.load(handle)["hash"]
    return {
        "recipe_version": RECIPE_VERSION,
        "twin": twin_hash,
        "architecture": dict(architecture),
        "training": dict(training),
        "seed": int(seed),
        "prompt_template": prompt_template,
    }


def trained_twin_lm(
    twin_root: str,
    cache_root: str,
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    n_positions: int = 128,
    vocab_size: int = 1024,
    max_steps: int = 2500,
    batch_size: int = 64,
    lr: float = 3.0e-3,
    weight_decay: float = 0.01,
    prompt_template: str = DEFAULT_PROMPT,
    accelerator: str = "cpu",
) -> CausalLM:
    """The tiny GPT-2 trained on the twin at ``twin_root``; cached at ``<cache_root>/<recipe hash>``.

    The first call trains it (AdamW, warm-up + cosine, ``max_steps`` steps of ``batch_size``
    dialogues) and writes the HF directory (model, tokenizer, ``lm_recipe.json``) atomically.
    Under a debug mode the run's limits apply (``debug=fdr``: one step; :mod:`runner.nested`) and
    join the recipe, so that LM is cached apart from the full one.
    """
    architecture = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": n_positions}
    training = {
        "vocab_size": vocab_size,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
    }
    limits = debug_limits()
    if limits:
        training["debug_limits"] = limits
    recipe = lm_recipe(twin_root, architecture, training, seed, prompt_template)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    directory = Path(cache_root).expanduser() / digest
    if directory.is_dir() and not missing_model_files(directory) and (directory / "lm_recipe.json").is_file():
        log.info("using the cached fawning LM %s", directory)
        return load_causal_lm(str(directory))
    within = f" within the debug limits ({describe_limits(limits)})" if limits else ""
    announce_stages(
        "stages of this run",
        [
            (
                "fawning LM",
                f"not cached: train {max_steps} steps of {batch_size} dialogues{within} -> {directory}",
            ),
            ("evaluation", "decode the eval items with every configured decoder"),
        ],
    )
    datamodule = DialogueDataModule(
        root=twin_root,
        synthetic=False,
        prompt_template=prompt_template,
        vocab_size=vocab_size,
        batch_size=batch_size,
    )
    with isolated_rng(seed):
        lm = build_tiny_gpt2(datamodule.build_tokenizer(), seed=seed, **architecture)
        module = LMTraining(
            lm,
            optimizer=functools.partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay),
            scheduler=warmup_cosine,
        )
        trainer = nested_trainer(
            "fawning LM",
            lower_key="model.lr",  # conf/model/lm_tiny_gpt2.yaml
            max_steps=max_steps,
            max_epochs=-1,
            accelerator=accelerator,
            limit_val_batches=0,
        )
        trainer.fit(module, datamodule=datamodule)
    lm.cpu().eval()
    _save_atomic(lm, directory, recipe)
    return lm


def _save_atomic(lm: CausalLM, directory: Path, recipe: dict) -> None:
    """Write model, tokenizer and ``lm_recipe.json`` into a temp dir renamed to ``directory``."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        (tmp / "lm_recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / "lm_recipe.json").is_file():  # not another process's finished copy
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
