"""lia-upscale: batch image upscaling with PlainUSR and Local Importance-based Attention.

Public API::

    from lia_upscale import Upscaler, load_model
    up = Upscaler(scale=4)              # embedded default weights, CUDA fp16 if present
    big = up.upscale(pil_image)
    model = load_model("weights.safetensors")   # .module, .scale, .variant

Names are loaded on first use, so ``import lia_upscale`` (or its torch-free
``images`` package) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, ImageError, LiaError, OutputError, WeightsError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Upscaler",
    "load_model",
    "Model",
    "LiaError",
    "WeightsError",
    "ImageError",
    "DeviceError",
    "OutputError",
]

_LAZY = {"Upscaler": "lia_upscale.api", "load_model": "lia_upscale.models", "Model": "lia_upscale.models"}

if TYPE_CHECKING:
    from .api import Upscaler
    from .models import Model, load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lia_upscale' has no attribute {name!r}")
