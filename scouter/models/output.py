"""ClassifierOutput: what every head returns, and so what the Classifier returns."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ClassifierOutput(NamedTuple):
    """Prediction and explanation of one forward pass (of a head, and of the whole classifier).

    Every head maps backbone features ``(B, C, h, w)`` to this; a head that does not explain
    (the FC baseline) leaves the maps ``None``.

    Attributes:
        logits: ``(B, K)`` raw class scores (log-softmax is the loss's business).
        attention: ``(B, K, h, w)`` SCOUTER explanation maps, each class's attention summed over
            its ``s`` slots (values in ``(0, s)``), or ``None`` for the FC baseline.
        slot_attention: ``(B, K·s, h, w)`` final attention of every slot (class-major, values in
            ``(0, 1)``; the area loss is taken over this), or ``None``.
    """

    logits: torch.Tensor
    attention: torch.Tensor | None = None
    slot_attention: torch.Tensor | None = None
