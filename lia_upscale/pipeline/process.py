"""One image, the only way: decode -> plan -> network -> finish -> write, for every door."""

from __future__ import annotations

import os

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import images
from ..errors import OutputError
from ..images.encoder import encode_bytes, encode_samples
from ..images.picture import one_line, source_name
from . import network as net
from .plan import PIL, ImagePlan, plan_image
from .sources import read
from .spec import OutputSpec

__all__ = ["Finish", "ToPil", "start", "process"]

OnTile = Callable[[int, int], None] | None


class ToPil:
    """The destination of an in-memory image: :func:`process` returns the PIL image."""


class Finish:
    """The write left after :func:`start`: call it to write (it returns the result: the
    path, the PIL image, or None for a stream), or :meth:`discard` it."""

    def __init__(self, write: Callable[[], Any], discard: Callable[[], None] | None = None) -> None:
        self._write, self._discard = write, discard

    def __call__(self) -> Any:
        """Write the output (encode and write it, or move the streamed file in place)."""
        return self._write()

    def discard(self) -> None:
        """Drop the write: nothing reaches the destination."""
        if self._discard is not None:
            self._discard()


def _write_stream(fp: BinaryIO, data) -> None:
    try:
        fp.write(data)
        fp.flush()
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write {source_name(fp)}: {one_line(exc)}") from exc


@dataclass(frozen=True)
class _File:
    """A file destination and whether an existing file there may be replaced."""

    path: Path
    overwrite: bool


def _emit(destination, data) -> Any:
    """Hand encoded bytes to a file (atomically) or a stream."""
    if isinstance(destination, _File):
        return images.write_bytes(destination.path, data, overwrite=destination.overwrite)
    _write_stream(destination, data)
    return None


def _whole_float(upscaler, picture: images.Picture, plan: ImagePlan, spec: OutputSpec, destination,
                 on_tile: OnTile) -> Finish:
    """``outscale``: the whole float image first (and TTA's ensemble), then resample and write."""
    output = net.run_network(upscaler.engine, upscaler.tta, picture, on_tile, plan.tiling)

    def write() -> Any:
        result = net.finish_picture(picture, output, plan.size)
        if plan.fmt == PIL:
            samples = images.SampleStore(result.height, result.width, plan.layout)
            samples.put(0, 0, result.rgb)
            if plan.layout.alpha:
                images.AlphaPlane(samples.samples[..., -1], plan.layout.bits).put(
                    0, 0, np.repeat(result.alpha[..., None], 3, 2))
            return images.to_pil(samples.samples, plan.layout, picture, dpi_scale=result.height / picture.height)
        data = encode_bytes(result, plan.fmt, quality=spec.quality, dpi_scale=result.height / picture.height)
        return _emit(destination, data)

    return Finish(write)


def _streamed(upscaler, picture: images.Picture, plan: ImagePlan, spec: OutputSpec, dst: Path,
              on_tile: OnTile) -> Finish:
    """PNG and TIFF to a file: written band by band while the network runs."""
    engine, use_tta, s = upscaler.engine, upscaler.tta, upscaler.engine.scale
    alpha = None
    if plan.layout.alpha:
        alpha = np.empty(plan.size, dtype=plan.layout.dtype)
        net.alpha_into(engine, use_tta, picture, alpha, plan.layout.bits, on_tile, plan.tiling)
    staged = images.write_streamed(dst, plan.fmt, plan.layout, picture, plan.size,
                                   net.streamed_fill(engine, use_tta, picture, on_tile, plan.tiling),
                                   dpi_scale=s, alpha=alpha)
    return Finish(lambda: images.commit(staged, overwrite=spec.overwrite), staged.discard)


def _samples(upscaler, picture: images.Picture, plan: ImagePlan, spec: OutputSpec, destination,
             on_tile: OnTile) -> Finish:
    """Integer samples quantised band by band, then encoded whole (or made a PIL image)."""
    s = upscaler.engine.scale
    store = net.into_samples(upscaler.engine, upscaler.tta, picture, plan.layout, plan.fmt, on_tile, plan.tiling)
    if plan.fmt == PIL:
        return Finish(lambda: images.to_pil(store.samples, plan.layout, picture, dpi_scale=s))
    return Finish(lambda: _emit(destination, encode_samples(store.samples, plan.layout, plan.fmt, picture,
                                                            quality=spec.quality, dpi_scale=s)))


def _destination(destination, spec: OutputSpec):
    """A :class:`_File` for a path; the stream or :class:`ToPil` as they are."""
    if isinstance(destination, (str, Path)):
        return _File(Path(destination), spec.overwrite)
    if isinstance(destination, ToPil) or hasattr(destination, "write"):
        return destination
    raise TypeError(f"cannot write an image to {type(destination).__name__}")


def start(upscaler, picture: images.Picture, destination, spec: OutputSpec, *, plan: ImagePlan | None = None,
          on_tile: OnTile = None, budget: int | None = None) -> Finish:
    """Plan ``picture`` for ``destination`` (a path, a binary stream or :class:`ToPil`) under
    ``spec``, refuse it before the network runs if it cannot be made, run the network, and
    return the write that is left (a batch calls it in another thread).

    ``plan``: one made already (:func:`~.plan.plan_image`, e.g. for a batch's memory count).
    A streamed file (PNG, TIFF) is written under a temporary name while the network runs;
    the returned call moves it in place. Nothing reaches the destination on failure.
    """
    dest = _destination(destination, spec)
    named = dest.path if isinstance(dest, _File) else None
    if plan is None:
        plan = plan_image(upscaler, picture, spec, named=named, to_pil=isinstance(dest, ToPil),
                          streamable=named is not None, budget=budget)
    plan.check()
    if plan.whole_float:
        return _whole_float(upscaler, picture, plan, spec, dest, on_tile)
    if plan.streamed:
        return _streamed(upscaler, picture, plan, spec, named, on_tile)
    return _samples(upscaler, picture, plan, spec, dest, on_tile)


def _refuse_same_file(src: Path, dst: Path) -> None:
    try:
        same = os.path.samefile(src, dst)
    except OSError:  # one of them does not exist (yet): compare where they point
        same = src.resolve() == dst.resolve()
    if same:
        raise OutputError(f"{dst}: the output would overwrite its input {src}; inputs are never replaced")


def process(upscaler, source, destination, spec: OutputSpec, *, on_tile: OnTile = None,
            budget: int | None = None) -> Any:
    """Upscale one image from ``source`` (see :func:`~.sources.read`) to ``destination`` (see
    :func:`start`) under ``spec``; returns the path written, the PIL image (:class:`ToPil`),
    or None (a stream). Raises LiaError subclasses with a one-line message (OutputExistsError when
    the file appeared meanwhile and ``spec.overwrite`` is false). A destination that is
    the source file itself (by path, link or inode) is refused before anything is read."""
    if isinstance(source, (str, os.PathLike)) and isinstance(destination, (str, os.PathLike)):
        _refuse_same_file(Path(source), Path(destination))
    picture = read(upscaler, source, budget=budget)
    return start(upscaler, picture, destination, spec, on_tile=on_tile, budget=budget)()
