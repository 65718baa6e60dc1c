"""Measuring helpers shared by the benchmarks: multiply-adds, timing, test images, device names."""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import LIA, LightAttention, PlainUSR, SoftPool2d

__all__ = ["Progress", "noop", "macs_per_pixel", "device_name", "synthetic_image", "sync", "median"]

#: ``on_progress(message)``: one line about what is being measured now.
Progress = Callable[[str], None]


def noop(message: str) -> None:
    pass


# ------------------------------------------------------------------------- arithmetic


def _conv_macs(conv: nn.Conv2d) -> int:
    kh, kw = conv.kernel_size
    return conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


def _chain_macs(layers: Sequence[nn.Module], area: float) -> float:
    """Multiply-adds per input pixel of a chain of layers starting at relative ``area``."""
    total = 0.0
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            area /= layer.stride[0] * layer.stride[1]
            total += _conv_macs(layer) * area
        elif isinstance(layer, SoftPool2d):
            area /= layer.stride * layer.stride
        elif isinstance(layer, LIA):
            total += _chain_macs(list(layer.body), area)  # its own coarse grid, then back
        elif isinstance(layer, LightAttention):
            total += _chain_macs(list(layer.body), area)
    return total


def macs_per_pixel(module: PlainUSR) -> float:
    """Multiply-adds of the convolutions per input pixel, analytically (large-image limit).

    Every 3x3 and 1x1 convolution counts ``out * in * k * k`` per output pixel; LIA's
    convolutions after the soft pooling (stride 3) and its stride-2 convolution run on
    1/9 and 1/36 of the pixels. Elementwise work is not counted. Base x4: 285,025.
    """
    total = _conv_macs(module.head)
    for name in module._block_names:
        total += _chain_macs(list(getattr(module, name).body), 1.0)
    return total + _conv_macs(module.tail[0])


# ---------------------------------------------------------------------------- helpers


def device_name(device: torch.device) -> str:
    """A readable name of ``device``: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A reproducible (3, H, W) float32 test image in [0, 1]: smooth structure plus noise.

    Smooth enough that activations look like a photo's (float16 stays finite), noisy
    enough that nothing is constant.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 16), max(2, width // 16), generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return (smooth + 0.1 * torch.rand(3, height, width, generator=g)).clamp_(0, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))
