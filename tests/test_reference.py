"""Every official checkpoint reproduces the published-protocol figures, tiled and in float16.

Needs ../shared (the checkpoints and Set5/Set14); skipped cleanly without it.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lia_upscale.api import Upscaler
from lia_upscale.cli import main
from lia_upscale.evaluate import evaluate, find_pairs

from conftest import BENCHMARK, OFFICIAL, need, official_files


def _scale(name: str) -> int:
    return int(name.split("_x")[1][0])


def _score(up: Upscaler, folder):
    return evaluate(find_pairs(folder), lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy(), up.scale)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(need(BENCHMARK / "reference_psnr.json").read_text())["results"]


@pytest.mark.slow
@pytest.mark.parametrize("name", official_files())
def test_checkpoint_matches_reference_tiled_and_fp16(name: str, reference: dict) -> None:
    weights = need(OFFICIAL / name)
    s = _scale(name)
    whole = Upscaler(weights=weights, device="cpu", precision="fp32", tile=0)
    for bench in ("Set5", "Set14"):
        got = _score(whole, BENCHMARK / bench / f"x{s}")
        want = reference[name][bench]
        assert got.images == want["images"]
        assert got.psnr_y == pytest.approx(want["psnr_y"], abs=0.01), bench
        assert got.ssim_y == pytest.approx(want["ssim_y"], abs=0.0005), bench
    set14 = got

    tiled = _score(Upscaler(weights=weights, device="cpu", precision="fp32", tile=128), BENCHMARK / "Set14" / f"x{s}")
    assert tiled.psnr_y == pytest.approx(set14.psnr_y, abs=0.005)

    half = Upscaler(weights=weights, device="cpu", precision="fp16", tile=0)
    fp16 = _score(half, BENCHMARK / "Set14" / f"x{s}")
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
