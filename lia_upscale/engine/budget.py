"""The memory model: the budget a run may use (by default a share of the memory available
now), what an image needs while it runs and is written, and the tile that fits."""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["default_budget", "available_memory", "BUDGET_SHARE", "MemoryModel", "Tiling",
           "REUSE_BUDGET_BYTES", "FLOAT_RGB"]

#: share of the available memory one run takes by default
BUDGET_SHARE = 0.75
#: The most two concurrent images may need together (the heap keeps freed memory for reuse
#: up to about this much, see :mod:`~lia_upscale.engine.engine`).
REUSE_BUDGET_BYTES = 2 << 30
#: feature maps of one network call counted alive at once (live ones and those the heap keeps)
_REUSE_MAPS = 6


def available_memory() -> int:
    """Bytes of memory available to new work: MemAvailable on Linux, else half the
    physical memory (or 4 GiB when even that is unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_budget() -> int:
    """:data:`BUDGET_SHARE` of :func:`available_memory`, in bytes."""
    return int(available_memory() * BUDGET_SHARE)


class Tiling(NamedTuple):
    """How one image runs: the tile edge, and the source pixels one network call may take
    (None: the engine's own batch)."""

    tile: int
    batch_pixels: int | None


#: Bytes per output pixel of a float32 RGB image (the engine's whole output, a resample).
FLOAT_RGB = 12


class MemoryModel:
    """The memory policy of one engine: what an image needs while it runs, which tile fits a
    budget, how many images run at once. Every door plans with it; the engine only runs.

    It reads the engine's geometry (scale, tile contract, feature channels, dtype, the
    batch of tiles per call, its tile for a size) at the moment of each estimate, so an
    out-of-memory shrink the engine settled on is seen by the next plan.
    """

    def __init__(self, engine) -> None:
        self._engine = engine

    def working_bytes(self, size: tuple[int, int], kept: float = 12.0, *, tile: int | None = None,
                      batch_pixels: int | None = None) -> int:
        """Estimated memory an (H, W) image holds while it runs, in bytes.

        ``kept``: bytes per output pixel the caller keeps for the whole image (12: the
        float32 result of :meth:`~lia_upscale.engine.Engine.run`; 3 or 4: 8-bit samples for
        JPEG/WEBP; 0 for a file written band by band). Counted beside it: the decoded input
        (4 bytes per input pixel: 8-bit samples, or a float alpha), six feature maps of one
        network call (the live ones and those the heap holds on to when freed memory is kept
        for reuse), the call's float32 output, the float32 area of the tile being merged
        with its weights, the overlap bands, and for a streamed file three grid rows of
        samples (being put, assembled and compressed). ``tile``: the tile edge to assume
        (default: the engine's for this size); ``batch_pixels``: source pixels one network
        call may take (default, and at most: the engine's).
        """
        from . import tiling

        engine = self._engine
        h, w = size
        pixels = h * w
        s, band = engine.scale, engine.contract.band
        tile = engine.tile_for_size(size) if tile is None else tile
        # every tile's source has one shape (tiling.plan_tiles); a network call takes a batch
        # of them (or the whole image)
        if min(h, w) >= engine.contract.min_size:
            _, cols, src_h, src_w = tiling.source_shape(h, w, tile, engine.contract)
        else:
            cols, src_h, src_w = 1, h, w
        limit = engine.max_batch_pixels if batch_pixels is None else min(engine.max_batch_pixels, batch_pixels)
        per_call = src_h * src_w * max(1, min(cols, limit // max(1, src_h * src_w)))
        map_bytes = engine.descriptor.feature_channels * per_call * engine.dtype.itemsize
        merge = 2 * 12 * ((src_h + 2 * band) * s) * ((src_w + 2 * band) * s)
        bands = 2 * 12 * (2 * band * s) * (w * s)
        rows = 0 if kept else 3 * 4 * (src_h * s) * (w * s)
        return int(4 * pixels + _REUSE_MAPS * map_bytes + 12 * per_call * s * s + merge + bands + rows
                   + kept * pixels * s * s)

    def _tile_steps(self, size: tuple[int, int]):
        """The tile edges a budget search tries, largest first: the engine's for this size (or
        the whole image), three quarters of the last each time, down to the contract's smallest."""
        contract = self._engine.contract
        tile = self._engine.tile_for_size(size) or max(size)
        while True:
            yield tile
            if tile <= contract.min_tile:
                return
            tile = max(contract.min_tile, tile * 3 // 4 // contract.alignment * contract.alignment)

    def _steps(self, size: tuple[int, int]):
        """(tile, batch pixels) pairs a budget search tries, the cheapest to run first: each tile
        with the engine's batch of tiles per network call, then with one tile per call."""
        from . import tiling

        h, w = size
        for tile in self._tile_steps(size):
            yield Tiling(tile, None)
            if min(h, w) >= self._engine.contract.min_size:
                _, cols, src_h, src_w = tiling.source_shape(h, w, tile, self._engine.contract)
                if cols > 1 and src_h * src_w < self._engine.max_batch_pixels:
                    yield Tiling(tile, src_h * src_w)

    def tiling_for(self, size: tuple[int, int], kept: float, budget: int, extra: int = 0) -> Tiling | None:
        """The first of :meth:`_steps` whose :meth:`working_bytes` plus ``extra`` bytes fit
        ``budget`` (the largest tile, then the engine's batch); None when none does."""
        return next((t for t in self._steps(size)
                     if self.working_bytes(size, kept, tile=t.tile, batch_pixels=t.batch_pixels) + extra <= budget),
                    None)

    def tile_for(self, size: tuple[int, int], kept: float, budget: int, extra: int = 0) -> int | None:
        """The tile edge of :meth:`tiling_for`; None when nothing fits."""
        found = self.tiling_for(size, kept, budget, extra)
        return None if found is None else found.tile

    def least_bytes(self, size: tuple[int, int], kept: float, extra: int = 0) -> int:
        """The smallest :meth:`working_bytes` (plus ``extra``) over what :meth:`tiling_for`
        tries: what an (H, W) image needs at the least. Not always at the smallest tile: tiny
        tiles batch many overlapping sources into one network call."""
        return min(self.working_bytes(size, kept, tile=t.tile, batch_pixels=t.batch_pixels)
                   for t in self._steps(size)) + extra

    def whole_float_bytes(self, size: tuple[int, int], out_size: tuple[int, int], *, alpha: bool,
                          tta: bool, held: float) -> tuple[float, int]:
        """(bytes per model-scale output pixel kept while the network runs, bytes beside it after)
        for the whole-float stage (``outscale`` or TTA): the engine's float32 output (and the
        alpha's, and TTA's accumulator beside each pass), then the resample to ``out_size``,
        the clamped float copy, the alpha plane, and ``held`` bytes per output pixel for the
        encoder (its samples, and Pillow's copy where it needs one)."""
        kept = FLOAT_RGB * (1 + int(alpha) + int(tta))
        oh, ow = out_size
        s = self._engine.scale
        out_pixels = oh * ow
        resample = FLOAT_RGB * (out_pixels + oh * max(ow, size[1] * s)) if out_size != (size[0] * s, size[1] * s) else 0
        after = resample + (FLOAT_RGB + 4) * out_pixels + int(held * out_pixels)
        return float(kept), after

    def concurrent_images(self, sizes, budget: int) -> int:
        """How many images of these (H, W) sizes should run at once: 2 or 1.

        Two, each with half the CPU threads, when the engine runs on a CPU with at least two
        threads and two of the largest image fit both :data:`REUSE_BUDGET_BYTES` and ``budget``
        together (:meth:`working_bytes`): then one image's decoding and encoding fill the
        cores while the other's network waits for them. One on CUDA, on one thread, and for
        big images on wide models. ``sizes`` is only read when the device and threads allow
        two, so it may be a lazy probe of files.
        """
        from .threads import cpu_threads

        if self._engine.device.type != "cpu" or cpu_threads() < 2:
            return 1
        sizes = list(sizes)
        if len(sizes) < 2:
            return 1
        # kept samples (a JPEG's) are left out: they are small beside the network's
        largest = max(self.working_bytes(size, 0) for size in sizes)
        return 2 if 2 * largest <= min(REUSE_BUDGET_BYTES, budget) else 1
