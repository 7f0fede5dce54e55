"""StylexModule: trains generator, encoder and discriminator for one frozen classifier.

Batches alternate between two branches (even steps: encoder, odd steps: noise):

* **encoder branch**: ``w = E(x)``, ``x' = G(w, c)`` with ``c = softmax(C(x))``; losses
  adversarial + ``rec_weight·L1(x', x)`` + ``latent_weight·L1(E(x'), E(x))`` +
  ``kl_weight·KL(C(x) ‖ C(x'))``.
* **noise branch**: ``w = mapping(z)``, ``x' = G(w, c)`` with the same step's real-image ``c``;
  adversarial only.

The discriminator takes one step per batch (non-saturating loss, lazy R1 every
``r1_interval`` steps). The classifier is frozen; gradients flow through it to ``x'``. The
authors' 0.1·LPIPS reconstruction term is left out: its weights cannot be downloaded here, and a
substitute would be another network to trust (docs/stylex.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from scouter.stylex import losses
from scouter.stylex.discriminator import ProjectionDiscriminator
from scouter.stylex.encoder import Encoder
from scouter.stylex.errors import StylexInputError
from scouter.stylex.generator import StyleGenerator
from scouter.stylex.preprocessing import (
    ExplainedClassifier,
    check_classifier,
    preprocessing_from_dict,
    preprocessing_to_dict,
    resolve_preprocessing,
)

CLASSIFIER_CONFIG_KEY = "stylex_classifier_config"
PREPROCESSING_KEY = "stylex_classifier_preprocessing"
CLASS_NAMES_KEY = "stylex_classifier_class_names"


def load_explained_classifier(path: str | Path) -> nn.Module:
    """The classifier at ``path`` (any format :func:`scouter.load_model` reads), or a clear error."""
    from scouter.checkpoints import require_checkpoint_file

    if path is None or str(path) == "":
        raise StylexInputError(
            "no classifier given: pass --model.classifier <checkpoint> (a train.py .ckpt or a "
            ".safetensors export of the classifier to explain)"
        )
    try:
        require_checkpoint_file(path)
    except OSError as error:
        raise StylexInputError(
            f"{error}: pass --model.classifier <checkpoint> of a classifier trained by train.py"
        ) from None
    from scouter import load_model

    return load_model(path)


class StylexModule(pl.LightningModule):
    """StylEx for one classifier (see the module docstring for the training scheme).

    Args:
        classifier: checkpoint path of the classifier to explain (or, from Python, the module).
        classifier_preprocessing: ``{image_size, in_chans, mean, std}`` of the classifier; read
            from its ``.ckpt`` when None (required for ``.safetensors`` and modules).
        classes: explain only these classifier outputs (``c`` = softmax over them); all if None.
        resize_for_classifier: allow a classifier size other than ``image_size`` (generator
            images are then resized to it); refused by default, as a likely mistake.
        image_size, image_channels: the generator's images (linked from ``data``).
        w_dim, channels, min_channels, mapping_layers: network sizes.
        conditional: False trains the paper's StyleSpace baseline: no ``c`` in the styles or the
            discriminator (and, unless ``kl_weight`` says otherwise, no KL term).
        lr: generator and discriminator learning rate; encoder_lr_ratio: the encoder's share.
        rec_weight, latent_weight, kl_weight, adv_weight: loss weights (paper: 1, 0.1, 1, 1).
            ``kl_weight`` None means 1 when conditional and 0 for the baseline; ``conditional:
            false`` with ``kl_weight: 1`` is the KL-only ablation (the classifier shapes the
            reconstructions, but ``c`` never enters the styles).
        r1_gamma, r1_interval: lazy R1 regularisation of the discriminator.
    """

    def __init__(
        self,
        classifier: Any = None,
        classifier_preprocessing: dict[str, Any] | None = None,
        classes: list[int] | None = None,
        resize_for_classifier: bool = False,
        image_size: int = 32,
        image_channels: int = 1,
        w_dim: int = 64,
        channels: int = 64,
        min_channels: int = 16,
        mapping_layers: int = 4,
        conditional: bool = True,
        lr: float = 0.002,
        encoder_lr_ratio: float = 0.5,
        rec_weight: float = 1.0,
        latent_weight: float = 0.1,
        kl_weight: float | None = None,
        adv_weight: float = 1.0,
        r1_gamma: float = 1.0,
        r1_interval: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["classifier"])
        self.hparams["classifier"] = classifier if isinstance(classifier, (str, Path)) else None
        if isinstance(classifier, nn.Module):
            if classifier_preprocessing is None:
                raise StylexInputError(
                    "a classifier module needs classifier_preprocessing={image_size, in_chans, "
                    "mean, std}: the values it was trained with"
                )
            model, source = classifier, "module"
            prep = preprocessing_from_dict(classifier_preprocessing)
        else:
            model, source = load_explained_classifier(classifier), repr(str(classifier))
            prep = resolve_preprocessing(classifier, classifier_preprocessing, model)
        check_classifier(model, prep, source)
        if prep.input_size != (image_size, image_size) and not resize_for_classifier:
            raise StylexInputError(
                f"classifier {source} takes {prep.input_size[0]}x{prep.input_size[1]} images but "
                f"StylEx generates {image_size}x{image_size}: set data.image_size: "
                f"{prep.input_size[0]} (if a power of two), train the classifier at "
                f"{image_size} (train.py --data.image_size {image_size}), or set "
                "model.resize_for_classifier: true to resize the generated images"
            )
        for name in ("lr", "encoder_lr_ratio", "r1_interval"):
            if not float(locals()[name]) > 0:
                raise StylexInputError(f"model.{name} must be > 0, got {locals()[name]}")
        if kl_weight is None:
            kl_weight = 1.0 if conditional else 0.0
        if not float(kl_weight) >= 0:
            raise StylexInputError(
                f"model.kl_weight must be >= 0 (0: no classifier term), got {kl_weight}"
            )
        self.hparams["kl_weight"] = float(kl_weight)  # resolved: what training used
        self.classifier = ExplainedClassifier(model, prep, classes)
        self.conditional = bool(conditional)
        c_dim = self.classifier.num_classes if self.conditional else 0
        self.generator = StyleGenerator(
            image_size, image_channels, w_dim, c_dim, channels, min_channels, mapping_layers
        )
        self.encoder = Encoder(image_size, image_channels, w_dim, channels, min_channels)
        self.discriminator = ProjectionDiscriminator(
            image_size, image_channels, c_dim, channels, min_channels
        )
        self.automatic_optimization = False

    # --- what AttFind and the metrics use -------------------------------------------------
    def condition(self, images: torch.Tensor) -> torch.Tensor | None:
        """``c = softmax(C(x)) (B, K)``, or None for the unconditioned baseline."""
        if not self.conditional:
            return None
        return F.softmax(self.classifier(images), dim=1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> dict[str, Any]:
        """StyleSpace ``styles (B, |S|)``, toRGB styles, ``w`` and ``c`` of images ``(B, C, S, S)``."""
        w, c = self.encoder(images), self.condition(images)
        return {
            "w": w,
            "c": c,
            "styles": self.generator.styles(w, c),
            "rgb_styles": self.generator.rgb_styles(w, c),
        }

    # --- training ---------------------------------------------------------------------------
    def _discriminator_step(
        self, real: torch.Tensor, fake: torch.Tensor, c: Any, batch_idx: int
    ) -> torch.Tensor:
        opt_d = self.optimizers()[1]
        self.discriminator.requires_grad_(True)
        loss = losses.discriminator_adversarial(
            self.discriminator(real, c), self.discriminator(fake.detach(), c)
        )
        if batch_idx % self.hparams.r1_interval == 0 and self.hparams.r1_gamma > 0:
            # Lazy R1: every r1_interval-th step, scaled by the interval (StyleGAN2).
            real = real.detach().requires_grad_(True)
            penalty = losses.r1_penalty(self.discriminator(real, c), real)
            loss = loss + self.hparams.r1_gamma / 2 * penalty * self.hparams.r1_interval
            self.log("train/r1", penalty.detach())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_d.step()
        return loss.detach()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        opt_g = self.optimizers()[0]
        real = batch["image"]
        hp = self.hparams
        with torch.no_grad():
            real_logits = self.classifier(real)
        c = F.softmax(real_logits, dim=1) if self.conditional else None
        encoder_branch = batch_idx % 2 == 0
        if encoder_branch:
            w = self.encoder(real)
        else:
            z = torch.randn(real.shape[0], self.generator.w_dim, device=real.device)
            w = self.generator.mapping(z)
        fake = self.generator(w, c)
        d_loss = self._discriminator_step(real, fake, c, batch_idx)

        self.discriminator.requires_grad_(False)  # the generator step must not touch D
        adv = losses.generator_adversarial(self.discriminator(fake, c))
        loss = hp.adv_weight * adv
        logs = {"train/d_loss": d_loss}
        if encoder_branch:
            rec = (fake - real).abs().mean()
            # E(x) is the target: detached, so the latent term cannot shrink both sides.
            latent = (self.encoder(fake) - w.detach()).abs().mean()
            loss = loss + hp.rec_weight * rec + hp.latent_weight * latent
            logs.update({"train/rec_l1": rec.detach(), "train/latent_l1": latent.detach()})
            if hp.kl_weight > 0:
                kl = losses.classifier_kl(real_logits, self.classifier(fake))
                loss = loss + hp.kl_weight * kl
                logs["train/kl"] = kl.detach()
            logs["train/g_adv_encoder"] = adv.detach()
        else:
            logs["train/g_adv_noise"] = adv.detach()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        self.log_dict(logs)
        return loss.detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        betas = (0.0, 0.99)  # StyleGAN2's Adam: no momentum on the first moment
        opt_g = torch.optim.Adam(
            [
                {"params": self.generator.parameters(), "lr": hp.lr},
                {"params": self.encoder.parameters(), "lr": hp.lr * hp.encoder_lr_ratio},
            ],
            betas=betas,
        )
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=betas)
        return [opt_g, opt_d]

    def setup(self, stage: str) -> None:
        # Before Lightning reads any ckpt_path (it does so after setup): weights_only=True only.
        from scouter.training.safe_checkpoint_io import use_safe_checkpoint_io

        use_safe_checkpoint_io(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = getattr(self.classifier.model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            checkpoint[CLASSIFIER_CONFIG_KEY] = config.to_dict()
        checkpoint[PREPROCESSING_KEY] = preprocessing_to_dict(self.classifier.prep)
        names = getattr(self.classifier.model, "class_names", None)
        if names is not None:  # AttFind names the classes as the classifier does
            checkpoint[CLASS_NAMES_KEY] = [str(name) for name in names]
