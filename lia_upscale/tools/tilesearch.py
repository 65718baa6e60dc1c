"""The largest tile that fits a device's memory: a probe and a doubling-then-bisecting search."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..engine import Engine
from ..nn import PlainUSR
from ..nn.inference import infer
from .measure import sync

__all__ = ["memory_probe", "largest_tile"]


def _out_of_memory(exc: BaseException) -> bool:
    types = tuple(t for t in (torch.cuda.OutOfMemoryError, getattr(torch, "OutOfMemoryError", None)) if t)
    return isinstance(exc, types) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def memory_probe(module: PlainUSR, device: torch.device, dtype: torch.dtype) -> Callable[[int], bool]:
    """``fits(t)``: whether one forward of a (1, 3, t, t) input fits in ``device``'s memory.

    Runs the engine's network (channels-last, ``dtype``) and frees the cache after each
    probe; errors other than running out of memory propagate.
    """
    net = Engine(module, device, dtype, 0).network

    def fits(t: int) -> bool:
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
