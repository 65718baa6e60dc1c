"""Benchmark evaluation: PSNR-Y / SSIM-Y over a folder of ``*_LR.png`` / ``*_HR.png`` pairs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import images
from ..errors import ImageError
from .metrics import psnr_y, ssim_y

__all__ = ["EvalResult", "find_pairs", "pair_scale", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Mean PSNR-Y (dB) and SSIM-Y over ``images`` pairs, and per-image figures."""

    psnr_y: float
    ssim_y: float
    images: int
    scale: int
    per_image: tuple[tuple[str, float, float], ...]

    def as_json(self) -> dict:
        """A JSON-ready dict (means rounded to 4 decimals, per image to 4)."""
        return {
            "psnr_y": round(self.psnr_y, 4),
            "ssim_y": round(self.ssim_y, 5),
            "images": self.images,
            "scale": self.scale,
            "per_image": [{"image": n, "psnr_y": round(p, 4), "ssim_y": round(s, 5)} for n, p, s in self.per_image],
        }


def find_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(LR, HR) paths for every ``*_LR.png`` in ``folder`` that has its ``*_HR.png``."""
    pairs = []
    for lr in sorted(Path(folder).glob("*_LR.png")):
        hr = lr.with_name(lr.name[: -len("_LR.png")] + "_HR.png")
        if hr.exists():
            pairs.append((lr, hr))
    if not pairs:
        raise ImageError(f"no *_LR.png / *_HR.png pairs in {folder}")
    return pairs


def _rgb8(path: Path) -> np.ndarray:
    pic = images.decode(path)
    return np.clip(np.round(pic.rgb * 255.0), 0, 255).astype(np.uint8)


#: SSIM's Gaussian window: a scored image needs at least this many pixels a side after
#: its border (``scale`` pixels) is cropped.
_SSIM_WINDOW = 11


def pair_scale(pairs: list[tuple[Path, Path]]) -> int:
    """The one scale of all the pairs, from their headers' HR/LR size ratios.

    Raises ImageError (before any pixel is read) when a pair is not an integer multiple,
    when the pairs mix scales (x2 and x4 in one folder), or when an HR image is too small
    to score (SSIM's 11x11 window after the border crop).
    """
    scales: dict[int, str] = {}
    for lr_path, hr_path in pairs:
        lr, hr = images.probe(lr_path), images.probe(hr_path)
        scale = hr[0] // lr[0]
        if scale < 1 or hr[0] != lr[0] * scale or hr[1] != lr[1] * scale:
            raise ImageError(f"{hr_path.name} is not an integer multiple of {lr_path.name}")
        least = _SSIM_WINDOW + 2 * scale
        if min(hr) < least:
            raise ImageError(f"{hr_path.name}: {hr[0]}x{hr[1]} is too small to score at x{scale} (at least "
                             f"{least} pixels a side: an 11x11 SSIM window after a {scale}-pixel border crop)")
        scales.setdefault(scale, lr_path.name)
    if len(scales) > 1:
        mixed = ", ".join(f"x{s} ({name})" for s, name in sorted(scales.items()))
        raise ImageError(f"the pairs mix scales: {mixed}; score one scale per folder")
    return next(iter(scales))


def evaluate(
    pairs: list[tuple[Path, Path]],
    upscale: Callable[[np.ndarray], np.ndarray],
    scale: int,
    on_image: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score ``upscale`` (float RGB in [0,1] -> float RGB in [0,1]) with the BasicSR protocol.

    SR output rounded to 8 bits, Y of BT.601, border of ``scale`` pixels cropped, SSIM
    with an 11x11 Gaussian of sigma 1.5.
    """
    rows = []
    for lr_path, hr_path in pairs:
        lr = _rgb8(lr_path)
        hr = _rgb8(hr_path)
        sr = upscale(lr.astype(np.float32) / 255.0)
        sr8 = np.clip(np.round(sr * 255.0), 0, 255).astype(np.uint8)
        if sr8.shape != hr.shape:
            raise ImageError(f"{lr_path.name}: output {sr8.shape[:2]} but HR is {hr.shape[:2]}")
        rows.append((lr_path.name, psnr_y(sr8, hr, scale), ssim_y(sr8, hr, scale)))
        if on_image:
            on_image(lr_path.name)
    return EvalResult(
        float(np.mean([r[1] for r in rows])),
        float(np.mean([r[2] for r in rows])),
        len(rows),
        scale,
        tuple(rows),
    )
