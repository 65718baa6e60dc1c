"""One image through a stream: bytes or a file in, a binary stream or a file out (``-`` on the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from .. import images
from ..api import Upscaler
from .plan import UsageError

__all__ = ["check_stream_output", "output_format", "upscale_stream"]


def check_stream_output(dest: Path, overwrite: bool) -> None:
    """Raise UsageError if ``dest`` may not be written: a folder, or an existing file without ``overwrite``."""
    if dest.is_dir():
        raise UsageError(f"{dest} is a directory")
    if dest.exists() and not overwrite:
        raise UsageError(f"{dest} exists; pass --overwrite to replace it")


def output_format(fmt: str, like: str | Path) -> str:
    """The format name to write for ``--format fmt`` (same|png|jpg|webp|tiff|heic|avif).

    ``same`` keeps ``like``: a format name (``"PNG"``, from a decoded picture) or a path
    whose suffix names one. Raises OutputError for an unknown suffix.
    """
    if fmt != "same":
        return images.format_for_suffix(Path(f"x.{fmt}"))
    if isinstance(like, str) and like in images.FORMATS:
        return like
    return images.format_for_suffix(Path(like))


def upscale_stream(
    upscaler: Upscaler,
    source: bytes | Path,
    dest: BinaryIO | Path,
    *,
    fmt: str = "same",
    quality: int | None = None,
    outscale: float | None = None,
) -> None:
    """Decode ``source``, upscale it and write it to ``dest``: a file (atomically) or an open binary stream.

    ``fmt`` as for :func:`output_format`; to a stream, ``same`` is the input's format, to
    a file it is the file's suffix. Raises LiaError subclasses (ImageError, OutputError).
    """
    picture = upscaler.decode(source)
    if isinstance(dest, Path) and not outscale:
        upscaler.render(picture, dest, output_format(fmt, dest), quality)()
        return
    result = upscaler.upscale_picture(picture, outscale)
    dpi_scale = result.height / picture.height
    if isinstance(dest, Path):
        images.save(result, dest, output_format(fmt, dest), quality, dpi_scale=dpi_scale)
        return
    images.encode(result, dest, output_format(fmt, picture.format), quality=quality, dpi_scale=dpi_scale)
    dest.flush()
