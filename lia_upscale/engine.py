"""The inference engine: a loaded model, a device, a precision and the tiler, composed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import tiling
from .nn import Placement, PlainUSR

__all__ = ["Engine", "DEFAULT_TILE"]

#: Default tile edge in input pixels, chosen by measurement (see README, "Tiling").
DEFAULT_TILE = 512


class Engine:
    """Runs a PlainUSR module over images of any size, tile by tile, seam-exact.

    ``module`` is moved to ``device`` in ``dtype``. A batch of tiles that comes back
    non-finite is recomputed in float32 (``fallbacks`` counts those, ``on_fallback`` is
    called the first time). ``tile`` is the tile edge in input pixels (0: whole image);
    after an out-of-memory shrink the smaller size is kept for later images.
    """

    def __init__(
        self,
        module: PlainUSR,
        device: torch.device,
        dtype: torch.dtype,
        tile: int | None = None,
        *,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.tile = DEFAULT_TILE if tile is None else int(tile)
        self.scale = module.scale
        self._module = module.to(device=device, dtype=dtype).eval()
        self._fp32: PlainUSR | None = module if dtype == torch.float32 else None
        self._source = module
        self.max_batch_pixels = tiling.DEFAULT_MAX_BATCH_PIXELS
        self.fallbacks = 0
        self._on_fallback = on_fallback
        self.contract = tiling.TileContract(
            scale=module.scale,
            min_size=module.min_size,
            alignment=module.alignment,
            context=tiling.DEFAULT_CONTEXT,
        )

    def _float32(self) -> PlainUSR:
        if self._fp32 is None:
            fp32 = type(self._source)(self._source.config)
            fp32.load_state_dict({k: v.float() for k, v in self._source.state_dict().items()})
            self._fp32 = fp32.to(self.device).eval()
        return self._fp32

    @torch.inference_mode()
    def _forward(
        self, batch: torch.Tensor, regions: Sequence[tiling.Region], full: tuple[int, int]
    ) -> torch.Tensor:
        placements = [Placement(r.top, r.left, full[0], full[1]) for r in regions]
        x = batch.to(self.device, self.dtype)
        y = self._module(x, placements)
        if self.dtype != torch.float32 and not bool(torch.isfinite(y).all()):
            self.fallbacks += 1
            if self.fallbacks == 1 and self._on_fallback:
                self._on_fallback(f"non-finite {self.dtype} output; recomputing such tiles in float32")
            y = self._float32()(x.float(), placements)
        return y.float()

    def run(
        self, rgb: np.ndarray | torch.Tensor, on_tile: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """Upscale an (H, W, 3) float array or (3, H, W) tensor in [0, 1].

        Returns a (3, sH, sW) float32 CPU tensor, not clamped.
        """
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1) if isinstance(rgb, np.ndarray) else rgb
        result = tiling.upscale(
            image, self._forward, self.contract, self.tile,
            max_batch_pixels=self.max_batch_pixels, on_tile=on_tile,
        )
        # keep what an out-of-memory retry settled on for the rest of the batch
        self.tile, self.max_batch_pixels = result.tile, result.max_batch_pixels
        return result.image
