"""MATLAB-compatible ``imresize`` (antialiased bicubic), the degradation behind SR benchmarks."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["matlab_resize", "matlab_downscale_uint8"]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    ) * ((ax > 1) & (ax <= 2))


def _weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense (out_len, in_len) matrix of MATLAB's bicubic taps with symmetric borders."""
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w /= w.sum(1, keepdims=True)
    # MATLAB mirrors out-of-range indices (symmetric padding, 1-based)
    idx = idx - 1
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.where(idx >= in_len, 2 * in_len - idx - 1, idx).astype(np.int64)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, idx.ravel()), w.ravel())
    return mat


def matlab_resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an (H, W[, C]) float array by ``scale`` exactly as MATLAB's ``imresize``.

    Output size is ``ceil(H * scale)`` x ``ceil(W * scale)``; float64, unclipped.
    """
    h, w = image.shape[:2]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    img = image.astype(np.float64)
    rows = _weights(h, oh, scale)
    cols = _weights(w, ow, scale)
    if img.ndim == 2:
        return rows @ img @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, img, cols, optimize=True)


def matlab_downscale_uint8(image: np.ndarray, factor: int) -> np.ndarray:
    """Downscale an 8-bit (H, W, C) image by an integer factor as the benchmarks' LR files were."""
    out = matlab_resize(image.astype(np.float64) / 255.0, 1.0 / factor)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
