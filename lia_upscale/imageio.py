"""Decode and encode the image files a photo folder holds, carrying their metadata.

``decode`` turns PNG, JPEG, WEBP, TIFF or BMP data into a :class:`Picture`: float32 RGB in
[0, 1] with EXIF orientation already applied, a separate alpha plane, and what is needed
to write the result back in the matching mode (gray stays gray, 16-bit stays 16-bit where
the format can hold it) with its ICC profile, EXIF (orientation 1) and DPI.
``encode`` writes a picture (usually one whose pixels were replaced by upscaled ones,
:meth:`Picture.with_pixels`) to a binary stream.

Pillow decodes everything except the samples it truncates to 8 bits: 16-bit colour PNG
(RGB, RGBA, gray+alpha) goes through Pillow's own zlib/PNG-filter decoder twice (high and
low bytes), and 16-bit colour TIFF through ``tifffile``. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Final, Literal, Mapping

import numpy as np
from PIL import (  # the plugins register the formats that Image.open(formats=...) names
    BmpImagePlugin,  # noqa: F401
    Image,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from lia_upscale.errors import ImageError, OutputError

__all__ = [
    "FORMATS",
    "FORMAT_SUFFIXES",
    "JPEG_QUALITY",
    "KINDS",
    "MAX_PIXELS",
    "WEBP_QUALITY",
    "Picture",
    "decode",
    "encode",
    "format_for_suffix",
    "probe",
]

#: Largest input, in pixels, that any decoder here will expand (Pillow's own default
#: warning threshold, about 89.5 MP). Read at call time, so a caller may lower it.
MAX_PIXELS: int = 89_478_485

#: Formats ``decode`` reads and ``encode`` writes (Pillow's names).
FORMATS: Final = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")

#: What the input's pixels were stored as; ``encode`` writes the matching mode.
KINDS: Final = ("rgb", "rgba", "gray", "gray_alpha", "palette", "cmyk")

Kind = Literal["rgb", "rgba", "gray", "gray_alpha", "palette", "cmyk"]

#: Lower-case file suffix -> format name.
FORMAT_SUFFIXES: Final[Mapping[str, str]] = MappingProxyType(
    {
        ".png": "PNG",
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".jpe": "JPEG",
        ".jfif": "JPEG",
        ".webp": "WEBP",
        ".tif": "TIFF",
        ".tiff": "TIFF",
        ".bmp": "BMP",
    }
)

#: Default quality of lossy outputs (JPEG is written 4:4:4, WEBP lossy).
JPEG_QUALITY: Final = 95
WEBP_QUALITY: Final = 95

# Pillow's open-format names we accept; Pillow's JPEG opener also returns "MPO" images
# (camera JPEGs with extra frames, such as a phone's depth map): the first frame is read.
_OPEN_FORMATS: Final = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
_SUPPORTED_TEXT: Final = "not a PNG, JPEG, WEBP, TIFF or BMP image"

_ORIENTATION: Final = 0x0112
_EXIF_IFD: Final = 0x8769
_GPS_IFD: Final = 0x8825
_PIXEL_X: Final = 0xA002
_PIXEL_Y: Final = 0xA003
# Descriptive IFD0 tags that travel between TIFF and EXIF; a TIFF's other IFD0 tags
# describe its own strips and must not leak into another file's EXIF.
_TIFF_DESCRIPTIVE: Final = {
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x0131: "Software",
    0x0132: "DateTime",
    0x013B: "Artist",
    0x8298: "Copyright",
}
_JPEG_MAX_SIDE: Final = 65_535
_WEBP_MAX_SIDE: Final = 16_383
_JPEG_MAX_EXIF: Final = 65_533
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Picture:
    """A decoded image: model-ready pixels plus what is needed to write it back alike.

    Attributes:
        rgb: float32 array (H, W, 3) in [0, 1]; gray inputs are repeated into 3 channels.
        alpha: float32 array (H, W) in [0, 1], or None when the input had no transparency.
        bit_depth: 8 or 16, the sample depth of the input.
        kind: what the input stored ("rgb", "rgba", "gray", "gray_alpha", "palette",
            "cmyk"); ``encode`` writes gray kinds as gray, everything else as RGB(A).
        format: the input's format, one of :data:`FORMATS`.
        icc: the embedded ICC profile, or None (a CMYK profile is dropped on decode).
        exif: EXIF block as Pillow writes it (starts with ``b"Exif\\0\\0"``) with the
            orientation tag set to 1, or None.
        dpi: (x, y) dots per inch after orientation, or None when the file has none.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    kind: Kind
    format: str
    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ValueError(f"rgb must be an (H, W, 3) array, got {getattr(rgb, 'shape', rgb)!r}")
        if rgb.dtype != np.float32:
            raise ValueError(f"rgb must be float32, got {rgb.dtype}")
        if self.alpha is not None:
            alpha = self.alpha
            if not isinstance(alpha, np.ndarray) or alpha.shape != rgb.shape[:2]:
                raise ValueError(
                    f"alpha must be an (H, W) array matching rgb {rgb.shape[:2]}, "
                    f"got {getattr(alpha, 'shape', alpha)!r}"
                )
            if alpha.dtype != np.float32:
                raise ValueError(f"alpha must be float32, got {alpha.dtype}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.rgb.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def is_gray(self) -> bool:
        """True when ``encode`` writes this picture as gray (L, I;16 or LA)."""
        return self.kind in ("gray", "gray_alpha")

    def with_pixels(self, rgb: np.ndarray, alpha: np.ndarray | None) -> Picture:
        """The same picture (kind, depth, metadata) with new pixels, e.g. upscaled ones.

        ``rgb`` is (H, W, 3) and ``alpha`` (H, W) or None (None drops transparency), any
        real dtype, values in [0, 1]; both are converted to float32. Sizes may differ
        from the original; DPI is scaled by ``encode(..., dpi_scale=...)``, not here.
        """
        rgb = np.ascontiguousarray(rgb, dtype=np.float32)
        alpha = None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32)
        return dataclasses.replace(self, rgb=rgb, alpha=alpha)


# --------------------------------------------------------------------------- decoding


def decode(source: str | Path | bytes | BinaryIO) -> Picture:
    """Decode an image file into a :class:`Picture`, EXIF orientation applied first.

    ``source`` is a path, the file's bytes, or a binary stream (read to its end).
    Reads 8-bit RGB, RGBA, L, LA, 1-bit, P (with tRNS transparency) and CMYK (JPEG, TIFF)
    images, 16-bit PNG (gray, gray+alpha, RGB, RGBA) and 16-bit TIFF; for multi-frame
    files only the first frame. A colour-key transparency (tRNS on gray or RGB) becomes
    an alpha plane. CMYK is converted to RGB through its ICC profile where it has one
    (Pillow's ImageCms), otherwise naively, and a CMYK profile is dropped since it no
    longer applies. Metadata that cannot be parsed (a broken EXIF block) is left out.

    Raises:
        ImageError: with a one-line message naming the cause: unreadable file
            (permission denied, missing), empty file, not a supported image, truncated or
            corrupt data, an unsupported mode, or more than :data:`MAX_PIXELS` pixels.
    """
    name, data = _read_source(source)
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    with _decoding(name):
        tiff_tags = _tiff_ifd0(data)
        if tiff_tags is not None and _tiff_is_16bit_color(tiff_tags):
            # Pillow truncates these (and cannot open 16-bit gray+alpha at all)
            fmt, exif = "TIFF", tiff_tags
            samples, kind, alpha_key = _tiff16(name, data)
            icc = tiff_tags.get(0x8773)
            icc = bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None
            dpi = _tiff_dpi(tiff_tags)
        else:
            im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
            fmt = "JPEG" if im.format == "MPO" else str(im.format)
            _check_pixels(name, *im.size)
            exif = _header_exif(im, data)
            icc = im.info.get("icc_profile") or None
            dpi = _dpi(im.info.get("dpi"))
            if fmt == "PNG" and data[24] == 16 and data[25] in (2, 4, 6):
                samples, kind, alpha_key = _png16(name, data, im)
            else:
                samples, kind, alpha_key, icc = _pillow_pixels(name, im, icc)
        orientation = _orientation(exif)

    rgb, alpha, bit_depth = _to_float(samples, alpha_key)
    if alpha is not None and kind in ("rgb", "gray"):  # a tRNS colour key became alpha
        kind = "rgba" if kind == "rgb" else "gray_alpha"
    if orientation != 1:
        rgb = _orient(rgb, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
        if orientation >= 5 and dpi is not None:
            dpi = (dpi[1], dpi[0])
    if fmt == "TIFF" and exif is not None:
        exif = _exif_from_tiff(exif)
    return Picture(
        rgb=rgb,
        alpha=alpha,
        bit_depth=bit_depth,
        kind=kind,
        format=fmt,
        icc=icc,
        exif=_exif_bytes(exif),
        dpi=dpi,
    )


def probe(source: str | Path | BinaryIO) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header without decoding pixels.

    Raises:
        ImageError: as :func:`decode` does for unreadable, empty, unsupported or
            oversized files (truncated pixel data is only found by ``decode``).
    """
    name = _name(source)
    try:
        fp: BinaryIO = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115
        start = fp.tell()
        magic = fp.read(4)
        fp.seek(start)
    except PermissionError as exc:
        raise ImageError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    try:
        if not magic:
            raise ImageError(f"{name}: empty file (0 bytes)")
        with _decoding(name):
            if magic in (b"II*\0", b"MM\0*"):
                import tifffile  # Pillow cannot even open some 16-bit TIFFs

                with tifffile.TiffFile(fp) as tif:
                    page = tif.pages[0]
                    width, height = int(page.imagewidth), int(page.imagelength)  # type: ignore[union-attr]
                    tag = page.tags.get(_ORIENTATION)  # type: ignore[union-attr]
                    orientation = tag.value if tag is not None and tag.value in range(1, 9) else 1
            else:
                im = Image.open(fp, formats=_OPEN_FORMATS)
                width, height = im.size
                orientation = _orientation(_header_exif(im, None))
            _check_pixels(name, width, height)
            if orientation >= 5:
                width, height = height, width
            return width, height
    finally:
        if fp is not source:
            fp.close()


def _name(source: object) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def _read_source(source: str | Path | bytes | BinaryIO) -> tuple[str, bytes]:
    name = _name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name, bytes(source)
    try:
        if isinstance(source, (str, Path)):
            return name, Path(source).read_bytes()
        return name, source.read()
    except PermissionError as exc:
        raise ImageError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Turn whatever Pillow, zlib or tifffile raise on bad data into a one-line ImageError."""
    try:
        yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: too many pixels, possible decompression bomb ({_one_line(exc)})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: {_SUPPORTED_TEXT}") from exc
    except MemoryError as exc:
        raise ImageError(f"{name}: out of memory while decoding") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error, zlib.error) as exc:
        text = _one_line(exc)
        if "imagecodecs" in text:
            raise ImageError(
                f"{name}: this TIFF's compression needs the optional 'imagecodecs' package ({text})"
            ) from exc
        raise ImageError(f"{name}: truncated or corrupt image data ({text})") from exc


def _check_pixels(name: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: invalid size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} (possible decompression bomb)"
        )


def _header_exif(im: Image.Image, data: bytes | None) -> Image.Exif | None:
    """EXIF without decoding pixels where avoidable (Pillow loads a PNG to look past IDAT)."""
    if im.format == "PNG" and "exif" not in im.info:
        if data is None or (b"eXIf" not in data and b"Raw profile type exif" not in data):
            return None
    try:
        exif = im.getexif()
        return exif if len(exif) else None
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the pixels
        return None


def _orientation(exif: Image.Exif | None) -> int:
    if exif is None:
        return 1
    value = exif.get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
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


def _dpi(value: object) -> tuple[float, float] | None:
    try:
        x, y = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def _exif_from_tiff(exif: Image.Exif) -> Image.Exif | None:
    """Keep a TIFF's descriptive IFD0 tags and its EXIF/GPS IFDs, not its strip layout."""
    keep = set(_TIFF_DESCRIPTIVE) | {_ORIENTATION, _EXIF_IFD, _GPS_IFD}
    for tag in list(exif):
        if tag not in keep:
            del exif[tag]
    return exif if len(exif) else None


def _exif_bytes(exif: Image.Exif | None) -> bytes | None:
    if exif is None:
        return None
    try:
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        return exif.tobytes()
    except Exception:  # noqa: BLE001 - unwritable EXIF is left out rather than fatal
        return None


def _icc_space(icc: bytes | None) -> bytes | None:
    return icc[16:20] if icc is not None and len(icc) >= 20 else None


def _transparency_key(im: Image.Image) -> object:
    return im.info.get("transparency") if im.mode in ("L", "I;16", "I;16B", "I", "RGB") else None


def _pillow_pixels(
    name: str, im: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, Kind, object, bytes | None]:
    """Pixels of an image Pillow reads faithfully: (H, W, C) uint8/uint16, kind, tRNS key."""
    mode = im.mode
    im.load()
    key = _transparency_key(im)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None], "gray", key, icc
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))[..., None], "gray", key, icc
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA")), "gray_alpha", None, icc
    if mode in ("P", "PA"):
        if mode == "PA" or "transparency" in im.info:
            return np.asarray(im.convert("RGBA")), "palette", None, icc
        return np.asarray(im.convert("RGB")), "palette", None, icc
    if mode in ("RGB", "RGBX", "YCbCr"):
        return np.asarray(im.convert("RGB")), "rgb", key, icc
    if mode in ("RGBA", "RGBa"):
        return np.asarray(im.convert("RGBA")), "rgba", None, icc
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc), "cmyk", None, None if _icc_space(icc) == b"CMYK" else icc
    raise ImageError(f"{name}: unsupported pixel mode {mode} (e.g. 32-bit or float samples)")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> np.ndarray:
    if _icc_space(icc) == b"CMYK":
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))  # type: ignore[arg-type]
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return np.asarray(out)
        except (ImportError, OSError, ValueError, TypeError, ImageCms.PyCMSError):
            pass  # an unusable profile: fall back to Pillow's naive conversion
    return np.asarray(im.convert("RGB"))


def _to_float(samples: np.ndarray, key: object) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(H, W, C) uint8/uint16 samples -> float rgb (H, W, 3), alpha (H, W) or None, depth."""
    bit_depth = 16 if samples.dtype == np.uint16 else 8
    scale = np.float32(1.0 / (65535.0 if bit_depth == 16 else 255.0))
    channels = samples.shape[2]
    color = samples[..., :3] if channels >= 3 else samples[..., :1]
    alpha = None
    if channels in (2, 4):
        alpha = samples[..., -1].astype(np.float32) * scale
    elif key is not None:
        alpha = _key_alpha(color, key)
    rgb = color.astype(np.float32) * scale
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return rgb, alpha, bit_depth


def _key_alpha(color: np.ndarray, key: object) -> np.ndarray | None:
    """Alpha from a tRNS colour key: 0 where a pixel equals the key, 1 elsewhere."""
    try:
        k = np.asarray(key, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if k.size != color.shape[2]:
        return None
    hit = np.all(color == k.astype(color.dtype), axis=2)
    return np.where(hit, np.float32(0.0), np.float32(1.0)).astype(np.float32)


def _png16(name: str, data: bytes, im: Image.Image) -> tuple[np.ndarray, Kind, object]:
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
    pos, parts = len(_PNG_SIGNATURE), []
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


def _tiff_ifd0(data: bytes) -> Image.Exif | None:
    """A TIFF's first IFD parsed by Pillow's TIFF tag reader (no pixels), or None."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    tags = Image.Exif()
    tags.load(data)
    return tags


def _tiff_is_16bit_color(tags: Image.Exif) -> bool:
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) == 16 and int(tags.get(277, 1)) > 1


def _tiff_dpi(tags: Image.Exif) -> tuple[float, float] | None:
    unit = tags.get(296, 2)  # ResolutionUnit: 1 none, 2 inch (the default), 3 cm
    if unit not in (2, 3) or 282 not in tags or 283 not in tags:
        return None
    factor = 2.54 if unit == 3 else 1.0
    try:
        return _dpi((float(tags[282]) * factor, float(tags[283]) * factor))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _tiff16(name: str, data: bytes) -> tuple[np.ndarray, Kind, object]:
    """First page of a 16-bit multi-sample TIFF through tifffile: (H, W, C) uint16."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if not isinstance(page, tifffile.TiffPage):
            raise ImageError(f"{name}: unsupported TIFF layout")
        _check_pixels(name, int(page.imagewidth), int(page.imagelength))
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


# --------------------------------------------------------------------------- encoding


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
    """Write ``picture`` to the binary stream ``dest`` as ``fmt`` (PNG, JPEG, WEBP, TIFF, BMP).

    Samples are clipped to [0, 1] (NaN -> 0) and rounded to 8 or 16 bits. The mode
    follows the picture: gray kinds are written gray, others RGB; alpha is kept by PNG,
    WEBP and TIFF and dropped by JPEG and BMP (no compositing: the colour is written as
    it is; Pillow's 32-bit BMP has no alpha mask, so readers would ignore it anyway).
    PNG and TIFF keep 16 bits for 16-bit pictures; JPEG, WEBP and BMP are 8-bit. WEBP
    has no gray mode, so a gray picture goes to WEBP as RGB(A).

    ICC profile: PNG, JPEG, WEBP, TIFF (left out where its colour space no longer fits
    the written mode). EXIF, orientation 1 and pixel dimensions updated: PNG, JPEG (left
    out if over JPEG's 64 KiB segment), WEBP, TIFF (descriptive IFD0 tags, EXIF and GPS
    IFDs). DPI, multiplied by ``dpi_scale`` (pass the upscale factor to keep the print
    size): PNG, JPEG, TIFF, BMP. PNG and TIFF (deflate) are lossless and ignore
    ``quality``; JPEG (4:4:4 chroma) and WEBP default to :data:`JPEG_QUALITY` and
    :data:`WEBP_QUALITY`. The whole file is built in memory, then written at once.

    Raises:
        OutputError: unknown format, quality outside 1..100, a size the format cannot
            hold, or the stream cannot be written (full disk, closed file, ...).
    """
    fmt = _format_name(fmt)
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
    keep_alpha = picture.alpha is not None and fmt in ("PNG", "WEBP", "TIFF")
    bits = 16 if picture.bit_depth == 16 and fmt in ("PNG", "TIFF") else 8
    samples = _samples(picture, gray, keep_alpha, bits)

    icc = picture.icc if _icc_fits(picture.icc, gray) else None
    exif = _exif_for_output(picture.exif, width, height)
    dpi = None if picture.dpi is None else (picture.dpi[0] * dpi_scale, picture.dpi[1] * dpi_scale)

    buf = io.BytesIO()
    try:
        if fmt == "TIFF":
            _write_tiff(buf, samples, icc, exif, dpi)
        elif fmt == "PNG" and bits == 16:
            _write_png16(buf, samples, icc, exif, dpi)
        else:
            _write_pillow(buf, samples, fmt, icc, exif, dpi, quality)
    except OutputError:
        raise
    except (OSError, ValueError, RuntimeError, struct.error, zlib.error) as exc:
        raise OutputError(f"cannot encode {fmt}: {_one_line(exc)}") from exc
    try:
        dest.write(buf.getbuffer())
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write {_name(dest)}: {_one_line(exc)}") from exc


def _format_name(fmt: str) -> str:
    name = str(fmt).upper().lstrip(".")
    name = {"JPG": "JPEG", "TIF": "TIFF"}.get(name, name)
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
    space = _icc_space(icc)
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
        if _ORIENTATION in out:
            out[_ORIENTATION] = 1
        sub = out.get_ifd(_EXIF_IFD)
        if _PIXEL_X in sub:
            sub[_PIXEL_X] = width
        if _PIXEL_Y in sub:
            sub[_PIXEL_Y] = height
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
) -> None:
    mode = _PILLOW_MODES[samples.shape[2]]
    im = Image.fromarray(samples[..., 0] if mode == "L" else samples)
    if im.mode != mode:  # guards Pillow's mode inference from (H, W, C) uint8
        im = im.convert(mode)
    params: dict[str, object] = {}
    if icc and fmt in ("PNG", "JPEG", "WEBP"):
        params["icc_profile"] = icc
    if exif is not None and fmt in ("PNG", "JPEG", "WEBP"):
        blob = exif.tobytes()
        if fmt != "JPEG" or len(blob) <= _JPEG_MAX_EXIF:
            params["exif"] = blob
    if dpi is not None and fmt in ("PNG", "JPEG", "BMP"):
        params["dpi"] = (round(dpi[0]), round(dpi[1])) if fmt == "JPEG" else dpi
    if fmt == "PNG":
        params["compress_level"] = 6
    elif fmt == "JPEG":
        params["quality"] = JPEG_QUALITY if quality is None else quality
        params["subsampling"] = 0
    elif fmt == "WEBP":
        params["quality"] = WEBP_QUALITY if quality is None else quality
    im.save(buf, fmt, **params)


def _write_png16(
    buf: BinaryIO,
    samples: np.ndarray,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
) -> None:
    """A 16-bit PNG (Pillow cannot write 16-bit colour): adaptive row filters, zlib level 6."""
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)

    def chunk(ctype: bytes, body: bytes) -> None:
        buf.write(struct.pack(">I", len(body)) + ctype + body)
        buf.write(struct.pack(">I", zlib.crc32(ctype + body)))

    buf.write(_PNG_SIGNATURE)
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
    if icc:
        chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
    if dpi is not None:
        chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
    if exif is not None:
        blob = exif.tobytes()
        chunk(b"eXIf", blob[6:] if blob.startswith(b"Exif\0\0") else blob)
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
        for tag in sorted(_TIFF_DESCRIPTIVE):
            value = exif.get(tag)
            if not isinstance(value, str) or not value.isascii() or not value:
                continue
            if tag == 0x0131:
                software = value
            elif tag == 0x010E:
                description = value
            elif tag != 0x0132:
                extratags.append((tag, "s", 0, value, True))
        if _ORIENTATION in exif:
            extratags.append((_ORIENTATION, "H", 1, 1, True))
        for tag in (_EXIF_IFD, _GPS_IFD):
            if tag in exif and exif.get_ifd(tag):
                pointers[tag] = exif
                extratags.append((tag - 1, "I", 1, 0, True))
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
        if tag not in (_EXIF_IFD, _GPS_IFD):
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
