"""HEIF-family files: HEIC through the optional pillow-heif, AVIF through Pillow's own plugin.

pillow-heif (the ``heif`` extra) is imported here alone and only when a HEIF file is met,
so the package and its other formats work without it; AVIF needs no extra package but a
Pillow built with libavif (the Pillow >= 11.3 wheels are). :func:`container_format` tells
both apart by their ``ftyp`` box, whatever the file's name.

libheif applies a HEIF file's own rotation and mirroring (its ``irot``/``imir`` boxes)
while decoding, and the HEIF standard makes those, not the EXIF orientation tag, the
authority; the tag is therefore reset to 1 here and never applied a second time. Pillow's
AVIF plugin does the opposite (it turns ``irot``/``imir`` into an EXIF orientation and
leaves the pixels as stored), so AVIF goes through the decoder's ordinary EXIF path.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

from .picture import ORIENTATION_TAG, Kind

__all__ = [
    "HEIF_EXTRA",
    "HeifPixels",
    "avif_supported",
    "container_format",
    "heif_size",
    "missing_support",
    "read_heif",
    "write_heif",
]

#: How a user gets HEIC support.
HEIF_EXTRA: Final = "pip install 'lia-upscale[heif]'"

# ftyp brands (ISO/IEC 23008-12 and the AV1 image format): image or image-sequence files
_AVIF_BRANDS: Final = {b"avif", b"avis"}
_HEIF_BRANDS: Final = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
                       b"mif1", b"msf1", b"mif2"}
_HEIF_BITS_STORED: Final = 10  # a 16-bit picture is written as 10-bit HEIF, as phones do


@dataclass(frozen=True)
class HeifPixels:
    """A decoded HEIF image: (H, W, C) uint8 or uint16 samples (C 1-4; 10/12-bit values
    scaled to the full 16-bit range), what they are, and the metadata to carry."""

    samples: np.ndarray
    kind: Kind
    icc: bytes | None
    exif: Image.Exif | None
    xmp: bytes | None


def container_format(head: bytes) -> str | None:
    """"HEIF" or "AVIF" for the first bytes (at least 12; 64 see every brand) of an
    ISO-BMFF image file, by its ``ftyp`` major and compatible brands; None for any other data."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def missing_support(fmt: str) -> str | None:
    """Why this installation cannot read or write ``fmt`` ("HEIF" or "AVIF"), or None if it can
    (also None for the formats that need nothing beyond the core dependencies)."""
    if fmt == "HEIF":
        try:
            import pillow_heif  # noqa: F401
        except ImportError:
            return f"HEIC/HEIF needs the optional pillow-heif package: {HEIF_EXTRA}"
    elif fmt == "AVIF" and not avif_supported():
        return "AVIF needs a Pillow built with AVIF support (the Pillow >= 11.3 wheels are): pip install -U pillow"
    return None


def avif_supported() -> bool:
    """Whether Pillow here reads and writes AVIF (its plugin registered, libavif present)."""
    from PIL import features

    with warnings.catch_warnings():  # an older Pillow warns about the unknown feature name
        warnings.simplefilter("ignore")
        try:
            if not features.check("avif"):
                return False
            from PIL import AvifImagePlugin  # noqa: F401 - registers "AVIF" for Image.open
        except (ImportError, ValueError):
            return False
    return True


def _open(data: bytes):  # noqa: ANN202 - pillow_heif.HeifFile; the module is optional
    import pillow_heif

    # raw 10/12-bit values (hdr_to_16bit=False), scaled exactly below; pillow-heif's own
    # 16-bit conversion is a shift, which leaves white at 65472
    return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False, hdr_to_16bit=False)


def heif_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the primary image as displayed (rotation applied), from the header.

    Raises what pillow-heif raises on bad data (ValueError, EOFError, RuntimeError, ...);
    ImportError without pillow-heif (check :func:`missing_support` first).
    """
    return tuple(int(v) for v in _open(data).size)  # type: ignore[return-value]


def read_heif(data: bytes, check_size: Callable[[int, int], None]) -> HeifPixels:
    """Decode the primary image of a HEIF file; ``check_size(width, height)`` runs on the
    header's size before any pixel is decoded (the decompression-bomb guard).

    Raises what pillow-heif raises on bad data, or ValueError for an unexpected layout.
    """
    heif = _open(data)
    check_size(*heif.size)
    bits = int(heif.info.get("bit_depth", 8))
    samples = np.asarray(heif)
    if samples.ndim == 2:
        samples = samples[..., None]
    if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unexpected HEIF pixel layout {samples.shape} ({heif.mode})")
    if bits > 8:
        top = (1 << bits) - 1
        wide = np.minimum(samples.astype(np.uint32), top)
        samples = ((wide * 65535 + top // 2) // top).astype(np.uint16)
    else:
        samples = np.ascontiguousarray(samples, dtype=np.uint8)
    kind: Kind = ("gray", "gray_alpha", "rgb", "rgba")[samples.shape[2] - 1]  # type: ignore[assignment]
    icc = heif.info.get("icc_profile") or None
    return HeifPixels(samples, kind, bytes(icc) if icc else None, _exif(heif.info.get("exif")),
                      heif.info.get("xmp") or None)


def _exif(blob: object) -> Image.Exif | None:
    if not isinstance(blob, (bytes, bytearray)) or not blob:
        return None
    exif = Image.Exif()
    try:
        exif.load(bytes(blob))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the pixels
        return None
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1  # libheif already turned the pixels
    return exif if len(exif) else None


def write_heif(
    samples: np.ndarray, icc: bytes | None, exif: bytes | None, xmp: bytes | None, quality: int
) -> bytes:
    """(H, W, C) uint8 or uint16 samples (C 1-4) as a HEIC file (HEVC; 16-bit as 10-bit,
    4:2:0 chroma) with the given ICC profile, EXIF block (orientation 1) and XMP packet.

    Raises what pillow-heif raises (ValueError, RuntimeError), ImportError without it.
    """
    import pillow_heif

    height, width, channels = samples.shape
    mode = ("L", "LA", "RGB", "RGBA")[channels - 1]
    if samples.dtype == np.uint16:
        top = (1 << _HEIF_BITS_STORED) - 1
        stored = (samples.astype(np.uint32) * top + 32767) // 65535
        # pillow-heif takes 16-bit data and keeps its top bits
        samples = (stored << (16 - _HEIF_BITS_STORED)).astype("<u2")
        mode += ";16"
    params: dict[str, object] = {"quality": quality, "chroma": 420}
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    if xmp:
        params["xmp"] = xmp
    heif = pillow_heif.from_bytes(mode, (width, height), np.ascontiguousarray(samples).tobytes())
    buf = io.BytesIO()
    heif.save(buf, **params)
    return buf.getvalue()
