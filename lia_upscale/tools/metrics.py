"""PSNR-Y and SSIM-Y as in BasicSR (the protocol behind published SR tables)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rgb_to_y", "psnr_y", "ssim_y"]


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) array on 0..255, as float64 on 16..235."""
    a = rgb.astype(np.float64)
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border else y


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR of the Y channel of two 8-bit RGB arrays with ``border`` pixels cropped."""
    mse = float(np.mean((_crop(rgb_to_y(sr), border) - _crop(rgb_to_y(hr), border)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """'Valid' correlation with the separable window outer(taps, taps), rows then columns."""
    k = len(taps)
    h, w = img.shape
    rows = sum(t * img[i : h - k + 1 + i] for i, t in enumerate(taps))
    return sum(t * rows[:, i : w - k + 1 + i] for i, t in enumerate(taps))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM of the Y channel (11x11 Gaussian, sigma 1.5, valid region), ``border`` cropped."""
    a = _crop(rgb_to_y(sr), border)
    b = _crop(rgb_to_y(hr), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = _gaussian_taps()
    mu_a, mu_b = _filter_valid(a, win), _filter_valid(b, win)
    var_a = _filter_valid(a * a, win) - mu_a**2
    var_b = _filter_valid(b * b, win) - mu_b**2
    cov = _filter_valid(a * b, win) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())
