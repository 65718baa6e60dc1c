"""The decoded picture and the formats it travels in: the shared vocabulary of decode and encode."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, Mapping

import numpy as np

__all__ = [
    "AVIF_QUALITY",
    "FORMATS",
    "FORMAT_SUFFIXES",
    "HEIF_QUALITY",
    "JPEG_QUALITY",
    "KINDS",
    "WEBP_QUALITY",
    "Kind",
    "Picture",
    "PNG_SIGNATURE",
    "ORIENTATION_TAG",
    "EXIF_IFD_TAG",
    "GPS_IFD_TAG",
    "PIXEL_X_TAG",
    "PIXEL_Y_TAG",
    "TIFF_DESCRIPTIVE_TAGS",
    "icc_space",
    "one_line",
    "source_name",
]

#: Formats ``decode`` reads and ``encode`` writes (Pillow's names). HEIF (HEIC) needs the
#: optional ``heif`` extra (pillow-heif) and AVIF a Pillow built with AVIF (its wheels are);
#: :func:`lia_upscale.images.missing_support` says whether this installation has them.
FORMATS: Final = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")

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
        ".heic": "HEIF",
        ".heif": "HEIF",
        ".hif": "HEIF",
        ".avif": "AVIF",
    }
)

#: Default quality of lossy outputs (JPEG is written 4:4:4, WEBP lossy).
JPEG_QUALITY: Final = 95
WEBP_QUALITY: Final = 95
#: HEIF (HEVC) and AVIF (AV1) reach a JPEG-95 look at lower settings; written 4:2:0 like a
#: phone's, the chroma every HEIC/AVIF decoder supports.
HEIF_QUALITY: Final = 90
AVIF_QUALITY: Final = 90

ORIENTATION_TAG: Final = 0x0112
EXIF_IFD_TAG: Final = 0x8769
GPS_IFD_TAG: Final = 0x8825
PIXEL_X_TAG: Final = 0xA002
PIXEL_Y_TAG: Final = 0xA003
# Descriptive IFD0 tags that travel between TIFF and EXIF; a TIFF's other IFD0 tags
# describe its own strips and must not leak into another file's EXIF.
TIFF_DESCRIPTIVE_TAGS: Final = {
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x0131: "Software",
    0x0132: "DateTime",
    0x013B: "Artist",
    0x8298: "Copyright",
}
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True, eq=False)
class Picture:
    """A decoded image: model-ready pixels plus what is needed to write it back alike.

    Attributes:
        rgb: float32 array (H, W, 3) in [0, 1]; gray inputs are repeated into 3 channels.
            A picture decoded with ``decode(..., samples=True)`` holds its 8-bit samples
            here instead (uint8, a quarter of the memory); :meth:`float_rgb` reads either.
        alpha: float32 array (H, W) in [0, 1], or None when the input had no transparency.
        bit_depth: 8 or 16, the sample depth of the input (10- and 12-bit HEIF count as 16).
        kind: what the input stored ("rgb", "rgba", "gray", "gray_alpha", "palette",
            "cmyk"); ``encode`` writes gray kinds as gray, everything else as RGB(A).
        format: the input's format, one of :data:`FORMATS`.
        icc: the embedded ICC profile, or None (a CMYK profile is dropped on decode).
        exif: EXIF block as Pillow writes it (starts with ``b"Exif\\0\\0"``) with the
            orientation tag set to 1, or None.
        dpi: (x, y) dots per inch after orientation, or None when the file has none.
        xmp: the XMP packet as stored (UTF-8 XML, ``<?xpacket`` wrapper and padding
            included), or None; ``encode`` updates its size and orientation fields only.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    kind: Kind
    format: str
    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ValueError(f"rgb must be an (H, W, 3) array, got {getattr(rgb, 'shape', rgb)!r}")
        if rgb.dtype not in (np.float32, np.uint8):
            raise ValueError(f"rgb must be float32 (or uint8 samples), got {rgb.dtype}")
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

    def float_rgb(self) -> np.ndarray:
        """:attr:`rgb` as float32 in [0, 1] (converted from 8-bit samples, exactly as
        :func:`decode` converts them, when it holds those)."""
        if self.rgb.dtype == np.uint8:
            return self.rgb.astype(np.float32) * np.float32(1.0 / 255.0)
        return self.rgb

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


def source_name(source: object) -> str:
    """How a source is named in messages: its path, ``<bytes>``, or a stream's name."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 200 characters, for an error message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def icc_space(icc: bytes | None) -> bytes | None:
    """The colour space signature of an ICC profile (e.g. ``b"RGB "``), or None."""
    return icc[16:20] if icc is not None and len(icc) >= 20 else None
