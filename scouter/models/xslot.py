"""XSlotHead: the SCOUTER explainable slot-attention classification head (docs/method.md)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from scouter.models.output import ClassifierOutput
from scouter.models.position import sine_position_encoding

AttentionNorm = Literal["reference", "abs", "none"]
ATTENTION_NORMS = ("reference", "abs", "none")


class XSlotHead(nn.Module):
    """SCOUTER's xSlot head: class slots attend over position-encoded features.

    The forward pass reproduces the reference implementation (``wbw520/scouter``) exactly when the
    defaults are used: channel reduction ``Z = ReLU(conv1x1(F))``; keys from ``to_k(Z + P)`` with
    the fixed sine encoding ``P``; values ``Z``; the query is the slot itself; dot products scaled
    by ``D^-1/2``, then normalised as ``d / rowsum(d) · totalsum(d)``; element-wise sigmoid;
    updates ``A·V / D``; GRU refinement; the last iteration's attention and updates form the
    output. Class score ``o_c = e · Σ_d Σ_{r<s} U_{c·s+r, d}``.

    Args:
        in_channels: backbone channels ``C`` (the classifier reads it from the backbone).
        num_classes: ``K``.
        slots_per_class: ``s``; slots are ordered class-major (slot ``c·s + r`` belongs to ``c``).
        hidden_dim: ``D`` (reference: 64).
        sign: ``e``: ``+1`` for SCOUTER+ (positive explanations), ``-1`` for SCOUTER−.
        to_k_layers: number of linear layers in the key MLP (ReLU between them).
        iterations: attention passes ``T`` (reference: 3; ``T - 1`` GRU updates matter).
        attention_norm: ``"reference"`` (signed row/total sums, as the paper's code),
            ``"abs"`` (sums of ``|d|`` plus ``eps``, the authors' later fix that cannot divide by a
            near-zero signed sum), or ``"none"`` (plain scaled dot products).
        eps: added to the denominators of ``"abs"`` normalisation.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        slots_per_class: int = 1,
        hidden_dim: int = 64,
        sign: int = 1,
        to_k_layers: int = 1,
        iterations: int = 3,
        attention_norm: AttentionNorm = "reference",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 (SCOUTER+) or -1 (SCOUTER-), got {sign!r}")
        if attention_norm not in ATTENTION_NORMS:
            raise ValueError(
                f"attention_norm must be one of {ATTENTION_NORMS}, got {attention_norm!r}"
            )
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("slots_per_class", slots_per_class),
            ("hidden_dim", hidden_dim),
            ("to_k_layers", to_k_layers),
            ("iterations", iterations),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (sine position encoding), got {hidden_dim}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.slots_per_class = slots_per_class
        self.num_slots = num_classes * slots_per_class
        self.hidden_dim = hidden_dim
        self.sign = sign
        self.iterations = iterations
        self.attention_norm = attention_norm
        self.eps = eps

        self.conv1x1 = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
        # The reference samples mu + sigma * eps once at construction and learns the result; the
        # state_dict holds only the sampled tensor, so a plain normal init is equivalent.
        self.initial_slots = nn.Parameter(torch.randn(1, self.num_slots, hidden_dim))
        layers: list[nn.Module] = [nn.Linear(hidden_dim, hidden_dim)]
        for _ in range(to_k_layers - 1):
            layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim)]
        self.to_k = nn.Sequential(*layers)
        self.gru = nn.GRUCell(hidden_dim, hidden_dim)

    @property
    def to_k_layers(self) -> int:
        return sum(isinstance(m, nn.Linear) for m in self.to_k)

    def position_values(self, features: torch.Tensor) -> torch.Tensor:
        """Each position's value ``v(n) = Σ_d relu(conv1x1(x))_nd / D``, shape ``(B, h, w)``.

        The class score is ``logit_c = e · Σ_n M_c(n) · v(n)`` with ``M_c`` the class's attention
        summed over its slots (the update's sum over channels, divided by ``D``), so
        ``M_c · v`` is the exact split of the score over positions.
        """
        return torch.relu(self.conv1x1(features)).sum(dim=1) / self.hidden_dim

    def normalize_dots(self, dots: torch.Tensor) -> torch.Tensor:
        """Apply the configured normalisation to scaled dot products ``(B, S, n)``."""
        if self.attention_norm == "reference":
            # d / rowsum · totalsum with signed sums, as the original code
            # (docs/method.md#attention-normalisation).
            row = dots.sum(dim=2, keepdim=True)
            total = row.sum(dim=1, keepdim=True)
            return dots / row * total
        if self.attention_norm == "abs":
            magnitude = dots.abs()
            row = magnitude.sum(dim=2, keepdim=True) + self.eps
            total = magnitude.sum(dim=(1, 2), keepdim=True)
            return dots / row * total
        return dots

    def forward(self, features: torch.Tensor) -> ClassifierOutput:
        """Attend over a feature map.

        Args:
            features: ``(B, C, h, w)`` last backbone stage, any grid size.

        Returns:
            :class:`~scouter.models.output.ClassifierOutput` with logits ``(B, K)`` (raw class
            scores ``e · Σ_d Σ_{slots of c} U``), attention ``(B, K, h, w)`` (values in
            ``(0, s)``) and slot_attention ``(B, S, h, w)`` (class-major, ``S = K·s``, values in
            ``(0, 1)``), in the dtype and on the device of ``features``.
        """
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"XSlotHead expects features (B, {self.in_channels}, h, w), "
                f"got {tuple(features.shape)}"
            )
        batch, _, height, width = features.shape
        dim = self.hidden_dim
        reduced = torch.relu(self.conv1x1(features))  # (B, D, h, w)
        pos = sine_position_encoding(
            height, width, dim, device=features.device, dtype=reduced.dtype
        )
        values = reduced.flatten(2).transpose(1, 2)  # (B, n, D): features without PE
        keys = self.to_k((reduced + pos).flatten(2).transpose(1, 2))  # (B, n, D)

        slots = self.initial_slots.to(reduced.dtype).expand(batch, -1, -1)  # (B, S, D)
        scale = dim**-0.5
        for step in range(self.iterations):
            dots = torch.einsum("bsd,bnd->bsn", slots, keys) * scale
            attn = torch.sigmoid(self.normalize_dots(dots))  # (B, S, n)
            # Sum over positions divided by D (not by n, nor by Σ A): the reference's update.
            updates = torch.einsum("bsn,bnd->bsd", attn, values) / dim  # (B, S, D)
            if step < self.iterations - 1:
                # The last GRU step of the reference is computed but never used; skip it.
                slots = self.gru(updates.reshape(-1, dim), slots.reshape(-1, dim))
                slots = slots.view(batch, self.num_slots, dim)

        per_class = updates.view(batch, self.num_classes, self.slots_per_class, dim)
        logits = self.sign * per_class.sum(dim=(2, 3))
        slot_attention = attn.view(batch, self.num_slots, height, width)
        attention = slot_attention.view(
            batch, self.num_classes, self.slots_per_class, height, width
        ).sum(dim=2)
        return ClassifierOutput(logits, attention, slot_attention)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_classes={self.num_classes}, "
            f"slots_per_class={self.slots_per_class}, hidden_dim={self.hidden_dim}, "
            f"sign={self.sign:+d}, iterations={self.iterations}, "
            f"attention_norm={self.attention_norm!r}"
        )
