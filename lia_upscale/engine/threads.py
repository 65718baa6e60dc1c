"""CPU threads of the torch runtime: how many there are, and sharing them between images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_threads", "shared_threads"]


def cpu_threads() -> int:
    """The number of threads torch's CPU operators use."""
    return torch.get_num_threads()


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
