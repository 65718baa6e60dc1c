"""Model-agnostic tiled inference: even tiles, context, cross-fade, out-of-memory shrink.

The tiler knows nothing about the network. It gets a callable ``fn(batch, regions,
full_size)`` and a :class:`TileContract` (scale, smallest accepted edge, origin alignment,
context), splits the image into *cores* that partition it, grows each core by the context
into a *source* tile (every source of an image has one shape, at most the area of a square
``tile`` core with its context), runs the sources through ``fn`` in batches, and
cross-fades the outputs into one preallocated float32 image.

Blending is exact by construction: along each axis a tile's weight is the difference of
two smooth ramps centred on its core boundaries (so the weights of all tiles form a
partition of unity), and every tile is pasted with ``lerp(out, tile, w / W)`` where ``W``
is the weight of the tiles pasted so far, including this one. The result is the weighted
average of the tiles, no normalisation buffer is needed, and where tiles agree (a
shift-equivariant fake model, or pixels away from any band) the output equals them bit
for bit.

:data:`DEFAULT_CONTEXT` = 48 is the smallest context whose tiled output stays within
PSNR >= 60 dB and 2/255 of the whole-image output for every official checkpoint, with
margin (the measurements: docs/tiling.md); it costs (512 + 96)^2 / 512^2 = 1.41x the pixels
of 512-pixel cores.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DeviceError
from .assembly import Assembler, AxisBlend, FullImage, Sink
from .grid import MIN_TILE, Region, Tile, TileContract, grid_shape, plan_tiles, source_shape

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_MAX_BATCH_PIXELS",
    "MIN_TILE",
    "ProgressFn",
    "Region",
    "Tile",
    "TileContract",
    "TileFn",
    "TileResult",
    "TileRun",
    "grid_shape",
    "plan_tiles",
    "source_shape",
    "upscale",
    "upscale_into",
]

#: Context (input pixels on each side of a core) that keeps every official PlainUSR
#: checkpoint within 2/255 of its whole-image output; see the module docstring.
DEFAULT_CONTEXT = 48
#: Input pixels (summed over a batch's source tiles) the engine batches together.
DEFAULT_MAX_BATCH_PIXELS = 1 << 20
#: ``fn(batch, regions, full_size)``: (N, C, h, w) source tiles of one shape, their
#: :class:`Region` in whole-image input coordinates, and the whole image's (H, W);
#: returns (N, C, h * scale, w * scale).
TileFn = Callable[[torch.Tensor, Sequence["Region"], tuple[int, int]], torch.Tensor]
#: ``on_tile(done, total)``: tiles finished so far and tiles in the current plan.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class TileResult:
    """What :func:`upscale` returns.

    ``image``: (C, H * scale, W * scale) float32 on the CPU, in ``fn``'s value range; a view
    of (H, W, C) storage, so ``image.permute(1, 2, 0)`` is contiguous pixels without a copy.
    ``tile``: the tile size finally used; smaller than the one asked for only after an
    out-of-memory retry, so pass it to the next call to keep the smaller size.
    ``max_batch_pixels``: likewise for the batch budget. ``retries``: out-of-memory retries.
    """

    image: torch.Tensor
    tile: int
    max_batch_pixels: int
    retries: int


@dataclass(frozen=True)
class TileRun:
    """What :func:`upscale_into` returns: the ``tile`` and ``max_batch_pixels`` finally
    used (smaller than asked only after an out-of-memory retry) and the ``retries``."""

    tile: int
    max_batch_pixels: int
    retries: int


class _OutOfMemory(Exception):
    def __init__(self, batch_pixels: int, tiles: int) -> None:
        super().__init__(batch_pixels, tiles)
        self.batch_pixels = batch_pixels
        self.tiles = tiles


def _oom_types() -> tuple[type[BaseException], ...]:
    types = {torch.cuda.OutOfMemoryError}
    if hasattr(torch, "OutOfMemoryError"):  # torch >= 2.5
        types.add(torch.OutOfMemoryError)
    return tuple(types)


_OOM_TYPES = _oom_types()


def _is_out_of_memory(exc: BaseException) -> bool:
    # MPS and older backends raise a bare RuntimeError with this phrase
    return isinstance(exc, _OOM_TYPES) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def _row_batches(tiles: Sequence[Tile], max_batch_pixels: int) -> list[list[Tile]]:
    """One grid row's tiles in batches: runs of neighbours with one source shape, each
    within ``max_batch_pixels`` (at least one tile), left to right."""
    batches: list[list[Tile]] = []
    for t in tiles:
        shape = (t.source.height, t.source.width)
        last = batches[-1] if batches else None
        if (last and (last[0].source.height, last[0].source.width) == shape
                and (len(last) + 1) * shape[0] * shape[1] <= max_batch_pixels):
            last.append(t)
        else:
            batches.append([t])
    return batches


def _run(
    image: torch.Tensor,
    sink: Sink,
    fn: TileFn,
    contract: TileContract,
    tile: int,
    max_batch_pixels: int,
    on_tile: ProgressFn | None,
) -> None:
    c, height, width = image.shape
    s = contract.scale
    tiles = plan_tiles(height, width, tile, contract)
    rows = sorted({(t.core.top, t.core.bottom) for t in tiles})
    cols = sorted({(t.core.left, t.core.right) for t in tiles})
    ys, xs = AxisBlend(rows, s, contract.band), AxisBlend(cols, s, contract.band)
    assembler = Assembler(ys, xs, c, sink)
    done = 0
    if on_tile is not None:
        on_tile(0, len(tiles))
    for r in range(len(rows)):
        row_tiles = [t for t in tiles if t.row == r]
        for batch in _row_batches(row_tiles, max_batch_pixels):
            regions = [t.source for t in batch]
            h, w = regions[0].height, regions[0].width
            x = torch.stack([image[:, g.top : g.bottom, g.left : g.right] for g in regions])
            try:
                y = fn(x, regions, (height, width))
            except Exception as exc:
                if _is_out_of_memory(exc):
                    raise _OutOfMemory(len(batch) * h * w, len(batch)) from None
                raise
            del x
            if tuple(y.shape) != (len(batch), c, h * s, w * s):
                raise ValueError(
                    f"tile function returned {tuple(y.shape)} for input "
                    f"{(len(batch), c, h, w)} at scale {s}"
                )
            y = y.detach()
            for t, yt in zip(batch, y):
                (y0, y1), (x0, x1) = ys.spans[t.row], xs.spans[t.col]
                sy, sx = t.source.top * s, t.source.left * s
                assembler.add(t.row, t.col, yt[:, y0 - sy : y1 - sy, x0 - sx : x1 - sx])
            del y
            done += len(batch)
            if on_tile is not None:
                on_tile(done, len(tiles))


class _Cropped:
    """A sink seen through the unpadded output size (images below the network's minimum)."""

    def __init__(self, sink: Sink, height: int, width: int) -> None:
        self.sink, self.height, self.width = sink, height, width

    def put(self, top: int, left: int, block: torch.Tensor) -> None:
        h, w = min(block.shape[1], self.height - top), min(block.shape[2], self.width - left)
        if h > 0 and w > 0:
            self.sink.put(top, left, block[:, :h, :w])

    def done(self, rows: int) -> None:
        self.sink.done(min(rows, self.height))

    def restart(self) -> None:
        self.sink.restart()


def _release_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def upscale(
    image: torch.Tensor,
    fn: TileFn,
    contract: TileContract,
    tile: int,
    *,
    max_batch_pixels: int = DEFAULT_MAX_BATCH_PIXELS,
    on_tile: ProgressFn | None = None,
) -> TileResult:
    """Upscale ``image`` tile by tile through ``fn`` into one float32 CPU image; see
    :class:`TileResult` and :func:`upscale_into` (which this calls with a
    :class:`~lia_upscale.engine.assembly.FullImage` sink)."""
    c, height, width = _check_image(image)
    full = FullImage(c, height * contract.scale, width * contract.scale)
    run = upscale_into(image, fn, contract, tile, full, max_batch_pixels=max_batch_pixels, on_tile=on_tile)
    return TileResult(full.image, run.tile, run.max_batch_pixels, run.retries)


def _check_image(image: torch.Tensor) -> tuple[int, int, int]:
    if image.ndim != 3 or not (image.is_floating_point() or image.dtype == torch.uint8):
        raise ValueError(
            f"expected a (C, H, W) floating or uint8 tensor, got {image.dtype} {tuple(image.shape)}"
        )
    c, height, width = image.shape
    if height < 1 or width < 1:
        raise ValueError(f"cannot upscale an empty image ({height}x{width})")
    return c, height, width


def upscale_into(
    image: torch.Tensor,
    fn: TileFn,
    contract: TileContract,
    tile: int,
    sink: Sink,
    *,
    max_batch_pixels: int = DEFAULT_MAX_BATCH_PIXELS,
    on_tile: ProgressFn | None = None,
) -> TileRun:
    """Upscale ``image`` tile by tile through ``fn``, handing finished pixels to ``sink``.

    ``image``: (C, H, W) floating (or uint8) tensor on any device; tiles are cut
    from it as they are (same device and dtype) and handed to ``fn`` in batches of
    identical shape (neighbours in one grid row) totalling at most ``max_batch_pixels``
    input pixels (at least one tile). ``fn(batch, regions, full_size)`` must return
    (N, C, h * scale, w * scale). Images smaller than ``contract.min_size`` are padded
    (replicate, bottom/right) and the output cropped back; ``full_size`` and the regions
    then refer to the padded image. ``tile``: core edge (see :func:`plan_tiles`); ``<= 0``
    runs the whole image at once.

    Overlaps are cross-faded (see the module docstring) by an
    :class:`~lia_upscale.engine.assembly.Assembler` on the device ``fn`` returns its
    output on: float32 lives only over the overlap bands and the tile being merged, and
    finished (C, h, w) rectangles go to ``sink.put`` as soon as no later tile reaches
    them, with ``sink.done(rows)`` after each grid row. Only one batch of tiles is alive
    at a time.

    When ``fn`` runs out of memory (``torch.OutOfMemoryError``,
    ``torch.cuda.OutOfMemoryError``, or a RuntimeError saying "out of memory") the image
    is redone from scratch (``sink.restart()``) with a smaller plan: a batch of several
    tiles halves the batch budget; a single tile halves the tile (a whole-image tile
    becomes half the longer side) and the budget with it. No tile is dropped or reused.
    Raises :class:`~lia_upscale.errors.DeviceError` when the tile would fall below
    ``contract.min_tile``. The sizes finally used come back in the result.

    ``on_tile(done, total)`` is called with ``done = 0`` when a plan starts (again after
    a retry) and after each batch.
    """
    if max_batch_pixels < 1:
        raise ValueError("max_batch_pixels must be positive")
    c, height, width = _check_image(image)
    pad_h, pad_w = max(0, contract.min_size - height), max(0, contract.min_size - width)
    s = contract.scale
    if pad_h or pad_w:
        work = image if image.is_floating_point() else image.float()  # replicate padding is float-only
        image = F.pad(work[None], (0, pad_w, 0, pad_h), mode="replicate")[0].to(image.dtype)
        sink = _Cropped(sink, height * s, width * s)
    full_h, full_w = image.shape[-2:]
    retries = 0
    with torch.no_grad():
        while True:
            try:
                _run(image, sink, fn, contract, tile, max_batch_pixels, on_tile)
                break
            except _OutOfMemory as oom:
                failed, count = oom.batch_pixels, oom.tiles
            _release_device_memory()
            sink.restart()
            retries += 1
            # a batch is shrunk before its tiles: smaller tiles cost context overhead
            max_batch_pixels = max(1, min(max_batch_pixels, failed) // 2)
            if count > 1:
                continue
            longest = max(full_h, full_w)
            current = longest if tile <= 0 else min(tile, longest)
            if current // 2 < contract.min_tile:
                raise DeviceError(
                    f"out of memory even with {current}-pixel tiles "
                    f"(the smallest is {contract.min_tile}); use a smaller model, "
                    "lower precision or another device"
                )
            tile = current // 2
    return TileRun(tile, max_batch_pixels, retries)
