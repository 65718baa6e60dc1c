"""Training a PlainUSR/LIA network from high-resolution photos (CPU by default)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from .. import images
from .bicubic import matlab_downscale_uint8
from .checkpoint import load_checkpoint, save_checkpoint
from ..errors import LiaError
from .degradations import PhotoDegradation
from .evaluate import find_pairs
from .metrics import psnr_y
from ..nn import VARIANTS, PlainUSR

__all__ = ["TrainConfig", "TrainStatus", "train", "training_files", "load_pairs", "benchmark_pairs"]

#: the photo family at its published ranges (the recipe of lia-photo-x2/-x4)
_PHOTO = PhotoDegradation()
_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


@functools.lru_cache(maxsize=8)
def _photo_family(cfg: TrainConfig) -> PhotoDegradation:
    family = _PHOTO if cfg.camera_prob is None else dataclasses.replace(_PHOTO, camera_prob=cfg.camera_prob)
    return dataclasses.replace(family, phone_prob=cfg.phone_prob) if cfg.phone_prob else family

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class TrainConfig:
    """The whole recipe; together with the data it fixes the result (seeded)."""

    variant: str = "U"
    scale: int = 4
    iterations: int = 30000
    batch: int = 16
    patch: int = 40  # LR patch edge; the HR patch is patch * scale
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup: int = 300
    seed: int = 0
    checkpoint_every: int = 250
    eval_every: int = 2000
    #: "bicubic" (MATLAB bicubic LR, the benchmark degradation) or "photo" (the camera-like
    #: family of :mod:`lia_upscale.tools.degradations`, drawn afresh for every patch)
    degradation: str = "bicubic"
    #: a weight file or model name to start from (fine-tuning); "" starts as nearest-neighbour
    init: str = ""
    #: decay of an exponential moving average of the weights, which is what gets scored and
    #: exported (0: off, the raw weights)
    ema: float = 0.0
    #: "l1" (mean absolute error) or "l2" (mean squared error, what PSNR scores: where the
    #: input leaves the answer uncertain, as under heavy noise, it aims at the mean)
    loss: str = "l1"
    #: with the photo degradation: ``PhotoDegradation.camera_prob``, the share of the
    #: degraded draws that are one camera pass on the LR grid (the rest take the two-pass
    #: web chain); None keeps the family's default
    camera_prob: float | None = None
    #: with the photo degradation: ``PhotoDegradation.phone_prob``, the share of camera
    #: passes that are a phone's pipeline (noise reduction and sharpening before the JPEG)
    phone_prob: float = 0.0


@dataclass(frozen=True)
class TrainStatus:
    """What the progress callback receives after each iteration."""

    iteration: int
    total: int
    loss: float
    lr: float
    psnr: float | None  # Set5 PSNR-Y when evaluated at this iteration


def _load_rgb(path: Path) -> np.ndarray:
    """8-bit RGB through the images package: a bad file is an ImageError naming it, not a traceback."""
    return (images.decode(path).rgb * 255).round().astype(np.uint8)


def training_files(dirs: Sequence[Path]) -> list[Path]:
    """The image files under ``dirs`` (recursively, by suffix), in a fixed order."""
    return [path for d in dirs for path in sorted(Path(d).rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]


def load_pairs(
    dirs: Sequence[Path], scale: int, min_hr: int, *, with_lr: bool = True
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """HR images from ``dirs`` cropped to a multiple of ``scale``, each with its MATLAB-bicubic LR
    (None when ``with_lr`` is false).

    Images whose shorter side is below ``min_hr`` are left out (they cannot hold a patch).
    """
    pairs = []
    for path in training_files(dirs):
        hr = _load_rgb(path)
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        if min(h, w) < min_hr:
            continue
        hr = np.ascontiguousarray(hr[:h, :w])
        pairs.append((hr, matlab_downscale_uint8(hr, scale) if with_lr else None))
    if not pairs:
        raise LiaError(f"no training images of at least {min_hr}px in {', '.join(map(str, dirs))}")
    return pairs


def benchmark_pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``*_HR.png`` / ``*_LR.png`` pairs of a benchmark folder as (hr, lr) arrays."""
    return [(_load_rgb(hr), _load_rgb(lr)) for lr, hr in find_pairs(Path(folder))]


def init_identity(model: PlainUSR) -> None:
    """Start as nearest-neighbour upscaling: head copies RGB into its last three channels, tail reads them."""
    n = model.config.features
    s2 = model.scale**2
    with torch.no_grad():
        head = model.head
        head.weight[n:] = 0
        head.bias[n:] = 0
        for c in range(3):
            head.weight[n + c, c, 1, 1] = 1.0
        tail = model.tail[0]
        tail.weight[:, n:] = 0
        tail.bias.zero_()
        for c in range(3):
            tail.weight[c * s2 : (c + 1) * s2, n + c, 1, 1] = 1.0


def _sample_batch(pairs, areas, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    s, p = cfg.scale, cfg.patch
    picks = torch.multinomial(areas, cfg.batch, replacement=True, generator=gen).tolist()
    photo = _photo_family(cfg) if cfg.degradation == "photo" else None
    lrs, hrs = [], []
    for i in picks:
        hr, lr = pairs[i]
        y = int(torch.randint(0, hr.shape[0] // s - p + 1, (1,), generator=gen))
        x = int(torch.randint(0, hr.shape[1] // s - p + 1, (1,), generator=gen))
        hr_patch = hr[y * s : (y + p) * s, x * s : (x + p) * s]
        if photo is not None:
            # the degradation's own generator is seeded from the training one, so a resumed
            # run draws the same degradations
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
            lrs.append(photo.degrade(np.ascontiguousarray(hr_patch), s, rng))
        else:
            lrs.append(lr[y : y + p, x : x + p])
        hrs.append(hr_patch)
    lr_t = torch.from_numpy(np.stack(lrs)).permute(0, 3, 1, 2).float().div_(255)
    hr_t = torch.from_numpy(np.stack(hrs)).permute(0, 3, 1, 2).float().div_(255)
    flips = torch.randint(0, 2, (3,), generator=gen).tolist()
    if flips[0]:
        lr_t, hr_t = lr_t.flip(3), hr_t.flip(3)
    if flips[1]:
        lr_t, hr_t = lr_t.flip(2), hr_t.flip(2)
    if flips[2]:
        lr_t, hr_t = lr_t.transpose(2, 3), hr_t.transpose(2, 3)
    return lr_t.contiguous(), hr_t.contiguous()


def _lr_at(cfg: TrainConfig, it: int) -> float:
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    t = (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate_psnr(model: PlainUSR, pairs, device: torch.device) -> float:
    """Mean PSNR-Y (border = scale) of whole-image float32 inference over (hr, lr) pairs."""
    model.eval()
    scores = []
    for hr, lr in pairs:
        x = torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
        sr = model(x).clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).cpu().numpy()
        scores.append(psnr_y(sr, hr, model.scale))
    model.train()
    return float(np.mean(scores))


def train(
    data_dirs: Sequence[Path],
    checkpoint: Path,
    cfg: TrainConfig,
    *,
    eval_dir: Path | None = None,
    device: str = "cpu",
    on_status: Callable[[TrainStatus], None] | None = None,
) -> PlainUSR:
    """Train (or resume from ``checkpoint``) and return the trained deploy network.

    L1 loss (or L2: ``cfg.loss``), Adam with linear warm-up and cosine decay, random crops with flips and
    transposes, LR made by MATLAB-style bicubic downscaling and rounded to 8 bits, or by
    the photo degradation family (``cfg.degradation``). ``cfg.init`` fine-tunes a weight
    file or named model instead of starting as nearest-neighbour upscaling. The
    checkpoint (model, optimiser, RNG, iteration) is rewritten atomically every
    ``cfg.checkpoint_every`` iterations, so a killed run resumes where it stopped.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.degradation not in ("bicubic", "photo"):
        raise LiaError(f"unknown degradation {cfg.degradation!r} (bicubic or photo)")
    if cfg.loss not in _LOSSES:
        raise LiaError(f"unknown loss {cfg.loss!r} (l1 or l2)")
    loss_fn = _LOSSES[cfg.loss]
    if cfg.camera_prob is not None and not 0 <= cfg.camera_prob <= 1:
        raise LiaError(f"camera_prob must be between 0 and 1, not {cfg.camera_prob}")
    if not 0 <= cfg.phone_prob <= 1:
        raise LiaError(f"phone_prob must be between 0 and 1, not {cfg.phone_prob}")
    if cfg.init:
        from ..models import load_model

        start_model = load_model(cfg.init)
        if (start_model.variant, start_model.scale) != (cfg.variant, cfg.scale):
            raise LiaError(f"{cfg.init} is {start_model.variant} x{start_model.scale}, "
                           f"not {cfg.variant} x{cfg.scale}")
        model = start_model.module
    else:
        model = PlainUSR(VARIANTS[cfg.variant].with_scale(cfg.scale))
        init_identity(model)
    model.to(dev).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema > 0 else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    start = 0
    if checkpoint.exists():
        state = load_checkpoint(checkpoint)
        # a field added to the recipe since the checkpoint was written counts at its default
        if {**asdict(TrainConfig()), **state["config"]} != asdict(cfg):
            raise LiaError(f"{checkpoint} was made with another recipe: {state['config']}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        gen.set_state(state["generator"])
        start = state["iteration"]
        if ema is not None:
            ema.load_state_dict(state["ema"])
    pairs = load_pairs(data_dirs, cfg.scale, cfg.patch * cfg.scale, with_lr=cfg.degradation == "bicubic")
    areas = torch.tensor([float(hr.shape[0] * hr.shape[1]) for hr, _ in pairs], dtype=torch.float64)
    bench = benchmark_pairs(eval_dir) if eval_dir else []

    def save(it: int) -> None:
        save_checkpoint(
            checkpoint,
            {"model": model.state_dict(), "optim": opt.state_dict(), "generator": gen.get_state(),
             "iteration": it, "config": asdict(cfg), **({"ema": ema.state_dict()} if ema is not None else {})},
        )

    for it in range(start, cfg.iterations):
        lr_now = _lr_at(cfg, it)
        for g in opt.param_groups:
            g["lr"] = lr_now
        lr_t, hr_t = _sample_batch(pairs, areas, cfg, gen)
        loss = loss_fn(model(lr_t.to(dev)), hr_t.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1.0 - cfg.ema)
        done = it + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            save(done)
        psnr = None
        if bench and (done % cfg.eval_every == 0 or done == cfg.iterations):
            psnr = evaluate_psnr(ema if ema is not None else model, bench, dev)
        if on_status:
            on_status(TrainStatus(done, cfg.iterations, float(loss.detach()), lr_now, psnr))
    model.eval()
    return ema if ema is not None else model
