"""Network code, torch only: soft pooling, LIA and the PlainUSR deploy network."""

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
