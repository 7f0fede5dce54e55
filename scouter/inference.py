"""Predict and explain in one call: ``model.explain(images)`` and ``model.transform``.

:func:`explain` takes image files, PIL images, uint8 arrays or a preprocessed batch, runs the
model's own preprocessing (its stored :class:`~scouter.data_config.DataConfig`), predicts, and
explains with SCOUTER's own maps (xSlot heads) or Grad-CAM (FC heads) — or any registered
explainer by name — returning the maps at input resolution. ``Classifier.explain`` and
``Classifier.transform`` call this module.

Example:
    >>> model = scouter.create_model("scouter_pos_efficientnet_lite0_composites", pretrained=True)
    >>> result = model.explain("photo.jpg")  # doctest: +SKIP
    >>> result.predicted_names, result.maps.shape  # doctest: +SKIP
    (['dog'], torch.Size([1, 1, 128, 128]))
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ExplainedImages", "default_method", "explain", "image_transform", "load_images"]


def default_method(model: Any) -> str:
    """SCOUTER's own ``"slot"`` maps for an xSlot head, ``"gradcam"`` for an FC head."""
    return "slot" if getattr(model, "is_scouter", False) else "gradcam"


def load_images(images: Any) -> list[Any]:
    """Image file paths become PIL images; everything else is passed through as a list."""
    from PIL import Image

    single = isinstance(images, (str, os.PathLike)) or not isinstance(images, Sequence)
    items = [images] if single else list(images)
    loaded = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"image file {str(path)!r} does not exist")
            with Image.open(path) as opened:
                opened.load()
                item = opened.copy()
        loaded.append(item)
    return loaded


def image_transform(model: Any) -> Callable[[Any], Tensor]:
    """``model``'s eval preprocessing for one image: path / PIL / uint8 array → ``(C, H, W)``.

    Raises:
        MissingDataConfigError: the model stores no data config (the message says how to give it).
    """
    from scouter.data.preprocessing import data_config_of, preprocess

    config = data_config_of(model)  # fail now, not on the first image

    def transform(image: Any) -> Tensor:
        return preprocess(config, load_images(image))[0]

    return transform


@dataclass
class ExplainedImages:
    """Predictions of a batch and the explanation of the asked classes, at input resolution.

    Attributes:
        images: ``(B, C, H, W)`` the model's inputs (preprocessed).
        logits: ``(B, K)``.
        probabilities: ``(B, K)`` softmax of the logits.
        predictions: ``(B,)`` predicted classes.
        targets: ``(B,)`` the explained class of each image, or ``(B, T)`` with several per image.
        maps: ``(B, T, H, W)`` the explainer's maps upsampled bilinearly to the input size (raw
            values: SCOUTER's attention in ``(0, s)``, signed post-hoc attributions).
        method: the explainer's registry name.
        class_names: the model's class names, or ``None``.
        explanation: the explainer's own :class:`~scouter.explain.Explanation` (its resolution).
    """

    images: Tensor
    logits: Tensor
    probabilities: Tensor
    predictions: Tensor
    targets: Tensor
    maps: Tensor
    method: str
    class_names: list[str] | None = None
    explanation: Any = field(default=None, repr=False)
    mean: tuple[float, ...] = field(default=(0.0,), repr=False)  # to un-normalise for display
    std: tuple[float, ...] = field(default=(1.0,), repr=False)

    def _names(self, classes: Tensor) -> list[Any]:
        if self.class_names is None:
            return classes.tolist()
        if classes.ndim == 1:
            return [self.class_names[int(k)] for k in classes]
        return [[self.class_names[int(k)] for k in row] for row in classes]

    @property
    def predicted_names(self) -> list[Any]:
        """Each image's predicted class name (its index when the model has no class names)."""
        return self._names(self.predictions)

    @property
    def target_names(self) -> list[Any]:
        """The explained classes' names (indices without class names)."""
        return self._names(self.targets)

    def save(self, folder: str | os.PathLike, prefix: str = "image") -> list[Path]:
        """Write one overlay PNG per image and explained class: ``<prefix><b>_<class>.png``.

        Maps are prepared as the metrics do (positive part, min–max per map) and drawn over the
        un-normalised input (the reference's jet / 0.4 overlay). Each file is written atomically.
        """
        from PIL import Image

        from scouter.atomic_io import atomic_write
        from scouter.export.overlay import overlay_map
        from scouter.metrics.maps import prepare_maps

        folder = Path(folder)
        prepared = prepare_maps(self.maps)
        display = _display_images(self.images, self.mean, self.std)
        names = self.target_names
        paths = []
        for b in range(len(self.targets)):
            row = names[b] if self.targets.ndim == 2 else [names[b]]
            for t, name in enumerate(row):
                safe = re.sub(r"[^\w.-]", "_", f"{prefix}{b}_{name}")
                overlay = overlay_map(display[b], prepared[b, t])
                paths.append(
                    atomic_write(
                        folder / f"{safe}.png",
                        lambda tmp, pixels=overlay: Image.fromarray(pixels).save(tmp, format="PNG"),
                    )
                )
        return paths


def _display_images(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalised inputs back to ``[0, 1]`` for display."""
    m = torch.tensor(mean, dtype=images.dtype)[:, None, None]
    s = torch.tensor(std, dtype=images.dtype)[:, None, None]
    return (images.detach().cpu() * s + m).clamp(0, 1)


def _targets(model: Any, target: Any, batch: int) -> Any:
    """Class names in ``target`` become indices; ``"all"``, ints and tensors pass through."""
    names = getattr(model, "class_names", None)

    def index(value: Any) -> Any:
        if isinstance(value, str) and value != "all":
            if names is None or value not in names:
                known = ", ".join(names) if names else "none stored with this model"
                raise ValueError(f"unknown class name {value!r}; the model's classes: {known}")
            return names.index(value)
        return value

    if isinstance(target, (list, tuple)):
        if len(target) != batch:
            raise ValueError(f"target lists one class per image: {len(target)} for {batch} images")
        return torch.tensor([index(v) for v in target], dtype=torch.long)
    return index(target)


def explain(
    model: Any,
    images: Any,
    target: Any = None,
    method: str | None = None,
    **settings: Any,
) -> ExplainedImages:
    """Predict and explain ``images`` with ``model`` (see :meth:`Classifier.explain`).

    The model is switched to eval mode (BatchNorm statistics must not depend on the batch).
    """
    from scouter.data.preprocessing import data_config_of, preprocess
    from scouter.explain import get_explainer

    model.eval()
    method = method or default_method(model)
    explainer = get_explainer(method, **settings)
    explainer.check_model(model)  # a wrong head fails before the images are read
    parameter = next(model.parameters())
    if isinstance(images, Tensor):
        if images.ndim == 3:
            images = images[None]
        batch = images
        config = getattr(model, "data_config", None)
    else:
        config = data_config_of(model)
        batch = preprocess(config, load_images(images))
    batch = batch.to(parameter.device, parameter.dtype)
    with torch.no_grad():
        output = model(batch)
    logits = output.logits if hasattr(output, "logits") else output
    predictions = logits.argmax(dim=1)
    wanted = _targets(model, target, len(batch))
    explanation = explainer(model, batch, target=predictions if wanted is None else wanted)
    maps = explanation.maps.detach().float()
    if tuple(maps.shape[-2:]) != tuple(batch.shape[-2:]):
        maps = F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)
    return ExplainedImages(
        images=batch.detach().cpu(),
        logits=logits.detach().cpu(),
        probabilities=logits.detach().float().softmax(dim=1).cpu(),
        predictions=predictions.cpu(),
        targets=explanation.targets.cpu(),
        maps=maps.cpu(),
        method=method,
        class_names=getattr(model, "class_names", None),
        explanation=explanation,
        mean=tuple(config.mean) if config is not None else (0.0,) * batch.shape[1],
        std=tuple(config.std) if config is not None else (1.0,) * batch.shape[1],
    )
