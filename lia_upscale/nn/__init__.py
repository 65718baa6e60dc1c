"""Network code, torch only: soft pooling, LIA and the PlainUSR deploy network.

:class:`LIA` (Local Importance-based Attention) and :class:`SoftPool2d` /
:func:`soft_pool2d` are public building blocks for other networks: ``LIA(channels,
hidden=16)`` maps (N, C, H, W) to the same shape for H, W >= :data:`LIA_MIN_SIZE`, stays
finite in float16 and bfloat16, and trains like any module (see the README, "LIA as a
building block").
"""

from __future__ import annotations

from .attention import LIA, LIA_ALIGNMENT, LIA_MIN_SIZE, LightAttention, importance_grid_size
from .placement import Placement
from .plainusr import VARIANTS, Block, PlainUSR, PlainUSRConfig, block_names
from .softpool import SoftPool2d, soft_pool2d

__all__ = [
    "LIA",
    "LIA_ALIGNMENT",
    "LIA_MIN_SIZE",
    "LightAttention",
    "importance_grid_size",
    "Placement",
    "VARIANTS",
    "Block",
    "PlainUSR",
    "PlainUSRConfig",
    "block_names",
    "SoftPool2d",
    "soft_pool2d",
]
