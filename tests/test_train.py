"""Training smoke test (CI never trains for real) and the MATLAB bicubic degradation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import BENCHMARK, need
from lia_upscale.tools.bicubic import matlab_downscale_uint8
from lia_upscale.cli import main
from lia_upscale.models import load_model, read_header
from lia_upscale.nn import VARIANTS, PlainUSR
from lia_upscale.errors import LiaError
from lia_upscale.tools.checkpoint import load_checkpoint, save_checkpoint
from lia_upscale.tools.train import TrainConfig, benchmark_pairs, evaluate_psnr, init_identity, train


def _smooth(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field: learnable, unlike noise, and far from nearest-neighbour."""
    coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def _training_folder(folder: Path, rng: np.random.Generator, count: int, size: int) -> Path:
    folder.mkdir()
    for i in range(count):
        Image.fromarray(_smooth(rng, size)).save(folder / f"{i}.png")
    return folder


def test_train_exports_a_model_that_beats_its_initialisation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = _training_folder(tmp_path / "hr", rng, 6, 96)
    val = tmp_path / "val"
    val.mkdir()
    for i in range(2):
        hr = _smooth(rng, 64)
        Image.fromarray(hr).save(val / f"v{i}_HR.png")
        Image.fromarray(matlab_downscale_uint8(hr, 2)).save(val / f"v{i}_LR.png")
    out = tmp_path / "tiny.safetensors"
    args = ["train", str(data), "--out", str(out), "--scale", "2", "--iterations", "60", "--batch", "4",
            "--patch", "16", "--eval-dir", str(val), "--eval-every", "30", "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    header = read_header(out)
    assert header.variant == "U" and header.scale == 2
    trained = load_model(out)
    torch.manual_seed(0)
    start = PlainUSR(VARIANTS["U"].with_scale(2))
    init_identity(start)
    pairs = benchmark_pairs(val)
    assert evaluate_psnr(trained.module, pairs, torch.device("cpu")) > evaluate_psnr(start, pairs, torch.device("cpu")) + 0.5
    # an existing --out is never replaced unasked (issue 25): refused before any training
    exported = out.read_bytes()
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "exists; not replaced without --overwrite" in refused.output, refused.output
    assert out.read_bytes() == exported
    # the checkpoint resumes: the same command with --overwrite finds the run finished and re-exports
    again = CliRunner().invoke(main, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert load_model(out).module.state_dict()["head.weight"].equal(trained.module.state_dict()["head.weight"])


def test_matlab_bicubic_reproduces_the_benchmark_lr_files() -> None:
    """Our degradation matches the benchmark's MATLAB imresize LR files: measured 85-90 % of
    samples identical, the rest off by one (two at most), away from the 2-px border."""
    folder = need(BENCHMARK / "Set5" / "x4")
    for hr_path in sorted(folder.glob("*_HR.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(str(hr_path).replace("_HR", "_LR")).convert("RGB")).astype(int)
        ours = matlab_downscale_uint8(hr, 4).astype(int)
        inner = np.abs(ours - lr)[2:-2, 2:-2]  # the files' borders were made from uncropped images
        assert ours.shape == lr.shape
        assert inner.max() <= 2 and (inner == 0).mean() > 0.84 and inner.mean() < 0.16


def test_the_loss_is_part_of_the_recipe_and_older_checkpoints_resume(tmp_path: Path) -> None:
    """l1 or l2; a checkpoint written before the recipe had a loss resumes as l1 and is
    refused as l2 (another recipe), and an unknown loss is one error."""
    data = _training_folder(tmp_path / "hr", np.random.default_rng(1), 2, 64)
    ckpt = tmp_path / "run.ckpt"
    cfg = TrainConfig(variant="U", scale=2, iterations=2, batch=2, patch=16, warmup=1, checkpoint_every=1)
    with pytest.raises(LiaError, match="unknown loss"):
        train([data], ckpt, TrainConfig(**{**cfg.__dict__, "loss": "l3"}))
    l2 = train([data], tmp_path / "l2.ckpt", TrainConfig(**{**cfg.__dict__, "loss": "l2"}))
    l1 = train([data], ckpt, cfg)
    assert not l1.state_dict()["head.weight"].equal(l2.state_dict()["head.weight"])
    state = load_checkpoint(ckpt)
    del state["config"]["loss"]  # as written before the field existed
    save_checkpoint(ckpt, state)
    again = train([data], ckpt, cfg)  # finished: the weights come back from the checkpoint
    assert again.state_dict()["head.weight"].equal(l1.state_dict()["head.weight"])
    with pytest.raises(LiaError, match="another recipe"):
        train([data], ckpt, TrainConfig(**{**cfg.__dict__, "loss": "l2"}))


def test_the_photo_family_camera_share_is_part_of_the_recipe(tmp_path: Path) -> None:
    """camera_prob reaches the degradation family the batches are drawn from; out of range is one error."""
    from lia_upscale.tools.degradations import PhotoDegradation
    from lia_upscale.tools.train import _photo_family

    assert _photo_family(TrainConfig(degradation="photo")) == PhotoDegradation()
    assert _photo_family(TrainConfig(degradation="photo", camera_prob=0.8)) == PhotoDegradation(camera_prob=0.8)
    data = _training_folder(tmp_path / "hr", np.random.default_rng(2), 2, 64)
    with pytest.raises(LiaError, match="camera_prob"):
        train([data], tmp_path / "c.ckpt", TrainConfig(variant="U", scale=2, degradation="photo", camera_prob=1.5))
