"""Every official checkpoint reproduces the published-protocol figures, tiled and in float16.

Needs ../shared (the checkpoints and Set5/Set14); skipped cleanly without it.
"""

from __future__ import annotations

import json
import math

import numpy as np

import pytest
from click.testing import CliRunner

from lia_upscale.api import Upscaler
from lia_upscale.cli import main
from lia_upscale.tools.evaluate import evaluate, find_pairs

from conftest import BENCHMARK, OFFICIAL, need, official_files


def _scale(name: str) -> int:
    return int(name.split("_x")[1][0])


def _score(up: Upscaler, folder):
    return evaluate(find_pairs(folder), lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy(), up.scale)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(need(BENCHMARK / "reference_psnr.json").read_text())["results"]


def _to8(x) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", official_files())
def test_checkpoint_matches_reference_tiles_seam_exact_and_runs_fp16(name: str, reference: dict) -> None:
    """One pass per checkpoint, sharing the whole-image outputs between the checks:
    Set5/Set14 PSNR-Y/SSIM-Y match the reference within 0.01 dB / 0.0005; every Set14 image
    tiled at the default context (tiles of 256/scale LR px, so every image is split) is
    >= 60 dB from the whole-image output with no pixel off by more than 2/255; eval with
    --tile 128 is within 0.005 dB of --tile 0; float16 is finite without the float32
    fallback and within 0.05 dB."""
    weights = need(OFFICIAL / name)
    s = _scale(name)
    whole = Upscaler(weights=weights, device="cpu", precision="fp32", tile=0)
    got = _score(whole, BENCHMARK / "Set5" / f"x{s}")
    want = reference[name]["Set5"]
    assert got.images == want["images"]
    assert got.psnr_y == pytest.approx(want["psnr_y"], abs=0.01)
    assert got.ssim_y == pytest.approx(want["ssim_y"], abs=0.0005)

    split = Upscaler(weights=weights, device="cpu", precision="fp32", tile=256 // s)
    split_outputs = []

    def whole_and_seams(rgb: np.ndarray) -> np.ndarray:
        w, t = whole.upscale_tensor(rgb), split.upscale_tensor(rgb)
        d = _to8(w).astype(int) - _to8(t).astype(int)
        mse = float(np.mean(d.astype(float) ** 2))
        assert mse == 0 or 10 * math.log10(255**2 / mse) >= 60
        assert np.abs(d).max() <= 2
        split_outputs.append(t)
        return w.permute(1, 2, 0).numpy()

    folder = BENCHMARK / "Set14" / f"x{s}"
    set14 = evaluate(find_pairs(folder), whole_and_seams, s)
    want = reference[name]["Set14"]
    assert set14.images == want["images"] == len(split_outputs)
    assert set14.psnr_y == pytest.approx(want["psnr_y"], abs=0.01)
    assert set14.ssim_y == pytest.approx(want["ssim_y"], abs=0.0005)

    if s == 2:  # 256 // 2 == 128: the split pass above already was eval --tile 128
        again = iter(split_outputs)
        tiled = evaluate(find_pairs(folder), lambda rgb: next(again).permute(1, 2, 0).numpy(), s)
    else:
        tiled = _score(Upscaler(weights=weights, device="cpu", precision="fp32", tile=128), folder)
    assert tiled.psnr_y == pytest.approx(set14.psnr_y, abs=0.005)

    half = Upscaler(weights=weights, device="cpu", precision="fp16", tile=0)
    fp16 = _score(half, folder)
    assert half.engine.fallbacks == 0  # every float16 output was finite on its own
    assert fp16.psnr_y == pytest.approx(set14.psnr_y, abs=0.05)


def test_eval_command_json() -> None:
    weights = need(OFFICIAL / "PlainUSRU_Rep_x4.pth")
    folder = need(BENCHMARK / "Set5" / "x4")
    result = CliRunner().invoke(main, ["eval", str(folder), "--weights", str(weights), "--tile", "0", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["images"] == 5 and out["scale"] == 4 and out["variant"] == "U"
    assert out["psnr_y"] == pytest.approx(30.772, abs=0.01)
    assert out["ssim_y"] == pytest.approx(0.8698, abs=0.0005)


def test_eval_refuses_a_model_of_the_wrong_scale() -> None:
    weights = need(OFFICIAL / "PlainUSRU_Rep_x2.pth")
    result = CliRunner().invoke(main, ["eval", str(need(BENCHMARK / "Set5" / "x4")), "--weights", str(weights)])
    assert result.exit_code == 2 and "x4" in result.stderr
