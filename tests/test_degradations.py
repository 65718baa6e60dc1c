"""The photo degradation family: seeded, right size and dtype, JPEG really applied; and
fine-tuning with it through the `train` command."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from lia_upscale.cli import main
from lia_upscale.tools.degradations import (
    VALIDATION_RECIPE,
    Blur,
    Jpeg,
    Noise,
    PhotoDegradation,
    Resize,
    apply,
    blur_kernel,
)
from lia_upscale.models import load_model, save_weights
from lia_upscale.nn import VARIANTS, PlainUSR


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour with some fine texture, so blur, noise and JPEG all change it."""
    coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)).astype(np.int16)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


HR = _photo(np.random.default_rng(1), 48, 64)


@pytest.mark.parametrize("scale", [2, 4])
def test_same_seed_same_output_and_right_size_and_dtype(scale: int) -> None:
    family = PhotoDegradation()
    outs = []
    for seed in range(40):
        a = family.degrade(HR, scale, np.random.default_rng(seed))
        b = family.degrade(HR, scale, np.random.default_rng(seed))
        assert a.shape == (48 // scale, 64 // scale, 3) and a.dtype == np.uint8
        assert a.tobytes() == b.tobytes()
        outs.append(a.tobytes())
    assert len(set(outs)) > 30  # seeds give different degradations


def test_the_family_covers_clean_and_two_pass_recipes() -> None:
    recipes = [PhotoDegradation().sample(np.random.default_rng(s)) for s in range(300)]
    assert sum(r == () for r in recipes) > 10  # near-clean inputs are in the range
    two_pass = [r for r in recipes if sum(isinstance(op, Jpeg) for op in r) == 2]
    assert len(two_pass) > 50
    kinds = {op.kind for r in recipes for op in r if isinstance(op, Blur)}
    assert kinds == {"gaussian", "generalized", "plateau"}
    assert {op.kind for r in recipes for op in r if isinstance(op, Noise)} == {"gaussian", "poisson"}
    assert {op.mode for r in recipes for op in r if isinstance(op, Resize)} == {"area", "bilinear", "bicubic"}
    ups = [op.factor for r in recipes for op in r if isinstance(op, Resize) and op.base == "hr"]
    assert min(ups) < 1 < max(ups)


def test_jpeg_bytes_are_what_the_final_resize_reads() -> None:
    trace: list = []
    recipe = (Noise("gaussian", 8.0, False), Jpeg(30))
    lr = apply(recipe, HR, 2, np.random.default_rng(0), trace=trace)
    assert [stage for stage, _ in trace] == ["jpeg", "before_final_resize"]
    data = trace[0][1]
    assert data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (64, 48)
        decoded = np.asarray(im.convert("RGB"))
    assert np.array_equal(trace[1][1], decoded)
    # quality 30 leaves its mark: the result differs from the same noise without JPEG
    plain = apply(recipe[:1], HR, 2, np.random.default_rng(0))
    assert np.abs(lr.astype(int) - plain.astype(int)).mean() > 1.0


def test_an_empty_recipe_is_antialiased_bicubic_downscaling() -> None:
    lr = apply((), HR, 4, np.random.default_rng(0))
    x = torch.from_numpy(HR.copy()).permute(2, 0, 1)[None].float() / 255
    ref = F.interpolate(x, size=(12, 16), mode="bicubic", antialias=True, align_corners=False)
    ref = ref[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(lr, ref)


@pytest.mark.parametrize("kind,beta", [("gaussian", 2.0), ("generalized", 0.7), ("plateau", 1.5)])
def test_blur_kernels_are_normalised_and_the_fft_blur_is_a_convolution(kind: str, beta: float) -> None:
    op = Blur(kind, 11, 2.0, 0.8, 0.6, beta)
    k = blur_kernel(op)
    assert k.shape == (11, 11) and abs(k.sum() - 1) < 1e-12 and np.allclose(k, k[::-1, ::-1])
    trace: list = []
    apply((op,), HR, 2, np.random.default_rng(0), trace=trace)
    x = torch.from_numpy(HR.copy()).permute(2, 0, 1)[None].float() / 255
    direct = F.conv2d(F.pad(x, (5, 5, 5, 5), mode="reflect"), torch.from_numpy(k).float().expand(3, 1, 11, 11),
                      groups=3)
    direct = direct[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(trace[-1][1].astype(int) - direct.astype(int)).max() <= 1


def test_validation_recipe_is_a_member_of_the_family_and_degrades() -> None:
    lr = apply(VALIDATION_RECIPE, HR, 4, np.random.default_rng(0))
    clean = apply((), HR, 4, np.random.default_rng(0))
    assert lr.shape == clean.shape and not np.array_equal(lr, clean)


def test_train_fine_tunes_on_photo_degradations(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "hr"
    data.mkdir()
    for i in range(4):
        Image.fromarray(_photo(rng, 96, 96)).save(data / f"{i}.png")
    torch.manual_seed(0)
    start = PlainUSR(VARIANTS["S"].with_scale(2))
    init = tmp_path / "start.safetensors"
    save_weights(init, start, variant="S", scale=2)
    out = tmp_path / "photo.safetensors"
    args = ["train", str(data), "--out", str(out), "--variant", "S", "--scale", "2", "--iterations", "4",
            "--batch", "2", "--patch", "24", "--degradation", "photo", "--ema", "0.5", "--init", str(init),
            "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    tuned = load_model(out)
    assert tuned.variant == "S" and tuned.scale == 2
    moved = [k for k, v in start.state_dict().items() if not torch.equal(v, tuned.module.state_dict()[k])]
    assert moved  # started from the file and trained
    # what is exported is the moving average, resumable from the checkpoint
    ckpt = torch.load(out.with_suffix(".ckpt"), weights_only=True)
    assert all(torch.equal(v, tuned.module.state_dict()[k]) for k, v in ckpt["ema"].items())
    assert any(not torch.equal(v, ckpt["model"][k]) for k, v in ckpt["ema"].items())
    # a start file of another variant is refused with one clear line
    bad = CliRunner().invoke(main, args[:-4] + ["--init", str(init), "--variant", "U", "--checkpoint",
                                                str(tmp_path / "other.ckpt"), "--overwrite"])
    assert bad.exit_code == 2 and "not U x2" in bad.output


def test_the_phone_share_adds_noise_reduction_then_sharpening_before_the_jpeg() -> None:
    """phone_prob 0 draws the earlier family exactly (no phone steps, the same recipes as the
    default); at 1 every camera pass reduces noise, may sharpen, and only then saves the JPEG."""
    from lia_upscale.tools.degradations import Denoise, Sharpen

    def draws(family: PhotoDegradation, seed: int) -> list:
        rng = np.random.default_rng(seed)
        return [family.sample(rng) for _ in range(400)]

    plain = draws(PhotoDegradation(), 5)
    assert draws(PhotoDegradation(phone_prob=0.0), 5) == plain
    assert not any(isinstance(op, (Denoise, Sharpen)) for r in plain for op in r)
    phone = [r for r in draws(PhotoDegradation(phone_prob=1.0, camera_prob=1.0), 5) if r]
    assert phone and all(any(isinstance(op, Denoise) for op in r) for r in phone)
    for r in phone:
        kinds = [type(op) for op in r]
        if Jpeg in kinds:
            assert kinds.index(Denoise) < kinds.index(Jpeg)
        if Sharpen in kinds:
            assert kinds.index(Denoise) < kinds.index(Sharpen)
    assert any(Sharpen in map(type, r) for r in phone)


def test_noise_reduction_keeps_edges_and_sharpening_leaves_halos() -> None:
    """The phone steps do what a phone does: a bilateral pass removes sensor noise on flat
    areas while a strong edge stays; unsharp masking overshoots on both sides of an edge."""
    from lia_upscale.tools.degradations import Denoise, Sharpen

    step = np.zeros((32, 32, 3), np.uint8)
    step[:, :16] = 60
    step[:, 16:] = 190
    hr = np.repeat(np.repeat(step, 2, 0), 2, 1)
    camera = (Resize("area", 1.0, "lr"), Noise("gaussian", 6.0, False))  # sensor noise on the LR grid
    noisy = apply(camera, hr, 2, np.random.default_rng(0))
    smooth = apply((*camera, Denoise(2.0, 0.1, 2)), hr, 2, np.random.default_rng(0))
    flat = (slice(4, 28), slice(2, 10))
    assert noisy[flat].std() > 5 and smooth[flat].std() < noisy[flat].std() / 4
    assert abs(int(smooth[16, 4, 0]) - 60) <= 3 and abs(int(smooth[16, 28, 0]) - 190) <= 3
    assert int(smooth[16, 17, 0]) - int(smooth[16, 14, 0]) > 100  # the edge is still a step
    sharp = apply((Resize("area", 1.0, "lr"), Sharpen(1.0, 1.0)), hr, 2, np.random.default_rng(0))
    assert sharp[16, 15, 0] < 60 - 10 and sharp[16, 16, 0] > 190 + 10
