"""Reuse freed CPU memory while the engine runs, instead of faulting it in again (glibc only).

PyTorch's CPU tensors come from ``malloc``. glibc serves every block above its mmap
threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``, so each
full-resolution intermediate of the network (64 channels of a 512x512 tile: 64 MiB) is
faulted in page by page, every time.

:func:`reuse_freed_memory` turns ``mmap`` and heap trimming off for the duration, so freed
blocks are reused from the heap, and gives the freed memory back to the system
(``malloc_trim``) when the outermost use ends. The price is fragmentation, so the engine
uses it only where its memory estimate allows (docs/engine.md has the measurements).
``LIA_UPSCALE_REUSE_MEMORY=0`` in the environment turns it off; on other C libraries it
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["reuse_freed_memory", "available"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
# What glibc's own adaptive thresholds settle at once blocks of 32 MiB and more have
# been freed; restored afterwards (setting any of them ends glibc's adaptation).
_RESTORE = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))


def _load_glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_glibc()
_lock = threading.Lock()
_depth = 0


def available() -> bool:
    """True where the allocator can be tuned (Linux with glibc)."""
    return _libc is not None


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Keep freed heap memory for reuse inside the block; re-entrant and thread-safe.

    Process-wide while any block is active: allocations of other threads are served the
    same way. When the outermost block ends, glibc's usual behaviour is restored (at
    its settled thresholds) and free memory is returned to the system.
    """
    global _depth
    if _libc is None or os.environ.get("LIA_UPSCALE_REUSE_MEMORY", "1") == "0":
        yield
        return
    with _lock:
        if _depth == 0:
            _libc.mallopt(_M_MMAP_MAX, 0)
            _libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in _RESTORE:
                    _libc.mallopt(param, value)
                _libc.malloc_trim(0)
