"""ScouterModule: the LightningModule that trains SCOUTER+ / SCOUTER− and the FC baseline."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from scouter.checkpoints import LIGHTNING_CONFIG_KEY
from scouter.models.classifier import ClassifierOutput
from scouter.training.model_setup import (
    ARCH_FIELDS,
    AuxiliaryFCHead,
    backbone_pretrained,
    build_model,
    freeze_pretrained_stages,
    init_backbone,
    model_config_docs,
    recipe_loss,
)
from scouter.training.nonfinite import gradients_finite, non_finite_error
from scouter.training.optimization import build_optimization
from scouter.training.resume import RandomStateResume, TrainLoaderResume
from scouter.training.run_checks import (
    check_checkpoint_matches,
    check_fc_head_settings,
    check_fc_warmup_fits,
    check_model_fits_data,
    check_module_settings,
    check_training_batches,
)
from scouter.training.safe_checkpoint_io import use_safe_checkpoint_io

# Where the two-stage state (has the xSlot stage begun?) is kept in a checkpoint.
_STAGE_KEY = "scouter_training_stage"


class ScouterModule(pl.LightningModule):
    """Train a :class:`~scouter.models.classifier.Classifier` with :class:`~scouter.losses.ScouterLoss`.

    The architecture comes from the explicit arguments, on top of a zoo entry when ``zoo`` is
    given (``None`` means "the zoo entry's value, else the :class:`ModelConfig` default"). The
    classifier lives at ``self.model`` and its config is written into every checkpoint, so
    ``scouter.load_model(ckpt)`` rebuilds it without this class.

    The architecture arguments (``backbone`` … ``backbone_kwargs``) are the :class:`ModelConfig`
    fields of the same names and are documented there only; their entries are copied into this
    docstring at import, for ``train.py --help``. ``train.py`` links ``in_chans`` from
    ``data.in_chans``; ``pretrained`` with ``zoo`` loads the entry's offline weights if it has
    them.

    Logged: ``{train,val,test}/{loss,ce,area,acc}`` (accuracy over all samples, not a mean of
    per-batch accuracies as in the reference, docs/method.md#known-reference-bugs item 11).

    Args:
        num_classes: ``K``; linked from ``data.num_classes`` by ``train.py``.
        zoo: a ``scouter.list_models()`` name to start from (its recipe λ/power too).
        ModelConfig fields: (their entries are inserted here at import)
        lambda_area: ``λ`` of the area loss (zoo recipe, else 1.0).
        power: exponent of the area term (zoo recipe, else 2).
        area: ``"mean"`` (reference code) or ``"sum"`` (paper wording).
        lr: learning rate of the head (and of the backbone unless ``backbone_lr``).
        backbone_lr: separate backbone learning rate.
        weight_decay: AdamW weight decay, applied to every parameter (the reference's
            ``--weight_decay`` was ignored and AdamW's 0.01 applied,
            docs/method.md#known-reference-bugs item 5).
        scheduler: ``"step"`` (StepLR per epoch, the reference), ``"cosine"`` (per step, with
            ``warmup_steps``) or ``"none"``.
        lr_step_size: StepLR period in epochs (reference ``--lr_drop`` 70).
        lr_gamma: StepLR factor (reference 0.1).
        warmup_steps: linear warm-up steps (``cosine`` / ``none`` only).
        lr_min_factor: the cosine schedule ends at ``lr · lr_min_factor``.
        freeze_stages: freeze the backbone stem and its first ``f`` stages (reference
            ``--freeze_layers``); needs pretrained or ``init_backbone_from`` weights, and never
            freezes a freshly initialised layer.
        init_backbone_from: checkpoint whose backbone starts this run (the reference's ``use_pre``
            two-stage training: FC first, then SCOUTER on its backbone), any format
            ``scouter.load_model`` reads.
        fc_warmup_epochs: two-stage training in one ``fit``: the first ``fc_warmup_epochs``
            epochs train the backbone with an auxiliary FC head (cross-entropy only), the
            remaining epochs train the xSlot head on that backbone (xSlot models only; must be
            below ``trainer.max_epochs``). One optimizer and one learning-rate schedule span both
            stages; the xSlot head's optimizer state starts fresh at the boundary. During the FC
            stage metrics are logged as ``fc_warmup/{train,val}/{loss,acc}`` and no best-model
            checkpoint is kept (``last.ckpt`` is), so the best checkpoint is always a SCOUTER one.
        fc_aux_weight: weight of an auxiliary FC head's cross-entropy added to the training loss
            while the xSlot head trains (xSlot models only; with ``fc_warmup_epochs`` it is the
            warm-up's FC head, which keeps training). The auxiliary head sees the same backbone
            features; it is never used for predictions or maps and never leaves the training
            checkpoint. Logged as ``train/fc_aux_ce``.
        channels_last: keep the model's weights and the input batches in the channels-last
            memory format (faster convolutions on recent GPUs, with ``trainer.precision:
            bf16-mixed`` or ``16-mixed``); the numbers are the same up to float rounding.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        zoo: str | None = None,
        backbone: str | None = None,
        head: Literal["xslot", "fc"] | None = None,
        slots_per_class: int | None = None,
        sign: int | None = None,
        hidden_dim: int | None = None,
        to_k_layers: int | None = None,
        iterations: int | None = None,
        attention_norm: Literal["reference", "abs", "none"] | None = None,
        in_chans: int | None = None,
        stem: Literal["default", "mnist"] | None = None,
        pretrained: bool | None = None,
        pretrained_file: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        lambda_area: float | None = None,
        power: float | None = None,
        area: Literal["mean", "sum"] = "mean",
        lr: float = 1e-4,
        backbone_lr: float | None = None,
        weight_decay: float = 0.01,
        scheduler: Literal["step", "cosine", "none"] = "step",
        lr_step_size: int = 70,
        lr_gamma: float = 0.1,
        warmup_steps: int = 0,
        lr_min_factor: float = 0.0,
        freeze_stages: int = 0,
        init_backbone_from: str | None = None,
        fc_warmup_epochs: int = 0,
        fc_aux_weight: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_module_settings(
            num_classes,
            scheduler,
            warmup_steps,
            init_backbone_from,
            fc_warmup_epochs,
            fc_aux_weight,
        )
        arch = {name: self.hparams[name] for name in ARCH_FIELDS if self.hparams[name] is not None}
        self.model = build_model(zoo, int(num_classes), arch)
        check_fc_head_settings(self.model, fc_warmup_epochs, fc_aux_weight)
        self.loss = recipe_loss(zoo, lambda_area, power, area)
        if init_backbone_from is not None:
            init_backbone(self.model, init_backbone_from)
        if freeze_stages:
            pretrained_weights = backbone_pretrained(self.model, zoo, pretrained)
            from_checkpoint = init_backbone_from is not None
            freeze_pretrained_stages(self.model, freeze_stages, from_checkpoint, pretrained_weights)
        self.train_acc = MulticlassAccuracy(int(num_classes), average="micro")
        self.val_acc = MulticlassAccuracy(int(num_classes), average="micro")
        self.test_acc = MulticlassAccuracy(int(num_classes), average="micro")
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self._setup_fc_heads(int(num_classes), int(fc_warmup_epochs), float(fc_aux_weight))

    # --- construction ---------------------------------------------------------------------------

    def _setup_fc_heads(
        self, num_classes: int, fc_warmup_epochs: int, fc_aux_weight: float
    ) -> None:
        """The two-stage state and the FC warm-up / auxiliary head with its metrics, if used."""
        self.fc_warmup_epochs = fc_warmup_epochs
        self._xslot_stage_started = False
        self.fc_aux_weight = fc_aux_weight
        if fc_warmup_epochs or fc_aux_weight:
            # Outside self.model on purpose: exported and loaded models never carry it.
            self.fc_warmup_head = AuxiliaryFCHead(self.model.backbone.out_channels, num_classes)
        if fc_warmup_epochs:
            self.fc_warmup_train_acc = MulticlassAccuracy(num_classes, average="micro")
            self.fc_warmup_val_acc = MulticlassAccuracy(num_classes, average="micro")

    # --- forward / steps --------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        """``images (B, C, H, W)`` → :class:`ClassifierOutput` (logits ``(B, K)``, attention)."""
        return self.model(images)

    @property
    def in_fc_warmup(self) -> bool:
        """``True`` while ``fit`` is in its FC warm-up stage (epochs ``< fc_warmup_epochs``).

        Outside ``fit`` (``validate``, ``test``, ``predict``) the SCOUTER model is always used.
        """
        if not self.fc_warmup_epochs or self._trainer is None:
            return False
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        return fitting and self.current_epoch < self.fc_warmup_epochs

    def _forward_for_stage(self) -> tuple[Any, torch.nn.Module | None, str]:
        """The head that trains now, the idle one (if any) and the metric prefix."""
        if self.in_fc_warmup:
            return self.fc_warmup_head, self.model.head, "fc_warmup/"
        return None, getattr(self, "fc_warmup_head", None), ""

    def _shared_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        warmup_head, idle_head, prefix = self._forward_for_stage()
        aux_ce = None
        if warmup_head is not None:
            output = ClassifierOutput(warmup_head(self.model.backbone(images)))
        elif self.fc_aux_weight and stage == "train":
            features = self.model.backbone(images)
            output = self.model.classify_features(features)
            aux_ce = F.cross_entropy(self.fc_warmup_head(features), labels)
            idle_head = None  # both heads train
        else:
            output = self.model(images)
        parts = self.loss(output, labels)  # the FC stage has no attention: cross-entropy only
        total = parts.total
        if aux_ce is not None:
            total = total + self.fc_aux_weight * aux_ce
            self.log("train/fc_aux_ce", aux_ce, on_step=True, on_epoch=True, batch_size=len(labels))
        if stage == "train":
            self._check_finite_loss(parts)
            if idle_head is not None and self.trainer.world_size > 1:
                # DDP expects a gradient for every parameter: give the idle head exact zeros.
                total = total + 0.0 * sum(p.sum() for p in idle_head.parameters())
        metrics = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}
        if prefix:
            metrics = {"train": self.fc_warmup_train_acc, "val": self.fc_warmup_val_acc}
        metric = metrics[stage]
        metric(output.logits.detach(), labels)
        on_step = stage == "train"
        size = labels.shape[0]
        self.log(
            f"{prefix}{stage}/loss",
            parts.total,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            sync_dist=not on_step,
        )
        if not prefix:
            self.log_dict(
                {f"{stage}/ce": parts.ce, f"{stage}/area": parts.area},
                on_step=on_step,
                on_epoch=True,
                batch_size=size,
                sync_dist=not on_step,
            )
        self.log(
            f"{prefix}{stage}/acc",
            metric,
            on_step=on_step,
            on_epoch=True,
            prog_bar=stage != "train",
            batch_size=size,
        )
        return total

    def on_fit_start(self) -> None:
        size = getattr(getattr(self.trainer, "datamodule", None), "image_size", None)
        if size is not None and self.model.is_scouter:
            grid = self.model.attention_grid(size)
            self.attention_grid = grid
            rank_zero_info(f"explanation maps: {grid[0]}×{grid[1]} cells at {size} px input")

    def on_train_epoch_start(self) -> None:
        if not self.fc_warmup_epochs or self.in_fc_warmup or self._xslot_stage_started:
            return
        # Stage boundary. Under DDP the idle xSlot head got zero gradients during the FC stage,
        # which leaves Adam moments and step counts that would distort its first updates.
        head = set(self.model.head.parameters())
        for optimizer in self.trainer.optimizers:
            for param in head:
                optimizer.state.pop(param, None)
        self._xslot_stage_started = True
        rank_zero_info(
            f"epoch {self.current_epoch}: FC warm-up done, training the xSlot head "
            f"({self.model.config.variant}) on its backbone"
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Predictions and explanations of a batch.

        Returns:
            ``id`` list of B str, ``pred (B,)``, ``probs (B, K)``, ``attention (B, K, h, w)`` or
            ``None`` (FC), and ``label (B,)`` when the batch has labels.
        """
        output = self.model(batch["image"])
        result = {
            "id": batch.get("id"),
            "pred": output.logits.argmax(dim=1),
            "probs": output.logits.softmax(dim=1),
            "attention": output.attention,
        }
        if "label" in batch:
            result["label"] = batch["label"]
        return result

    # --- NaN guard ----------------------------------------------------------------------------

    def _check_finite_loss(self, parts: Any) -> None:
        finite = bool(torch.isfinite(parts.total.detach()))
        if self._trainer is not None:
            # Every process must stop together, or the healthy ones wait forever in all-reduce.
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise non_finite_error(
                "the loss",
                f": total {parts.total.item():.4g}, cross-entropy {parts.ce.item():.4g}, area "
                f"{parts.area.item():.4g} (on some process)",
                self.global_step,
                self.current_epoch,
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are already all-reduced here, so every process sees the same verdict.
        if not gradients_finite(self.parameters()):
            raise non_finite_error("the gradients", "", self.global_step, self.current_epoch)

    # --- optimisation -----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        if self.fc_warmup_epochs or self.fc_aux_weight:
            head += list(self.fc_warmup_head.parameters())
        cosine_or_warmup = hp.scheduler == "cosine" or hp.warmup_steps
        return build_optimization(
            head,
            (p for p in self.model.backbone.parameters() if p.requires_grad),
            lr=hp.lr,
            backbone_lr=hp.backbone_lr,
            weight_decay=hp.weight_decay,
            scheduler=hp.scheduler,
            lr_step_size=hp.lr_step_size,
            lr_gamma=hp.lr_gamma,
            warmup_steps=hp.warmup_steps,
            lr_min_factor=hp.lr_min_factor,
            total_steps=self.trainer.estimated_stepping_batches if cosine_or_warmup else None,
        )

    # --- checks and checkpoints -------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Before Lightning reads any ckpt_path (it does so after setup): weights_only=True only.
        use_safe_checkpoint_io(self.trainer)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            check_model_fits_data(self.model, datamodule)
        if stage == "fit":
            check_fc_warmup_fits(self.fc_warmup_epochs, self.trainer.max_epochs)
            if datamodule is not None:
                check_training_batches(datamodule, self.trainer.world_size)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Callbacks every run needs for exact resume: the data position and the random states."""
        return [TrainLoaderResume(), RandomStateResume()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LIGHTNING_CONFIG_KEY] = self.model.config.to_dict()
        checkpoint[_STAGE_KEY] = {"xslot_stage_started": self._xslot_stage_started}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stage = checkpoint.get(_STAGE_KEY)
        if stage is not None:
            self._xslot_stage_started = bool(stage.get("xslot_stage_started", False))
        stored = checkpoint.get(LIGHTNING_CONFIG_KEY)
        if stored is not None:
            check_checkpoint_matches(stored, self.model)


# One source for the architecture fields' docs: ModelConfig's, copied in for LightningCLI's --help.
ScouterModule.__doc__ = (ScouterModule.__doc__ or "").replace(
    "        ModelConfig fields: (their entries are inserted here at import)\n",
    model_config_docs(),
)
