"""DataLoader settings derived from the machine: ``num_workers`` and ``pin_memory`` ``"auto"``.

Rules (measured reasons in ``bench/RESULTS.md``, "Training throughput"):

* **workers on a GPU**: one per CPU core this process may use, leaving one for the main process
  (which runs the steps and the host-to-device copies), at most 8; cores are shared out between
  the processes of a multi-device run on this node.
* **workers on a CPU**: the steps themselves use every core, so worker processes only compete
  with them unless cores are spare: none with 2 cores or fewer per process (measured on 2 cores:
  the recipes' data pipeline keeps the loop at 0.91–0.94 of its in-memory ceiling without
  workers), else a quarter of the cores, at most 4.
* **pinned memory** on a GPU only (page-locked host buffers make host-to-device copies
  asynchronous; on a CPU they only cost).
"""

from __future__ import annotations

import os
from typing import Any, Literal

Auto = Literal["auto"]


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_num_workers(value: Any) -> int | Auto:
    """``value`` as a valid ``data.num_workers`` (an int >= 0 or ``"auto"``), else a clear error."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"data.num_workers must be an integer >= 0 or 'auto', got {value!r} "
            "(0 loads in the main process; 'auto' derives it from the machine)"
        )
    return value


def check_pin_memory(value: Any) -> bool | Auto:
    """``value`` as a valid ``data.pin_memory`` (true, false or ``"auto"``), else a clear error."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"data.pin_memory must be true, false or 'auto', got {value!r}")


def resolve_num_workers(
    setting: int | Auto, *, accelerator: str, processes: int = 1, cpus: int | None = None
) -> int:
    """The worker count for ``setting`` on ``accelerator`` (``"cpu"`` or a GPU kind)."""
    if setting != "auto":
        return int(setting)
    per_process = max(1, (available_cpus() if cpus is None else cpus) // max(1, processes))
    if accelerator == "cpu":
        return 0 if per_process <= 2 else min(4, per_process // 4)
    return max(0, min(8, per_process - 1))


def resolve_pin_memory(setting: bool | Auto, *, accelerator: str) -> bool:
    """``pin_memory`` for ``setting``: ``"auto"`` pins on GPUs only."""
    return accelerator != "cpu" if setting == "auto" else bool(setting)


def trainer_accelerator(trainer: Any) -> tuple[str, int]:
    """``("cpu" | "gpu", processes on this node)`` of a Lightning trainer (``("cpu", 1)`` if None)."""
    if trainer is None:
        return "cpu", 1
    root = getattr(getattr(trainer, "strategy", None), "root_device", None)
    kind = "cpu" if root is None or root.type == "cpu" else "gpu"
    return kind, max(1, int(getattr(trainer, "num_devices", 1) or 1))
