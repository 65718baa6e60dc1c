"""Image files in and out, torch-free: decode, encode, 16-bit PNG and TIFF, HEIC/AVIF, metadata, safe writes.

``decode`` turns PNG, JPEG, WEBP, TIFF, BMP, HEIF (HEIC) or AVIF data into a
:class:`Picture` (float32 RGB in [0, 1], EXIF orientation applied, alpha apart,
ICC/EXIF/XMP/DPI kept); ``encode`` writes one back in the matching mode and depth; ``save``
writes a file atomically via :func:`lia_upscale.files.atomic_write`. HEIF needs the
optional ``heif`` extra (pillow-heif), AVIF a Pillow with AVIF: :func:`missing_support`.
"""

from __future__ import annotations

from .decoder import MAX_PIXELS, decode, from_pil, header_size, max_pixels, probe, set_max_pixels
from .encoder import (
    STREAMED_FORMATS,
    check_output,
    encode,
    format_for_suffix,
    format_name,
    output_layout,
    held_bytes,
    sample_channels,
    pil_layout,
    to_pil,
)
from .heif import missing_support
from .picture import (
    AVIF_QUALITY,
    FORMAT_SUFFIXES,
    FORMATS,
    HEIF_QUALITY,
    JPEG_QUALITY,
    KINDS,
    WEBP_QUALITY,
    Kind,
    Picture,
)
from .output import commit, write_bytes, write_streamed
from .rows import AlphaPlane, Layout, SampleStore, quantize_value

__all__ = [
    "AVIF_QUALITY",
    "FORMATS",
    "FORMAT_SUFFIXES",
    "HEIF_QUALITY",
    "JPEG_QUALITY",
    "KINDS",
    "MAX_PIXELS",
    "WEBP_QUALITY",
    "Kind",
    "Picture",
    "decode",
    "encode",
    "format_for_suffix",
    "missing_support",
    "header_size",
    "probe",
    "write_bytes",
    "from_pil",
    "pil_layout",
    "to_pil",
    "max_pixels",
    "set_max_pixels",
    "write_streamed",
    "commit",
    "STREAMED_FORMATS",
    "check_output",
    "format_name",
    "output_layout",
    "held_bytes",
    "sample_channels",
    "Layout",
    "AlphaPlane",
    "quantize_value",
    "SampleStore",
]
