"""Encode a :class:`Picture` to PNG, JPEG, WEBP, TIFF, BMP, HEIF or AVIF with its mode, depth and metadata."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
from PIL import Image, PngImagePlugin

from lia_upscale.errors import OutputError

from .heif import missing_support, write_heif
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
from .xmp import PNG_XMP_KEYWORD, png_xmp_chunk, xmp_for_output

__all__ = ["encode", "encode_bytes", "format_for_suffix"]

_JPEG_MAX_SIDE: Final = 65_535
_WEBP_MAX_SIDE: Final = 16_383
_JPEG_MAX_EXIF: Final = 65_533
_JPEG_MAX_XMP: Final = 65_504  # one APP1 segment less its length and namespace header
_LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
    if why := missing_support(fmt):
        raise OutputError(f"cannot write {fmt}: {why}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise OutputError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if not dpi_scale > 0:
        raise OutputError(f"dpi_scale must be positive, got {dpi_scale!r}")
    width, height = picture.size
    limit = {"JPEG": _JPEG_MAX_SIDE, "WEBP": _WEBP_MAX_SIDE}.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise OutputError(f"{fmt} cannot hold {width}x{height} (at most {limit} pixels a side)")
    if width == 0 or height == 0:
        raise OutputError(f"cannot write an empty {width}x{height} image")

    gray = picture.is_gray and fmt != "WEBP"
    keep_alpha = picture.alpha is not None and fmt in ("PNG", "WEBP", "TIFF", "HEIF", "AVIF")
    bits = 16 if picture.bit_depth == 16 and fmt in ("PNG", "TIFF", "HEIF") else 8
    samples = _samples(picture, gray, keep_alpha, bits)

    icc = picture.icc if _icc_fits(picture.icc, gray) else None
    exif = _exif_for_output(picture.exif, width, height)
    xmp = xmp_for_output(picture.xmp, width, height)
    dpi = None if picture.dpi is None else (picture.dpi[0] * dpi_scale, picture.dpi[1] * dpi_scale)

    buf = io.BytesIO()
    try:
        if fmt == "TIFF":
            _write_tiff(buf, samples, icc, exif, dpi, xmp)
        elif fmt == "PNG" and bits == 16:
            _write_png16(buf, samples, icc, exif, dpi, xmp)
        elif fmt == "HEIF":
            blob = None if exif is None else exif.tobytes()
            buf.write(write_heif(samples, icc, blob, xmp, HEIF_QUALITY if quality is None else quality))
        else:
            _write_pillow(buf, samples, fmt, icc, exif, dpi, quality, xmp)
    except OutputError:
        raise
    except (OSError, ValueError, RuntimeError, struct.error, zlib.error) as exc:
        raise OutputError(f"cannot encode {fmt}: {one_line(exc)}") from exc
    return buf.getbuffer()


def _format_name(fmt: str) -> str:
    name = str(fmt).upper().lstrip(".")
    name = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}.get(name, name)
    if name not in FORMATS:
        raise OutputError(f"unsupported output format {fmt!r} (use one of {', '.join(FORMATS)})")
    return name


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Clip to [0, 1] (NaN -> 0), scale and round to uint8/uint16, a band of rows at a time
    so that a 96-MP picture needs no second full-size float copy."""
    top = np.float32(65535.0 if bits == 16 else 255.0)
    out = np.empty(x.shape, dtype=np.uint16 if bits == 16 else np.uint8)
    rows = max(1, (1 << 18) // max(1, x[0].size))  # ~1 MB bands: in cache, 2x faster than 16 MB
    for r in range(0, x.shape[0], rows):
        band = np.clip(x[r : r + rows], 0.0, 1.0, dtype=np.float32)
        np.nan_to_num(band, copy=False, nan=0.0)
        band *= top
        np.rint(band, out=band)
        out[r : r + rows] = band
    return out


def _samples(picture: Picture, gray: bool, keep_alpha: bool, bits: int) -> np.ndarray:
    """(H, W, C) integer samples: C is 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA)."""
    rgb = picture.rgb
    color = (rgb @ _LUMA)[..., None] if gray else rgb
    planes = [_quantize(color, bits)]
    if keep_alpha and picture.alpha is not None:
        planes.append(_quantize(picture.alpha, bits)[..., None])
    return np.concatenate(planes, axis=2) if len(planes) > 1 else planes[0]


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


def _write_pillow(
    buf: BinaryIO,
    samples: np.ndarray,
    fmt: str,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
    quality: int | None,
    xmp: bytes | None,
) -> None:
    mode = _PILLOW_MODES[samples.shape[2]]
    im = Image.fromarray(samples[..., 0] if mode == "L" else samples)
    if im.mode != mode:  # guards Pillow's mode inference from (H, W, C) uint8
        im = im.convert(mode)
    params: dict[str, object] = {}
    if icc and fmt in ("PNG", "JPEG", "WEBP", "AVIF"):
        params["icc_profile"] = icc
    if exif is not None and fmt in ("PNG", "JPEG", "WEBP", "AVIF"):
        blob = exif.tobytes()
        if fmt != "JPEG" or len(blob) <= _JPEG_MAX_EXIF:
            params["exif"] = blob
    if xmp and fmt == "PNG":
        try:
            info = PngImagePlugin.PngInfo()
            info.add_itxt(PNG_XMP_KEYWORD.decode(), xmp.decode("utf-8"))
            params["pnginfo"] = info
        except UnicodeDecodeError:
            pass  # XMP is UTF-8 by definition; a packet that is not cannot go into iTXt
    elif xmp and fmt in ("WEBP", "AVIF") or xmp and fmt == "JPEG" and len(xmp) <= _JPEG_MAX_XMP:
        params["xmp"] = xmp
    if dpi is not None and fmt in ("PNG", "JPEG", "BMP"):
        params["dpi"] = (round(dpi[0]), round(dpi[1])) if fmt == "JPEG" else dpi
    if fmt == "PNG":
        params["compress_level"] = 6
    elif fmt == "JPEG":
        params["quality"] = JPEG_QUALITY if quality is None else quality
        params["subsampling"] = 0
    elif fmt == "WEBP":
        params["quality"] = WEBP_QUALITY if quality is None else quality
    elif fmt == "AVIF":
        params["quality"] = AVIF_QUALITY if quality is None else quality
        params["subsampling"] = "4:2:0"
    im.save(buf, fmt, **params)


def _write_png16(
    buf: BinaryIO,
    samples: np.ndarray,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
    xmp: bytes | None,
) -> None:
    """A 16-bit PNG (Pillow cannot write 16-bit colour): adaptive row filters, zlib level 6."""
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)

    def chunk(ctype: bytes, body: bytes) -> None:
        buf.write(struct.pack(">I", len(body)) + ctype + body)
        buf.write(struct.pack(">I", zlib.crc32(ctype + body)))

    buf.write(PNG_SIGNATURE)
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
    if icc:
        chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
    if dpi is not None:
        chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
    if exif is not None:
        blob = exif.tobytes()
        chunk(b"eXIf", blob[6:] if blob.startswith(b"Exif\0\0") else blob)
    if xmp:
        chunk(b"iTXt", png_xmp_chunk(xmp))
    packer = zlib.compressobj(6)
    pending: list[bytes] = []
    size = 0
    for block in _png_filter_rows(raw, bpp=channels * 2):
        out = packer.compress(block)
        if out:
            pending.append(out)
            size += len(out)
        if size >= 1 << 20:
            chunk(b"IDAT", b"".join(pending))
            pending, size = [], 0
    pending.append(packer.flush())
    chunk(b"IDAT", b"".join(pending))
    chunk(b"IEND", b"")


def _png_filter_rows(raw: np.ndarray, bpp: int) -> Iterator[bytes]:
    """Filtered scanlines (filter byte + bytes), per row the filter with the least
    sum of absolute residuals (libpng's heuristic), computed a block of rows at a time."""
    height, stride = raw.shape
    step = max(1, (1 << 21) // max(stride, 1))
    for start in range(0, height, step):
        stop = min(height, start + step)
        x = raw[start:stop].astype(np.int16)
        b = np.empty_like(x)
        b[0] = raw[start - 1] if start else 0
        b[1:] = x[:-1]
        a = np.zeros_like(x)
        a[:, bpp:] = x[:, :-bpp]
        c = np.zeros_like(x)
        c[:, bpp:] = b[:, :-bpp]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        candidates = (x, x - a, x - b, x - ((a + b) >> 1), x - paeth)
        best = np.zeros(stop - start, dtype=np.int64)
        best_cost = np.full(stop - start, np.iinfo(np.int64).max)
        residuals = []
        for kind, r in enumerate(candidates):
            r8 = r.astype(np.uint8)
            residuals.append(r8)
            cost = np.abs(r8.view(np.int8).astype(np.int64)).sum(axis=1)
            better = cost < best_cost
            best[better], best_cost[better] = kind, cost[better]
        stack = np.stack(residuals)
        rows = stack[best, np.arange(stop - start)]
        block = np.empty((stop - start, stride + 1), dtype=np.uint8)
        block[:, 0] = best
        block[:, 1:] = rows
        yield block.tobytes()


def _write_tiff(
    buf: BinaryIO,
    samples: np.ndarray,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
    xmp: bytes | None,
) -> None:
    """TIFF (8 or 16 bits, deflate with horizontal predictor) through tifffile.

    tifffile cannot write EXIF or GPS sub-IFDs, so it writes placeholder tags one below
    their codes; Pillow then serialises the sub-IFDs at the end of the file and the
    placeholders are patched into real pointers.
    """
    import tifffile

    channels = samples.shape[2]
    extratags: list[tuple[int, str, int, object, bool]] = []
    software: str | bool = False
    description: str | None = None
    pointers: dict[int, Image.Exif] = {}
    if exif is not None:
        for tag in sorted(TIFF_DESCRIPTIVE_TAGS):
            value = exif.get(tag)
            if not isinstance(value, str) or not value.isascii() or not value:
                continue
            if tag == 0x0131:
                software = value
            elif tag == 0x010E:
                description = value
            elif tag != 0x0132:
                extratags.append((tag, "s", 0, value, True))
        if ORIENTATION_TAG in exif:
            extratags.append((ORIENTATION_TAG, "H", 1, 1, True))
        for tag in (EXIF_IFD_TAG, GPS_IFD_TAG):
            if tag in exif and exif.get_ifd(tag):
                pointers[tag] = exif
                extratags.append((tag - 1, "I", 1, 0, True))
    if xmp:
        extratags.append((700, "B", len(xmp), xmp, True))
    datetime = exif.get(0x0132) if exif is not None else None
    kwargs: dict[str, object] = {}
    if dpi is not None:
        kwargs["resolution"] = dpi
        kwargs["resolutionunit"] = "INCH"
    if channels in (2, 4):
        kwargs["extrasamples"] = ("UNASSALPHA",)
    tifffile.imwrite(
        buf,
        samples[..., 0] if channels == 1 else samples,
        photometric="rgb" if channels >= 3 else "minisblack",
        planarconfig="contig" if channels > 1 else None,
        compression="zlib",
        predictor=True,
        iccprofile=icc or None,
        description=description,
        datetime=datetime if isinstance(datetime, str) and len(datetime) == 19 and datetime[16] == ":" else None,
        software=software,
        metadata=None,
        extratags=extratags,
        byteorder="<",
        **kwargs,
    )
    if pointers:
        _patch_exif_pointers(buf, exif)  # type: ignore[arg-type]


def _patch_exif_pointers(buf: BinaryIO, exif: Image.Exif) -> None:
    data = bytearray(buf.getvalue())  # type: ignore[attr-defined]
    if len(data) % 2:
        data.append(0)
    sub = Image.Exif()
    sub.load(exif.tobytes())
    for tag in list(sub):
        if tag not in (EXIF_IFD_TAG, GPS_IFD_TAG):
            del sub[tag]
    sub.endian = "<"
    at = len(data)
    data += sub.tobytes(offset=at)[14:]  # "Exif\0\0" + header, then IFDs placed at ``at``
    targets = {}
    count = struct.unpack_from("<H", data, at)[0]
    for i in range(count):
        tag, _, _, value = struct.unpack_from("<HHII", data, at + 2 + 12 * i)
        targets[tag] = value
    ifd0 = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd0)[0]
    for i in range(count):
        entry = ifd0 + 2 + 12 * i
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag + 1 in targets:
            struct.pack_into("<HHII", data, entry, tag + 1, 4, 1, targets[tag + 1])
    buf.seek(0)
    buf.truncate()
    buf.write(data)
