"""ScouterModule: the LightningModule that trains SCOUTER+ / SCOUTER− and the FC baseline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.optim.lr_scheduler import LambdaLR, StepLR
from torchmetrics.classification import MulticlassAccuracy

from scouter.checkpoints import (
    LIGHTNING_CONFIG_KEY,
    backbone_state_from_checkpoint,
    load_state_dict_checked,
)
from scouter.losses import ScouterLoss
from scouter.models.classifier import Classifier, ClassifierOutput, ModelConfig, build_classifier
from scouter.models.zoo import create_model, get_model_entry
from scouter.training.freezing import freeze_backbone_stages

# Fields that must agree between a checkpoint and the module restoring it.
_SHAPE_FIELDS = ("backbone", "num_classes", "head", "slots_per_class", "hidden_dim", "to_k_layers")


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/inf; training stopped before the optimizer step."""


class ScouterModule(pl.LightningModule):
    """Train a :class:`~scouter.models.classifier.Classifier` with :class:`~scouter.losses.ScouterLoss`.

    The architecture comes from the explicit arguments, on top of a zoo entry when ``zoo`` is
    given (``None`` means "the zoo entry's value, else the :class:`ModelConfig` default"). The
    classifier lives at ``self.model`` and its config is written into every checkpoint, so
    ``scouter.load_model(ckpt)`` rebuilds it without this class.

    Logged: ``{train,val,test}/{loss,ce,area,acc}`` (accuracy over all samples, not a mean of
    per-batch accuracies as in the reference, SPEC B §9 bug 11).

    Args:
        num_classes: ``K``; linked from ``data.num_classes`` by ``train.py``.
        zoo: a ``scouter.list_models()`` name to start from (its recipe λ/power too).
        backbone: timm model name.
        head: ``"xslot"`` (SCOUTER) or ``"fc"`` (baseline).
        slots_per_class: ``s``.
        sign: ``+1`` SCOUTER+, ``-1`` SCOUTER−.
        hidden_dim: ``D``.
        to_k_layers: depth of the key MLP.
        iterations: attention passes (reference 3).
        attention_norm: ``"reference"``, ``"abs"`` (robust to the reference's NaNs) or ``"none"``.
        in_chans: image channels (``train.py`` links it from ``data.in_chans``).
        stem: ``"default"`` or ``"mnist"`` (fresh 1-channel 3×3 ResNet stem).
        pretrained: start the backbone from timm's pretrained weights (or the zoo entry's offline
            weights).
        pretrained_file: local backbone weight file (timm keys).
        backbone_kwargs: extra ``timm.create_model`` arguments.
        lambda_area: ``λ`` of the area loss (zoo recipe, else 1.0).
        power: exponent of the area term (zoo recipe, else 2).
        area: ``"mean"`` (reference code) or ``"sum"`` (paper wording).
        lr: learning rate of the head (and of the backbone unless ``backbone_lr``).
        backbone_lr: separate backbone learning rate.
        weight_decay: AdamW weight decay, applied to every parameter (the reference's
            ``--weight_decay`` was ignored and AdamW's 0.01 applied, SPEC B §9 bug 5).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if num_classes is None:
            raise ValueError(
                "ScouterModule needs num_classes (train.py links it from data.num_classes; "
                "in Python pass ScouterModule(num_classes=datamodule.num_classes, ...))"
            )
        if scheduler not in ("step", "cosine", "none"):
            raise ValueError(f"scheduler must be 'step', 'cosine' or 'none', got {scheduler!r}")
        if warmup_steps and scheduler == "step":
            raise ValueError(
                "warmup_steps works with scheduler 'cosine' or 'none'; the reference's step "
                "schedule has no warm-up — set scheduler: cosine or warmup_steps: 0"
            )
        if init_backbone_from is not None and not Path(init_backbone_from).is_file():
            raise FileNotFoundError(
                f"init_backbone_from {init_backbone_from!r} does not exist — train the FC stage "
                "first (e.g. python train.py fit --config configs/<dataset>/fc.yaml) or point it "
                "at its checkpoint (last.ckpt in its checkpoint folder)"
            )
        given = dict(
            backbone=backbone,
            head=head,
            slots_per_class=slots_per_class,
            sign=sign,
            hidden_dim=hidden_dim,
            to_k_layers=to_k_layers,
            iterations=iterations,
            attention_norm=attention_norm,
            in_chans=in_chans,
            stem=stem,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            backbone_kwargs=backbone_kwargs,
        )
        arch = {name: value for name, value in given.items() if value is not None}
        self.model = self._build_model(zoo, int(num_classes), arch)
        recipe = get_model_entry(zoo) if zoo is not None else None
        self.loss = ScouterLoss(
            lambda_area=lambda_area
            if lambda_area is not None
            else (recipe.lambda_area if recipe else 1.0),
            power=power if power is not None else (recipe.power if recipe else 2),
            area=area,
        )
        if init_backbone_from is not None:
            state = backbone_state_from_checkpoint(init_backbone_from)
            load_state_dict_checked(
                self.model.backbone.model, state, f"backbone of {init_backbone_from!r}"
            )
        if freeze_stages:
            self._freeze(freeze_stages, from_checkpoint=init_backbone_from is not None)
        self.train_acc = MulticlassAccuracy(int(num_classes), average="micro")
        self.val_acc = MulticlassAccuracy(int(num_classes), average="micro")
        self.test_acc = MulticlassAccuracy(int(num_classes), average="micro")

    # --- construction ---------------------------------------------------------------------------

    @staticmethod
    def _build_model(zoo: str | None, num_classes: int, arch: dict[str, Any]) -> Classifier:
        if zoo is not None:
            overrides = dict(arch)
            pretrained = bool(overrides.pop("pretrained", False))
            return create_model(zoo, pretrained=pretrained, num_classes=num_classes, **overrides)
        if "backbone" not in arch:
            raise ValueError("give either zoo=<scouter.list_models() name> or backbone=<timm name>")
        return build_classifier(ModelConfig(num_classes=num_classes, **arch))

    @property
    def _backbone_pretrained(self) -> bool:
        config = self.model.config
        zoo = self.hparams.get("zoo")
        offline = zoo is not None and get_model_entry(zoo).weights is not None
        return bool(
            config.pretrained
            or config.pretrained_file
            or (offline and self.hparams.get("pretrained"))
        )

    def _freeze(self, num_stages: int, from_checkpoint: bool) -> None:
        config = self.model.config
        if not (from_checkpoint or self._backbone_pretrained):
            raise ValueError(
                f"freeze_stages={num_stages} would freeze randomly initialised backbone layers "
                f"({config.backbone} has pretrained=False and no init_backbone_from): set "
                "pretrained: true, pretrained_file or init_backbone_from, or freeze_stages: 0"
            )
        # The reference froze its freshly created MNIST conv1 at random init (SPEC B §3.3).
        fresh = {"conv1.weight"} if config.stem == "mnist" and not from_checkpoint else set()
        _, kept = freeze_backbone_stages(self.model.backbone.model, num_stages, fresh)
        if kept:
            rank_zero_warn(
                f"freeze_stages={num_stages}: keeping freshly initialised {', '.join(kept)} "
                "trainable (frozen at random init it would never learn)"
            )

    # --- forward / steps --------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        """``images (B, C, H, W)`` → :class:`ClassifierOutput` (logits ``(B, K)``, attention)."""
        return self.model(images)

    def _shared_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        output = self.model(images)
        parts = self.loss(output, labels)
        if stage == "train":
            self._check_finite_loss(parts)
        metric = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}[stage]
        metric(output.logits.detach(), labels)
        on_step = stage == "train"
        size = labels.shape[0]
        self.log(
            f"{stage}/loss",
            parts.total,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            sync_dist=not on_step,
        )
        self.log_dict(
            {f"{stage}/ce": parts.ce, f"{stage}/area": parts.area},
            on_step=on_step,
            on_epoch=True,
            batch_size=size,
            sync_dist=not on_step,
        )
        self.log(
            f"{stage}/acc",
            metric,
            on_step=on_step,
            on_epoch=True,
            prog_bar=stage != "train",
            batch_size=size,
        )
        return parts.total

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

    def _raise_non_finite(self, what: str, detail: str) -> None:
        raise NonFiniteLossError(
            f"{what} became non-finite at global step {self.global_step} (epoch "
            f"{self.current_epoch}){detail}. Training stopped before the optimizer step, so no "
            "checkpoint holds these values and the last saved one is intact. Known cause: the "
            "reference attention normalisation divides by a signed row sum that can reach 0 "
            "(SPEC B §1.9) — try attention_norm: abs, a lower lr, or --trainer.gradient_clip_val."
        )

    def _check_finite_loss(self, parts: Any) -> None:
        finite = bool(torch.isfinite(parts.total.detach()))
        if self._trainer is not None:
            # Every process must stop together, or the healthy ones wait forever in all-reduce.
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            self._raise_non_finite(
                "the loss",
                f": total {parts.total.item():.4g}, cross-entropy {parts.ce.item():.4g}, area "
                f"{parts.area.item():.4g} (on some process)",
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are already all-reduced here, so every process sees the same verdict.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
            self._raise_non_finite("the gradients", "")

    # --- optimisation -----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": hp.lr, "name": "head"}]
        if backbone:
            lr = hp.backbone_lr if hp.backbone_lr is not None else hp.lr
            groups.append({"params": backbone, "lr": lr, "name": "backbone"})
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "step":
            step = StepLR(optimizer, step_size=hp.lr_step_size, gamma=hp.lr_gamma)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": step, "interval": "epoch"},
            }
        if hp.scheduler == "none" and not hp.warmup_steps:
            return {"optimizer": optimizer}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup, floor, cosine = (
            int(hp.warmup_steps),
            float(hp.lr_min_factor),
            hp.scheduler == "cosine",
        )

        # A closure, not an object: LambdaLR then keeps nothing but numbers in its state_dict,
        # so checkpoints stay loadable with weights_only=True.
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        schedule = LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- checks and checkpoints -------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None) if datamodule is not None else None
        if data_classes is not None and int(data_classes) != self.model.num_classes:
            raise ValueError(
                f"the model has {self.model.num_classes} classes but the data has {data_classes}: "
                "set model num_classes to the data's (train.py links them), or select the classes "
                "with data.dataset_options.num_classes"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LIGHTNING_CONFIG_KEY] = self.model.config.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(LIGHTNING_CONFIG_KEY)
        if stored is None:
            return
        current = self.model.config.to_dict()
        diff = [
            f"{key}: checkpoint {stored.get(key)!r} vs model {current[key]!r}"
            for key in _SHAPE_FIELDS
            if stored.get(key) != current[key]
        ]
        if diff:
            raise ValueError(
                "the checkpoint was trained with another architecture (" + "; ".join(diff) + ") — "
                "use the config it was trained with, or scouter.load_model(ckpt) to rebuild it"
            )
