"""The Python API: the one place that composes models, device, tiling and image I/O."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import images, models
from .engine import Engine
from .engine import tta
from .engine.device import choose_device, choose_dtype
from .engine.threads import set_cpu_threads
from .errors import LiaError

__all__ = ["Upscaler", "NetworkOutput", "resolve_model_source", "output_size"]


@dataclass(frozen=True)
class NetworkOutput:
    """What the network made of a picture, before clamping, resampling and conversion.

    ``rgb``: (3, sH, sW) float32 CPU tensor, not clamped. ``alpha``: None (no alpha), a
    float (a uniform alpha, not computed) or the (3, sH, sW) output for the alpha
    channel run as a gray image.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | float | None


def resolve_model_source(
    weights: str | Path | None, model: str | None, scale: int | None, purpose: str = "photo"
) -> str | Path:
    """``weights`` file > ``model`` name > the embedded default for ``purpose`` (photo: real
    photos; clean: bicubic-downscaled benchmark input) at ``scale`` (4 if not given)."""
    if weights is not None:
        return Path(weights)
    if model is not None:
        return model
    return models.default_model_name(scale or 4, purpose)


def output_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """Exact output size for ``--outscale``: each edge times ``factor``, rounded half up, at least 1."""
    return max(1, math.floor(height * factor + 0.5)), max(1, math.floor(width * factor + 0.5))


def _resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """High-quality resample of a (C, H, W) float tensor: antialiased bicubic."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]


def _finite(output: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(output).all()):
        raise LiaError("the network's output is not finite (NaN or infinity): the weights overflow on this image")
    return output


class Upscaler:
    """Upscale images with a PlainUSR/LIA model.

    Model choice: ``weights`` (a .safetensors or .pth file) > ``model`` (a registry name,
    see ``lia-upscale models``) > the embedded default for ``purpose`` and ``scale``
    (default 4): ``"photo"`` (the default) cleans camera noise and JPEG blocks while it
    enlarges; ``"clean"`` is for bicubic-downscaled (synthetic, benchmark) input.
    ``device``: auto|cpu|cuda|cuda:N; ``precision``: auto|fp32|fp16|bf16 (auto: float16
    on CUDA, float32 on the CPU); ``tile``: tile edge in input pixels (None: the
    measured default, 0: whole image). ``on_warning`` receives one-line notices (e.g. a
    float32 fallback, third-party weights) instead of anything being printed.
    ``tta``: the x8 self-ensemble (:mod:`~lia_upscale.engine.tta`; eight times the work,
    a little more fidelity). ``threads``: CPU threads for torch (None: leave torch's
    setting, by default all cores); torch's setting is process-wide, so this sets it for
    the whole process.
    """

    def __init__(
        self,
        model: str | None = None,
        weights: str | Path | None = None,
        *,
        scale: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: int | None = None,
        purpose: str = "photo",
        on_warning: Callable[[str], None] | None = None,
        tta: bool = False,
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            set_cpu_threads(threads)
        self.model = models.load_model(resolve_model_source(weights, model, scale, purpose), on_warning=on_warning)
        if scale is not None and scale != self.model.scale:
            raise LiaError(f"{self.model.source} is a x{self.model.scale} model, but x{scale} was asked for")
        dev = choose_device(device)
        self.engine = Engine(self.model.module, dev, choose_dtype(precision, dev), tile,
                             descriptor=self.model.descriptor, on_fallback=on_warning)
        self.tta = bool(tta)

    def _network(self, rgb: np.ndarray | torch.Tensor, on_tile: Callable[[int, int], None] | None) -> torch.Tensor:
        """The engine's output for one image; with ``tta`` the x8 self-ensemble of it."""
        if not self.tta:
            return self.engine.run(rgb, on_tile)
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1) if isinstance(rgb, np.ndarray) else rgb
        return tta.ensemble(image, self.engine.run, on_tile)

    @property
    def scale(self) -> int:
        """The model's upscaling factor."""
        return self.model.scale

    def upscale_tensor(
        self, rgb: np.ndarray | torch.Tensor, on_tile: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """(H, W, 3) array or (3, H, W) tensor in [0, 1] -> (3, sH, sW) float32 tensor in [0, 1]."""
        return self._network(rgb, on_tile).clamp_(0, 1)

    def run_network(
        self, picture: images.Picture, on_tile: Callable[[int, int], None] | None = None
    ) -> NetworkOutput:
        """The network's part of :meth:`upscale_picture`: the raw upscaled colour and alpha.

        Alpha goes through the network too (as a gray image), so its edges are as sharp
        as the colour's; a uniform alpha is not computed. Finish with :meth:`finish_picture`
        (which a batch does in another thread, while the network works on the next image).
        Raises LiaError when the output is not finite (weights that overflow on this image):
        the encoder would silently turn NaN into black.
        """
        rgb = _finite(self._network(picture.rgb, on_tile))
        alpha: torch.Tensor | float | None = None
        if picture.alpha is not None:
            a = picture.alpha
            if float(a.min()) == float(a.max()):
                alpha = float(a.min())
            else:
                alpha = _finite(self._network(np.repeat(a[:, :, None], 3, axis=2), on_tile))
        return NetworkOutput(rgb, alpha)

    def finish_picture(
        self, picture: images.Picture, output: NetworkOutput, outscale: float | None = None
    ) -> images.Picture:
        """Clamp, resample to ``outscale`` (if given) and convert :meth:`run_network`'s output."""
        h, w = picture.rgb.shape[:2]
        target = output_size(h, w, outscale) if outscale else (h * self.scale, w * self.scale)
        rgb = output.rgb
        if tuple(rgb.shape[-2:]) != target:
            rgb = _resample(rgb.clamp_(0, 1), target)
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
            alpha = _resample(up, target)[0].clamp_(0, 1).numpy()
        return picture.with_pixels(pixels, alpha)

    def upscale_picture(
        self,
        picture: images.Picture,
        outscale: float | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> images.Picture:
        """Upscale a decoded picture, alpha included, optionally resampled to ``outscale``.

        Alpha goes through the network too (as a gray image, channel mean), so its edges
        are as sharp as the colour's; a uniform alpha is simply extended.
        """
        return self.finish_picture(picture, self.run_network(picture, on_tile), outscale)

    def upscale(self, image: Image.Image, outscale: float | None = None) -> Image.Image:
        """Upscale a PIL image; the result has the matching mode (gray stays gray, alpha kept).

        The image goes through the same decoder as files (via an uncompressed in-memory
        PNG), so modes, transparency and ICC are handled exactly as for files.
        """
        buf = io.BytesIO()
        image = image.convert("RGB") if image.mode == "CMYK" else image
        image.save(buf, format="PNG", compress_level=0)
        result = self.upscale_picture(images.decode(buf.getvalue()), outscale)
        out = io.BytesIO()
        images.encode(result, out, "PNG", dpi_scale=result.height / image.height)
        out.seek(0)
        with Image.open(out) as im:
            im.load()
            return im

    def upscale_file(
        self,
        src: str | Path,
        dst: str | Path,
        *,
        fmt: str | None = None,
        quality: int | None = None,
        outscale: float | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Decode ``src``, upscale, and write ``dst`` atomically (format from ``fmt`` or ``dst``'s suffix)."""
        dst = Path(dst)
        picture = images.decode(Path(src))
        result = self.upscale_picture(picture, outscale, on_tile)
        images.save(result, dst, fmt, quality, dpi_scale=result.height / picture.height)
        return dst

