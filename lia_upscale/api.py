"""The Python API: :class:`Upscaler`, a thin face over the pipeline for scripts."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import models
from .engine import Engine
from .engine.budget import default_budget
from .engine.device import choose_device, choose_dtype
from .engine.threads import set_cpu_threads
from .errors import LiaError
from .pipeline import OutputSpec, ToPil, process
from .pipeline.network import network

__all__ = ["Upscaler", "resolve_model_source"]


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


def _check_arguments(*, device, precision, tile, max_memory, on_warning) -> None:
    """TypeError/ValueError, in one line, for constructor arguments of the wrong type or range
    (``threads`` is checked where it is set, :func:`~.engine.threads.set_cpu_threads`)."""
    for name, value in (("device", device), ("precision", precision)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string such as 'auto', not {type(value).__name__}")
    for name, value, low in (("tile", tile, 0), ("max_memory", max_memory, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, not {value}")
    if on_warning is not None and not callable(on_warning):
        raise TypeError(f"on_warning must be callable, not {type(on_warning).__name__}")


class Upscaler:
    """Upscale images with a PlainUSR/LIA model.

    Model choice: ``weights`` (a .safetensors or .pth file) > ``model`` (a registry name,
    see ``lia-upscale models``) > the embedded default for ``purpose`` and ``scale``
    (default 4): ``"photo"`` (the default) cleans camera noise and JPEG blocks while it
    enlarges; ``"clean"`` is for bicubic-downscaled (synthetic, benchmark) input.
    ``device``: auto|cpu|cuda|cuda:N; ``precision``: auto|fp32|fp16|bf16 (auto: float16
    on CUDA, float32 on the CPU); ``tile``: tile edge in input pixels (None: the
    measured default, 0: whole image; at least 16, a smaller edge is raised to it; a
    negative one is a ValueError). ``max_memory``: bytes the images in flight may
    hold while they are upscaled and written, at every door (default:
    :func:`~lia_upscale.engine.budget.default_budget`); tiles shrink to fit it, and an
    image that cannot fit (``outscale`` and ``tta`` counted) fails before the network
    runs, from its header where it is decoded from a file. ``on_warning`` receives
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
        _check_arguments(device=device, precision=precision, tile=tile, max_memory=max_memory,
                         on_warning=on_warning)
        if threads is not None:
            set_cpu_threads(threads)
        self.model = models.load_model(resolve_model_source(weights, model, scale, purpose), on_warning=on_warning,
                                       denoise=denoise)
        #: bytes the images in flight may hold while they are upscaled and written
        self.max_memory = default_budget() if max_memory is None else int(max_memory)
        if scale is not None and scale != self.model.scale:
            raise LiaError(f"{self.model.source} is a x{self.model.scale} model, but x{scale} was asked for")
        dev = choose_device(device)
        self.engine = Engine(self.model.module, dev, choose_dtype(precision, dev), tile,
                             descriptor=self.model.descriptor, on_fallback=on_warning)
        self.tta = bool(tta)

    @property
    def scale(self) -> int:
        """The model's upscaling factor."""
        return self.model.scale

    def upscale_tensor(
        self, rgb: np.ndarray | torch.Tensor, on_tile: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """(H, W, 3) array or (3, H, W) tensor in [0, 1] -> (3, sH, sW) float32 tensor in [0, 1]."""
        return network(self.engine, self.tta, rgb, on_tile).clamp_(0, 1)

    def upscale(self, image: Image.Image, outscale: float | None = None) -> Image.Image:
        """Upscale a PIL image; the result has the matching mode (gray stays gray, alpha kept).

        Pixels, modes, transparency and ICC are handled as for a PNG file (the CLI's
        output read back by Pillow), without encoding anything: the pixels go straight
        to arrays and the result is quantised band by band as tiles finish. Modes "1", L, LA,
        P, PA, RGB, RGBX, RGBA, CMYK and I;16 are taken; others (F, I, YCbCr, HSV, LAB) are
        a ValueError, anything but a PIL image a TypeError; a bad ``outscale`` a ValueError.
        The output must fit :attr:`max_memory` (LiaError otherwise, before the network runs).
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL.Image.Image, not {type(image).__name__}")
        return process(self, image, ToPil(), OutputSpec(outscale=outscale))

    def upscale_file(
        self,
        src: str | Path,
        dst: str | Path,
        *,
        fmt: str | None = None,
        quality: int | None = None,
        outscale: float | None = None,
        overwrite: bool = True,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Decode ``src``, upscale, and write ``dst`` atomically (format from ``fmt`` or ``dst``'s suffix).

        ``overwrite=False`` keeps a file that exists at ``dst`` when the write ends
        (:class:`~lia_upscale.errors.OutputExistsError`). Refusals (format limits, the memory
        budget) come before the network runs.
        """
        spec = OutputSpec(fmt=fmt or "same", quality=quality, outscale=outscale, overwrite=overwrite)
        return process(self, Path(src), Path(dst), spec, on_tile=on_tile)
