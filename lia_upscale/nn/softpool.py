"""Soft pooling that stays finite in every floating dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["soft_pool2d", "soft_pool2d_exact", "SoftPool2d", "SOFTPOOL_FLOOR", "SOFTPOOL_TINY"]

# exp(-100) is far below anything a window's denominator can feel, and clamping keeps
# (x - shift) * exp(x - shift) finite when the subtraction itself overflows.
SOFTPOOL_FLOOR = -100.0
# A window whose shifted exponentials all fall below this is recomputed with its own max.
SOFTPOOL_TINY = 1e-30


def soft_pool2d_exact(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Soft pooling with a per-window max shift via unfold: exact and finite, but ~kernel²/stride² memory.

    The fallback for windows whose shifted exponentials underflow (see :func:`soft_pool2d`).
    """
    n, c, h, w = x.shape
    patches = F.unfold(x, kernel, stride=stride).view(n, c, kernel * kernel, -1)
    shift = patches.amax(2, keepdim=True)
    d = (patches - shift).clamp_min(SOFTPOOL_FLOOR)
    e = d.exp()
    out = shift.squeeze(2) + (e * d).sum(2) / e.sum(2)
    return out.view(n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)


def soft_pool2d(x: torch.Tensor, kernel: int = 7, stride: int = 3) -> torch.Tensor:
    """Soft pooling: ``sum(exp(x) * x) / sum(exp(x))`` over each window, no padding.

    Computed in float32 with the exponentials shifted by each map's maximum (the ratio
    is unchanged by a constant shift), so ``exp`` never overflows; the rare window whose
    shifted exponentials all underflow is recomputed with its own maximum. The result is
    the plain formula within float32 rounding and is finite for any finite input, in
    float16, bfloat16 and float32 alike. Returns the input's dtype, shape
    ``(N, C, (H - kernel) // stride + 1, (W - kernel) // stride + 1)``.
    """
    xf = x.float()
    shift = xf.amax((2, 3), keepdim=True)
    d = (xf - shift).clamp_min(SOFTPOOL_FLOOR)
    e = d.exp()
    den = F.avg_pool2d(e, kernel, stride)
    out = shift + F.avg_pool2d(e * d, kernel, stride) / den
    starved = den < SOFTPOOL_TINY
    if bool(starved.any()):
        out = torch.where(starved, soft_pool2d_exact(xf, kernel, stride), out)
    return out.to(x.dtype)


class SoftPool2d(nn.Module):
    """Module form of :func:`soft_pool2d` (window 7, stride 3 in LIA)."""

    def __init__(self, kernel: int = 7, stride: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soft_pool2d(x, self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"
