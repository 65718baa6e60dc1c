"""Write an encoded image to a file atomically; disk and permission problems become OutputError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import OutputError, OutputExistsError
from ..files import NotRegularFileError, StagedFile, atomic_write
from .encoder import stream_writer
from .picture import Picture
from .rows import Layout, PngStream
from .tiff import TiffStream

__all__ = ["write_bytes", "write_streamed", "commit"]


def _output_error(dst: Path, exc: OSError) -> OutputError:
    """The one-line error for a write that failed with ``exc``."""
    if isinstance(exc, NotRegularFileError):
        return OutputError(f"{dst}: {exc.strerror}")
    if isinstance(exc, FileExistsError):
        return OutputExistsError(f"{dst}: exists (it appeared while the image was made); kept")
    return OutputError(f"cannot write {dst}: {exc.strerror or exc}")


def write_bytes(dst: Path, data, *, overwrite: bool | None = None) -> Path:
    """Write encoded ``data`` to ``dst`` atomically and return ``dst``. ``overwrite``: see
    :meth:`~lia_upscale.files.StagedFile.commit`; an existing path that is not a regular file,
    or (``overwrite`` False) a file that exists by the time of the move, is an OutputError
    (:class:`~lia_upscale.errors.OutputExistsError` for the latter) and stays as it is."""
    try:
        atomic_write(dst, lambda fp: fp.write(data), overwrite=overwrite)
    except OSError as exc:
        raise _output_error(dst, exc) from None
    return dst


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


def commit(staged: StagedFile, *, overwrite: bool | None = None) -> Path:
    """Move a :func:`write_streamed` file in place and return its path (``overwrite`` as
    :func:`write_bytes`); disk problems, a path that is not a regular file and a file that
    appeared meanwhile (unless ``overwrite``) become OutputError."""
    try:
        staged.commit(overwrite=overwrite)
    except OSError as exc:
        raise _output_error(staged.path, exc) from None
    return staged.path
