"""``--tta``: the x8 dihedral self-ensemble, seam-exact with tiles, and worth its cost on Set5."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import BENCHMARK, DEVICE, need
from lia_upscale.api import Upscaler
from lia_upscale.cli import main
from lia_upscale.engine import Engine
from lia_upscale.engine.tta import TRANSFORMS, ensemble, forward_transform, inverse_transform
from lia_upscale.models import describe, load_model, save_weights
from lia_upscale.nn import VARIANTS, PlainUSR
from lia_upscale.tools.evaluate import evaluate, find_pairs

from test_tiling import load_official, load_rgb


def test_the_eight_transforms_are_the_dihedral_group_and_invert() -> None:
    image = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    seen = set()
    for k in range(TRANSFORMS):
        t = forward_transform(image, k)
        seen.add((tuple(t.shape), tuple(t.flatten().tolist())))
        assert torch.equal(inverse_transform(t, k), image)
    assert len(seen) == TRANSFORMS


def test_ensemble_of_an_equivariant_upscaler_is_that_upscaler() -> None:
    """Nearest-neighbour upscaling commutes with every transform: the mean of the eight
    inverse-transformed outputs is its output, and the result has the engine's layout."""
    image = torch.rand(3, 7, 11)
    nearest = lambda x, on_tile: x.repeat_interleave(2, -2).repeat_interleave(2, -1)
    calls: list[tuple[int, int]] = []

    def run(x, on_tile):
        on_tile(1, 1)
        return nearest(x, on_tile)

    out = ensemble(image, run, lambda done, total: calls.append((done, total)))
    assert torch.allclose(out, nearest(image, None), rtol=0, atol=1e-6)
    assert out.permute(1, 2, 0).is_contiguous()
    assert calls == [(k + 1, TRANSFORMS) for k in range(TRANSFORMS)]


def _random_weights(tmp_path: Path, variant: str, scale: int) -> Path:
    torch.manual_seed(0)
    module = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    path = tmp_path / f"{variant}.safetensors"
    save_weights(path, module)
    return path


@pytest.mark.parametrize("variant", ["S", "T"])
def test_tiled_tta_is_whole_image_tta_when_tiles_see_everything(tmp_path: Path, variant: str) -> None:
    """Context beyond the image (as in test_tiling): every tile of every transformed pass
    sees the whole transformed image, so tiled TTA must equal whole-image TTA to float
    rounding. A tile run at the wrong LIA alignment (a mirrored tile placed where it was
    in the unmirrored image) would miss this by far more."""
    model = load_model(_random_weights(tmp_path, variant, 2)).module
    wide = replace(describe(model), context=120)
    image = torch.rand(3, 45, 62, generator=torch.Generator().manual_seed(3))
    outs = []
    for tile in (0, 24):
        engine = Engine(model, DEVICE, torch.float32, tile, descriptor=wide)
        outs.append(ensemble(image, engine.run))
    whole, tiled = outs
    assert (tiled - whole).abs().max() < 1e-5
    plain = Engine(model, DEVICE, torch.float32, 0).run(image)
    assert (whole - plain).abs().max() > 1e-3  # the ensemble did something


def _psnr_and_worst(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    to8 = lambda x: x.clamp(0, 1).mul(255).round()
    d = to8(a) - to8(b)
    mse = float(d.pow(2).mean())
    return (math.inf if mse == 0 else 10 * math.log10(255**2 / mse)), int(d.abs().max())


def test_tiled_tta_matches_whole_image_tta_like_plain_tiling(tmp_path: Path) -> None:
    """An official LIA checkpoint at the default context: tiled TTA is within the tiling
    tests' tolerance (>= 60 dB, no pixel off by more than 2/255) of whole-image TTA, on
    an image whose sizes are not multiples of 6 (mirrored tiles change alignment)."""
    model = load_official("PlainUSRS_Rep_x4.pth")
    image = load_rgb(BENCHMARK / "Set14" / "x4" / "img_003_SRF_4_LR.png")[:, :64, :77]
    assert image.shape[-1] % 6 and image.shape[-2] % 6
    whole = ensemble(image, Engine(model, DEVICE, torch.float32, 0).run)
    tiled = ensemble(image, Engine(model, DEVICE, torch.float32, 48).run)
    psnr, worst = _psnr_and_worst(tiled, whole)
    assert psnr >= 60 and worst <= 2, (psnr, worst)


def test_tta_improves_set5_x4_for_lia_u_x4() -> None:
    folder = need(BENCHMARK / "Set5" / "x4")
    scores = {}
    for tta in (False, True):
        up = Upscaler(model="lia-u-x4", device="cpu", precision="fp32", tile=0, tta=tta)
        result = evaluate(find_pairs(folder), lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy(), 4)
        scores[tta] = result.psnr_y
    assert scores[True] - scores[False] > 0, scores


def test_cli_tta_for_upscale_and_eval(tmp_path: Path, nearest_weights) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    for flags, name in (([], "plain"), (["--tta"], "tta")):
        result = CliRunner().invoke(main, ["upscale", str(tmp_path / "a.png"), str(tmp_path / name),
                                           "--weights", str(nearest_weights[2]), "--device", "cpu", "-q", *flags])
        assert result.exit_code == 0, result.stderr
    # the nearest model is equivariant: the ensemble changes nothing to the pixel
    with Image.open(tmp_path / "plain" / "a.png") as p, Image.open(tmp_path / "tta" / "a.png") as t:
        assert p.size == (26, 18) and np.array_equal(np.asarray(p), np.asarray(t))

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    Image.open(tmp_path / "a.png").save(pairs / "a_LR.png")
    (pairs / "a_HR.png").write_bytes((tmp_path / "plain" / "a.png").read_bytes())
    out = CliRunner().invoke(main, ["eval", str(pairs), "--weights", str(nearest_weights[2]), "--tta", "--json"])
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["tta"] is True and report["images"] == 1 and report["psnr_y"] == float("inf")


def test_upscaler_tta_runs_alpha_and_tiles(tmp_path: Path) -> None:
    """The API path (the whole-float network) ensembles colour and alpha alike."""
    path = _random_weights(tmp_path, "U", 2)
    rgba = Image.fromarray(np.random.default_rng(1).integers(0, 256, (10, 14, 4), dtype=np.uint8), "RGBA")
    plain = np.asarray(Upscaler(weights=path, device="cpu", tile=0).upscale(rgba)).astype(int)
    tta = np.asarray(Upscaler(weights=path, device="cpu", tile=6, tta=True).upscale(rgba)).astype(int)
    assert tta.shape == plain.shape == (20, 28, 4)
    assert np.abs(tta - plain).max() > 0  # U is not equivariant at random weights: TTA changes pixels
