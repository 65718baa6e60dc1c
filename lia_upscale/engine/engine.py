"""The inference engine: a loaded model, a device, a precision and the tiler, composed."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from . import tiling
from .allocator import reuse_freed_memory
from .budget import REUSE_BUDGET_BYTES, MemoryModel
from .assembly import FullImage
from .samples import HostSink
from ..errors import DeviceError
from ..models.descriptor import ModelDescriptor, describe
from ..nn import Placement, PlainUSR
from ..nn.inference import infer

__all__ = ["Engine", "ArraySink", "DEFAULT_TILE", "DEFAULT_CPU_TILE", "LARGE_IMAGE_PIXELS", "REUSE_BUDGET_BYTES", "default_tile"]

#: Default tile edge in input pixels on CUDA, chosen by measurement (see README, "Tiling").
DEFAULT_TILE = 512
#: Default tile edge on the CPU, in input pixels: every source tile holds at most
#: (1032 + 2 * 48)^2 pixels (tiling.grid_shape); images up to 1.27 MP run as one tile; a
#: multiple of 6 (LIA's alignment). Chosen by measurement: docs/engine.md.
DEFAULT_CPU_TILE = 1032
#: On the CPU, freed memory is kept in the heap for reuse (:mod:`~lia_upscale.engine.allocator`)
#: for images up to this many input pixels, and for larger ones only while their estimated
#: peak stays within :data:`REUSE_BUDGET_BYTES`. Fitted by measurement: docs/engine.md.
LARGE_IMAGE_PIXELS = 2_000_000
#: float32(1 / 255): what the decoder multiplies 8-bit samples by
_BYTE_SCALE = float(np.float32(1.0 / 255.0))


#: Feature channels up to which the CPU default tile is :data:`DEFAULT_CPU_TILE` (PlainUSR-S's
#: 35). A wider network gets a tile of the same feature-map area: the network's transient
#: memory grows with channels x tile area, while the tile's share of recomputed context
#: grows only slowly as it shrinks (docs/engine.md).
_CPU_TILE_CHANNELS = 35


def default_tile(device: torch.device, feature_channels: int = _CPU_TILE_CHANNELS) -> int:
    """The default tile edge for ``device``: :data:`DEFAULT_TILE` on CUDA; on the CPU
    :data:`DEFAULT_CPU_TILE`, shrunk for networks wider than :data:`_CPU_TILE_CHANNELS`
    feature channels to the same feature-map area (a multiple of 6, LIA's alignment)."""
    if device.type != "cpu":
        return DEFAULT_TILE
    if feature_channels <= _CPU_TILE_CHANNELS:
        return DEFAULT_CPU_TILE
    return int(DEFAULT_CPU_TILE * math.sqrt(_CPU_TILE_CHANNELS / feature_channels)) // 6 * 6


class Engine:
    """Runs a PlainUSR module over images of any size, tile by tile, seam-exact.

    ``descriptor`` (default: :func:`~lia_upscale.models.describe` of ``module``) gives
    the scale and the tile contract. ``module`` is copied to ``device`` in ``dtype``, channels-last, and run through
    :func:`~lia_upscale.nn.inference.infer` (the same network, fewer memory passes). A
    batch of tiles that comes back non-finite is recomputed in float32 (``fallbacks``
    counts those, ``on_fallback`` is called the first time). ``tile`` is the tile edge in
    input pixels (0: whole image; None: :func:`default_tile`; an edge below
    ``contract.min_tile`` is raised to it); after an out-of-memory shrink the smaller size
    is kept for later images.
    """

    def __init__(
        self,
        module: PlainUSR,
        device: torch.device,
        dtype: torch.dtype,
        tile: int | None = None,
        *,
        descriptor: ModelDescriptor | None = None,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        #: the network's contract; everything below reads it, not attributes of the module
        self.descriptor = desc = descriptor or describe(module)
        if (dtype == torch.float16 and not desc.float16) or (dtype == torch.bfloat16 and not desc.bfloat16):
            raise DeviceError(f"{desc.name or desc.architecture} does not support {dtype}")
        self.device = device
        self.dtype = dtype
        self.contract = tiling.TileContract(
            scale=desc.scale,
            min_size=desc.min_size,
            alignment=desc.alignment,
            context=desc.context,
        )
        chosen = tile is not None
        tile = default_tile(device, desc.feature_channels) if tile is None else int(tile)
        if tile < 0:
            raise ValueError(f"tile must be 0 (whole image) or a positive edge, not {tile}")
        # a tile below the smallest the out-of-memory shrink reaches only multiplies the
        # recomputed context (each core carries its context on every side)
        self.tile = 0 if tile == 0 else max(int(tile), self.contract.min_tile)
        # a network narrowed by default_tile still runs images of one S tile's worth whole
        self._whole_small = not chosen and device.type == "cpu" and self.tile < DEFAULT_CPU_TILE
        self.scale = desc.scale
        # channels-last: faster float32 convolutions, and 10x faster float16 ones on the CPU
        # a copy: the caller's float32 module stays as it is (and serves the fallback)
        self._module = copy.deepcopy(module).to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()
        self._fp32: PlainUSR | None = self._module if dtype == torch.float32 else None
        self._source = module
        self.max_batch_pixels = tiling.DEFAULT_MAX_BATCH_PIXELS
        self.fallbacks = 0
        self._on_fallback = on_fallback
        # what one run settles on (a shrunk tile, a fallback) is written back under this lock:
        # lanes of a batch share the engine
        self._state = threading.Lock()
        #: the memory policy of this engine (:class:`~lia_upscale.engine.budget.MemoryModel`)
        self.memory = MemoryModel(self)

    @property
    def network(self) -> PlainUSR:
        """The module as it runs: the engine's copy on its device, in its dtype, channels-last."""
        return self._module

    def _float32(self) -> PlainUSR:
        if self._fp32 is None:
            fp32 = copy.deepcopy(self._source).float()
            self._fp32 = fp32.to(self.device, memory_format=torch.channels_last).eval()
        return self._fp32

    @torch.inference_mode()
    def _forward(
        self, batch: torch.Tensor, regions: Sequence[tiling.Region], full: tuple[int, int]
    ) -> torch.Tensor:
        placements = [Placement(r.top, r.left, full[0], full[1]) for r in regions]
        if batch.dtype == torch.uint8:  # 8-bit samples: the decoder's own conversion, exactly
            batch = batch.to(self.device).to(torch.float32).mul_(_BYTE_SCALE)
        x = batch.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        y = infer(self._module, x, placements)
        if self.dtype != torch.float32 and not bool(torch.isfinite(y).all()):
            with self._state:
                self.fallbacks += 1
                first = self.fallbacks == 1
            if first and self._on_fallback:
                self._on_fallback(f"non-finite {self.dtype} output; recomputing such tiles in float32")
            y = infer(self._float32(), x.float(), placements)
        return y.float()

    def tile_for_size(self, size: tuple[int, int]) -> int:
        """The tile edge an (H, W) image runs with: the engine's, or 0 (the whole image) for
        an image of at most :data:`DEFAULT_CPU_TILE` squared pixels when the default tile was
        narrowed for a wide network (:func:`default_tile`): such an image is one tile for S,
        and cutting it into four would cost more context than its memory saves."""
        if self._whole_small and size[0] * size[1] <= DEFAULT_CPU_TILE**2:
            return 0
        return self.tile

    def _reuse_memory(self, size: tuple[int, int]) -> bool:
        """Whether this image runs with freed memory kept for reuse (see :data:`LARGE_IMAGE_PIXELS`)."""
        if self.device.type != "cpu":
            return False
        # what churns through the heap: the network and the merge, not what the caller keeps
        return size[0] * size[1] <= LARGE_IMAGE_PIXELS or self.memory.working_bytes(size, 0) <= REUSE_BUDGET_BYTES

    def run(
        self, rgb: np.ndarray | torch.Tensor, on_tile: Callable[[int, int], None] | None = None,
        *, tile: int | None = None, batch_pixels: int | None = None,
    ) -> torch.Tensor:
        """Upscale an (H, W, 3) float array or (3, H, W) tensor in [0, 1] (or uint8 samples).

        Returns a (3, sH, sW) float32 CPU tensor, not clamped. ``tile``: this image's tile
        edge (default: :meth:`tile_for_size`'s), ``batch_pixels``: the most source pixels one
        network call takes (default and at most: the engine's), e.g. from a memory plan.
        """
        image = _channels_first(rgb) if isinstance(rgb, np.ndarray) else rgb
        s = self.scale
        full = FullImage(image.shape[0], image.shape[1] * s, image.shape[2] * s)
        tile = self.tile_for_size(tuple(image.shape[-2:])) if tile is None else tile
        self._tiled(image, full, tile, on_tile, batch_pixels)
        return full.image

    def run_into(
        self, rgb: np.ndarray, sink: ArraySink, on_tile: Callable[[int, int], None] | None = None,
        *, tile: int | None = None, batch_pixels: int | None = None,
    ) -> None:
        """Upscale an (H, W, 3) float array in [0, 1] (or uint8 samples), handing finished pixels to ``sink``.

        ``sink.put(top, left, block)`` gets (h, w, 3) float32 numpy pixels (not clamped), or
        ``sink.put_samples`` quantised ones (see :class:`ArraySink`), as soon as no later
        tile reaches them, ``sink.done(rows)`` after each grid row,
        ``sink.restart()`` before an out-of-memory retry (see
        :func:`~lia_upscale.engine.tiling.upscale_into`). The sinks of
        :mod:`lia_upscale.images.rows` quantise or stream them. ``tile``: this image's tile
        edge (default: the engine's) and ``batch_pixels`` as for :meth:`run`, e.g. from a
        memory plan. Raises LiaError when the network's output is not finite.
        """
        image = _channels_first(rgb)
        tile = self.tile_for_size(tuple(image.shape[-2:])) if tile is None else tile
        self._tiled(image, HostSink(sink, deferred=self.device.type == "cuda"), tile, on_tile, batch_pixels)

    def _tiled(self, image: torch.Tensor, sink, tile: int, on_tile: Callable[[int, int], None] | None,
               batch_pixels: int | None = None) -> None:
        batch = self.max_batch_pixels if batch_pixels is None else min(self.max_batch_pixels, batch_pixels)
        with reuse_freed_memory() if self._reuse_memory(image.shape[-2:]) else contextlib.nullcontext():
            result = tiling.upscale_into(
                image, self._forward, self.contract, tile, sink,
                max_batch_pixels=batch, on_tile=on_tile,
            )
        if result.retries:  # keep what an out-of-memory retry settled on for the rest of the batch
            with self._state:  # another lane may have settled on less meanwhile: keep the smaller
                # (tile 0, the whole image, is larger than any tile it shrank to)
                self.tile = result.tile if self.tile <= 0 else min(self.tile, result.tile)
                self.max_batch_pixels = min(self.max_batch_pixels, result.max_batch_pixels)
                self._whole_small = False


class ArraySink(Protocol):
    """Where :meth:`Engine.run_into` hands finished pixels: (h, w, 3) float32 numpy blocks.

    A sink that stores RGB samples may also have ``sample_bits`` (8 or 16) and
    ``put_samples(top, left, samples)``: it then gets (h, w, 3) uint8/uint16 samples,
    quantised as :func:`lia_upscale.images.quantize` does, instead of floats.
    """

    def put(self, top: int, left: int, block: np.ndarray) -> None: ...

    def done(self, rows: int) -> None: ...

    def restart(self) -> None: ...


def _channels_first(rgb: np.ndarray) -> torch.Tensor:
    """A (3, H, W) view of (H, W, 3) samples. A read-only array (``np.asarray`` of a PIL
    image) is copied: torch would warn about sharing it, and a process-wide warnings filter
    would race with the decoder thread's own (images/quiet.py); the decoders' arrays are
    writable and shared as they are."""
    rgb = np.ascontiguousarray(rgb)
    return torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).permute(2, 0, 1)
