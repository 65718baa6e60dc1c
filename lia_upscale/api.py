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
from .engine.samples import check_finite
from .engine.budget import default_budget
from .engine.device import choose_device, choose_dtype
from .engine.threads import set_cpu_threads
from .errors import LiaError, byte_count

__all__ = ["Upscaler", "NetworkOutput", "Finish", "resolve_model_source", "output_size", "kept_bytes"]


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
    check_finite(output)
    return output


def kept_bytes(layout: images.Layout, streamed: bool) -> float:
    """Bytes per output pixel an image holds until it is written: nothing beyond the
    bands for a streamed format; else its integer samples plus Pillow's copy of them
    (4 bytes a pixel for RGB(A) and LA, 1 for L)."""
    if streamed:
        return 0.0
    pillow = 1 if layout.channels == 1 else 4
    return float(layout.bytes_per_pixel() + pillow)


def _gb(n: float) -> str:
    return byte_count(n)  # "1000 bytes", not "0.0 GiB"


class Finish:
    """The write left after :meth:`Upscaler.render`: call it to write, or :meth:`discard`."""

    def __init__(self, write: Callable[[], None], discard: Callable[[], None] | None = None) -> None:
        self._write, self._discard = write, discard

    def __call__(self) -> None:
        """Write the file (encode and write it, or move the streamed file in place)."""
        self._write()

    def discard(self) -> None:
        """Drop the write: nothing reaches the destination."""
        if self._discard is not None:
            self._discard()


class Upscaler:
    """Upscale images with a PlainUSR/LIA model.

    Model choice: ``weights`` (a .safetensors or .pth file) > ``model`` (a registry name,
    see ``lia-upscale models``) > the embedded default for ``purpose`` and ``scale``
    (default 4): ``"photo"`` (the default) cleans camera noise and JPEG blocks while it
    enlarges; ``"clean"`` is for bicubic-downscaled (synthetic, benchmark) input.
    ``device``: auto|cpu|cuda|cuda:N; ``precision``: auto|fp32|fp16|bf16 (auto: float16
    on CUDA, float32 on the CPU); ``tile``: tile edge in input pixels (None: the
    measured default, 0: whole image; at least 16, a smaller edge is raised to it; a
    negative one is a ValueError). ``max_memory``: bytes an image may hold while
    :meth:`render` (the CLI, :meth:`upscale_file`) upscales and writes it (default:
    :func:`~lia_upscale.engine.budget.default_budget`); tiles shrink to fit it and an
    image that cannot fit fails before the network runs, from its header where it is
    decoded through :meth:`decode` (every door, ``outscale`` and the Ray worker too,
    though those hold the whole float image and are not tiled to the budget). ``on_warning`` receives
    one-line notices (e.g. a float32 fallback, third-party weights) instead of anything
    being printed. ``tta``: the x8 self-ensemble (:mod:`~lia_upscale.engine.tta`; eight
    times the work, a little more fidelity). ``threads``: CPU threads for torch (None:
    leave torch's setting, by default all cores); torch's setting is process-wide, so
    this sets it for the whole process. ``denoise``: the strength of a photo model from 0
    (the clean network it was fine-tuned from) to 1 (the photo model), a blend of their
    weights at no extra cost (None: the model card's default; see
    :func:`~lia_upscale.models.load_model`).
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
        max_memory: int | None = None,
        on_warning: Callable[[str], None] | None = None,
        tta: bool = False,
        threads: int | None = None,
        denoise: float | None = None,
    ) -> None:
        if threads is not None:
            set_cpu_threads(threads)
        self.model = models.load_model(resolve_model_source(weights, model, scale, purpose), on_warning=on_warning,
                                       denoise=denoise)
        #: bytes one image may hold while it is upscaled and written (see :meth:`render`)
        self.max_memory = default_budget() if max_memory is None else int(max_memory)
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

    def _network_into(self, rgb: np.ndarray, sink, on_tile: Callable[[int, int], None] | None, *,
                      tile: int) -> None:
        """:meth:`_network` handing finished pixels to ``sink`` band by band; with ``tta`` the
        ensemble's float image is made first (TTA is not bounded by the budget) and handed over whole."""
        if not self.tta:
            self.engine.run_into(rgb, sink, on_tile, tile=tile)
            return
        out = _finite(self._network(rgb, on_tile))
        sink.put(0, 0, out.permute(1, 2, 0).numpy())
        sink.done(out.shape[1])

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

        Pixels, modes, transparency and ICC are handled as for a PNG file (the CLI's
        output read back by Pillow), without encoding anything: the pixels go straight
        to arrays and the result is quantised band by band as tiles finish. Modes only
        a file can carry (32-bit "I", "F") take a PNG round trip.
        """
        image = image.convert("RGB") if image.mode == "CMYK" else image
        picture = images.from_pil(image)
        if picture is None:
            buf = io.BytesIO()
            image.save(buf, format="PNG", compress_level=0)
            picture = images.decode(buf.getvalue())
        if outscale:
            result = self.upscale_picture(picture, outscale)
            layout = images.pil_layout(result)
            samples = images.SampleStore(result.height, result.width, layout)
            samples.put(0, 0, result.rgb)
            if layout.alpha:
                images.AlphaPlane(samples.samples[..., -1], layout.bits).put(0, 0, np.repeat(result.alpha[..., None], 3, 2))
        else:
            layout = images.pil_layout(picture)
            samples = self._into_samples(picture, layout, None, self.engine.tile_for_size((picture.height, picture.width)))
        return images.to_pil(samples.samples, layout, picture, dpi_scale=samples.samples.shape[0] / picture.height)

    def _alpha_into(self, picture: images.Picture, plane: np.ndarray, bits: int,
                    on_tile: Callable[[int, int], None] | None, tile: int) -> None:
        a = picture.alpha
        assert a is not None
        if float(a.min()) == float(a.max()):  # uniform: nothing to compute
            plane[...] = images.quantize_value(float(a.min()), bits)
            return
        self._network_into(np.repeat(a[:, :, None], 3, axis=2), images.AlphaPlane(plane, bits),
                             on_tile, tile=tile)

    def _into_samples(self, picture: images.Picture, layout: images.Layout,
                      on_tile: Callable[[int, int], None] | None, tile: int) -> images.SampleStore:
        s = self.scale
        store = images.SampleStore(picture.height * s, picture.width * s, layout)
        if layout.alpha:
            self._alpha_into(picture, store.samples[..., -1], layout.bits, on_tile, tile)
        self._network_into(picture.rgb, store, on_tile, tile=tile)
        return store

    def render(
        self,
        picture: images.Picture,
        dst: str | Path,
        fmt: str | None = None,
        quality: int | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Finish:
        """Upscale a decoded picture for the file ``dst`` in bounded memory; ``finish()`` writes it.

        Before the network runs, the output size is checked against the format's limits
        and the memory an image needs (:meth:`~lia_upscale.engine.Engine.working_bytes`)
        against :attr:`max_memory`: tiles shrink until it fits, and an image that cannot
        fit raises LiaError naming the numbers. PNG and TIFF are written band by band
        while the network runs (their memory does not grow with the image's height) to a
        temporary file that ``finish()`` moves in place; JPEG, WEBP and BMP keep only the
        integer samples, and ``finish()`` encodes and writes them (a batch calls it in
        another thread). ``finish.discard()`` drops an unfinished write. Alpha is upscaled
        first, only for formats that keep it. Nothing is left at ``dst`` on failure.
        """
        dst = Path(dst)
        fmt = images.format_name(fmt or images.format_for_suffix(dst))
        s = self.scale
        size = (picture.height * s, picture.width * s)
        images.check_output(fmt, size[1], size[0], quality=quality, dpi_scale=s)
        layout = images.output_layout(picture, fmt)
        streamed = fmt in images.STREAMED_FORMATS
        tile = self.plan_tile(picture, layout, streamed)
        if streamed:
            alpha = None
            if layout.alpha:
                alpha = np.empty(size, dtype=layout.dtype)
                self._alpha_into(picture, alpha, layout.bits, on_tile, tile)
            staged = images.write_streamed(
                dst, fmt, layout, picture, size,
                lambda sink: self._network_into(picture.rgb, sink, on_tile, tile=tile),
                dpi_scale=s, alpha=alpha,
            )
            return Finish(lambda: images.commit(staged), staged.discard)
        store = self._into_samples(picture, layout, on_tile, tile)
        return Finish(lambda: images.save_samples(store.samples, layout, picture, dst, fmt, quality, dpi_scale=s))

    def memory_for(self, picture: images.Picture, fmt: str) -> tuple[int, int]:
        """(bytes while ``picture`` is upscaled for ``fmt``, bytes it still holds after the
        network until its ``finish()`` has written it): estimates for planning a batch."""
        fmt = images.format_name(fmt)
        layout = images.output_layout(picture, fmt)
        streamed = fmt in images.STREAMED_FORMATS
        kept = kept_bytes(layout, streamed)
        size = (picture.height, picture.width)
        return self.engine.working_bytes(size, kept), int(kept * size[0] * size[1] * self.scale**2)

    def decode(self, source: str | Path | bytes) -> images.Picture:
        """Decode ``source`` (a path or the file's bytes) for upscaling, 8-bit colour kept as
        its samples (``images.decode(..., samples=True)``).

        The size in the header is checked first: an image that no tile lets fit
        :attr:`max_memory`, for any output format, is refused (LiaError, naming the numbers)
        before its pixels are decoded, which for a huge image would take more memory than the
        budget. A header that cannot be read is left to the decoder to name.
        """
        size = images.header_size(source)
        if size[0] and size[1]:
            # the least an output holds until written: nothing beyond bands (streamed) or
            # gray samples with Pillow's copy (2 bytes a pixel); see kept_bytes
            need = min(self.engine.least_bytes(size, kept) for kept in (0.0, 2.0))
            if need > self.max_memory:  # then tile_for finds no tile for any format
                raise self._over_budget(size, need)
        return images.decode(source, samples=True)

    def _over_budget(self, size: tuple[int, int], need: int) -> LiaError:
        h, w = size
        return LiaError(
            f"{w}x{h} at x{self.scale} ({w * self.scale}x{h * self.scale}) needs about "
            f"{_gb(need)} at the least (any tile size), over the memory budget of "
            f"{_gb(self.max_memory)} (--max-memory)"
        )

    def plan_tile(self, picture: images.Picture, layout: images.Layout, streamed: bool) -> int:
        """The tile edge for writing ``picture`` with ``layout`` within :attr:`max_memory`.

        Raises LiaError, naming the numbers, when no tile fits.
        """
        size = (picture.height, picture.width)
        kept = kept_bytes(layout, streamed)
        tile = self.engine.tile_for(size, kept, self.max_memory)
        if tile is None:
            raise self._over_budget(size, self.engine.least_bytes(size, kept))
        return tile

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
        picture = self.decode(Path(src))
        if outscale:
            result = self.upscale_picture(picture, outscale, on_tile)
            images.save(result, dst, fmt, quality, dpi_scale=result.height / picture.height)
        else:
            self.render(picture, dst, fmt, quality, on_tile)()
        return dst

