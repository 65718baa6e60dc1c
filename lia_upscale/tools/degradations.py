"""Camera-like degradations for training photo models: blur, resize, noise, JPEG, twice.

A high-resolution crop becomes the low-resolution input a phone or web photo is at pixel
level. :class:`PhotoDegradation` holds the random ranges; :meth:`PhotoDegradation.sample`
draws one concrete :data:`Recipe` (a tuple of operations) from them, and :func:`apply`
runs a recipe. Everything random comes from the ``numpy.random.Generator`` passed in, so a
seed fixes the result. JPEG goes through Pillow's libjpeg.

The order of one pass: blur (isotropic or anisotropic Gaussian, now and then a generalised
or plateau kernel), resize (area, bilinear or bicubic; up or down), noise (Gaussian or
Poisson, colour or gray), JPEG. A second pass of the same kinds follows with a probability,
working near the low-resolution grid (half the time exactly on it, as the noise and JPEG
blocks of a photo file are), then a final resize to the exact low-resolution size.
Half of the degraded recipes are instead one pass that is a camera file: lens blur, the
LR grid, sensor noise and JPEG on that grid. A share of those camera passes
(``phone_prob``) is a phone's pipeline: after the sensor noise, edge-preserving noise
reduction strong enough to smear fine texture into blotches, then unsharp-mask sharpening
with its halos, then the JPEG. Some recipes are plain bicubic downscaling or
only lightly degraded, so that good photos are not smeared.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "Blur",
    "Resize",
    "Noise",
    "Jpeg",
    "Denoise",
    "Sharpen",
    "Recipe",
    "PhotoDegradation",
    "apply",
    "blur_kernel",
    "VALIDATION_RECIPE",
    "HELD_OUT_RECIPE",
]

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Blur:
    """A normalised blur kernel: ``kind`` is gaussian, generalized or plateau.

    ``sigma_x``/``sigma_y`` in pixels of the image it is applied to, ``theta`` the rotation in
    radians, ``beta`` the shape exponent (unused by gaussian), ``size`` the odd kernel edge.
    """

    kind: str
    size: int
    sigma_x: float
    sigma_y: float
    theta: float = 0.0
    beta: float = 2.0


@dataclass(frozen=True)
class Resize:
    """Resize by ``factor`` relative to ``base``: "hr" (the input) or "lr" (the target size)."""

    mode: str
    factor: float
    base: str = "hr"


@dataclass(frozen=True)
class Noise:
    """Additive noise. ``kind`` gaussian: ``level`` is sigma on the 0-255 scale; poisson:
    ``level`` scales shot noise of a 256-level signal. ``gray`` uses one field for all channels."""

    kind: str
    level: float
    gray: bool


@dataclass(frozen=True)
class Jpeg:
    """A JPEG encode and decode through Pillow at ``quality`` (4:2:0 chroma subsampling)."""

    quality: int


@dataclass(frozen=True)
class Denoise:
    """A phone's noise reduction: ``passes`` rounds of a bilateral filter, Gaussian in space
    (``sigma_space`` pixels) and in colour distance (``sigma_range`` on the 0-1 scale). Flat
    areas and fine texture below ``sigma_range`` merge into smooth patches; edges stay."""

    sigma_space: float
    sigma_range: float
    passes: int = 1


@dataclass(frozen=True)
class Sharpen:
    """Unsharp masking: ``x + amount * (x - gaussian(x, sigma))``, with the halos it leaves."""

    sigma: float
    amount: float


#: One concrete degradation: operations in order; the final resize to the LR size is implied.
Recipe = tuple[Blur | Resize | Noise | Denoise | Sharpen | Jpeg, ...]


def blur_kernel(op: Blur) -> np.ndarray:
    """The (size, size) float64 kernel of ``op``, summing to 1."""
    r = op.size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(op.theta), math.sin(op.theta)
    u, v = c * x + s * y, -s * x + c * y
    q = (u / op.sigma_x) ** 2 + (v / op.sigma_y) ** 2  # x^T Sigma^-1 x
    if op.kind == "gaussian":
        k = np.exp(-0.5 * q)
    elif op.kind == "generalized":
        k = np.exp(-0.5 * q ** (op.beta / 2))
    elif op.kind == "plateau":
        k = 1.0 / (1.0 + q ** (op.beta / 2))
    else:
        raise ValueError(f"unknown blur kind {op.kind!r}")
    return k / k.sum()


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class PhotoDegradation:
    """The random ranges of the photo degradation family (sigmas on the image they blur).

    The defaults are the recipe behind ``lia-photo-x2``/``-x4``; the README lists them.
    """

    clean_prob: float = 0.1  # plain bicubic downscaling, nothing else
    # one pass that is a camera file: lens blur on the HR, resized to the LR grid, sensor
    # noise and JPEG on that grid; the rest of the draws take the two-pass web chain below
    camera_prob: float = 0.5
    camera_blur_sigma: tuple[float, float] = (0.2, 2.0)
    camera_gaussian_sigma: tuple[float, float] = (1.0, 12.0)
    camera_poisson_level: tuple[float, float] = (0.05, 1.5)
    camera_jpeg_quality: tuple[int, int] = (50, 95)
    # the share of camera passes that are a phone's pipeline (noise reduction, then
    # sharpening, before the JPEG); 0 draws exactly the family of the earlier versions
    phone_prob: float = 0.0
    phone_space_sigma: tuple[float, float] = (0.8, 2.5)
    phone_range_sigma: tuple[float, float] = (0.04, 0.16)
    phone_passes: tuple[int, int] = (1, 3)
    phone_sharpen_prob: float = 0.8
    phone_sharpen_sigma: tuple[float, float] = (0.6, 2.0)
    phone_sharpen_amount: tuple[float, float] = (0.3, 1.5)
    blur_prob: float = 0.8
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    blur_sigma: tuple[float, float] = (0.2, 2.4)
    anisotropic_prob: float = 0.4
    generalized_prob: float = 0.1
    plateau_prob: float = 0.1
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    # first resize, relative to the HR size: up, down or kept
    resize_up_prob: float = 0.2
    resize_down_prob: float = 0.5
    resize_up: tuple[float, float] = (1.0, 1.5)
    resize_down: tuple[float, float] = (0.3, 1.0)
    noise_prob: float = 0.9
    gaussian_prob: float = 0.5  # else Poisson
    gaussian_sigma: tuple[float, float] = (1.0, 20.0)
    poisson_level: tuple[float, float] = (0.05, 2.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.9
    jpeg_quality: tuple[int, int] = (40, 95)
    # the second pass works on the LR grid: resized to factor x the LR size, often exactly
    # 1 so that its noise and JPEG blocks sit on the pixel grid, as in a photo file
    second_prob: float = 0.7
    second_on_grid_prob: float = 0.5
    second_blur_prob: float = 0.5
    second_blur_sigma: tuple[float, float] = (0.2, 1.2)
    second_resize: tuple[float, float] = (0.75, 1.25)
    second_gaussian_sigma: tuple[float, float] = (1.0, 15.0)
    second_poisson_level: tuple[float, float] = (0.05, 1.5)
    second_jpeg_quality: tuple[int, int] = (50, 95)

    def _blur(self, rng: np.random.Generator, sigma: tuple[float, float]) -> Blur:
        size = int(rng.choice(self.kernel_sizes))
        pick = rng.uniform()
        if pick < self.generalized_prob:
            kind, beta = "generalized", rng.uniform(*self.generalized_beta)
        elif pick < self.generalized_prob + self.plateau_prob:
            kind, beta = "plateau", rng.uniform(*self.plateau_beta)
        else:
            kind, beta = "gaussian", 2.0
        sx = rng.uniform(*sigma)
        if rng.uniform() < self.anisotropic_prob:
            sy, theta = rng.uniform(*sigma), rng.uniform(-math.pi, math.pi)
        else:
            sy, theta = sx, 0.0
        return Blur(kind, size, float(sx), float(sy), float(theta), float(beta))

    def _noise(self, rng: np.random.Generator, sigma: tuple[float, float],
               poisson: tuple[float, float]) -> Noise:
        gray = bool(rng.uniform() < self.gray_noise_prob)
        if rng.uniform() < self.gaussian_prob:
            return Noise("gaussian", float(rng.uniform(*sigma)), gray)
        return Noise("poisson", float(rng.uniform(*poisson)), gray)

    def _camera(self, rng: np.random.Generator) -> Recipe:
        ops: list[Blur | Resize | Noise | Denoise | Sharpen | Jpeg] = []
        if rng.uniform() < self.blur_prob:
            ops.append(self._blur(rng, self.camera_blur_sigma))
        ops.append(Resize(str(rng.choice(RESIZE_MODES)), 1.0, "lr"))
        if rng.uniform() < self.noise_prob:
            ops.append(self._noise(rng, self.camera_gaussian_sigma, self.camera_poisson_level))
        if self.phone_prob and rng.uniform() < self.phone_prob:
            ops.extend(self._phone(rng))
        if rng.uniform() < self.jpeg_prob:
            q = self.camera_jpeg_quality
            ops.append(Jpeg(int(rng.integers(q[0], q[1] + 1))))
        return tuple(ops)

    def _phone(self, rng: np.random.Generator) -> list[Denoise | Sharpen]:
        lo, hi = self.phone_passes
        ops: list[Denoise | Sharpen] = [Denoise(float(rng.uniform(*self.phone_space_sigma)),
                                                _loguniform(rng, *self.phone_range_sigma),
                                                int(rng.integers(lo, hi + 1)))]
        if rng.uniform() < self.phone_sharpen_prob:
            ops.append(Sharpen(float(rng.uniform(*self.phone_sharpen_sigma)),
                               float(rng.uniform(*self.phone_sharpen_amount))))
        return ops

    def sample(self, rng: np.random.Generator) -> Recipe:
        """Draw one recipe from the ranges."""
        if rng.uniform() < self.clean_prob:
            return ()
        if rng.uniform() < self.camera_prob:
            return self._camera(rng)
        ops: list[Blur | Resize | Noise | Denoise | Sharpen | Jpeg] = []
        if rng.uniform() < self.blur_prob:
            ops.append(self._blur(rng, self.blur_sigma))
        pick = rng.uniform()
        mode = str(rng.choice(RESIZE_MODES))
        if pick < self.resize_up_prob:
            ops.append(Resize("bicubic" if mode == "area" else mode, _loguniform(rng, *self.resize_up)))
        elif pick < self.resize_up_prob + self.resize_down_prob:
            ops.append(Resize(mode, _loguniform(rng, *self.resize_down)))
        if rng.uniform() < self.noise_prob:
            ops.append(self._noise(rng, self.gaussian_sigma, self.poisson_level))
        if rng.uniform() < self.jpeg_prob:
            ops.append(Jpeg(int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))))
        if rng.uniform() < self.second_prob:
            if rng.uniform() < self.second_blur_prob:
                ops.append(self._blur(rng, self.second_blur_sigma))
            on_grid = rng.uniform() < self.second_on_grid_prob
            factor = 1.0 if on_grid else _loguniform(rng, *self.second_resize)
            ops.append(Resize(str(rng.choice(RESIZE_MODES)), factor, "lr"))
            ops.append(self._noise(rng, self.second_gaussian_sigma, self.second_poisson_level))
            q = self.second_jpeg_quality
            ops.append(Jpeg(int(rng.integers(q[0], q[1] + 1))))
        return tuple(ops)

    def degrade(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Draw a recipe and a final resize mode from ``rng`` and apply them to ``hr``."""
        recipe = self.sample(rng)
        final_mode = str(rng.choice(RESIZE_MODES))
        return apply(recipe, hr, scale, rng, final_mode=final_mode)


#: The fixed member used for the validation sets: a soft lens, bicubic to the LR grid,
#: moderate colour sensor noise and web-grade JPEG (what a phone photo is at pixel level).
VALIDATION_RECIPE: Recipe = (
    Blur("gaussian", 13, 1.2, 1.2),
    Resize("bicubic", 1.0, "lr"),
    Noise("gaussian", 5.0, False),
    Jpeg(75),
)


#: A second fixed member, from the two-pass web chain rather than the camera pass, never used
#: to choose checkpoints: a photo shrunk to 60% with a slight blur, gray shot noise, JPEG 60,
#: then a second JPEG 85 on the LR grid (an image saved, resized and saved again).
HELD_OUT_RECIPE: Recipe = (
    Blur("gaussian", 9, 0.8, 0.8),
    Resize("bilinear", 0.6, "hr"),
    Noise("poisson", 1.0, True),
    Jpeg(60),
    Resize("bicubic", 1.0, "lr"),
    Jpeg(85),
)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if size == tuple(x.shape[-2:]):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if mode == "area":
        # area averaging is a downscaler; upwards it would be nearest-neighbour
        return F.interpolate(x, size=size, mode="area") if down else F.interpolate(
            x, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=down)


def _blur_apply(x: torch.Tensor, op: Blur) -> torch.Tensor:
    # by FFT: a 21-px depthwise convolution is several times slower on the CPU. Every kernel
    # here is point-symmetric, so convolution and correlation agree.
    k = torch.from_numpy(blur_kernel(op)).to(torch.float64)
    r = op.size // 2
    h, w = x.shape[-2:]
    xp = F.pad(x, (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate").to(torch.float64)
    ph, pw = xp.shape[-2:]
    kp = torch.zeros(ph, pw, dtype=torch.float64)
    kp[: op.size, : op.size] = k
    kp = torch.roll(kp, shifts=(-r, -r), dims=(0, 1))
    out = torch.fft.irfft2(torch.fft.rfft2(xp) * torch.fft.rfft2(kp), s=(ph, pw))
    return out[..., r : r + h, r : r + w].to(x.dtype)


def _noise_apply(x: torch.Tensor, op: Noise, rng: np.random.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    if op.kind == "gaussian":
        shape = (1, 1 if op.gray else 3, h, w)
        noise = torch.from_numpy(rng.standard_normal(shape)).to(x.dtype) * (op.level / 255.0)
    elif op.kind == "poisson":
        img = x.clamp(0, 1)
        if op.gray:
            img = 0.299 * img[:, :1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        noise = (torch.poisson(img * 256.0, generator=gen) / 256.0 - img) * op.level
    else:
        raise ValueError(f"unknown noise kind {op.kind!r}")
    return (x + noise).clamp(0, 1).mul(255).round().div(255)


def _denoise_apply(x: torch.Tensor, op: Denoise) -> torch.Tensor:
    r = max(1, math.ceil(2 * op.sigma_space))
    k = 2 * r + 1
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    spatial = torch.exp(-(yy**2 + xx**2).to(x.dtype) / (2 * op.sigma_space**2)).reshape(1, 1, k * k, 1)
    for _ in range(op.passes):
        pad = F.pad(x, (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate")
        win = F.unfold(pad, k).reshape(1, 3, k * k, h * w)
        centre = x.reshape(1, 3, 1, h * w)
        dist = (win - centre).pow(2).sum(1, keepdim=True)
        weight = spatial * torch.exp(-dist / (2 * op.sigma_range**2))
        x = ((win * weight).sum(2) / weight.sum(2)).reshape(1, 3, h, w)
    return x.clamp(0, 1).mul(255).round().div(255)


def _sharpen_apply(x: torch.Tensor, op: Sharpen) -> torch.Tensor:
    size = 2 * math.ceil(3 * op.sigma) + 1
    blurred = _blur_apply(x, Blur("gaussian", size, op.sigma, op.sigma))
    return (x + op.amount * (x - blurred)).clamp(0, 1).mul(255).round().div(255)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _jpeg_apply(x: torch.Tensor, op: Jpeg, trace: list | None) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(x)).save(buf, format="JPEG", quality=op.quality)
    data = buf.getvalue()
    if trace is not None:
        trace.append(("jpeg", data))
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1)[None].to(x.dtype).div(255)


def apply(
    recipe: Sequence[Blur | Resize | Noise | Denoise | Sharpen | Jpeg],
    hr: np.ndarray,
    scale: int,
    rng: np.random.Generator,
    *,
    final_mode: str = "bicubic",
    trace: list | None = None,
) -> np.ndarray:
    """Degrade ``hr`` (H, W, 3) uint8, H and W multiples of ``scale``, to (H/scale, W/scale, 3) uint8.

    Noise draws come from ``rng``. ``trace``, when given, receives ``(stage, value)`` pairs
    in order: the JPEG bytes as encoded (``"jpeg"``) and the array before the final resize
    (``"before_final_resize"``).
    """
    if hr.ndim != 3 or hr.shape[2] != 3 or hr.dtype != np.uint8:
        raise ValueError("hr must be an (H, W, 3) uint8 array")
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"hr size {hr.shape[:2]} is not a multiple of {scale}")
    H, W = hr.shape[:2]
    lr_size = (H // scale, W // scale)
    x = torch.from_numpy(np.array(hr, copy=True)).permute(2, 0, 1)[None].to(torch.float32).div(255)
    for op in recipe:
        if isinstance(op, Blur):
            x = _blur_apply(x, op)
        elif isinstance(op, Resize):
            ref = (H, W) if op.base == "hr" else lr_size
            size = (max(8, round(ref[0] * op.factor)), max(8, round(ref[1] * op.factor)))
            x = _resize(x, size, op.mode)
        elif isinstance(op, Noise):
            x = _noise_apply(x, op, rng)
        elif isinstance(op, Denoise):
            x = _denoise_apply(x, op)
        elif isinstance(op, Sharpen):
            x = _sharpen_apply(x, op)
        elif isinstance(op, Jpeg):
            x = _jpeg_apply(x, op, trace)
        else:
            raise TypeError(f"not a degradation operation: {op!r}")
    if trace is not None:
        trace.append(("before_final_resize", _to_uint8(x)))
    mode = final_mode if recipe else "bicubic"
    return _to_uint8(_resize(x.clamp(0, 1), lr_size, mode))
