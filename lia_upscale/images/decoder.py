"""Decode and encode the image files a photo folder holds, carrying their metadata.

``decode`` turns PNG, JPEG, WEBP, TIFF, BMP, HEIF (HEIC) or AVIF data into a
:class:`Picture`: float32 RGB in [0, 1] with EXIF orientation already applied, a separate
alpha plane, and what is needed to write the result back in the matching mode (gray stays
gray, 16-bit stays 16-bit where the format can hold it) with its ICC profile, EXIF
(orientation 1), XMP and DPI.
``encode`` writes a picture (usually one whose pixels were replaced by upscaled ones,
:meth:`Picture.with_pixels`) to a binary stream.

Pillow decodes everything except the samples it truncates to 8 bits: 16-bit colour PNG
(RGB, RGBA, gray+alpha) goes through Pillow's own zlib/PNG-filter decoder twice (high and
low bytes: :mod:`.png16`), 16-bit colour TIFF through ``tifffile`` (:mod:`.tiffread`), and
HEIF through the optional pillow-heif (:mod:`.heif`); Pillow's modes become samples in
:mod:`.samples`, EXIF and DPI are carried over by :mod:`.metadata`. Nothing here imports torch.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final

from PIL import (  # the plugins register the formats that Image.open(formats=...) names
    BmpImagePlugin,  # noqa: F401
    Image,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from lia_upscale.errors import ImageError

from .heif import container_format, heif_size, missing_support, read_heif
from .metadata import as_dpi, upright_exif_bytes, exif_from_tiff, exif_orientation, header_exif, orient
from .picture import ORIENTATION_TAG, Picture, one_line, source_name
from .pilmodes import readable_mode
from .png16 import read_png16
from .quiet import quietly
from .samples import pillow_samples, to_planes
from .source import UNKNOWN_HEADER_LIMIT, file_limit, header_window, open_input, read_input
from .tiffread import read_tiff16, tiff_samples_text, tiff_ifd0, tiff_is_16bit_color, tiff_resolution
from .xmp import as_xmp, png_xmp

__all__ = ["MAX_PIXELS", "decode", "header_size", "probe", "from_pil", "set_max_pixels", "max_pixels"]

#: Largest input, in pixels, that any decoder here will expand (Pillow's own default
#: warning threshold, about 89.5 MP). Read at call time, so a caller may lower it.
MAX_PIXELS: int = 89_478_485

# Pillow's open-format names we accept; Pillow's JPEG opener also returns "MPO" images
# (camera JPEGs with extra frames, such as a phone's depth map): the first frame is read.
_OPEN_FORMATS: Final = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
_SUPPORTED_TEXT: Final = "not a PNG, JPEG, WEBP, TIFF, BMP, HEIC or AVIF image"
_HEAD: Final = 64  # bytes that hold the magic numbers and an ISO-BMFF ftyp box
_HEIF_HEADER: Final = 16 * 2**20  # bytes of a HEIF file read for its size (the meta box leads)
# Pillow's 1 MiB cap per PNG text chunk calls a valid XMP "corrupt" (MAX_TEXT_MEMORY stays)
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 16 * 2**20)


def decode(source: str | Path | bytes | BinaryIO, *, samples: bool = False) -> Picture:
    """Decode an image file into a :class:`Picture`, EXIF orientation applied first.

    ``samples``: keep 8-bit colour as its uint8 samples in ``rgb`` (a quarter of the
    memory of float32; the engine converts tiles as it cuts them) instead of float32.

    ``source`` is a path, the file's bytes, or a binary stream (read to its end).
    Reads 8-bit RGB, RGBA, L, LA, 1-bit, P (with tRNS transparency) and CMYK (JPEG, TIFF)
    images, 16-bit PNG (gray, gray+alpha, RGB, RGBA) and 16-bit TIFF, 8/10/12-bit HEIF
    (10 and 12 bits become a 16-bit picture) and 8-bit AVIF (Pillow decodes deeper AVIF
    to 8 bits); for multi-frame files only the first (HEIF: the primary) image. A
    colour-key transparency (tRNS on gray or RGB) becomes an alpha plane. CMYK is converted to RGB through its ICC profile where it has one
    (Pillow's ImageCms), otherwise naively, and a CMYK profile is dropped since it no
    longer applies. Metadata that cannot be parsed (a broken EXIF block) is left out.
    The XMP packet is kept as stored (PNG iTXt, JPEG APP1, WEBP, TIFF tag 700, HEIF, AVIF).

    Raises:
        ImageError: with a one-line message naming the cause: unreadable file
            (permission denied, missing), empty file, not a supported image, truncated or
            corrupt data, an unsupported mode, more than :data:`MAX_PIXELS` pixels, or a
            HEIC/AVIF file that this installation cannot read (the message says what to install).
    """
    name, data = _read_source(source)
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    container = container_format(data[:_HEAD])
    if container is not None and (why := missing_support(container)):
        raise ImageError(f"{name}: {why}")
    with _decoding(name, container):
        tiff_tags = tiff_ifd0(data)
        if container == "HEIF":
            heif = read_heif(data, lambda w, h: _check_pixels(name, w, h))
            fmt, pixels, kind, alpha_key, dpi = "HEIF", heif.samples, heif.kind, None, None
            icc, exif, xmp = heif.icc, heif.exif, heif.xmp
        elif tiff_tags is not None and tiff_is_16bit_color(tiff_tags):
            # Pillow truncates these (and cannot open 16-bit gray+alpha at all)
            fmt, exif = "TIFF", tiff_tags
            pixels, kind, alpha_key = read_tiff16(name, data, _check_pixels)
            icc = tiff_tags.get(0x8773)
            icc = bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None
            dpi = as_dpi(tiff_resolution(tiff_tags))
            xmp = tiff_tags.get(700)
        else:
            try:
                im = Image.open(io.BytesIO(data), formats=_open_formats(container))
            except UnidentifiedImageError:
                if tiff_tags is not None:  # a TIFF header Pillow has no mode for
                    raise ImageError(f"{name}: {tiff_samples_text(tiff_tags)}") from None
                raise
            fmt = "JPEG" if im.format == "MPO" else str(im.format)
            _check_pixels(name, *im.size)
            exif = header_exif(im, data)
            icc = im.info.get("icc_profile") or None
            dpi = as_dpi(im.info.get("dpi"))
            if fmt == "PNG" and data[24] == 16 and data[25] in (2, 4, 6):
                pixels, kind, alpha_key = read_png16(name, data, im)
            else:
                pixels, kind, alpha_key, icc = pillow_samples(name, im, icc)
            xmp = png_xmp(data) if fmt == "PNG" else im.info.get("xmp")
        orientation = exif_orientation(exif)

    rgb, alpha, bit_depth = to_planes(pixels, alpha_key, keep_8bit=samples)
    if alpha is not None and kind in ("rgb", "gray"):  # a tRNS colour key became alpha
        kind = "rgba" if kind == "rgb" else "gray_alpha"
    if orientation != 1:
        rgb = orient(rgb, orientation)
        alpha = None if alpha is None else orient(alpha, orientation)
        if orientation >= 5 and dpi is not None:
            dpi = (dpi[1], dpi[0])
    if fmt == "TIFF" and exif is not None:
        exif = exif_from_tiff(exif)
    return Picture(
        rgb=rgb,
        alpha=alpha,
        bit_depth=bit_depth,
        kind=kind,
        format=fmt,
        icc=icc,
        exif=upright_exif_bytes(exif),
        dpi=dpi,
        xmp=as_xmp(xmp),
    )


def set_max_pixels(limit: int) -> None:
    """Set the pixel limit of :func:`decode`, :func:`probe` and :func:`from_pil` (the
    decompression-bomb protection, default 89,478,485), e.g. to read 100-MP photos."""
    global MAX_PIXELS
    if int(limit) < 1:
        raise ValueError(f"the pixel limit must be positive, got {limit!r}")
    MAX_PIXELS = int(limit)
    # Pillow refuses twice its own limit on open; ours is the one that decides
    Image.MAX_IMAGE_PIXELS = max(MAX_PIXELS, 89_478_485)


def max_pixels() -> int:
    """The current pixel limit (see :func:`set_max_pixels`)."""
    return MAX_PIXELS


def from_pil(image: Image.Image) -> Picture | None:
    """A :class:`Picture` of an in-memory PIL image, as :func:`decode` (``samples=True``:
    8-bit colour stays uint8) would make of it saved as PNG (modes, tRNS transparency, ICC,
    DPI, EXIF, XMP kept; no orientation applied, as a PNG has none), without encoding it.
    Other modes as :func:`~.pilmodes.readable_mode` makes them (or its ImageError); None
    for a mode Pillow only reads from files (save and :func:`decode` those)."""
    image = readable_mode(image)
    if image.mode not in ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBX", "RGBA", "RGBa", "CMYK",
                          "I;16", "I;16B", "I;16L", "I;16N"):
        return None
    _check_pixels("<PIL image>", *image.size)
    icc = image.info.get("icc_profile") or None
    exif_bytes = image.info.get("exif")
    exif = None
    if isinstance(exif_bytes, (bytes, bytearray)) and exif_bytes:
        try:
            exif = Image.Exif()
            exif.load(bytes(exif_bytes))
        except Exception:  # noqa: BLE001 - a broken EXIF block is left out, as decode does
            exif = None
    samples, kind, alpha_key, icc = pillow_samples("<PIL image>", image, icc)
    rgb, alpha, bit_depth = to_planes(samples, alpha_key, keep_8bit=True)
    if alpha is not None and kind in ("rgb", "gray"):
        kind = "rgba" if kind == "rgb" else "gray_alpha"
    return Picture(rgb=rgb, alpha=alpha, bit_depth=bit_depth, kind=kind, format="PNG", icc=icc,
                   exif=upright_exif_bytes(exif), dpi=as_dpi(image.info.get("dpi")), xmp=as_xmp(image.info.get("xmp")))


def header_size(source: str | Path | bytes | bytearray | memoryview) -> tuple[int, int]:
    """(height, width) after EXIF orientation from the header of a file or its bytes; (0, 0)
    when the header cannot be read, so that the decode fails and says why."""
    try:
        width, height = probe(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
    except ImageError:
        return 0, 0
    return height, width


def probe(source: str | Path | BinaryIO) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header without decoding pixels.

    Raises:
        ImageError: as :func:`decode` does for unreadable, empty, unsupported or
            oversized files (truncated pixel data is only found by ``decode``).
    """
    name = source_name(source)
    fp: BinaryIO = header_window(open_input(source), owns=True) if isinstance(source, (str, Path)) else source
    try:
        start = fp.tell()
        head = fp.read(_HEAD)
        fp.seek(start)
    except PermissionError as exc:
        raise ImageError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    try:
        if not head:
            raise ImageError(f"{name}: empty file (0 bytes)")
        container = container_format(head)
        if container is not None and (why := missing_support(container)):
            raise ImageError(f"{name}: {why}")
        with _decoding(name, container):
            if container == "HEIF":
                width, height = heif_size(fp.read(_HEIF_HEADER))
                orientation = 1  # the size is already the displayed one
            elif head[:4] in (b"II*\0", b"MM\0*"):
                import tifffile  # Pillow cannot even open some 16-bit TIFFs

                with tifffile.TiffFile(fp) as tif:
                    page = tif.pages[0]
                    width, height = int(page.imagewidth), int(page.imagelength)  # type: ignore[union-attr]
                    tag = page.tags.get(ORIENTATION_TAG)  # type: ignore[union-attr]
                    orientation = tag.value if tag is not None and tag.value in range(1, 9) else 1
            else:
                im = Image.open(fp, formats=_open_formats(container))
                width, height = im.size
                orientation = exif_orientation(header_exif(im, None))
            _check_pixels(name, width, height)
            if orientation >= 5:
                width, height = height, width
            return width, height
    finally:
        if fp is not source:
            fp.close()


def _read_source(source: str | Path | bytes | BinaryIO) -> tuple[str, bytes]:
    name = source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name, bytes(source)
    if isinstance(source, (str, Path)):
        with open_input(source) as fp:
            return name, _read_bounded(fp, name)
    try:
        return name, source.read()
    except PermissionError as exc:
        raise ImageError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc


def _read_bounded(fp: BinaryIO, name: str) -> bytes:
    """The bytes of an open image file, read only when its header's image can be that large."""
    try:
        width, height = probe(header_window(fp))
    except ImageError:
        # the decoder names what is wrong with the header, from a bounded read
        return read_input(fp, name, UNKNOWN_HEADER_LIMIT, "an image file whose header cannot be read")
    return read_input(fp, name, file_limit(width, height), f"a {width}x{height} image")


@contextmanager
def _decoding(name: str, container: str | None = None) -> Iterator[None]:
    """Turn whatever Pillow, zlib or tifffile raise on bad data into a one-line ImageError
    (and keep their warnings quiet: the file is reported, not warned about). ``container``:
    the ISO-BMFF brand the file announced (HEIF, AVIF), if any: a file that says it is
    one but cannot be opened as one is damaged, not of an unknown kind."""
    try:
        with quietly():
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: too many pixels, possible decompression bomb ({one_line(exc)})") from exc
    except UnidentifiedImageError as exc:
        if container is not None:
            raise ImageError(f"{name}: truncated or corrupt {container} data (the file says it is "
                             f"{container} but cannot be opened as such)") from exc
        raise ImageError(f"{name}: {_SUPPORTED_TEXT}") from exc
    except MemoryError as exc:
        raise ImageError(f"{name}: out of memory while decoding") from exc
    # TypeError too: tifffile trips over some corrupt tag values with one; RuntimeError:
    # pillow-heif's word for some damaged HEIF files
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, RuntimeError,
            struct.error, zlib.error) as exc:
        text = one_line(exc)
        if "imagecodecs" in text:
            raise ImageError(
                f"{name}: this TIFF's compression needs the optional 'imagecodecs' package ({text})"
            ) from exc
        raise ImageError(f"{name}: truncated or corrupt image data ({text})") from exc


def _open_formats(container: str | None) -> tuple[str, ...]:
    return ("AVIF",) if container == "AVIF" else _OPEN_FORMATS


def _check_pixels(name: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: invalid size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} (possible decompression bomb)"
        )
