"""The common explanation type, the explainer signature and the registry of explainers.

Every explainer — SCOUTER's own attention and every post-hoc baseline — is called the same way,
captum-style::

    explanation = get_explainer("gradcam")(model, images, target=labels)
    explanation.maps      # (B, 1, h, w) for one class per image, (B, K, h, w) for target="all"

``model`` is a :class:`~scouter.models.classifier.Classifier` (anything whose forward returns an
object with ``.logits (B, K)`` — or a plain logits tensor — works for the post-hoc methods).
Explainers never change the model's train/eval mode: call ``model.eval()`` first, otherwise
BatchNorm statistics depend on the batch and batched maps differ from per-image ones.

Adding a method is one small subclass: set ``name``, ``kind`` and, when it only works on one kind
of head, ``requires`` (``"xslot_head"`` or ``"fc_head"``: checked before any work), and implement
:meth:`Explainer.explain` (one class per image) — or :meth:`Explainer.explain_classes` when the
method gets several classes per image more cheaply than one at a time (SCOUTER, RISE) — and decorate
it with :func:`register_explainer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from scouter.explain.requirements import Requirement, requirement_problem

__all__ = [
    "Explainer",
    "Explanation",
    "MapKind",
    "Requirement",
    "Target",
    "get_explainer",
    "integer_setting",
    "list_explainers",
    "model_logits",
    "register_explainer",
    "resolve_targets",
]

Target = int | Tensor | Literal["all"] | None
MapKind = Literal["attention", "cam", "pixel"]


@dataclass
class Explanation:
    """Explanation maps of a batch, for one or several classes per image.

    Attributes:
        maps: ``(B, T, h, w)`` maps, one per image and explained class, any sign (post-hoc maps
            are signed; metrics apply ReLU, upsampling and min–max themselves). ``h×w`` is the
            feature grid for ``kind`` ``"attention"``/``"cam"`` and the input size for
            ``"pixel"``.
        targets: ``(B,)`` explained class of each image when ``T == 1``, else ``(B, T)``: the
            class of every map (``target="all"`` gives ``arange(K)`` per image).
        method: the registry name of the explainer (``"gradcam"``, ``"slot"``, …).
        settings: the explainer's settings, enough to rebuild it with :func:`get_explainer`.
        kind: ``"attention"`` (SCOUTER's own maps), ``"cam"`` (feature resolution) or
            ``"pixel"`` (input resolution).
    """

    maps: Tensor
    targets: Tensor
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    kind: MapKind = "pixel"

    def __post_init__(self) -> None:
        if self.maps.ndim != 4:
            raise ValueError(f"maps must be (B, T, h, w), got shape {tuple(self.maps.shape)}")
        expected = self.maps.shape[:1] if self.maps.shape[1] == 1 else self.maps.shape[:2]
        if self.targets.ndim == 2 and self.targets.shape[1] == 1:
            self.targets = self.targets[:, 0]
        if tuple(self.targets.shape) != tuple(expected):
            raise ValueError(
                f"targets {tuple(self.targets.shape)} do not match maps "
                f"{tuple(self.maps.shape)}: expected {tuple(expected)}"
            )

    @property
    def num_classes_explained(self) -> int:
        """``T``, the number of maps per image."""
        return self.maps.shape[1]

    def class_maps(self, classes: Tensor) -> Tensor:
        """Each image's map of one class.

        Args:
            classes: ``(B,)`` class indices; with ``T == 1`` they must equal :attr:`targets`.

        Returns:
            ``(B, 1, h, w)`` maps.
        """
        classes = classes.to(self.targets.device, torch.long)
        if self.targets.ndim == 1:
            if not torch.equal(classes, self.targets):
                raise ValueError(
                    "this explanation holds one class per image; explain with target='all' or "
                    "with these classes to select others"
                )
            return self.maps
        hits = self.targets == classes[:, None]  # (B, T)
        if not bool(hits.any(dim=1).all()):
            raise ValueError("some requested classes were not explained for their image")
        index = hits.float().argmax(dim=1).to(self.maps.device)
        return self.maps[torch.arange(len(index), device=self.maps.device), index][:, None]

    def to(self, *args: Any, **kwargs: Any) -> Explanation:
        """Move/cast the maps (``Tensor.to`` arguments); targets only change device."""
        maps = self.maps.to(*args, **kwargs)
        return dataclasses.replace(self, maps=maps, targets=self.targets.to(maps.device))


def model_logits(model: Callable[[Tensor], Any], images: Tensor) -> Tensor:
    """Class scores of ``model``: ``.logits`` of a ClassifierOutput, or the output itself.

    Args:
        model: a Classifier or any callable returning logits ``(B, K)``.
        images: ``(B, C, H, W)``.

    Returns:
        ``(B, K)`` logits.
    """
    output = model(images)
    return output.logits if hasattr(output, "logits") else output


def logits_function(model: Callable[[Tensor], Any]) -> Callable[[Tensor], Tensor]:
    """``images -> logits`` of ``model`` (what captum's attribution methods call)."""
    return lambda images: model_logits(model, images)


class LogitModule(nn.Module):
    """``nn.Module`` view of a model that returns only its logits ``(B, K)`` (for captum).

    captum's guided backprop and layer methods need a module / forward function returning a
    tensor, while our Classifier returns a ClassifierOutput.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return model_logits(self.model, images)


def resolve_targets(model: Callable[[Tensor], Any], images: Tensor, target: Target) -> Tensor:
    """Turn a ``target`` argument into explicit class indices.

    Args:
        model: the classifier (called once without gradients when ``target`` is ``None`` or
            ``"all"``).
        images: ``(B, C, H, W)``.
        target: ``None`` (each image's predicted class), an ``int`` (the same class for all),
            a ``(B,)`` tensor (one class per image), a ``(B, T)`` tensor (``T`` classes per image)
            or ``"all"`` (every class).

    Returns:
        ``(B,)`` or ``(B, T)`` ``long`` tensor on ``images.device``.
    """
    batch = images.shape[0]
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be None, an int, a tensor or 'all', got {target!r}")
        num_classes = _num_classes(model, images)
        return torch.arange(num_classes, device=images.device).expand(batch, -1).clone()
    if target is None:
        with torch.no_grad():
            return model_logits(model, images).argmax(dim=1)
    if isinstance(target, int) or (isinstance(target, Tensor) and target.ndim == 0):
        return torch.full((batch,), int(target), dtype=torch.long, device=images.device)
    if not isinstance(target, Tensor):
        target = torch.as_tensor(target)
    if target.ndim not in (1, 2) or target.shape[0] != batch:
        raise ValueError(
            f"target tensor must be (B,) or (B, T) with B = {batch}, got {tuple(target.shape)}"
        )
    return target.to(device=images.device, dtype=torch.long)


def _num_classes(model: Callable[[Tensor], Any], images: Tensor) -> int:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None:
        return int(num_classes)
    with torch.no_grad():
        return int(model_logits(model, images[:1]).shape[1])


def _check_range(targets: Tensor, num_classes: int | None) -> None:
    if num_classes is None or targets.numel() == 0:
        return
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"target classes must lie in [0, {num_classes}), got {low}..{high}")


@contextlib.contextmanager
def gradients_enabled() -> Iterator[None]:
    """Allow autograd even when the caller runs under ``no_grad``/``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def integer_setting(
    explainer: str, name: str, value: Any, minimum: int | None = 1, meaning: str = ""
) -> int:
    """``value`` as an int, or a ValueError naming the explainer, the setting and the valid range.

    Integral floats (``16.0``) are accepted; bools, fractions and strings are not.
    """
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and float(value).is_integer()
        and (minimum is None or value >= minimum)
    )
    if not ok:
        bound = "an integer" if minimum is None else f"an integer >= {minimum}"
        what = f" ({meaning})" if meaning else ""
        raise ValueError(f"explainer {explainer!r}: {name} must be {bound}{what}, got {value!r}")
    return int(value)


class Explainer:
    """Base class of all explainers: ``explainer(model, images, target=...) -> Explanation``.

    Subclasses set :attr:`name` and :attr:`kind` and implement :meth:`explain` (and optionally
    :meth:`explain_classes`). Settings are keyword arguments of ``__init__``, stored in
    :attr:`settings` and recorded in every :class:`Explanation`.

    Args:
        batch_size: at most this many (image, class) pairs are explained together when several
            classes are requested per image (``target="all"``); bounds memory, not results.
        **settings: method-specific settings (see each subclass).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[MapKind] = "pixel"
    #: Whether the method back-propagates (images are then detached copies with autograd on).
    needs_gradients: ClassVar[bool] = True
    #: What the method needs of the model (:data:`Requirement`), checked by :meth:`check_model`
    #: before any work: by every call, and by ``evaluate.py``'s preparation.
    requires: ClassVar[Requirement] = "any"

    def __init__(self, batch_size: int = 64, **settings: Any) -> None:
        self.batch_size = integer_setting(
            self.name or type(self).__name__, "batch_size", batch_size, 1, "items per pass"
        )
        self.settings: dict[str, Any] = {"batch_size": self.batch_size, **settings}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"

    def model_problem(self, model: nn.Module, noun: str = "model") -> str | None:
        """Why this explainer cannot explain ``model`` (naming the fix), or ``None``."""
        return requirement_problem(self.name, self.requires, model, noun)

    def check_model(self, model: nn.Module) -> None:
        """Raise a ValueError naming the problem and the fix when :attr:`requires` is not met."""
        problem = self.model_problem(model)
        if problem is not None:
            raise ValueError(problem)

    def __call__(self, model: nn.Module, images: Tensor, target: Target = None) -> Explanation:
        """Explain ``model``'s scores on ``images``.

        Args:
            model: a :class:`~scouter.models.classifier.Classifier` (in eval mode).
            images: ``(B, C, H, W)`` normalised model inputs.
            target: ``None`` (predicted class), ``int``, ``(B,)`` or ``(B, T)`` tensor, or
                ``"all"`` — see :func:`resolve_targets`.

        Returns:
            :class:`Explanation` with maps ``(B, 1, h, w)`` for one class per image or
            ``(B, T, h, w)``; ``T = K`` for ``"all"``.

        Raises:
            ValueError: before any work, when the model lacks what :attr:`requires` says (the
                message names the fix), or for bad ``images`` / ``target``.
        """
        self.check_model(model)
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        targets = resolve_targets(model, images, target)
        _check_range(targets, getattr(model, "num_classes", None))
        context = gradients_enabled() if self.needs_gradients else torch.no_grad()
        with context:
            if self.needs_gradients:
                # A plain copy: inference-mode tensors cannot enter autograd.
                images = images.detach().clone().requires_grad_(True)
                targets = targets.clone()
            if targets.ndim == 1:
                maps = self.explain(model, images, targets)
            else:
                maps = self.explain_classes(model, images, targets)
        return Explanation(maps.detach(), targets, self.name, dict(self.settings), kind=self.kind)

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """Explain one class per image (the hook subclasses implement).

        Args:
            model: the classifier.
            images: ``(N, C, H, W)``.
            targets: ``(N,)`` class indices.

        Returns:
            ``(N, 1, h, w)`` maps.
        """
        raise NotImplementedError

    def explain_classes(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """Explain ``T`` classes per image; by default (image, class) pairs in chunks.

        Args:
            model: the classifier.
            images: ``(B, C, H, W)``.
            targets: ``(B, T)`` class indices.

        Returns:
            ``(B, T, h, w)`` maps.
        """
        batch, count = targets.shape
        flat_targets = targets.reshape(-1)
        chunks = []
        for start in range(0, batch * count, self.batch_size):
            stop = min(start + self.batch_size, batch * count)
            rows = torch.arange(start, stop, device=images.device) // count
            # Detached at once: a map still joined to its pass's graph (Guided Grad-CAM's is)
            # would keep every pass's activations alive until the last (9 GB for 27 pairs of
            # 384 px on EfficientNet-Lite0, 1.5 GB detached).
            chunks.append(self.explain(model, images[rows], flat_targets[start:stop]).detach())
        maps = torch.cat(chunks)
        return maps.view(batch, count, *maps.shape[-2:])


_REGISTRY: dict[str, type[Explainer]] = {}
# Modules that register explainers on import; imported lazily so captum loads only when needed.
_MODULES = (
    "scouter.explain.slot",
    "scouter.explain.posthoc",
    "scouter.explain.cam",
    "scouter.explain.rise",
    "scouter.explain.blur_ig",
    "scouter.explain.guided_gradcam",
    "scouter.explain.superpixel_lime",
    "scouter.explain.perturbation",
)


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator adding an :class:`Explainer` subclass to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an explainer named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_explainers() -> list[str]:
    """Names accepted by :func:`get_explainer`, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_explainer(name: str, **settings: Any) -> Explainer:
    """Create an explainer by name.

    Args:
        name: one of :func:`list_explainers` (case-insensitive; ``grad_cam`` = ``gradcam``).
        **settings: the explainer's keyword arguments (e.g. ``steps=32`` for ``ig``).

    Returns:
        The :class:`Explainer`.

    Example:
        >>> explainer = get_explainer("ig", steps=16)
        >>> explainer(model, images, target=labels).maps.shape  # doctest: +SKIP
        torch.Size([2, 1, 64, 64])
    """
    _load_all()
    key = name.strip().lower().replace("_", "").replace("-", "")
    aliases = {n.replace("_", "").replace("-", ""): n for n in _REGISTRY}
    aliases.update(
        {
            "gradcampp": "gradcam++",
            "integratedgradients": "ig",
            "vanillagradients": "saliency",
            "gradients": "saliency",
            "blurintegratedgradients": "blur_ig",
        }
    )
    if key not in aliases:
        raise ValueError(f"unknown explainer {name!r}; valid names: {', '.join(list_explainers())}")
    cls = _REGISTRY[aliases[key]]
    try:
        signature = inspect.signature(cls.__init__)
        signature.bind(None, **settings)
    except TypeError as error:
        valid = [p for p in signature.parameters if p != "self"]
        raise TypeError(
            f"explainer {cls.name!r}: {error}; valid settings: {', '.join(valid) or 'none'}"
        ) from None
    return cls(**settings)
