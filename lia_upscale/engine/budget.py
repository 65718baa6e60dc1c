"""The memory budget an image may use: by default a share of the memory available now."""

from __future__ import annotations

import os

__all__ = ["default_budget", "available_memory", "BUDGET_SHARE"]

#: share of the available memory one run takes by default
BUDGET_SHARE = 0.75


def available_memory() -> int:
    """Bytes of memory available to new work: MemAvailable on Linux, else half the
    physical memory (or 4 GiB when even that is unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_budget() -> int:
    """:data:`BUDGET_SHARE` of :func:`available_memory`, in bytes."""
    return int(available_memory() * BUDGET_SHARE)
