"""Area size: how much of the image an explanation covers (docs/metrics.md#area)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from scouter.metrics.maps import prepare_maps, reference_area, select_class_maps
from scouter.metrics.per_image import PerImageMetric

__all__ = ["AreaSize"]

AreaMode = Literal["prepared", "reference", "reference_uint8"]


class AreaSize(PerImageMetric):
    """Mean of the explained class's map per image, averaged over images (lower = more compact).

    ``mode="prepared"`` (default) uses :func:`~scouter.metrics.maps.prepare_maps` (ReLU, bilinear
    to ``input_size``, per-map min–max). ``mode="reference"`` / ``"reference_uint8"`` reproduce the
    reference's area at feature resolution, jointly normalised over all classes of the image (with
    the uint8 truncation for ``"reference_uint8"``; docs/metrics.md#reference-area) — these need
    all ``K`` maps.

    Args:
        input_size: ``(H, W)`` of the model input for ``"prepared"``; ``None`` keeps the maps' size.
        mode: which map preparation to use.

    Example:
        >>> metric = AreaSize(input_size=(260, 260))
        >>> metric.update(torch.rand(4, 10, 9, 9), classes=torch.tensor([0, 1, 2, 3]))
        >>> metric.compute()  # dataset mean; metric.per_image() gives the (N,) values
    """

    higher_is_better = False

    def __init__(
        self,
        input_size: tuple[int, int] | None = None,
        mode: AreaMode = "prepared",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("prepared", "reference", "reference_uint8"):
            raise ValueError(
                f"mode must be 'prepared', 'reference' or 'reference_uint8', got {mode!r}"
            )
        self.input_size = None if input_size is None else tuple(input_size)
        self.mode = mode

    def update(self, maps: Tensor, classes: Tensor | None = None) -> None:
        """Add a batch.

        Args:
            maps: ``(B, K, h, w)`` maps (or ``(B, 1, h, w)`` for the explained class only; the
                reference modes need all classes).
            classes: ``(B,)`` explained classes; required when ``K > 1``.
        """
        if self.mode == "prepared":
            prepared = prepare_maps(select_class_maps(maps, classes), self.input_size)
            area = prepared.mean(dim=(1, 2, 3))
        else:
            if maps.shape[1] > 1 and classes is None:
                raise ValueError("reference area modes need `classes` (B,) when K > 1")
            area = reference_area(
                maps, classes if maps.shape[1] > 1 else None, uint8=self.mode == "reference_uint8"
            ).reshape(-1)
        self.values.append(area.detach())
