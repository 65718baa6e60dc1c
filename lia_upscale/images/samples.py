"""Samples of an image Pillow reads faithfully, and the picture planes made of samples.

:func:`pillow_samples` turns each Pillow mode into (H, W, C) uint8/uint16 samples and a
:data:`~.picture.Kind` (CMYK through its ICC profile where it has one); :func:`to_planes`
splits samples into RGB and alpha, a tRNS colour key becoming an alpha plane.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import ImageError
from .picture import Kind, icc_space

__all__ = ["pillow_samples", "to_planes"]


def _transparency_key(im: Image.Image) -> object:
    return im.info.get("transparency") if im.mode in ("L", "I;16", "I;16B", "I", "RGB") else None


def pillow_samples(
    name: str, im: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, Kind, object, bytes | None]:
    """Pixels of an image Pillow reads faithfully: (H, W, C) uint8/uint16, kind, tRNS key, and
    ``icc`` as it still applies (None for a CMYK profile once the pixels are RGB).

    Raises:
        ImageError: for a mode with no such samples (32-bit or float).
    """
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
        return _cmyk_to_rgb(im, icc), "cmyk", None, None if icc_space(icc) == b"CMYK" else icc
    raise ImageError(f"{name}: unsupported pixel mode {mode} (e.g. 32-bit or float samples)")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> np.ndarray:
    if icc_space(icc) == b"CMYK":
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


def to_planes(
    samples: np.ndarray, key: object, *, keep_8bit: bool = False
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(H, W, C) uint8/uint16 samples -> float rgb (H, W, 3), alpha (H, W) or None, depth.
    ``keep_8bit``: 8-bit colour stays uint8 (alpha is float all the same)."""
    bit_depth = 16 if samples.dtype == np.uint16 else 8
    scale = np.float32(1.0 / (65535.0 if bit_depth == 16 else 255.0))
    channels = samples.shape[2]
    color = samples[..., :3] if channels >= 3 else samples[..., :1]
    alpha = None
    if channels in (2, 4):
        alpha = samples[..., -1].astype(np.float32) * scale
    elif key is not None:
        alpha = _key_alpha(color, key)
    if keep_8bit and bit_depth == 8:
        # an array of our own: Pillow's buffers are read-only, and torch wants to own them
        rgb = color.copy() if not (color.flags.c_contiguous and color.flags.writeable) else color
    else:
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
