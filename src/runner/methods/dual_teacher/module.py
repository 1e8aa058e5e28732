"""Dual-teacher knowledge distillation for video action recognition (card: dual_teacher.md;
arXiv 2511.09469): a heterogeneous (transformer) teacher and a homogeneous (CNN) teacher guide a
lightweight CNN student.

The objective is a weighted sum of named loss terms from config (``distill.terms``, see
:mod:`.terms`); the paper's full loss (card, "Reconstruction") is

    L = CE + α·T²·KL(σ(z_target/T) ‖ σ(z_s/T)) + β·MSE(SDB(f_s), f_res) + γ·RKD

with ``z_target`` from DATW (:mod:`.datw`) and ``f_res`` from SDD (:mod:`.sdd`). The baselines
(single-teacher KD, averaged KD, DKD, DIST, OFA, RKD alone, student alone) are other term sets of
this same module (``conf/method/*.yaml``).

Teachers: frozen, in eval mode across epochs (``train()`` is overridden), without gradients, not in
the optimizer and not in the student's checkpoints (``state_dict`` drops them; the checkpoint
records each teacher's weight file path and sha256 under ``"teachers"``). A teacher whose
``checkpoint`` is null is trained first with the supervised video module and cached
(:mod:`.teacher_training`); with a ``pretrain`` block (``{data: <a datamodule>, max_epochs, ...}``)
it is first pretrained on that other dataset (the twin: Kinetics-400, as the paper's teachers are
Kinetics-pretrained), then fine-tuned on the run's data, both cached. Each teacher reads the batch
key of its ``view`` (``video`` or ``video_<view>``: a temporally subsampled / differently cropped view
of the same decoded clip, ``dataset.views``). ``distill.cache=true`` replaces the online teachers by a
memory-mapped store of their outputs on K fixed augmented views per clip (:mod:`.cache`), read in
the training loader's workers (:class:`.cache.CachedTeacherCollate`).

Evaluation (val/test accuracy and loss), the per-epoch training accuracy and the optimiser set-up
are shared with the supervised module (``VideoClassificationModule`` in
:mod:`runner.methods.video_supervised.module`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

from runner.data.loading import fit_epoch, loader_generator, worker_context
from runner.errors import UserError, invalid_value
from runner.methods.video_supervised.module import VideoClassificationModule
from runner.models.checkpoint import load_local_weights
from runner.nested import announce_stages, describe_limits
from runner.tracking import log_table

from .cache import (
    CachedTeacherCollate,
    FixedViewDataset,
    FixedViewSampler,
    TeacherOutputCache,
    collate_with_view_index,
    sha256_file,
    stable_hash,
    transform_hash,
)
from .teacher_training import (
    checkpoint_path,
    describe_callable,
    ensure_pretrained_then_trained,
    ensure_trained,
    pretraining_recipe,
)
from .terms import BindInfo, DistillContext, LossTerm

log = logging.getLogger(__name__)

DISTILL_DEFAULTS: dict[str, Any] = {
    "terms": {},
    "scale": 1.0,
    "cache": False,
    "cache_views": 4,
    "cache_dir": "teacher_cache",
    "cache_seed": 0,
    "teacher_training": {"enabled": True, "max_epochs": 50, "cache_dir": "teachers"},
    "student_alone_reference": False,
    "probe_clip": [8, 64],
}


class DualTeacherDistillation(VideoClassificationModule):
    """Distil frozen teachers into ``student`` with the configured loss terms.

    Args:
        num_classes: classes of the data (given by train.py).
        net / student: the built student network (``forward_features`` / ``classify``): the
            ``student`` config group (train.py passes it as ``student``; the dual-teacher
            experiments use this, with ``model`` null) or, alternatively, the ``model`` group.
        teachers: name -> ``{net: partial constructor (called with num_classes), checkpoint: path or
            null (then trained first), view: null or a dataset.views name, pretrain: null or
            {data: a built datamodule to pretrain on first, and recipe values (max_epochs,
            optimizer, scheduler, ...) that replace teacher_training's for the pretraining}}``.
        optimizer, scheduler: partial constructors (student + training-only term parameters).
        distill: ``terms`` (name -> :class:`.terms.LossTerm`, null to drop one), ``scale`` (λ, multiplies
            the weight of every term that reads a teacher: :meth:`term_weight`), ``cache`` (bool),
            ``cache_views`` (K), ``cache_dir``, ``cache_seed``, ``teacher_training``
            (``enabled``, ``max_epochs``, ``optimizer``, ``scheduler``, ``gradient_clip_val``,
            ``limit_train_batches``, ``cache_dir``, ``seed``), ``student_alone_reference`` (also
            train the student alone with this recipe, cached, and report its test accuracy),
            ``probe_clip`` (frames, size of the dummy clip that sizes the hooked feature maps).
    """

    def __init__(
        self,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        net: nn.Module | None = None,
        student: nn.Module | None = None,
        teachers: Mapping[str, Mapping[str, Any]] | None = None,
        scheduler: Callable[..., Any] | None = None,
        distill: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (net is None) == (student is None):
            raise invalid_value(
                "model / student",
                "both" if net is not None else "neither",
                "exactly one network: the student",
            )
        student = student if student is not None else net
        settings = {**DISTILL_DEFAULTS, **dict(distill or {})}
        settings["teacher_training"] = {
            **DISTILL_DEFAULTS["teacher_training"],
            **dict(settings["teacher_training"] or {}),
        }
        self.settings = settings
        scale = settings["scale"]
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale >= 0:
            raise invalid_value("method.distill.scale", scale, "a number >= 0")
        self.distill_scale = float(scale)
        self.num_classes = int(num_classes)
        self.student = student

        terms = {str(k): v for k, v in dict(settings["terms"] or {}).items() if v is not None}
        for name, term in terms.items():
            if not isinstance(term, LossTerm):
                raise invalid_value(
                    f"method.distill.terms.{name}", type(term).__name__, "a LossTerm (_target_)"
                )
        if not terms:
            raise invalid_value("method.distill.terms", "{}", "at least one loss term (e.g. ce)")
        used = sorted({t for term in terms.values() for t in term.teachers})
        specs = {str(k): dict(v) for k, v in dict(teachers or {}).items() if v is not None}
        missing = [t for t in used if t not in specs]
        if missing:
            raise invalid_value("method.teachers", sorted(specs), f"teachers named by the terms: {missing}")
        unset = [t for t in used if specs[t].get("net") is None]
        if unset:
            raise invalid_value(
                "method.teachers",
                f"no network for {unset}",
                f"a teacher network: teacher/{unset[0]}=<option>",
            )
        self.teacher_specs = {name: specs[name] for name in used}
        for name, spec in self.teacher_specs.items():
            pretrain = spec.get("pretrain")
            if pretrain is not None and not hasattr(dict(pretrain).get("data"), "num_classes"):
                raise invalid_value(
                    f"method.teachers.{name}.pretrain.data",
                    type(dict(pretrain).get("data")).__name__,
                    "a datamodule to pretrain on (_target_), e.g. /dataset@...: kinetics400",
                )
        self.teachers = nn.ModuleDict(
            {name: spec["net"](num_classes=self.num_classes) for name, spec in self.teacher_specs.items()}
        )
        for teacher in self.teachers.values():
            teacher.requires_grad_(False)
            teacher.eval()
        self.teacher_sources: dict[str, dict[str, Any]] = {}
        self._teachers_ready = False

        # forward hooks on the student sub-modules that terms read (SDB, OFA projectors)
        self._feature_maps: dict[str, torch.Tensor] = {}
        hooked = sorted({m for term in terms.values() for m in term.feature_modules})
        modules = dict(self.student.named_modules())
        for name in hooked:
            if name not in modules:
                raise invalid_value(
                    "distill.terms.*.feature_module", name, f"a sub-module of {type(student).__name__}"
                )
            modules[name].register_forward_hook(self._hook(name))
        self._hooked_modules = hooked
        info = BindInfo(
            num_classes=self.num_classes,
            student_feature_dim=int(student.feature_dim),
            teacher_feature_dims={n: int(t.feature_dim) for n, t in self.teachers.items()},
            feature_map_channels=self._probe_channels(hooked),
        )
        for term in terms.values():
            term.bind(info)
        self.terms = nn.ModuleDict(terms)

        self._reference_student_state = (
            copy.deepcopy(student.state_dict()) if settings["student_alone_reference"] else None
        )
        self.reference_results: dict[str, float] = {}
        self._cache: TeacherOutputCache | None = None

        self.save_hyperparameters(
            {
                "num_classes": self.num_classes,
                "distill": describe_callable(_plain(settings)),
                "teachers": describe_callable(_plain(_described_pretraining(self.teacher_specs))),
            }
        )
        self._init_classification(self.num_classes, optimizer, scheduler)
        self.teacher_test_metrics = nn.ModuleDict(
            {n: MulticlassAccuracy(num_classes=self.num_classes, average="micro") for n in self.teachers}
        )

    @staticmethod
    def input_notes(method_cfg: Mapping[str, Any]) -> list[str]:
        """What this method needs besides the data, for a missing-data message: each teacher's
        weights, or that it will be trained first and for how long."""
        teachers = dict(method_cfg.get("teachers") or {})
        training = dict((method_cfg.get("distill") or {}).get("teacher_training") or {})
        given = {n: s.get("checkpoint") for n, s in teachers.items() if s is not None}
        missing = sorted(n for n, path in given.items() if not path)
        if not missing:
            return [f"teachers: {', '.join(f'{n} from {p}' for n, p in sorted(given.items()))}"]
        keys = " and ".join(f"method.teachers.{n}.checkpoint" for n in missing)
        if not training.get("enabled", True):
            return [f"teacher weights: set {keys}"]
        epochs = training.get("max_epochs")
        return [
            f"teacher weights: {keys} not set, so the {' and '.join(missing)} teacher(s) will first be "
            f"trained on this data, {epochs} epochs each with the supervised recipe (hours on one GPU "
            "at the paper's 16x224 clips; set the checkpoints to skip it)"
        ]

    # ------------------------------------------------------------------ networks
    def _hook(self, name: str) -> Callable[..., None]:
        return _StoreOutput(self._feature_maps, name)

    def _probe_channels(self, names: list[str]) -> dict[str, int]:
        """Channel width of each hooked student feature map (one dummy forward)."""
        if not names:
            return {}
        frames, size = (int(v) for v in self.settings["probe_clip"])
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            self.student(torch.zeros(1, 3, frames, size, size))
        self.student.train(was_training)
        channels = {n: int(self._feature_maps[n].shape[1]) for n in names}
        self._feature_maps.clear()
        return channels

    def train(self, mode: bool = True) -> DualTeacherDistillation:
        """Teachers stay in eval mode whatever Lightning switches the module to."""
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The student's checkpoint: everything but the teachers (they are referenced by hash)."""
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "") + "teachers."
        for key in [k for k in sd if k.startswith(prefix)]:
            del sd[key]
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Accept a checkpoint without teachers: the teachers keep their (frozen) weights."""
        merged = dict(state_dict)
        for key, value in self.teachers.state_dict(prefix="teachers.").items():
            merged.setdefault(key, value)
        return super().load_state_dict(merged, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["teachers"] = {k: dict(v) for k, v in self.teacher_sources.items()}
        checkpoint["student_class"] = f"{type(self.student).__module__}.{type(self.student).__qualname__}"
        checkpoint["training_only_prefixes"] = ["terms."]

    def _input_key(self, name: str) -> str:
        view = self.teacher_specs[name].get("view")
        return "video" if not view else f"video_{view}"

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not self._teachers_ready:
            if stage == "fit" and datamodule is not None:
                announce_stages("stages of this run", self._stage_plan(datamodule))
            self._prepare_teachers(datamodule)
        if stage == "fit" and datamodule is not None:
            if self._reference_student_state is not None:
                self._train_reference_student(datamodule)
            if self.settings["cache"]:
                self._use_cached_views(datamodule)

    def _recipe(self, **overrides: Any) -> dict[str, Any]:
        recipe = {
            k: v for k, v in self.settings["teacher_training"].items() if k not in ("enabled", "cache_dir")
        }
        recipe.update(overrides)
        return recipe

    def _stage_plan(self, datamodule: Any) -> list[tuple[str, str]]:
        """What this run will do, in order: each teacher (load / cached / train, with its epochs),
        the student-alone reference, the distillation and the test."""
        training = self.settings["teacher_training"]
        epochs = int(training.get("max_epochs") or 0)
        limits = describe_limits()

        def length(n: int) -> str:
            within = f" within the debug limits ({limits})" if limits else ""
            return f"{n} epoch{'s' if n != 1 else ''}{within}"

        stages = []
        for name, spec in self.teacher_specs.items():
            net = type(self.teachers[name]).__name__
            if spec.get("checkpoint"):
                stages.append((f"teacher {name}", f"{net}: load {spec['checkpoint']}"))
                continue
            init = None
            pretrain = spec.get("pretrain")
            if pretrain:
                recipe = pretraining_recipe(self._recipe(), pretrain)
                init = checkpoint_path(
                    spec["net"], pretrain["data"], self._input_key(name), recipe, training["cache_dir"]
                )
                pre_epochs = int(recipe.get("max_epochs") or 0)
                trained = f"train {length(pre_epochs)} on {type(pretrain['data']).__name__} data "
                trained += f"({pretrain['data'].num_classes} classes) -> {init}"
                what = f"cached ({init})" if init.is_file() else trained
                stages.append((f"teacher {name} pretraining", f"{net}: {what}"))
            path = checkpoint_path(
                spec["net"], datamodule, self._input_key(name), self._recipe(), training["cache_dir"], init
            )
            verb = "fine-tune" if pretrain else "train"
            trained = f"{verb} {length(epochs)}, supervised recipe -> {path}"
            what = f"cached ({path})" if path.is_file() else trained
            stages.append((f"teacher {name}", f"{net}: {what}"))
        max_epochs = int(self.trainer.max_epochs or 1)
        student = type(self.student).__name__
        if self._reference_student_state is not None:
            stages.append(("student alone", f"{student}: train {length(max_epochs)}, CE only (then cached)"))
        terms = ", ".join(self.terms)
        stages.append(("distillation", f"{student}: {length(max_epochs)} ({terms})"))
        stages.append(("test", "the distilled student and each teacher"))
        return stages

    def _prepare_teachers(self, datamodule: Any) -> None:
        training = self.settings["teacher_training"]
        for name, spec in self.teacher_specs.items():
            path = spec.get("checkpoint")
            meta: dict[str, Any] = {}
            if not path:
                if not training.get("enabled", True) or datamodule is None:
                    raise UserError(
                        f"teacher {name} has no checkpoint: set method.teachers.{name}.checkpoint=<file> "
                        "or method.distill.teacher_training.enabled=true"
                    )
                if spec.get("pretrain"):
                    path, meta = ensure_pretrained_then_trained(
                        f"teacher {name}",
                        lambda n, spec=spec: spec["net"](num_classes=n),
                        spec["net"],
                        spec["pretrain"],
                        datamodule,
                        self.num_classes,
                        self._input_key(name),
                        self._recipe(),
                        training["cache_dir"],
                        lower_key="method.distill.teacher_training.optimizer.lr",
                    )
                else:
                    path, meta = ensure_trained(
                        f"teacher {name}",
                        lambda spec=spec: spec["net"](num_classes=self.num_classes),
                        spec["net"],
                        datamodule,
                        self.num_classes,
                        self._input_key(name),
                        self._recipe(),
                        training["cache_dir"],
                        lower_key="method.distill.teacher_training.optimizer.lr",
                    )
            load_local_weights(self.teachers[name], path, strict_head=True)
            self.teachers[name].requires_grad_(False).eval()
            self.teacher_sources[name] = {
                "path": str(path),
                "sha256": sha256_file(path),
                "view": spec.get("view"),
                "test_acc_at_training": meta.get("test_acc"),
                "pretrain_test_acc": meta.get("pretrain_test_acc"),
                "pretrain_checkpoint": meta.get("pretrain_checkpoint"),
            }
        self._teachers_ready = True

    def _train_reference_student(self, datamodule: Any) -> None:
        """Train the same student alone (CE, this run's optimizer/schedule/epochs), cached by hash."""
        reference = copy.deepcopy(self.student)
        # the copy carries the feature-map hooks, whose closures write into this module: drop them
        copied = dict(reference.named_modules())
        for name in self._hooked_modules:
            copied[name]._forward_hooks.clear()
        reference.load_state_dict(self._reference_student_state)
        init_hash = stable_hash([float(p.double().sum()) for p in self._reference_student_state.values()])
        recipe = self._recipe(
            optimizer=self.optimizer_factory,
            scheduler=self.scheduler_factory,
            max_epochs=int(self.trainer.max_epochs or 1),
            gradient_clip_val=self.trainer.gradient_clip_val,
            init=init_hash,
        )
        _, meta = ensure_trained(
            "student alone",
            lambda: reference,
            {"arch": repr(self.student)},
            datamodule,
            self.num_classes,
            "video",
            recipe,
            self.settings["teacher_training"]["cache_dir"],
            lower_key="method.optimizer.lr",  # the reference trains with this run's optimizer
        )
        self.reference_results["student_alone_acc"] = float(meta.get("test_acc", float("nan")))

    # ------------------------------------------------------------------ cache
    def _use_cached_views(self, datamodule: Any) -> None:
        """Point the training loader at K fixed views per clip whose teacher outputs are cached.

        Without teachers (the student-alone reference) only the loader changes, so that a
        comparison with cached-teacher runs trains on identical views."""
        dataset = datamodule.dataset("train")
        k = int(self.settings["cache_views"])
        seed = int(self.settings["cache_seed"])
        self._cache = (
            None
            if not self.teachers
            else TeacherOutputCache(
                self.settings["cache_dir"],
                [r.clip_id for r in dataset.records],
                k,
                {n: (self.num_classes, int(t.feature_dim)) for n, t in self.teachers.items()},
                {n: src["sha256"] for n, src in self.teacher_sources.items()},
                transform_hash(dataset, k, seed),
            )
        )
        fixed = FixedViewDataset(dataset, seed)

        def loader(sampler: Any, collate: Callable[..., dict[str, Any]], persistent: bool) -> DataLoader:
            return DataLoader(
                fixed,
                batch_size=datamodule.batch_size,
                sampler=sampler,
                num_workers=datamodule.num_workers,
                multiprocessing_context=worker_context(datamodule.num_workers),
                pin_memory=datamodule.pin_memory,
                persistent_workers=persistent and datamodule.persistent_workers,
                collate_fn=collate,
                generator=loader_generator(datamodule.seed),  # exact resume (runner.data.loading)
            )

        self._cache_fill_loader = lambda: loader(
            [(i, v) for i in range(len(dataset)) for v in range(k)], collate_with_view_index, False
        )
        # the training batches carry their teachers' cached outputs (read in the loader's workers)
        # built when Lightning asks (after a resumed checkpoint's loop state is restored), starting at
        # the epoch the fit runs next (runner.data.loading)
        datamodule.train_dataloader = lambda: loader(  # this run's training data: the cached views
            FixedViewSampler(len(dataset), k, datamodule.seed, fit_epoch(datamodule)),
            collate_with_view_index if self._cache is None else CachedTeacherCollate(self._cache),
            True,
        )

    def on_fit_start(self) -> None:
        if self._cache is not None and not self._cache.is_valid():
            log.info("filling the teacher-output cache %s", self._cache.dir)
            self._cache.write(self._fill_cache)

    @torch.no_grad()
    def _fill_cache(self, writer: Callable[..., None]) -> None:
        for batch in self._cache_fill_loader():
            if batch["video"].shape[0] == 0:
                continue
            views = batch["view_index"].tolist()  # on the host, before the move to the device
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            writer(batch["clip_id"], views, self._run_teachers(batch))

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def _run_teachers(self, batch: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for name, teacher in self.teachers.items():
            features = teacher.forward_features(batch[self._input_key(name)])
            out[name] = (teacher.classify(features), features)
        return out

    def _teacher_outputs(self, batch: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if "teacher_outputs" in batch:  # cached (CachedTeacherCollate), moved with the batch, bf16
            return {n: (z.float(), f.float()) for n, (z, f) in batch["teacher_outputs"].items()}
        return self._run_teachers(batch) if self.teachers else {}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.student(video)

    def term_weight(self, name: str) -> float:
        """The weight of term ``name`` in the objective: its own, times ``distill.scale`` (λ) when it reads
        a teacher. The paper gives no α, β, γ (card, "Reconstruction"); λ scales them together against the
        label term(s), so one value per row can be tuned on validation (α = β = γ = λ at the defaults)."""
        term = self.terms[name]
        return term.weight * (self.distill_scale if term.teachers else 1.0)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        if batch["video"].shape[0] == 0:
            return None
        self._feature_maps.clear()
        features = self.student.forward_features(batch["video"])
        logits = self.student.classify(features)
        outputs = self._teacher_outputs(batch)
        ctx = DistillContext(
            student_logits=logits,
            student_features=features,
            labels=batch["label"],
            teacher_logits={n: z for n, (z, _) in outputs.items()},
            teacher_features={n: f for n, (_, f) in outputs.items()},
            feature_maps=dict(self._feature_maps),
            epoch=int(self.current_epoch),
        )
        values = {name: term(ctx) for name, term in self.terms.items()}
        total = sum(self.term_weight(name) * value for name, value in values.items())
        self._feature_maps.clear()
        n = logits.shape[0]
        self.train_metrics.update(logits.detach(), batch["label"])
        self.log(
            "train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True
        )
        for name, value in values.items():
            self.log(
                f"train/loss_{name}",
                value.detach(),
                on_step=False,
                on_epoch=True,
                batch_size=n,
                sync_dist=True,
            )
        for name, value in ctx.stats.items():  # DATW weights: per-epoch mean of per-batch means
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return {"loss": total, "loss_terms": {k: v.detach() for k, v in values.items()}}

    # ------------------------------------------------------------------ evaluation (shared base)
    def eval_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        logits = self.student(batch["video"])
        self._feature_maps.clear()
        return logits

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self._eval_step(batch, self.test_metrics, self.test_loss) is None:
            return
        for name, (logits, _) in self._run_teachers(batch).items():
            self.teacher_test_metrics[name].update(logits, batch["label"])

    def on_test_epoch_end(self) -> None:
        distilled = float(self.test_metrics.compute()["test/acc"])  # before the base logs and resets it
        super().on_test_epoch_end()
        summary = []  # the final table: each teacher, the student alone, the distilled student
        for name, metric in self.teacher_test_metrics.items():
            value = metric.compute()
            self.log(f"test/teacher_{name}_acc", value, sync_dist=True)
            summary.append([f"teacher {name}", type(self.teachers[name]).__name__, float(value)])
            metric.reset()
            pretrained = self.teacher_sources.get(name, {}).get("pretrain_test_acc")
            if (
                pretrained is not None
            ):  # on its pretraining data's own test split (e.g. the Kinetics-400 twin)
                self.log(f"test/teacher_{name}_pretrain_acc", float(pretrained), sync_dist=True)
        for key, value in self.reference_results.items():
            self.log(f"test/{key}", value, sync_dist=True)
            summary.append([key.removesuffix("_acc").replace("_", " "), type(self.student).__name__, value])
        summary.append(["distilled student", type(self.student).__name__, distilled])
        log_table(self, "test/summary", ["model", "network", "test accuracy"], summary)

    def optimized_parameters(self) -> list[nn.Parameter]:
        """The student and the training-only term parameters (SDB, projectors); never the teachers."""
        params = [p for p in self.student.parameters() if p.requires_grad]
        return params + [p for p in self.terms.parameters() if p.requires_grad]


class _StoreOutput:
    """Forward hook writing a sub-module's output into ``store[name]``. A class, not a closure, so
    the module pickles (spawned DDP processes); ``store`` is the module's own ``_feature_maps``."""

    def __init__(self, store: dict[str, torch.Tensor], name: str):
        self.store, self.name = store, name

    def __call__(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.store[self.name] = output


def _described_pretraining(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The teacher specs for the hyper-parameter record, a pretraining's datamodule by its data root."""
    out = {}
    for name, spec in specs.items():
        spec = dict(spec)
        if spec.get("pretrain"):
            pretrain = dict(spec["pretrain"])
            pretrain["data"] = str(getattr(pretrain["data"], "root_used", type(pretrain["data"]).__name__))
            spec["pretrain"] = pretrain
        out[name] = spec
    return out


def _plain(obj: Any) -> Any:
    """Config values for the hyper-parameter record (modules by class name)."""
    if isinstance(obj, nn.Module):
        return type(obj).__qualname__
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
