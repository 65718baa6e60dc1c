"""Where a tile sits in the whole image, for layers that are not shift-equivariant."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Placement"]


@dataclass(frozen=True)
class Placement:
    """A tile's origin (``top``, ``left``) in a whole image of ``full_height`` x ``full_width``.

    All in input pixels. Passing one per batch element lets LIA sample its importance map
    where the whole-image pass would, so tiles reproduce whole-image output.
    """

    top: int
    left: int
    full_height: int
    full_width: int
