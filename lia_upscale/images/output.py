"""Write a picture to a file atomically; disk and permission problems become OutputError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import OutputError, OutputExistsError
from ..files import NotRegularFileError, StagedFile, atomic_write
from .encoder import encode_bytes, encode_samples, format_for_suffix, stream_writer
from .picture import Picture
from .rows import Layout, PngStream
from .tiff import TiffStream

__all__ = ["save", "save_samples", "write_streamed", "commit"]


def _output_error(dst: Path, exc: OSError) -> OutputError:
    """The one-line error for a write that failed with ``exc``."""
    if isinstance(exc, NotRegularFileError):
        return OutputError(f"{dst}: {exc.strerror}")
    if isinstance(exc, FileExistsError):
        return OutputExistsError(f"{dst}: exists (it appeared while this file was being made); not replaced "
                                 "without --overwrite")
    return OutputError(f"cannot write {dst}: {exc.strerror or exc}")


def _write(dst: Path, write: Callable, overwrite: bool | None) -> None:
    try:
        atomic_write(dst, write, overwrite=overwrite)
    except OSError as exc:
        raise _output_error(dst, exc) from None


def save(
    picture: Picture, dst: Path, fmt: str | None, quality: int | None, *, dpi_scale: float = 1.0,
    overwrite: bool | None = None,
) -> None:
    """Encode ``picture`` to ``dst`` atomically; disk and permission problems become OutputError.

    ``fmt``: a format name (None: from ``dst``'s suffix); ``dpi_scale`` multiplies the DPI
    (pass the upscale factor: the print size stays). ``overwrite``: see
    :meth:`~lia_upscale.files.StagedFile.commit`; an existing path that is not a regular
    file, or (``overwrite`` False) any existing file, is an OutputError and stays as it is.
    """
    fmt = fmt or format_for_suffix(dst)
    data = encode_bytes(picture, fmt, quality=quality, dpi_scale=dpi_scale)  # before any file exists
    _write(dst, lambda fp: fp.write(data), overwrite)


def save_samples(
    samples: np.ndarray, layout: Layout, picture: Picture, dst: Path, fmt: str, quality: int | None,
    *, dpi_scale: float = 1.0, overwrite: bool | None = None,
) -> None:
    """Encode integer ``samples`` (see :mod:`~lia_upscale.images.rows`) with ``picture``'s
    metadata to ``dst`` atomically (``overwrite`` as :func:`save`)."""
    data = encode_samples(samples, layout, fmt, picture, quality=quality, dpi_scale=dpi_scale)
    _write(dst, lambda fp: fp.write(data), overwrite)


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
        raise _output_error(dst, exc) from None
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
        raise _output_error(dst, exc) from None
    except BaseException:
        staged.discard()
        raise
    return staged


def commit(staged: StagedFile, *, overwrite: bool | None = None) -> None:
    """Move a :func:`write_streamed` file in place (``overwrite`` as :func:`save`); disk
    problems, a path that is not a regular file and a file that appeared meanwhile (unless
    ``overwrite``) become OutputError."""
    try:
        staged.commit(overwrite=overwrite)
    except OSError as exc:
        raise _output_error(staged.path, exc) from None
