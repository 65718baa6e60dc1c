"""The metadata a decoded image carries over besides ICC and XMP: EXIF and DPI.

EXIF is read from the header where possible, its orientation applied to the pixels
(:func:`orient`) and reset to 1 in what is written back; a TIFF keeps its descriptive tags
and EXIF/GPS IFDs but not its strip layout. A DPI pair is kept only when both are positive.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .picture import EXIF_IFD_TAG, GPS_IFD_TAG, ORIENTATION_TAG, TIFF_DESCRIPTIVE_TAGS

__all__ = ["header_exif", "exif_orientation", "orient", "as_dpi", "exif_from_tiff", "upright_exif_bytes"]


def header_exif(im: Image.Image, data: bytes | None) -> Image.Exif | None:
    """EXIF without decoding pixels where avoidable (Pillow loads a PNG to look past IDAT)."""
    if im.format == "PNG" and "exif" not in im.info:
        if data is None or (b"eXIf" not in data and b"Raw profile type exif" not in data):
            return None
    try:
        exif = im.getexif()
        return exif if len(exif) else None
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the pixels
        return None


def exif_orientation(exif: Image.Exif | None) -> int:
    """The EXIF orientation (1-8) of ``exif``; 1 when there is none or it is out of range."""
    if exif is None:
        return 1
    value = exif.get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W[, C]) pixels as ImageOps.exif_transpose does."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, k=-1)
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = np.rot90(a, k=1)
    return np.ascontiguousarray(a)


def as_dpi(value: object) -> tuple[float, float] | None:
    """(x, y) DPI from a Pillow or TIFF resolution pair; None unless both are positive numbers."""
    try:
        x, y = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def exif_from_tiff(exif: Image.Exif) -> Image.Exif | None:
    """Keep a TIFF's descriptive IFD0 tags and its EXIF/GPS IFDs, not its strip layout."""
    keep = set(TIFF_DESCRIPTIVE_TAGS) | {ORIENTATION_TAG, EXIF_IFD_TAG, GPS_IFD_TAG}
    for tag in list(exif):
        if tag not in keep:
            del exif[tag]
    return exif if len(exif) else None


def upright_exif_bytes(exif: Image.Exif | None) -> bytes | None:
    """The decoded picture's EXIF block, for pixels already turned upright (orientation 1); None
    if it cannot be written."""
    if exif is None:
        return None
    try:
        if ORIENTATION_TAG in exif:
            exif[ORIENTATION_TAG] = 1
        return exif.tobytes()
    except Exception:  # noqa: BLE001 - unwritable EXIF is left out rather than fatal
        return None
