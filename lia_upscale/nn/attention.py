"""Local Importance-based Attention (LIA) and the light attention of PlainUSR-U/T."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .placement import Placement
from .softpool import SoftPool2d

__all__ = ["LIA", "LightAttention", "importance_grid_size", "importance_taps", "resample_importance", "LIA_ALIGNMENT", "LIA_MIN_SIZE"]

_POOL_KERNEL, _POOL_STRIDE, _DOWN_STRIDE = 7, 3, 2
#: Tile origins must be multiples of this for LIA's coarse grid to line up with the
#: whole image's (pool stride 3 times conv stride 2).
LIA_ALIGNMENT = _POOL_STRIDE * _DOWN_STRIDE
#: The smallest edge LIA can pool.
LIA_MIN_SIZE = _POOL_KERNEL


def importance_grid_size(size: int) -> int:
    """Edge of LIA's importance map for an input edge of ``size`` pixels (>= 7)."""
    pooled = (size - _POOL_KERNEL) // _POOL_STRIDE + 1
    return (pooled - 1) // _DOWN_STRIDE + 1


def importance_taps(
    placements: Sequence[Placement], size: int, coarse: int, vertical: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps (align_corners=False) of LIA's importance map at the positions the whole image would use.

    Returns index tensors (N, size) into this tile's coarse map and weights (N, size).
    """
    i0s, i1s, lams = [], [], []
    for p in placements:
        origin = p.top if vertical else p.left
        full = p.full_height if vertical else p.full_width
        full_coarse = importance_grid_size(full)
        dst = torch.arange(origin, origin + size, dtype=torch.float64)
        src = ((dst + 0.5) * (full_coarse / full) - 0.5).clamp_min(0.0)
        g0 = src.floor().clamp_max(full_coarse - 1)
        g1 = (g0 + 1).clamp_max(full_coarse - 1)
        lams.append(src - g0)
        # this tile's coarse cell 0 is the whole image's cell origin / 6
        offset = origin // LIA_ALIGNMENT
        i0s.append((g0 - offset).clamp(0, coarse - 1).long())
        i1s.append((g1 - offset).clamp(0, coarse - 1).long())
    return (
        torch.stack(i0s).to(device),
        torch.stack(i1s).to(device),
        torch.stack(lams).to(device),
    )


def resample_importance(
    w: torch.Tensor, size: tuple[int, int], placements: Sequence[Placement] | None
) -> torch.Tensor:
    """Resize the coarse importance map ``w`` (N, C, h, w) to ``size`` bilinearly.

    Without placements this is ``F.interpolate(..., align_corners=False)``; with one
    placement per batch element each row/column is sampled where the whole image's map
    would be sampled, so a tile whose origin is a multiple of ``LIA_ALIGNMENT`` sees the
    whole image's map away from its borders.
    """
    if placements is None:
        return F.interpolate(w, size=size, mode="bilinear", align_corners=False)
    n, c, ch, cw = w.shape
    height, width = size
    if any(p.top % LIA_ALIGNMENT or p.left % LIA_ALIGNMENT for p in placements):
        raise ValueError(f"tile origins must be multiples of {LIA_ALIGNMENT}")
    y0, y1, ly = importance_taps(placements, height, ch, True, w.device)
    x0, x1, lx = importance_taps(placements, width, cw, False, w.device)
    ly = ly.to(w.dtype).view(n, 1, height, 1)
    lx = lx.to(w.dtype).view(n, 1, 1, width)
    rows = lambda idx: torch.gather(w, 2, idx.view(n, 1, height, 1).expand(n, c, height, cw))
    top, bottom = rows(y0), rows(y1)
    v = top + (bottom - top) * ly
    cols = lambda idx: torch.gather(v, 3, idx.view(n, 1, 1, width).expand(n, c, height, width))
    left, right = cols(x0), cols(x1)
    return left + (right - left) * lx


class LIA(nn.Module):
    """Local Importance-based Attention (PlainUSR, ACCV 2024).

    ``x -> x * resize(sigmoid(conv3(conv2_s2(softpool(conv1x1(x)))))) * sigmoid(x[:, :1])``:
    an importance map on a grid six times coarser than ``x``, resized to ``x``'s size and
    gated by the first channel. Input and output: (N, ``channels``, H, W), H and W >= 7.
    Pass ``placements`` (one per batch element) when ``x`` is a tile of a larger image.
    """

    def __init__(self, channels: int, *, hidden: int = 16) -> None:
        super().__init__()
        self.channels = channels
        self.hidden = hidden
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            SoftPool2d(_POOL_KERNEL, _POOL_STRIDE),
            nn.Conv2d(hidden, hidden, 3, stride=_DOWN_STRIDE, padding=1),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )

    def forward(
        self, x: torch.Tensor, placements: Sequence[Placement] | None = None
    ) -> torch.Tensor:
        w = torch.sigmoid(self.body(x))
        w = resample_importance(w, (x.shape[-2], x.shape[-1]), placements)
        return x * w * torch.sigmoid(x[:, :1])


class LightAttention(nn.Module):
    """The attention of PlainUSR-U/T's middle block: ``x * sigmoid(x[:, :1]) * sigmoid(conv(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(
        self, x: torch.Tensor, placements: Sequence[Placement] | None = None
    ) -> torch.Tensor:
        return x * torch.sigmoid(x[:, :1]) * torch.sigmoid(self.body(x))
