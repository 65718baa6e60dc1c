"""16-bit TIFF, which Pillow truncates (and cannot open as gray+alpha), read through tifffile."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

from ..errors import ImageError
from .picture import Kind

__all__ = ["tiff_ifd0", "tiff_is_16bit_color", "tiff_resolution", "read_tiff16", "tiff_samples_text"]


def tiff_ifd0(data: bytes) -> Image.Exif | None:
    """A TIFF's first IFD parsed by Pillow's TIFF tag reader (no pixels), or None."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    tags = Image.Exif()
    tags.load(data)
    return tags


def tiff_is_16bit_color(tags: Image.Exif) -> bool:
    """Whether the IFD describes 16-bit samples of more than one channel (Pillow truncates those)."""
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) == 16 and int(tags.get(277, 1)) > 1


def tiff_resolution(tags: Image.Exif) -> tuple[float, float] | None:
    """(x, y) pixels per inch from the resolution tags, unchecked, or None."""
    unit = tags.get(296, 2)  # ResolutionUnit: 1 none, 2 inch (the default), 3 cm
    if unit not in (2, 3) or 282 not in tags or 283 not in tags:
        return None
    factor = 2.54 if unit == 3 else 1.0
    try:
        return float(tags[282]) * factor, float(tags[283]) * factor
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def read_tiff16(
    name: str, data: bytes, check_pixels: Callable[[str, int, int], None]
) -> tuple[np.ndarray, Kind, object]:
    """First page of a 16-bit multi-sample TIFF through tifffile: (H, W, C) uint16, its
    kind, no colour key. ``check_pixels(name, width, height)`` runs before any pixel is read."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if not isinstance(page, tifffile.TiffPage):
            raise ImageError(f"{name}: unsupported TIFF layout")
        check_pixels(name, int(page.imagewidth), int(page.imagelength))
        if int(page.bitspersample) != 16 or np.dtype(page.dtype) != np.uint16:
            raise ImageError(f"{name}: unsupported TIFF samples ({page.dtype}, {page.bitspersample} bits)")
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > len(data) or 0 in page.databytecounts:
            raise ImageError(f"{name}: truncated TIFF (image data runs past the end of the file)")
        arr = page.asarray()
        axes = page.axes
        photometric = int(page.photometric)
        extras = tuple(int(e) for e in page.extrasamples)
    if axes.startswith("S"):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3:
        raise ImageError(f"{name}: unsupported TIFF layout (axes {axes})")
    arr = np.ascontiguousarray(arr, dtype=np.uint16)
    if photometric == 2 and arr.shape[2] >= 3:
        color, kind = arr[..., :3], "rgb"
    elif photometric in (0, 1):
        color, kind = arr[..., :1], "gray"
        if photometric == 0:
            color = 65535 - color
    else:
        raise ImageError(f"{name}: unsupported 16-bit TIFF colour space (photometric {photometric})")
    if not extras:
        return color, kind, None
    alpha = arr[..., color.shape[2] : color.shape[2] + 1]
    if extras[0] == 1:  # associated (premultiplied) alpha: un-premultiply
        a = alpha.astype(np.float64)
        color = np.where(a > 0, np.rint(color * 65535.0 / np.maximum(a, 1)), 0)
        color = np.clip(color, 0, 65535).astype(np.uint16)
    kind = "rgba" if kind == "rgb" else "gray_alpha"
    return np.concatenate([color, alpha], axis=2), kind, None


def tiff_samples_text(tags: Mapping[int, object]) -> str:
    """Why a TIFF Pillow cannot open is not read: its samples, named from the tags."""
    def first(tag: int, default: int) -> object:
        value = tags.get(tag, default)
        return value[0] if isinstance(value, tuple) and value else value

    count, bits, kind = first(277, 1), first(258, 1), first(339, 1)
    names = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}
    return (f"unsupported TIFF samples ({count} x {bits}-bit {names.get(kind, 'unknown-format')}); "  # type: ignore[call-overload]
            "lia-upscale reads 8- and 16-bit unsigned TIFF")
