"""Shared helpers for the benchmarks: timing side by side, machine description, result tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine_description(device: torch.device) -> str:
    """One line naming the hardware the numbers were measured on."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only"
    return (
        f"{_dt.date.today().isoformat()} · {hardware} · torch {torch.__version__} · "
        f"{torch.get_num_threads()} threads"
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timings(
    candidates: dict[str, Callable[[], None]],
    *,
    rounds: int,
    device: torch.device,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time each candidate once per round, round-robin, so drift hits all candidates alike.

    Returns:
        name → list of per-call seconds (one per round).
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def current_rss_mib() -> float:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_growth_mib(fn: Callable[[], None], interval: float = 0.001) -> float:
    """Peak RSS growth (MiB) while ``fn`` runs, sampled by a thread every ``interval`` seconds.

    ``ru_maxrss`` is a process-lifetime high-water mark (importing torch alone sets it), so the
    growth over the RSS just before the call is sampled instead.
    """
    import threading

    baseline = current_rss_mib()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, current_rss_mib())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak, current_rss_mib()) - baseline


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
