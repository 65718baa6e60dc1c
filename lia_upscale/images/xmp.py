"""XMP packets: found in a PNG, carried to the output with its size and orientation fields updated.

The packet travels as bytes, as it was stored; only the few fields that describe the pixels
(``tiff:ImageWidth``, ``tiff:ImageLength``, ``exif:PixelXDimension``,
``exif:PixelYDimension``, ``tiff:Orientation``) are rewritten, where present and written in
their usual ``prefix:Name="123"`` or ``<prefix:Name>123</prefix:Name>`` form. Everything
else (ratings, captions, edit history, padding) stays byte for byte.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Final

__all__ = ["PNG_XMP_KEYWORD", "as_xmp", "png_xmp", "png_xmp_chunk", "xmp_for_output"]

#: The iTXt keyword under which PNG files hold XMP.
PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"

_FIELDS: Final = {
    b"tiff:ImageWidth": "width",
    b"exif:PixelXDimension": "width",
    b"tiff:ImageLength": "height",
    b"exif:PixelYDimension": "height",
    b"tiff:Orientation": "orientation",
}
_PATTERN: Final = re.compile(
    rb'(?P<aname>' + b"|".join(_FIELDS) + rb')(?P<eq>\s*=\s*)(?P<q>["\'])\s*\d+\s*(?P=q)'
    rb"|<(?P<ename>" + b"|".join(_FIELDS) + rb")>\s*\d+\s*</(?P=ename)>"
)


def as_xmp(value: object) -> bytes | None:
    """An XMP packet as a decoder hands it over (bytes, str or a TIFF tag's ints) -> bytes or None."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, tuple) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        value = bytes(value)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return None
    return bytes(value) or None


def xmp_for_output(xmp: bytes | None, width: int, height: int) -> bytes | None:
    """``xmp`` with its pixel size set to ``width`` x ``height`` and its orientation to 1.

    Pixels are written upright (the EXIF orientation was applied on decode), so a
    ``tiff:Orientation`` left at 6 would make a viewer that reads XMP turn them again.
    """
    if not xmp:
        return None
    values = {"width": width, "height": height, "orientation": 1}

    def repl(m: re.Match[bytes]) -> bytes:
        if m["aname"]:
            value = str(values[_FIELDS[m["aname"]]]).encode()
            return m["aname"] + m["eq"] + m["q"] + value + m["q"]
        value = str(values[_FIELDS[m["ename"]]]).encode()
        return b"<" + m["ename"] + b">" + value + b"</" + m["ename"] + b">"

    return _PATTERN.sub(repl, xmp)


def png_xmp(data: bytes) -> bytes | None:
    """The XMP packet of a PNG file's ``iTXt XML:com.adobe.xmp`` chunk (before or after the
    pixel data), or None; a malformed chunk list ends the search rather than raising."""
    pos = 8
    while pos + 12 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"IEND" or len(body) < length:
            return None
        if ctype == b"iTXt" and body.startswith(PNG_XMP_KEYWORD + b"\0") and len(body) > 20:
            flag, method = body[18], body[19]
            rest = body[20:].split(b"\0", 2)  # language tag, translated keyword, text
            if len(rest) != 3:
                return None
            text = rest[2]
            if flag == 1:
                if method != 0:
                    return None
                try:
                    text = zlib.decompressobj().decompress(text, 1 << 26)
                except zlib.error:
                    return None
            return text or None
        pos += 12 + length
    return None


def png_xmp_chunk(xmp: bytes) -> bytes:
    """The body of an uncompressed ``iTXt`` chunk that holds ``xmp`` (as Adobe writes it)."""
    return PNG_XMP_KEYWORD + b"\0\0\0\0\0" + xmp
