"""The largest tile that fits a device's memory: a probe and a doubling-then-bisecting search."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..engine import Engine
from ..nn import PlainUSR
from ..nn.inference import infer
from .measure import sync

__all__ = ["memory_probe", "largest_tile", "probe_elements", "MAX_ELEMENTS"]


#: Largest number of elements any one tensor of a probe may have: kernels index with 32-bit
#: integers above this, so a bigger probe fails for a reason that is not memory
MAX_ELEMENTS = 2**31 - 1
#: What allocation failures say besides "out of memory" (cuBLAS/cuDNN workspaces, the
#: caching allocator, the CPU allocator); any of them means "does not fit"
_ALLOCATION_FAILURES = ("out of memory", "alloc_failed", "failed to allocate", "tried to allocate",
                        "cannot allocate memory", "not enough memory")


def _out_of_memory(exc: BaseException) -> bool:
    types = tuple(t for t in (torch.cuda.OutOfMemoryError, getattr(torch, "OutOfMemoryError", None)) if t)
    if isinstance(exc, (MemoryError, *types)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _ALLOCATION_FAILURES)


def probe_elements(module: PlainUSR, t: int) -> int:
    """Elements of the largest tensor one forward of a (1, 3, t, t) input makes: the widest
    feature map at the input size, or the tail's output before the pixel shuffle."""
    widest = max(module.config.features + 3, 3 * module.scale**2)
    return widest * t * t


def memory_probe(module: PlainUSR, device: torch.device, dtype: torch.dtype) -> Callable[[int], bool]:
    """``fits(t)``: whether one forward of a (1, 3, t, t) input fits in ``device``'s memory.

    Runs the engine's network (channels-last, ``dtype``) and frees the cache after each
    probe. A tile whose largest tensor would pass :data:`MAX_ELEMENTS` does not fit without
    being run; any allocation failure (not only an out-of-memory error) means it does not
    fit; other errors propagate.
    """
    net = Engine(module, device, dtype, 0).network

    def fits(t: int) -> bool:
        if probe_elements(module, t) > MAX_ELEMENTS:
            return False
        try:
            x = torch.rand(1, 3, t, t, device=device, dtype=dtype)
            y = infer(net, x)
            del x, y
            sync(device)
            return True
        except Exception as exc:
            if not _out_of_memory(exc):
                raise
            return False
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return fits


def largest_tile(
    fits: Callable[[int], bool], *, start: int = 240, limit: int = 15360, resolution: int = 6
) -> int:
    """The largest tile edge (a multiple of ``resolution``) for which ``fits`` holds, or 0.

    Doubles from ``start`` while ``fits`` (up to ``limit``), then bisects the last step
    down to ``resolution`` pixels. Assumes that what fits at ``t`` fits below ``t``.
    """
    lo, hi = 0, start
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    if lo >= limit:
        return lo
    hi = min(hi, limit + resolution)
    while hi - lo > resolution:
        mid = (lo + hi) // 2 // resolution * resolution
        if mid <= lo:
            break
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
