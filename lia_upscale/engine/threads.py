"""CPU threads of the torch runtime: how many there are, and sharing them between images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import DeviceError

__all__ = ["cpu_threads", "set_cpu_threads", "shared_threads"]


def cpu_threads() -> int:
    """The number of threads torch's CPU operators use."""
    return torch.get_num_threads()


def set_cpu_threads(threads: int) -> int:
    """Set the threads torch's CPU operators use (process-wide); a whole number >= 1.

    Returns it. Raises DeviceError for anything else (0, negative, not an integer).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DeviceError(f"threads must be a whole number >= 1, not {threads!r}")
    torch.set_num_threads(threads)
    return threads


@contextmanager
def shared_threads(parts: int) -> Iterator[int]:
    """Give each of ``parts`` concurrent workers an equal share of the CPU threads.

    Yields the threads each one gets (at least 1); the previous count is restored after.
    torch's setting is process-wide, so the workers run inside one such block.
    """
    threads = torch.get_num_threads()
    share = max(1, threads // max(1, parts))
    torch.set_num_threads(share)
    try:
        yield share
    finally:
        torch.set_num_threads(threads)
