"""Test-time augmentation: the x8 dihedral self-ensemble, around any whole-image upscaler.

Each of the eight symmetries of the square (four rotations, each with and without a
mirror) is applied to the input, the transformed image is upscaled, the result is
transformed back and the eight are averaged (Lim et al., EDSR, "geometric self-ensemble").

The ensemble runs per transform over the *whole* transformed image, each pass tiled by
the engine as usual, instead of transforming tile by tile. LIA samples its importance map
on a grid anchored at the image's top-left corner, so a tile only matches the whole image
when its origin is a multiple of 6 in the coordinates of the image the network sees. A
mirrored tile at column ``x`` of a ``W``-wide image starts at ``W - x - w`` in the mirrored
image, which is aligned only when ``W`` and the tile's width happen to be: transforming
tiles would make tiled TTA differ from whole-image TTA at most image sizes. Planning the
tiles in each transformed image keeps every pass exactly as seam-exact as plain tiling,
so tiled TTA equals whole-image TTA to the tiler's tolerance, at no extra compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["TRANSFORMS", "forward_transform", "inverse_transform", "ensemble"]

#: Number of transforms: rotations by 0, 90, 180, 270 degrees, then the same mirrored.
TRANSFORMS = 8

#: ``run(image, on_tile)``: (C, H, W) -> (C, sH, sW) float32 CPU tensor.
RunFn = Callable[[torch.Tensor, "Callable[[int, int], None] | None"], torch.Tensor]


def forward_transform(image: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` (0..7) of a (..., H, W) tensor: mirror left-right if ``k >= 4``,
    then rotate by ``k % 4`` quarter turns."""
    if k >= 4:
        image = image.flip(-1)
    return torch.rot90(image, k % 4, (-2, -1))


def inverse_transform(image: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`forward_transform` ``k``."""
    image = torch.rot90(image, -(k % 4), (-2, -1))
    return image.flip(-1) if k >= 4 else image


def ensemble(
    image: torch.Tensor, run: RunFn, on_tile: Callable[[int, int], None] | None = None
) -> torch.Tensor:
    """The x8 self-ensemble of ``run`` on the (C, H, W) ``image``.

    ``run(transformed, on_tile)`` upscales one transformed image (its own tiling, if any).
    Returns the mean of the eight inverse-transformed outputs as a (C, sH, sW) float32 CPU
    tensor, a view of (sH, sW, C) storage like the engine's output. ``on_tile(done,
    total)`` sees one progress run over all eight passes.
    """
    acc: torch.Tensor | None = None
    for k in range(TRANSFORMS):

        def progress(done: int, total: int, k: int = k) -> None:
            if on_tile is not None:  # every pass has as many tiles (a rotation transposes the grid)
                on_tile(k * total + done, TRANSFORMS * total)

        # contiguous: the engine cuts tiles from it, and a rotated view would make every cut a gather
        back = inverse_transform(run(forward_transform(image, k).contiguous(), progress), k)
        if acc is None:
            c, h, w = back.shape
            acc = torch.zeros((h, w, c), dtype=torch.float32).permute(2, 0, 1)
        acc.add_(back)
        del back
    assert acc is not None
    return acc.div_(TRANSFORMS)
