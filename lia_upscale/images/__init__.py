"""Image files in and out, torch-free: decode, encode, 16-bit PNG and TIFF, metadata, safe writes.

``decode`` turns PNG, JPEG, WEBP, TIFF or BMP data into a :class:`Picture` (float32 RGB in
[0, 1], EXIF orientation applied, alpha apart, ICC/EXIF/DPI kept); ``encode`` writes one
back in the matching mode and depth; ``save`` writes a file atomically via
:func:`lia_upscale.files.atomic_write`.
"""

from __future__ import annotations

from .decoder import MAX_PIXELS, decode, probe
from .encoder import encode, format_for_suffix
from .picture import FORMAT_SUFFIXES, FORMATS, JPEG_QUALITY, KINDS, WEBP_QUALITY, Kind, Picture
from .output import save

__all__ = [
    "FORMATS",
    "FORMAT_SUFFIXES",
    "JPEG_QUALITY",
    "KINDS",
    "MAX_PIXELS",
    "WEBP_QUALITY",
    "Kind",
    "Picture",
    "decode",
    "encode",
    "format_for_suffix",
    "probe",
    "save",
]
