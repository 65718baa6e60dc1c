"""Write a picture to a file atomically; disk and permission problems become OutputError."""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputError
from ..files import atomic_write
from .encoder import encode_bytes, format_for_suffix
from .picture import Picture

__all__ = ["save"]


def save(
    picture: Picture, dst: Path, fmt: str | None, quality: int | None, *, dpi_scale: float = 1.0
) -> None:
    """Encode ``picture`` to ``dst`` atomically; disk and permission problems become OutputError.

    ``fmt``: a format name (None: from ``dst``'s suffix); ``dpi_scale`` multiplies the DPI
    (pass the upscale factor: the print size stays).
    """
    fmt = fmt or format_for_suffix(dst)
    data = encode_bytes(picture, fmt, quality=quality, dpi_scale=dpi_scale)  # before any file exists
    try:
        atomic_write(dst, lambda fp: fp.write(data))
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None
