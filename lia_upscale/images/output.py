"""Write a picture to a file atomically; disk and permission problems become OutputError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..files import StagedFile, atomic_write
from .encoder import encode_bytes, encode_samples, format_for_suffix, stream_writer
from .picture import Picture
from .rows import Layout, PngStream
from .tiff import TiffStream

__all__ = ["save", "save_samples", "write_streamed", "commit"]


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
) -> StagedFile:
    """Write a PNG or TIFF of ``size`` (H, W) for ``dst`` while ``fill(sink)`` computes it
    band by band (see :func:`~lia_upscale.images.encoder.stream_writer`); returns the
    finished file still under its temporary name: ``commit()`` moves it to ``dst``,
    ``discard()`` removes it. If anything fails, nothing is left behind."""
    try:
        staged = StagedFile(dst)
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None
    try:
        sink = stream_writer(staged.fp, fmt, layout, picture, size[1], size[0], dpi_scale=dpi_scale, alpha=alpha)
        try:
            fill(sink)
        except BaseException:
            sink.abort()
            raise
        sink.close()
    except OSError as exc:
        staged.discard()
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None
    except BaseException:
        staged.discard()
        raise
    return staged


def commit(staged: StagedFile) -> None:
    """Move a :func:`write_streamed` file in place; disk problems become OutputError."""
    try:
        staged.commit()
    except OSError as exc:
        raise OutputError(f"cannot write {staged.path}: {exc.strerror or exc}") from None
