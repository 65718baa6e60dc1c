"""The plan of one image, made before the network runs: format, layout, sizes, tile, memory,
and the refusal (with its one-line reason) when the output cannot be made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import images
from ..engine.budget import Tiling
from ..errors import LiaError, byte_count
from .spec import OutputSpec

__all__ = ["ImagePlan", "plan_image", "output_size"]

#: what a destination makes of the samples: a file or stream of a format, or a PIL image
PIL = "PIL"


def output_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """Exact output size for ``--outscale``: each edge times ``factor``, rounded half up, at least 1."""
    return max(1, math.floor(height * factor + 0.5)), max(1, math.floor(width * factor + 0.5))


@dataclass(frozen=True)
class ImagePlan:
    """How one image is made, decided before the network runs.

    ``fmt``: the format name written (or ``"PIL"`` for an in-memory image). ``layout``: the
    output's samples. ``size``: the output (H, W); ``model_size`` the network's (H, W) at the
    model's scale. ``streamed``: written band by band while the network runs (PNG, TIFF to a
    file). ``whole_float``: the whole float image is made first (``outscale``, TTA), then
    finished. ``tile``: the tile edge (0: the whole image) and ``batch_pixels`` the most
    source pixels one network call takes (None: the engine's); ``shrunk``: they are smaller
    than the engine's own for this image, to fit the budget. ``need``: bytes while it runs; ``held``: bytes it holds
    after the network until it is written. ``refusal``: None, or why it cannot be made.
    """

    fmt: str
    layout: images.Layout
    size: tuple[int, int]
    model_size: tuple[int, int]
    streamed: bool
    whole_float: bool
    tile: int
    batch_pixels: int | None
    shrunk: bool
    need: int
    held: int
    budget: int
    refusal: LiaError | None = None

    @property
    def tiling(self) -> Tiling:
        """(tile, batch pixels) for the engine."""
        return Tiling(self.tile, self.batch_pixels)

    def check(self) -> ImagePlan:
        """Raise the refusal, if any; else return the plan."""
        if self.refusal is not None:
            raise self.refusal
        return self


def plan_image(upscaler, picture: images.Picture, spec: OutputSpec, *, named: Path | None = None,
               to_pil: bool = False, streamable: bool = False, budget: int | None = None) -> ImagePlan:
    """The plan for ``picture`` under ``spec`` on ``upscaler`` (its engine, ``tta`` and
    ``max_memory``), within ``budget`` bytes (default: ``upscaler.max_memory``).

    ``named``: the destination file (its suffix is the format for ``same``), ``to_pil``: an
    in-memory PIL image instead of a file, ``streamable``: the destination can take a
    band-by-band PNG/TIFF. The output size is checked against the format's limits and the
    memory against the budget here; a plan that cannot be made carries its ``refusal``.
    """
    engine, memory = upscaler.engine, upscaler.engine.memory
    budget = upscaler.max_memory if budget is None else int(budget)
    s = engine.scale
    h, w = picture.height, picture.width
    model_size = (h * s, w * s)
    size = output_size(h, w, spec.outscale) if spec.outscale else model_size
    if to_pil:
        fmt, layout = PIL, images.pil_layout(picture)
    else:
        fmt = spec.format_for(named, picture.format)
        layout = images.output_layout(picture, fmt)
    streamed = streamable and not spec.outscale and fmt in images.STREAMED_FORMATS
    whole_float = bool(spec.outscale)
    base = dict(fmt=fmt, layout=layout, size=size, model_size=model_size, streamed=streamed,
                whole_float=whole_float, budget=budget)
    try:
        if fmt != PIL:
            images.check_output(fmt, size[1], size[0], quality=spec.quality, dpi_scale=size[0] / h)
    except LiaError as exc:
        return ImagePlan(**base, tile=0, batch_pixels=None, shrunk=False, need=0, held=0, refusal=exc)
    encoded = 0.0 if streamed else images.held_bytes(layout, fmt)  # a pixel's bytes until written
    if whole_float:
        kept, after = memory.whole_float_bytes((h, w), size, alpha=picture.alpha is not None,
                                               tta=upscaler.tta, held=encoded)
        held = after
    else:
        kept = encoded + (24 if upscaler.tta else 0)  # TTA: accumulator and one pass
        after, held = 0, int(encoded * size[0] * size[1])
    found = memory.tiling_for((h, w), kept, budget, after)
    if found is None:
        need = memory.least_bytes((h, w), kept, after)
        return ImagePlan(**base, tile=0, batch_pixels=None, shrunk=False, need=need, held=held,
                         refusal=over_budget((h, w), size, s, need, budget))
    need = memory.working_bytes((h, w), kept, tile=found.tile, batch_pixels=found.batch_pixels) + after
    shrunk = found != memory.tiling_for((h, w), kept, 1 << 62)
    # unshrunk, the engine's own tile for this size (0 runs it whole, as one tile)
    tile = found.tile if shrunk else engine.tile_for_size((h, w))
    return ImagePlan(**base, tile=tile, batch_pixels=found.batch_pixels, shrunk=shrunk, need=need, held=held)


def over_budget(size: tuple[int, int], out: tuple[int, int], scale: int, need: int, budget: int) -> LiaError:
    """The refusal of an image that no tile lets fit ``budget``."""
    h, w = size
    return LiaError(
        f"{w}x{h} at x{scale} ({out[1]}x{out[0]}) needs about {byte_count(need)} at the least "
        f"(any tile size), over the memory budget of {byte_count(budget)} (--max-memory)"
    )
