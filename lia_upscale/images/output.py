"""Write a picture to a file atomically; disk and permission problems become OutputError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..files import atomic_write
from .encoder import encode_bytes, encode_samples, format_for_suffix, stream_writer
from .picture import Picture
from .rows import Layout, PngStream
from .tiff import TiffStream

__all__ = ["save", "save_samples", "write_streamed"]


def _write(dst: Path, write: Callable) -> None:
    try:
        atomic_write(dst, write)
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None


def save(
    picture: Picture, dst: Path, fmt: str | None, quality: int | None, *, dpi_scale: float = 1.0
) -> None:
    """Encode ``picture`` to ``dst`` atomically; disk and permission problems become OutputError.

    ``fmt``: a format name (None: from ``dst``'s suffix); ``dpi_scale`` multiplies the DPI
    (pass the upscale factor: the print size stays).
    """
    fmt = fmt or format_for_suffix(dst)
    data = encode_bytes(picture, fmt, quality=quality, dpi_scale=dpi_scale)  # before any file exists
    _write(dst, lambda fp: fp.write(data))


def save_samples(
    samples: np.ndarray, layout: Layout, picture: Picture, dst: Path, fmt: str, quality: int | None,
    *, dpi_scale: float = 1.0,
) -> None:
    """Encode integer ``samples`` (see :mod:`~lia_upscale.images.rows`) with ``picture``'s
    metadata to ``dst`` atomically."""
    data = encode_samples(samples, layout, fmt, picture, quality=quality, dpi_scale=dpi_scale)
    _write(dst, lambda fp: fp.write(data))


def write_streamed(
    dst: Path, fmt: str, layout: Layout, picture: Picture, size: tuple[int, int],
    fill: Callable[[PngStream | TiffStream], None], *, dpi_scale: float = 1.0,
    alpha: np.ndarray | None = None,
) -> None:
    """Write a PNG or TIFF of ``size`` (H, W) to ``dst`` atomically while ``fill(sink)``
    computes it band by band (see :func:`~lia_upscale.images.encoder.stream_writer`).

    If ``fill`` raises, nothing is left at ``dst`` (an older file there stays)."""

    def write(fp) -> None:
        sink = stream_writer(fp, fmt, layout, picture, size[1], size[0], dpi_scale=dpi_scale, alpha=alpha)
        try:
            fill(sink)
        except BaseException:
            sink.abort()
            raise
        sink.close()

    _write(dst, write)
