"""Running a network over images: engine, tiling, device and precision, memory policy, threads.

Names load on first use, so ``lia_upscale.engine.tiling`` (the model-agnostic tiler)
can be imported without the network code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Engine",
    "DEFAULT_TILE",
    "DEFAULT_CPU_TILE",
    "LARGE_IMAGE_PIXELS",
    "REUSE_BUDGET_BYTES",
    "default_tile",
    "DEVICES",
    "PRECISIONS",
    "choose_device",
    "choose_dtype",
]

_LAZY = {
    **{name: "lia_upscale.engine.engine" for name in __all__[:6]},
    **{name: "lia_upscale.engine.device" for name in __all__[6:]},
}

if TYPE_CHECKING:
    from .device import DEVICES, PRECISIONS, choose_device, choose_dtype
    from .engine import (
        DEFAULT_CPU_TILE,
        DEFAULT_TILE,
        LARGE_IMAGE_PIXELS,
        REUSE_BUDGET_BYTES,
        Engine,
        default_tile,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lia_upscale.engine' has no attribute {name!r}")
