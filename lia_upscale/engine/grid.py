"""Where the tiles go: regions, the tile contract, and the grid plan (one source shape per image).

:func:`plan_tiles` splits an image into *cores* that partition it and *sources* (cores grown
by the network's context) that all have one shape, at most the area of a square ``tile``
core with its context; :mod:`~lia_upscale.engine.tiling` runs them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

__all__ = ["MIN_TILE", "Region", "Tile", "TileContract", "grid_shape", "plan_tiles", "source_shape"]

#: Out-of-memory shrinking stops below this tile edge (or the contract's alignment).
MIN_TILE = 16

@dataclass(frozen=True)
class Region:
    """A rectangle of pixels: rows ``top .. top + height``, columns ``left .. left + width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.height

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.width

    @property
    def area(self) -> int:
        """Pixel count."""
        return self.height * self.width

    def scaled(self, scale: int) -> Region:
        """The same rectangle ``scale`` times larger (input to output coordinates)."""
        return Region(self.top * scale, self.left * scale, self.height * scale, self.width * scale)


@dataclass(frozen=True)
class TileContract:
    """What a network needs from its tiles.

    ``scale``: output pixels per input pixel along each axis. ``min_size``: the smallest
    input edge it accepts (smaller images are padded, never refused). ``alignment``:
    tile origins must be multiples of this for tiles to reproduce the whole image (6 for
    LIA). ``context``: input pixels of surrounding image each core is given on every side
    (rounded up to a multiple of ``alignment``; :data:`DEFAULT_CONTEXT` for PlainUSR);
    tiles cross-fade over ``band`` = ``context // 2`` on each side of a core boundary. A
    network whose receptive field reaches ``r`` pixels tiles exactly when
    ``context - band >= r``.
    """

    scale: int
    min_size: int = 1
    alignment: int = 1
    context: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1 or self.min_size < 1 or self.alignment < 1 or self.context < 0:
            raise ValueError(f"invalid tile contract: {self}")

    @property
    def aligned_context(self) -> int:
        """``context`` rounded up to a multiple of ``alignment``."""
        return -(-self.context // self.alignment) * self.alignment

    @property
    def band(self) -> int:
        """Half-width of the cross-fade around each internal core boundary: half the
        context, so every blended output pixel still has ``context - band`` pixels of
        real image around it in its tile."""
        return self.context // 2

    @property
    def min_tile(self) -> int:
        """The smallest tile edge out-of-memory shrinking may reach."""
        return max(MIN_TILE, self.alignment)


@dataclass(frozen=True)
class Tile:
    """One tile: its ``core`` (the cores partition the image) and the ``source`` fed to the
    network (the core grown by the context, clipped to the image, origin aligned).
    ``row``/``col``: its place in the grid. All in input pixels."""

    core: Region
    source: Region
    row: int
    col: int


def _source_length(size: int, count: int, context: int) -> float:
    """The common source length of ``count`` tiles along an axis of ``size`` pixels whose
    sources are all equal: the edge cores take the context the image border saves them."""
    if count <= 1:
        return float(size)
    return min(float(size), (size + 2 * context * (count - 1)) / count)


def _axis_spans(size: int, count: int, contract: TileContract) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``count`` cores partitioning ``[0, size)`` (boundaries on multiples of the
    alignment, every core at least one unit) and their sources, all of one length: each
    core grown by the context, clipped to the image and to ``contract.min_size``, then
    every source lengthened to the longest (at most one alignment unit more, so that the
    last one can end at the border with an aligned origin)."""
    a, ctx = contract.alignment, contract.aligned_context
    units = -(-size // a)  # the last unit may be partial
    count = max(1, min(count, units))
    bounds = [0]
    if count > 1:
        inner = _source_length(size, count, ctx) - 2 * ctx  # an interior core; edge cores are ctx longer
        for i in range(1, count):
            b = round((ctx + i * inner) / a) * a
            bounds.append(min(max(b, bounds[-1] + a), (units - count + i) * a))
    bounds.append(size)
    cores = list(zip(bounds[:-1], bounds[1:]))
    sources = [_axis_source(lo, hi, size, contract) for lo, hi in cores]
    need = max(hi - lo for lo, hi in sources)
    length = need + (size - need) % a
    return [(core, (min(lo, size - length), min(lo, size - length) + length)) for core, (lo, _) in zip(cores, sources)]


def _axis_source(start: int, stop: int, size: int, contract: TileContract) -> tuple[int, int]:
    ctx, a = contract.aligned_context, contract.alignment
    lo, hi = max(0, start - ctx), min(size, stop + ctx)
    if hi - lo < contract.min_size:  # grow to the network's minimum, keeping lo aligned
        hi = min(size, lo + contract.min_size)
        if hi - lo < contract.min_size:
            lo = min(lo, (size - contract.min_size) // a * a)
    return lo, hi


@functools.lru_cache(maxsize=256)
def grid_shape(height: int, width: int, tile: int, contract: TileContract) -> tuple[int, int]:
    """Rows and columns of tiles for a ``height`` x ``width`` image (see :func:`plan_tiles`).

    Every source may hold as many pixels as a square ``tile`` core with the context on all
    sides, ``(tile + 2 * context)^2`` (give or take what aligning the cores adds: at most
    one alignment unit a side); among the grids whose equal sources fit, the one that feeds
    the network the fewest pixels in all (the least recomputed context), then the one with
    the fewest tiles. ``tile <= 0``, or an image that fits, is one tile.
    """
    if tile <= 0:
        return 1, 1
    ctx, a = contract.aligned_context, contract.alignment
    budget = (tile + 2 * ctx) ** 2
    if height * width <= budget:
        return 1, 1
    units_h, units_w = -(-height // a), -(-width // a)
    best: tuple[float, int, int, int] | None = None
    for rows in range(1, units_h + 1):
        lh = _source_length(height, rows, ctx)
        # rows x lh only grows with rows: no later grid feeds fewer pixels
        if best is not None and rows * lh * width > best[0]:
            break
        room = budget / lh
        if width <= room:
            cols = 1
        elif room > 2 * ctx:
            cols = min(units_w, max(2, math.ceil((width - 2 * ctx) / (room - 2 * ctx))))
        else:
            continue
        lw = _source_length(width, cols, ctx)
        if lh * lw <= budget:
            key = (rows * lh * cols * lw, rows * cols, rows, cols)
            best = key if best is None or key < best else best
            if cols == 1:
                break
    if best is None:  # a budget below one aligned core and its context: the smallest tiles
        return units_h, units_w
    return best[2], best[3]


def source_shape(height: int, width: int, tile: int, contract: TileContract) -> tuple[int, int, int, int]:
    """Rows, columns and the common source height and width of :func:`plan_tiles`'s grid,
    without listing the tiles: sizing a tile for a memory budget asks this many times, and
    a small tile on a large image has millions of them."""
    rows, cols = grid_shape(height, width, tile, contract)
    (_, (top, bottom)), (_, (left, right)) = _axis_spans(height, rows, contract)[0], _axis_spans(width, cols, contract)[0]
    return rows, cols, bottom - top, right - left


def plan_tiles(height: int, width: int, tile: int, contract: TileContract) -> list[Tile]:
    """Split a ``height`` x ``width`` image into a grid of tiles, in row-major order.

    The grid is :func:`grid_shape`'s. Per axis the cores partition the image with
    boundaries on multiples of ``contract.alignment``; each source is its core grown by
    ``contract.aligned_context`` and clipped to the image, and the edge cores are longer
    by the context the border saves them, so that every tile's source has the same shape
    (lengthened by at most one alignment unit to make them equal, origins aligned, at
    least ``contract.min_size``). One shape for every network call means the same
    allocations tile after tile: freed memory is reused without the heap growing, and a
    small image's tiles are as large as a big one's, so memory does not depend on the
    image size. The image must be at least ``contract.min_size`` on each side
    (:func:`upscale` pads).
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty image ({height}x{width})")
    if min(height, width) < contract.min_size:
        raise ValueError(f"{height}x{width} is below the minimum size {contract.min_size}")
    rows, cols = grid_shape(height, width, tile, contract)
    row_spans = _axis_spans(height, rows, contract)
    col_spans = _axis_spans(width, cols, contract)
    return [
        Tile(
            core=Region(y0, x0, y1 - y0, x1 - x0),
            source=Region(sy0, sx0, sy1 - sy0, sx1 - sx0),
            row=r,
            col=c,
        )
        for r, ((y0, y1), (sy0, sy1)) in enumerate(row_spans)
        for c, ((x0, x1), (sx0, sx1)) in enumerate(col_spans)
    ]
