"""The GPU training script's dry run on the CPU: a tiny pack made here, a few iterations, a budget in seconds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lia_upscale.models import load_model, read_header, save_weights
from lia_upscale.nn import VARIANTS, PlainUSR
from lia_upscale.tools.bicubic import matlab_downscale_uint8
from lia_upscale.tools.train import benchmark_pairs, evaluate_psnr

ROOT = Path(__file__).resolve().parents[1]


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A source folder (one photo large enough for several tiles, two small ones), its pack,
    two validation pairs at x2 and a random S x2 to start from."""
    root = tmp_path_factory.mktemp("gpu")
    rng = np.random.default_rng(0)
    src = root / "photos"
    src.mkdir()
    Image.fromarray(_smooth(rng, 160, 200)).save(src / "big.png")
    Image.fromarray(_smooth(rng, 64, 72)).save(src / "small.jpg", quality=95)
    Image.fromarray(_smooth(rng, 20, 90)).save(src / "strip.png")  # too small for a patch: left out
    pack = root / "pack"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_train_pack.py"), str(src), "--out", str(pack),
                           "--tile", "96", "--least", "32"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    val = root / "val"
    val.mkdir()
    for i in range(2):
        hr = _smooth(rng, 48, 48)
        Image.fromarray(hr).save(val / f"v{i}_HR.png")
        Image.fromarray(matlab_downscale_uint8(hr, 2)).save(val / f"v{i}_LR.png")
    torch.manual_seed(0)
    start = PlainUSR(VARIANTS["S"].with_scale(2)).eval()
    init = root / "start.safetensors"
    save_weights(init, start, "S", 2)
    return {"root": root, "pack": pack, "val": val, "init": init}


def test_pack_is_area_sampled_jpeg_tiles(setup) -> None:
    pack = setup["pack"]
    manifest = json.loads((pack / "pack.json").read_text())
    tiles = sorted(pack.glob("*.jpg"))
    # big.png: 2 x 3 tiles of at most 96 px, all at least 32 px (160 = 96 + 64, 200 = 96 + 96 + 8: the
    # 8-px strip is dropped), small.jpg: one, strip.png: none
    assert manifest["tiles"] == len(tiles) == manifest["of"] == 5
    assert manifest["per_source"] == {"photos": 5}
    assert manifest["bytes"] == sum(t.stat().st_size for t in tiles)
    sizes = sorted(Image.open(t).size for t in tiles)
    assert sizes == [(72, 64), (96, 64), (96, 64), (96, 96), (96, 96)]


def _run(setup, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "scripts" / "train_gpu.py"), "--pack", str(setup["pack"]), "--val",
            str(setup["val"]), "--init", str(setup["init"]), "--out", str(out), "--device", "cpu", "--workers", "1",
            "--batch", "2", "--patch", "16", "--phone-prob", "0.5", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_dry_run_writes_ema_weights_and_scores_that_load(setup) -> None:
    out = setup["root"] / "out"
    run = _run(setup, out, "--iterations", "3", "--budget-s", "120", "--lr", "1e-3", "--ema", "0.5")
    assert run.returncode == 0, run.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["iterations"] == 3 and scores["patches"] == 6 and (scores["variant"], scores["scale"]) == ("S", 2)
    assert 0 <= scores["data_wait_seconds"] <= scores["train_seconds"]
    assert scores["device"] == "cpu" and math.isfinite(scores["start"]) and math.isfinite(scores["end"])
    header = read_header(out / "ema.safetensors")
    assert (header.variant, header.config.scale) == ("S", 2) and header.metadata["iterations"] == "3"
    ema, start = load_model(out / "ema.safetensors"), load_model(setup["init"])
    assert not torch.equal(ema.module.head.weight, start.module.head.weight)  # it trained
    val = benchmark_pairs(setup["val"])
    cpu = torch.device("cpu")
    assert abs(evaluate_psnr(ema.module, val, cpu) - scores["end"]) < 0.01  # the scores are of the file written
    assert abs(evaluate_psnr(start.module, val, cpu) - scores["start"]) < 0.01
    assert "end validation" in (out / "train.log").read_text()


def test_the_wall_clock_budget_ends_the_run(setup) -> None:
    out = setup["root"] / "budget"
    began = time.monotonic()
    run = _run(setup, out, "--budget-s", "20")
    took = time.monotonic() - began
    assert run.returncode == 0, run.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["iterations"] >= 1 and scores["wall_seconds"] <= 20 + 2  # no iteration limit: the clock stopped it
    assert took < 20 + 20  # the interpreter's start and imports on top of the budget
    assert load_model(out / "ema.safetensors").variant == "S"
