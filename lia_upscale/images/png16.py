"""16-bit colour PNG (RGB, RGBA, gray+alpha), which Pillow truncates to 8 bits, read exactly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from ..errors import ImageError
from .picture import PNG_SIGNATURE, Kind

__all__ = ["read_png16"]


def read_png16(name: str, data: bytes, im: Image.Image) -> tuple[np.ndarray, Kind, object]:
    """16-bit colour PNG samples, exact: Pillow keeps only the high byte of each sample.

    Pillow's "zip" decoder (public through ``Image.frombytes``) undoes zlib and the PNG
    row filters; run once with a big-endian and once with a little-endian 16-bit raw
    mode it hands back the high and the low byte of every sample.
    """
    color_type, interlace = data[25], data[28]
    width, height = im.size
    idat = _png_idat(name, data)
    if color_type == 4:
        # gray+alpha has 4 bytes a pixel, like 8-bit RGBA: read the bytes as they are
        raw = np.asarray(Image.frombytes("RGBA", (width, height), idat, "zip", "RGBA", interlace))
        pairs = raw.reshape(height, width, 2, 2).astype(np.uint16)
        return (pairs[..., 0] << 8) | pairs[..., 1], "gray_alpha", None
    mode, kind = ("RGB", "rgb") if color_type == 2 else ("RGBA", "rgba")
    high = np.asarray(Image.frombytes(mode, (width, height), idat, "zip", f"{mode};16B", interlace))
    low = np.asarray(Image.frombytes(mode, (width, height), idat, "zip", f"{mode};16L", interlace))
    samples = (high.astype(np.uint16) << 8) | low
    key = im.info.get("transparency") if color_type == 2 else None
    return samples, kind, key


def _png_idat(name: str, data: bytes) -> bytes:
    """The concatenated IDAT payload, after checking every chunk's length and CRC."""
    pos, parts = len(PNG_SIGNATURE), []
    while True:
        if pos + 12 > len(data):
            raise ImageError(f"{name}: truncated PNG (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ImageError(f"{name}: truncated PNG ({ctype.decode('latin-1')} chunk cut short)")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(ctype + body) != crc:
            raise ImageError(f"{name}: corrupt PNG ({ctype.decode('latin-1')} chunk CRC mismatch)")
        if ctype == b"IDAT":
            parts.append(body)
        elif ctype == b"IEND":
            return b"".join(parts)
        pos = end + 4
