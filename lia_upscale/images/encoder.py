"""Encode a :class:`Picture` to PNG, JPEG, WEBP, TIFF, BMP, HEIF or AVIF with its mode, depth and metadata."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
from PIL import Image

from lia_upscale.errors import OutputError

from .heif import missing_support, write_heif
from .rows import Layout, PngStream, luma, quantize, write_png
from .tiff import TiffStream, write_tiff
from .picture import (
    AVIF_QUALITY,
    EXIF_IFD_TAG,
    FORMAT_SUFFIXES,
    FORMATS,
    GPS_IFD_TAG,
    HEIF_QUALITY,
    JPEG_QUALITY,
    ORIENTATION_TAG,
    PIXEL_X_TAG,
    PIXEL_Y_TAG,
    PNG_SIGNATURE,
    TIFF_DESCRIPTIVE_TAGS,
    WEBP_QUALITY,
    Picture,
    icc_space,
    one_line,
    source_name,
)
from .xmp import xmp_for_output

__all__ = [
    "encode",
    "encode_bytes",
    "encode_samples",
    "format_for_suffix",
    "format_name",
    "check_output",
    "output_layout",
    "stream_writer",
    "pil_layout",
    "to_pil",
    "STREAMED_FORMATS",
]

_JPEG_MAX_SIDE: Final = 65_535
_WEBP_MAX_SIDE: Final = 16_383
_PNG_MAX_SIDE: Final = 2**31 - 1
_BMP_MAX_BYTES: Final = 2**32 - 1
_JPEG_MAX_EXIF: Final = 65_533
_JPEG_MAX_XMP: Final = 65_504  # one APP1 segment less its length and namespace header


def format_for_suffix(path: str | Path) -> str:
    """Format name (see :data:`FORMATS`) for a file name's suffix, case-insensitive.

    Raises:
        OutputError: the suffix is not in :data:`FORMAT_SUFFIXES`.
    """
    suffix = Path(path).suffix.lower()
    try:
        return FORMAT_SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMAT_SUFFIXES))
        raise OutputError(f"{path}: unknown image suffix {suffix!r} (known: {known})") from None


def encode(
    picture: Picture,
    dest: BinaryIO,
    fmt: str,
    *,
    quality: int | None = None,
    dpi_scale: float = 1.0,
) -> None:
    """Write ``picture`` to the binary stream ``dest`` as ``fmt``: :func:`encode_bytes`, then one write.

    Raises:
        OutputError: as :func:`encode_bytes`, or the stream cannot be written (full disk,
            closed file, ...).
    """
    data = encode_bytes(picture, fmt, quality=quality, dpi_scale=dpi_scale)
    try:
        dest.write(data)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write {source_name(dest)}: {one_line(exc)}") from exc


def encode_bytes(picture: Picture, fmt: str, *, quality: int | None = None, dpi_scale: float = 1.0) -> memoryview:
    """``picture`` as the bytes of a ``fmt`` file (PNG, JPEG, WEBP, TIFF, BMP, HEIF, AVIF), built in memory.

    Samples are clipped to [0, 1] (NaN -> 0) and rounded to 8 or 16 bits. The mode
    follows the picture: gray kinds are written gray, others RGB; alpha is kept by PNG,
    WEBP, TIFF, HEIF and AVIF and dropped by JPEG and BMP (no compositing: the colour is
    written as it is; Pillow's 32-bit BMP has no alpha mask, so readers would ignore it
    anyway). PNG and TIFF keep 16 bits for 16-bit pictures, HEIF keeps 10 of them; JPEG,
    WEBP, BMP and AVIF (Pillow's encoder) are 8-bit. WEBP has no gray mode, so a gray
    picture goes to WEBP as RGB(A).

    ICC profile: PNG, JPEG, WEBP, TIFF, HEIF, AVIF (left out where its colour space no
    longer fits the written mode). EXIF, orientation 1 and pixel dimensions updated: PNG,
    JPEG (left out if over JPEG's 64 KiB segment), WEBP, TIFF (descriptive IFD0 tags, EXIF
    and GPS IFDs), HEIF, AVIF. XMP, size and orientation fields updated
    (:func:`~lia_upscale.images.xmp.xmp_for_output`): PNG (iTXt), JPEG (APP1, left out
    if over one segment), WEBP, TIFF (tag 700), HEIF, AVIF. DPI, multiplied by
    ``dpi_scale`` (pass the upscale factor to keep the print size): PNG, JPEG, TIFF, BMP.
    PNG and TIFF (deflate) are lossless and ignore ``quality``; JPEG (4:4:4 chroma), WEBP,
    HEIF and AVIF (4:2:0) default to :data:`JPEG_QUALITY`, :data:`WEBP_QUALITY`,
    :data:`HEIF_QUALITY` and :data:`AVIF_QUALITY`.

    Raises:
        OutputError: unknown format, quality outside 1..100, a size the format cannot hold,
            or HEIF/AVIF without the support this installation lacks (the message says what
            to install).
    """
    fmt = _format_name(fmt)
    width, height = picture.size
    check_output(fmt, width, height, quality=quality, dpi_scale=dpi_scale)
    layout = output_layout(picture, fmt)
    return encode_samples(_samples(picture, layout, fmt), layout, fmt, picture, quality=quality, dpi_scale=dpi_scale)


#: formats written band by band as rows finish (:func:`stream_writer`)
STREAMED_FORMATS: Final = ("PNG", "TIFF")


def format_name(fmt: str) -> str:
    """The canonical name (one of :data:`FORMATS`) of a format name or suffix; OutputError if unknown."""
    return _format_name(fmt)


def check_output(fmt: str, width: int, height: int, *, quality: int | None = None, dpi_scale: float = 1.0) -> None:
    """Raise OutputError, before anything is computed, when ``fmt`` cannot hold a
    ``width`` x ``height`` image or ``quality``/``dpi_scale`` are invalid."""
    fmt = _format_name(fmt)
    if why := missing_support(fmt):
        raise OutputError(f"cannot write {fmt}: {why}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise OutputError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if not dpi_scale > 0:
        raise OutputError(f"dpi_scale must be positive, got {dpi_scale!r}")
    limit = {"JPEG": _JPEG_MAX_SIDE, "WEBP": _WEBP_MAX_SIDE}.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise OutputError(f"{fmt} cannot hold {width}x{height} (at most {limit} pixels a side)")
    if fmt == "PNG" and max(width, height) > _PNG_MAX_SIDE:
        raise OutputError(f"PNG cannot hold {width}x{height} (at most {_PNG_MAX_SIDE} pixels a side)")
    if fmt == "BMP" and width * height * 4 > _BMP_MAX_BYTES:
        raise OutputError(f"BMP cannot hold {width}x{height} (at most {_BMP_MAX_BYTES:,} bytes of pixels)")
    if width == 0 or height == 0:
        raise OutputError(f"cannot write an empty {width}x{height} image")


def output_layout(picture: Picture, fmt: str) -> Layout:
    """How ``fmt`` stores an upscaled ``picture``: gray kinds gray (WEBP has no gray mode),
    alpha kept by PNG, WEBP, TIFF, HEIF and AVIF, 16 bits for 16-bit pictures in PNG,
    TIFF and HEIF (which stores 10 of them)."""
    fmt = _format_name(fmt)
    return Layout(
        gray=picture.is_gray and fmt != "WEBP",
        alpha=picture.alpha is not None and fmt in ("PNG", "WEBP", "TIFF", "HEIF", "AVIF"),
        bits=16 if picture.bit_depth == 16 and fmt in ("PNG", "TIFF", "HEIF") else 8,
    )


#: formats whose encoder (Pillow's) reads 8-bit L and RGBX samples in place, without a copy
_IN_PLACE_FORMATS: Final = ("JPEG",)
#: bytes per pixel an encoder holds of its own while it writes: libwebp's animation encoder,
#: which Pillow's WEBP writer uses, keeps ARGB canvases and YUV pictures (5.8 measured at 24 MP);
#: libavif, Pillow's AVIF writer, YUV planes and aom's frame buffers (19.7 measured from 1.5
#: to 12 MP, 20.4-21.6 from 6 to 48 MP)
_ENCODER_BYTES: Final = {"WEBP": 7, "AVIF": 22}
#: bytes per pixel the HEIF writer holds beside the samples (pillow-heif's copy, libheif's
#: planes, x265's frame buffers; an alpha plane is a second image), by (gray, alpha, bits):
#: measured from 1.5 to 12 MP (11.2, 22.7, 19.1, 49.3, 32.3 and 76.0), rounded up
_HEIF_BYTES: Final = {(True, False, 8): 12, (True, False, 16): 23, (False, False, 8): 20,
                      (False, False, 16): 50, (False, True, 8): 33, (False, True, 16): 76}
#: formats whose file is not compressed: built in memory (a byte a sample) until it is written
_UNCOMPRESSED_FORMATS: Final = ("BMP",)


def sample_channels(layout: Layout, fmt: str) -> int:
    """Channels of the samples an output of ``layout`` is kept in until ``fmt``'s encoder
    writes it: 4 for 8-bit RGB into JPEG (RGBX: the encoder then reads them in place),
    else ``layout.channels`` (also for ``fmt`` "PIL", :func:`to_pil`)."""
    rgbx = fmt != "PIL" and layout == Layout(gray=False, alpha=False, bits=8) and _format_name(fmt) in _IN_PLACE_FORMATS
    return 4 if rgbx else layout.channels


def held_bytes(layout: Layout, fmt: str) -> float:
    """Bytes per output pixel an output of ``layout`` holds until ``fmt``'s encoder (or, for
    ``fmt`` "PIL", :func:`to_pil`) has written it: its samples (:func:`sample_channels`),
    Pillow's copy of them (4 bytes a pixel; 1 for L) where the encoder cannot read them in
    place, what the encoder holds of its own (WEBP, AVIF; HEIF: all it holds beside the
    samples), and the file itself where it can be as large as the samples (BMP, and PNG and
    TIFF written whole, with PNG's big-endian copy of 16-bit samples)."""
    own = sample_channels(layout, fmt) * layout.dtype.itemsize
    name = fmt if fmt == "PIL" else _format_name(fmt)
    if name == "HEIF":  # gray with alpha, not measured, as RGBA
        key = (layout.gray and not layout.alpha, layout.alpha, layout.bits)
        return float(own + _HEIF_BYTES[key])
    if name in ("PNG", "TIFF"):  # our writers: no Pillow copy; the file (a photo's samples deflate
        # to little less) until it is written, and for PNG the big-endian copy of 16-bit samples
        return float(own * (2 + int(name == "PNG" and layout.bits == 16)))
    in_place = name in _IN_PLACE_FORMATS and layout.bits == 8 and layout.channels in (1, 3)
    file = layout.color_channels if name in _UNCOMPRESSED_FORMATS else 0
    return float(own + (0 if in_place else 1 if layout.channels == 1 else 4) + _ENCODER_BYTES.get(name, 0) + file)


def _metadata(picture: Picture, layout: Layout, width: int, height: int, dpi_scale: float):
    icc = picture.icc if _icc_fits(picture.icc, layout.gray) else None
    exif = _exif_for_output(picture.exif, width, height)
    dpi = None if picture.dpi is None else (picture.dpi[0] * dpi_scale, picture.dpi[1] * dpi_scale)
    return icc, exif, dpi, xmp_for_output(picture.xmp, width, height)


def encode_samples(
    samples: np.ndarray, layout: Layout, fmt: str, picture: Picture, *, quality: int | None = None,
    dpi_scale: float = 1.0,
) -> memoryview:
    """(H, W, C) integer ``samples`` laid out per ``layout`` (or 8-bit RGB as RGBX, see
    :func:`sample_channels`) as the bytes of a ``fmt`` file, with ``picture``'s metadata (see
    :func:`encode_bytes`, which this finishes)."""
    fmt = _format_name(fmt)
    height, width = samples.shape[:2]
    check_output(fmt, width, height, quality=quality, dpi_scale=dpi_scale)
    icc, exif, dpi, xmp = _metadata(picture, layout, width, height, dpi_scale)
    if samples.shape[2] != layout.channels and fmt not in _IN_PLACE_FORMATS:
        samples = samples[..., : layout.channels]  # RGBX: our writers take RGB
    buf = io.BytesIO()
    try:
        if fmt == "TIFF":
            write_tiff(buf, samples, icc, exif, dpi, xmp)
        elif fmt == "PNG":  # our writer at both depths: the same bytes as a streamed PNG
            write_png(buf, samples, layout, icc, None if exif is None else exif.tobytes(), dpi, xmp)
        elif fmt == "HEIF":
            blob = None if exif is None else exif.tobytes()
            buf.write(write_heif(samples, icc, blob, xmp, HEIF_QUALITY if quality is None else quality))
        else:
            _write_pillow(buf, samples, layout, fmt, icc, exif, dpi, quality, xmp)
    except OutputError:
        raise
    except (OSError, ValueError, RuntimeError, struct.error, zlib.error) as exc:
        raise OutputError(f"cannot encode {fmt}: {one_line(exc)}") from exc
    return buf.getbuffer()


def pil_layout(picture: Picture) -> Layout:
    """How :func:`to_pil` lays out an upscaled ``picture``: as a PNG would be read back
    by Pillow (gray stays gray, alpha kept; 16 bits only for plain gray, "I;16")."""
    return Layout(gray=picture.is_gray, alpha=picture.alpha is not None,
                  bits=16 if picture.bit_depth == 16 and picture.is_gray and picture.alpha is None else 8)


def to_pil(samples: np.ndarray, layout: Layout, picture: Picture, *, dpi_scale: float = 1.0) -> Image.Image:
    """A PIL image of integer ``samples`` (laid out per ``layout``, or 8-bit RGB as RGBX: the
    padding is left out, never read as alpha) with ``picture``'s ICC profile, DPI (times
    ``dpi_scale``) and EXIF in ``info``, as Pillow reads a PNG."""
    height, width = samples.shape[:2]
    samples = samples[..., : layout.channels]
    if samples.shape[2] == 1:
        im = Image.fromarray(samples[..., 0])
    else:
        im = Image.fromarray(samples, _PILLOW_MODES[samples.shape[2]])
    icc, exif, dpi, xmp = _metadata(picture, layout, width, height, dpi_scale)
    if xmp:
        im.info["xmp"] = xmp
    if icc:
        im.info["icc_profile"] = icc
    if dpi is not None:
        im.info["dpi"] = dpi
    if exif is not None:
        im.info["exif"] = exif.tobytes()
    return im


def stream_writer(
    fp: BinaryIO, fmt: str, layout: Layout, picture: Picture, width: int, height: int, *,
    dpi_scale: float = 1.0, alpha: np.ndarray | None = None,
) -> PngStream | TiffStream:
    """A sink writing a ``fmt`` (one of :data:`STREAMED_FORMATS`) file to ``fp`` band by
    band, with ``picture``'s metadata; ``alpha``: the (H, W) alpha samples when ``layout``
    has alpha. Call its ``close()`` at the end."""
    fmt = _format_name(fmt)
    check_output(fmt, width, height, dpi_scale=dpi_scale)
    icc, exif, dpi, xmp = _metadata(picture, layout, width, height, dpi_scale)
    if fmt == "PNG":
        return PngStream(fp, width, height, layout, icc=icc, exif=None if exif is None else exif.tobytes(),
                         dpi=dpi, xmp=xmp, alpha=alpha)
    if fmt == "TIFF":
        return TiffStream(fp, width, height, layout, icc=icc, exif=exif, dpi=dpi, xmp=xmp, alpha=alpha)
    raise OutputError(f"{fmt} is not written band by band (only {', '.join(STREAMED_FORMATS)})")


def _format_name(fmt: str) -> str:
    name = str(fmt).upper().lstrip(".")
    name = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}.get(name, name)
    if name not in FORMATS:
        raise OutputError(f"unsupported output format {fmt!r} (use one of {', '.join(FORMATS)})")
    return name


def _samples(picture: Picture, layout: Layout, fmt: str) -> np.ndarray:
    """(H, W, C) integer samples of ``picture`` laid out for ``fmt``'s encoder (see
    :func:`sample_channels`): C is 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA, or RGBX)."""
    rgb = picture.float_rgb()
    out = np.zeros((*rgb.shape[:2], sample_channels(layout, fmt)), dtype=layout.dtype)
    quantize(luma(rgb) if layout.gray else rgb, layout.bits, out[..., : layout.color_channels])
    if layout.alpha:
        quantize(picture.alpha, layout.bits, out[..., -1])
    return out


def _icc_fits(icc: bytes | None, gray: bool) -> bool:
    space = icc_space(icc)
    if space is None:
        return False
    if space == b"GRAY":
        return gray
    return space == b"RGB " and not gray


def _exif_for_output(exif: bytes | None, width: int, height: int) -> Image.Exif | None:
    """The picture's EXIF with orientation 1 and the new pixel dimensions, or None."""
    if not exif:
        return None
    try:
        out = Image.Exif()
        out.load(exif)
        if ORIENTATION_TAG in out:
            out[ORIENTATION_TAG] = 1
        sub = out.get_ifd(EXIF_IFD_TAG)
        if PIXEL_X_TAG in sub:
            sub[PIXEL_X_TAG] = width
        if PIXEL_Y_TAG in sub:
            sub[PIXEL_Y_TAG] = height
        out.tobytes()  # fail here, not inside a writer
    except Exception:  # noqa: BLE001 - unwritable EXIF is left out rather than fatal
        return None
    return out if len(out) else None


_PILLOW_MODES: Final = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _pillow_image(samples: np.ndarray, layout: Layout, fmt: str) -> Image.Image:
    """A Pillow image of (H, W, C) 8-bit ``samples`` laid out per ``layout`` (4 channels
    without alpha: RGBX, see :func:`sample_channels`). For JPEG, L and RGBX share the
    samples' memory; else Pillow copies them (RGBX without its padding)."""
    height, width, channels = samples.shape
    rgbx = channels == 4 and not layout.alpha
    if fmt in _IN_PLACE_FORMATS and (channels == 1 or rgbx) and samples.flags.c_contiguous:
        mode = "L" if channels == 1 else "RGBX"
        return Image.frombuffer(mode, (width, height), samples, "raw", mode, 0, 1)
    if rgbx:
        samples = samples[..., :3]
    mode = _PILLOW_MODES[samples.shape[2]]
    im = Image.fromarray(samples[..., 0] if mode == "L" else samples)
    if im.mode != mode:  # guards Pillow's mode inference from (H, W, C) uint8
        im = im.convert(mode)
    return im


def _write_pillow(
    buf: BinaryIO,
    samples: np.ndarray,
    layout: Layout,
    fmt: str,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
    quality: int | None,
    xmp: bytes | None,
) -> None:
    im = _pillow_image(samples, layout, fmt)
    params: dict[str, object] = {}
    if icc and fmt in ("JPEG", "WEBP", "AVIF"):
        params["icc_profile"] = icc
    if exif is not None and fmt in ("JPEG", "WEBP", "AVIF"):
        blob = exif.tobytes()
        if fmt != "JPEG" or len(blob) <= _JPEG_MAX_EXIF:
            params["exif"] = blob
    if xmp and fmt in ("WEBP", "AVIF") or xmp and fmt == "JPEG" and len(xmp) <= _JPEG_MAX_XMP:
        params["xmp"] = xmp
    if dpi is not None and fmt in ("JPEG", "BMP"):
        params["dpi"] = (round(dpi[0]), round(dpi[1])) if fmt == "JPEG" else dpi
    if fmt == "JPEG":
        params["quality"] = JPEG_QUALITY if quality is None else quality
        params["subsampling"] = 0
    elif fmt == "WEBP":
        params["quality"] = WEBP_QUALITY if quality is None else quality
    elif fmt == "AVIF":
        params["quality"] = AVIF_QUALITY if quality is None else quality
        params["subsampling"] = "4:2:0"
    im.save(buf, fmt, **params)
