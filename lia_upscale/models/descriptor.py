"""What a loaded network is, for the machinery that runs it (in the spirit of spandrel's descriptor).

The engine and the tiler read a :class:`ModelDescriptor` (scale, channels, the tile
contract, supported precisions, purpose) instead of attributes they hope to find on a
module; :func:`describe` is the one place that knows how to read them off a PlainUSR.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nn import LIA_ALIGNMENT, LIA_MIN_SIZE, PlainUSR
from .cards import ModelCard

__all__ = ["ModelDescriptor", "describe", "PLAINUSR_CONTEXT"]

#: Input pixels of context a PlainUSR tile needs on each side for seam-exact results
#: (the smallest measured context reaching PSNR >= 60 dB against the whole image; see
#: :mod:`lia_upscale.engine.tiling`).
PLAINUSR_CONTEXT = 48


@dataclass(frozen=True)
class ModelDescriptor:
    """A network's contract: input (N, ``in_channels``, H, W) in [0, 1] -> (N, ``out_channels``, sH, sW).

    ``min_size``: smallest input edge; ``alignment``: tile origins must be multiples of it
    for tiles to match the whole image; ``context``: input pixels of context a tile needs
    on each side. ``feature_channels``: channels of the widest intermediate map (for
    memory estimates). ``float16``/``bfloat16``: whether the network runs (finite) in
    that precision. ``purpose``: clean or photo; ``tags`` from the card.
    """

    architecture: str
    variant: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    min_size: int = 1
    alignment: int = 1
    context: int = PLAINUSR_CONTEXT
    feature_channels: int = 3
    float16: bool = True
    bfloat16: bool = True
    purpose: str = "clean"
    tags: tuple[str, ...] = ()
    name: str | None = None


def describe(module: PlainUSR, card: ModelCard | None = None, *, variant: str | None = None) -> ModelDescriptor:
    """The descriptor of a PlainUSR module; purpose, tags and name come from its card, if any."""
    config = module.config
    lia = config.attention == "lia"
    return ModelDescriptor(
        architecture="PlainUSR",
        variant=variant or (card.variant if card else "?"),
        scale=config.scale,
        min_size=LIA_MIN_SIZE if lia else 1,
        alignment=LIA_ALIGNMENT if lia else 1,
        feature_channels=config.features + 3,
        # soft pooling runs in float32 internally and the float16 output is checked by the
        # engine (non-finite tiles are recomputed in float32): both half precisions are safe
        float16=True,
        bfloat16=True,
        purpose=card.purpose if card else "clean",
        tags=card.tags if card else (),
        name=card.name if card else None,
    )
