"""The ``--device`` setting of the commands (evaluate.py, stylex.py attfind) as a torch device."""

from __future__ import annotations

import torch


def resolve_device(name: str, error: type[Exception] = ValueError) -> torch.device:
    """``auto`` → CUDA when available, else the CPU; any other name → that device, checked.

    Raises:
        error: ``name`` is not a device, or names CUDA on a machine without it (the message
            names the fix).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise error(f"--device {name!r} is not a device ({exc}): use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise error(f"--device {name!r}: CUDA is not available here; use --device cpu or auto")
    return device
