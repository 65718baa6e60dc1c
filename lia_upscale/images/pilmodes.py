"""In-memory PIL images in modes that have no file of their own, made readable."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError

__all__ = ["readable_mode"]


def readable_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode :func:`~.decoder.from_pil` reads: YCbCr, HSV and LAB as RGB, 32-bit
    "I" with samples in 0..65535 as 16-bit gray; ImageError for "F" and any other "I"
    (samples with no defined range). Other modes are returned as they are."""
    if image.mode in ("YCbCr", "HSV"):
        return image.convert("RGB")
    if image.mode == "LAB":
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB") or image.convert("RGB")
    if image.mode == "I":
        a = np.asarray(image)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ImageError(f"<PIL image>: mode I samples from {int(a.min())} to {int(a.max())} are outside "
                             "0..65535; scale them to 16 bits (mode I;16) first")
        return Image.fromarray(a.astype(np.uint16))
    if image.mode == "F":
        raise ImageError("<PIL image>: mode F (32-bit float samples) has no defined range; convert it to "
                         "L, I;16 or RGB first")
    return image
