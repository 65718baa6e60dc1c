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


def pair_scale(pairs: list[tuple[Path, Path]]) -> int:
    """The scale of the pairs, from the HR/LR size ratio of the first pair (must be integral)."""
    lr, hr = (images.probe(p) for p in pairs[0])
    scale = hr[0] // lr[0]
    if scale < 1 or hr[0] != lr[0] * scale or hr[1] != lr[1] * scale:
        raise ImageError(f"{pairs[0][1].name} is not an integer multiple of {pairs[0][0].name}")
    return scale


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
