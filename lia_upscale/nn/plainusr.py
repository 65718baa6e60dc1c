"""The PlainUSR deploy network: a plain conv chain with LIA, in six sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import LIA, LIA_ALIGNMENT, LIA_MIN_SIZE, LightAttention
from .placement import Placement

__all__ = ["PlainUSRConfig", "PlainUSR", "Block", "VARIANTS", "block_names"]


@dataclass(frozen=True)
class PlainUSRConfig:
    """Hyperparameters of a deploy network; every one is readable from tensor shapes.

    ``features``: n, the head width minus the three RGB identity channels.
    ``widths``: channel count of each block, in forward order.
    ``convs``: 3x3 convolutions per block (2, or 3 for L).
    ``attention``: ``"lia"`` in every block, or ``"light"`` in the middle block only.
    ``lia_channels``: f, LIA's hidden width (0 without LIA).
    """

    features: int
    widths: tuple[int, ...]
    convs: int
    attention: str
    lia_channels: int
    scale: int

    def with_scale(self, scale: int) -> PlainUSRConfig:
        """The same network for another upscaling factor."""
        return PlainUSRConfig(
            self.features, self.widths, self.convs, self.attention, self.lia_channels, scale
        )


#: The six published sizes, at x4 (``with_scale`` gives x2).
VARIANTS: dict[str, PlainUSRConfig] = {
    "U": PlainUSRConfig(16, (16, 8, 16), 2, "light", 0, 4),
    "T": PlainUSRConfig(32, (32, 16, 32), 2, "light", 0, 4),
    "S": PlainUSRConfig(32, (32, 16, 8, 16, 32), 2, "lia", 4, 4),
    "M": PlainUSRConfig(48, (48, 32, 16, 32, 48), 2, "lia", 8, 4),
    "base": PlainUSRConfig(64, (64, 48, 32, 48, 64), 2, "lia", 16, 4),
    "L": PlainUSRConfig(80, (80, 64, 48, 64, 80), 3, "lia", 16, 4),
}


def block_names(count: int) -> tuple[str, ...]:
    """State-dict names of the blocks in forward order (the three-block order is upstream's)."""
    if count == 3:
        return ("block1", "blockm", "block2")
    if count == 5:
        return ("block1", "block2", "blockm", "block3", "block4")
    raise ValueError(f"PlainUSR has 3 or 5 blocks, not {count}")


class Block(nn.Module):
    """Transforms the first ``width`` channels of the running map; the rest pass through.

    ``body``: conv, LeakyReLU(0.05), conv[, LeakyReLU, conv][, attention], indexed as in
    the official state dicts.
    """

    def __init__(self, width: int, *, convs: int, attention: nn.Module | None) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = [nn.Conv2d(width, width, 3, padding=1)]
        for _ in range(convs - 1):
            layers += [nn.LeakyReLU(0.05), nn.Conv2d(width, width, 3, padding=1)]
        if attention is not None:
            layers.append(attention)
        self.body = nn.ModuleList(layers)

    def forward(
        self, x: torch.Tensor, placements: Sequence[Placement] | None = None
    ) -> torch.Tensor:
        y = x[:, : self.width]
        for layer in self.body:
            y = layer(y, placements) if isinstance(layer, (LIA, LightAttention)) else layer(y)
        return torch.cat([y, x[:, self.width :]], 1)


class PlainUSR(nn.Module):
    """PlainUSR deploy network. Input (N, 3, H, W) RGB in [0, 1]; output (N, 3, sH, sW).

    The output is not clamped. With LIA, H and W must be at least ``min_size``; pass
    ``placements`` (one per batch element) when the input is a tile of a larger image
    whose origin is a multiple of ``alignment``.
    """

    def __init__(self, config: PlainUSRConfig) -> None:
        super().__init__()
        self.config = config
        n3 = config.features + 3
        self.head = nn.Conv2d(3, n3, 3, padding=1)
        names = block_names(len(config.widths))
        middle = len(names) // 2
        for i, (name, width) in enumerate(zip(names, config.widths)):
            if config.attention == "lia":
                att: nn.Module | None = LIA(width, hidden=config.lia_channels)
            elif i == middle:
                att = LightAttention(width)
            else:
                att = None
            self.add_module(name, Block(width, convs=config.convs, attention=att))
        self._block_names = names
        self.tail = nn.Sequential(
            nn.Conv2d(n3, 3 * config.scale**2, 3, padding=1), nn.PixelShuffle(config.scale)
        )

    @property
    def scale(self) -> int:
        """Upscaling factor."""
        return self.config.scale

    @property
    def min_size(self) -> int:
        """Smallest input edge the network accepts."""
        return LIA_MIN_SIZE if self.config.attention == "lia" else 1

    @property
    def alignment(self) -> int:
        """Tile origins must be multiples of this for tiles to match the whole image."""
        return LIA_ALIGNMENT if self.config.attention == "lia" else 1

    def forward(
        self, x: torch.Tensor, placements: Sequence[Placement] | None = None
    ) -> torch.Tensor:
        if placements is not None and len(placements) != x.shape[0]:
            raise ValueError("one placement per batch element")
        x = self.head(x)
        for name in self._block_names:
            x = getattr(self, name)(x, placements)
        return self.tail(x)
