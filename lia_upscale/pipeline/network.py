"""The network's steps for one image: colour and alpha through the engine, into integer
samples band by band, or whole as floats for the resample (``outscale``) and TTA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import images
from ..engine import Engine, tta
from ..engine.budget import Tiling
from ..engine.samples import check_finite

__all__ = ["NetworkOutput", "finish_picture", "into_samples", "network", "run_network", "resample"]

OnTile = Callable[[int, int], None] | None


@dataclass(frozen=True)
class NetworkOutput:
    """What the network made of a picture, before clamping, resampling and conversion.

    ``rgb``: (3, sH, sW) float32 CPU tensor, not clamped. ``alpha``: None (no alpha), a
    float (a uniform alpha, not computed) or the (3, sH, sW) output for the alpha
    channel run as a gray image.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | float | None


def _finite(output: torch.Tensor) -> torch.Tensor:
    check_finite(output)
    return output


def network(engine: Engine, use_tta: bool, rgb: np.ndarray | torch.Tensor, on_tile: OnTile,
            tile: Tiling | None = None) -> torch.Tensor:
    """The engine's (3, sH, sW) float output for one image; with ``use_tta`` the x8 self-ensemble.
    ``tile``: the tiling a memory plan chose (None: the engine's)."""
    t = tile or Tiling(None, None)  # type: ignore[arg-type]
    if not use_tta:
        return engine.run(rgb, on_tile, tile=t.tile, batch_pixels=t.batch_pixels)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1) if isinstance(rgb, np.ndarray) else rgb
    return tta.ensemble(image, lambda x, progress: engine.run(x, progress, tile=t.tile, batch_pixels=t.batch_pixels),
                        on_tile)


def _network_into(engine: Engine, use_tta: bool, rgb: np.ndarray, sink, on_tile: OnTile, tile: Tiling) -> None:
    """:func:`network` handing finished pixels to ``sink`` band by band; with TTA the
    ensemble's float image is made first and handed over whole."""
    if not use_tta:
        engine.run_into(rgb, sink, on_tile, tile=tile.tile, batch_pixels=tile.batch_pixels)
        return
    out = _finite(network(engine, True, rgb, on_tile, tile))
    sink.put(0, 0, out.permute(1, 2, 0).numpy())
    sink.done(out.shape[1])


def run_network(engine: Engine, use_tta: bool, picture: images.Picture, on_tile: OnTile = None,
                tile: Tiling | None = None) -> NetworkOutput:
    """The raw upscaled colour and alpha of ``picture`` as floats (the whole-float stage).

    Alpha goes through the network too (as a gray image), so its edges are as sharp as the
    colour's; a uniform alpha is not computed. Raises LiaError when the output is not
    finite (weights that overflow on this image): the encoder would turn NaN into black.
    """
    rgb = _finite(network(engine, use_tta, picture.rgb, on_tile, tile))
    alpha: torch.Tensor | float | None = None
    if picture.alpha is not None:
        a = picture.alpha
        if float(a.min()) == float(a.max()):
            alpha = float(a.min())
        else:
            alpha = _finite(network(engine, use_tta, np.repeat(a[:, :, None], 3, axis=2), on_tile, tile))
    return NetworkOutput(rgb, alpha)


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """High-quality resample of a (C, H, W) float tensor: antialiased bicubic."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]


def finish_picture(picture: images.Picture, output: NetworkOutput, target: tuple[int, int]) -> images.Picture:
    """Clamp, resample to ``target`` (H, W) and convert :func:`run_network`'s output."""
    rgb = output.rgb
    if tuple(rgb.shape[-2:]) != target:
        rgb = resample(rgb.clamp_(0, 1), target)
    # clamp and lay out as (H, W, 3) in one single-threaded pass (it runs beside the
    # network); in place when the engine's output already is (H, W, 3) storage
    hwc = rgb.numpy().transpose(1, 2, 0)
    pixels = hwc if hwc.flags.c_contiguous else np.empty((*target, 3), dtype=np.float32)
    np.clip(hwc, 0, 1, out=pixels)
    alpha = None
    if isinstance(output.alpha, float):
        alpha = np.full(target, output.alpha, dtype=np.float32)
    elif output.alpha is not None:
        up = output.alpha.clamp_(0, 1).mean(0, keepdim=True)
        alpha = resample(up, target)[0].clamp_(0, 1).numpy()
    return picture.with_pixels(pixels, alpha)


def alpha_into(engine: Engine, use_tta: bool, picture: images.Picture, plane: np.ndarray, bits: int,
               on_tile: OnTile, tile: Tiling) -> None:
    """Upscale ``picture``'s alpha into the integer ``plane`` (a uniform alpha is not computed)."""
    a = picture.alpha
    assert a is not None
    if float(a.min()) == float(a.max()):
        plane[...] = images.quantize_value(float(a.min()), bits)
        return
    _network_into(engine, use_tta, np.repeat(a[:, :, None], 3, axis=2), images.AlphaPlane(plane, bits),
                  on_tile, tile)


def into_samples(engine: Engine, use_tta: bool, picture: images.Picture, layout: images.Layout, fmt: str,
                 on_tile: OnTile, tile: Tiling) -> images.SampleStore:
    """The upscaled ``picture`` as integer samples laid out per ``layout`` for ``fmt``'s
    encoder (:func:`~lia_upscale.images.sample_channels`), quantised band by band."""
    s = engine.scale
    store = images.SampleStore(picture.height * s, picture.width * s, layout, images.sample_channels(layout, fmt))
    if layout.alpha:
        alpha_into(engine, use_tta, picture, store.samples[..., -1], layout.bits, on_tile, tile)
    _network_into(engine, use_tta, picture.rgb, store, on_tile, tile)
    return store


def streamed_fill(engine: Engine, use_tta: bool, picture: images.Picture, on_tile: OnTile,
                  tile: Tiling) -> Callable[[object], None]:
    """The ``fill(sink)`` of a band-by-band file: the colour handed to the writer's sink."""
    return lambda sink: _network_into(engine, use_tta, picture.rgb, sink, on_tile, tile)
