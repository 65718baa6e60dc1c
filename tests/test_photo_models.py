"""The photo models are the default of `upscale` and `Upscaler()`; `eval` keeps the clean one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from lia_upscale import Upscaler
from lia_upscale.cli import main
from lia_upscale.tools.bicubic import matlab_downscale_uint8


def _image(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def test_upscaler_defaults_to_the_photo_model_and_clean_on_request() -> None:
    assert Upscaler(device="cpu").model.source == "lia-photo-x4"
    assert Upscaler(scale=2, device="cpu").model.source == "lia-photo-x2"
    clean = Upscaler(scale=2, purpose="clean", device="cpu")
    assert clean.model.source == "lia-u-x2" and clean.model.descriptor.purpose == "clean"


def test_cli_upscale_uses_the_photo_model_by_default(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(_image(np.random.default_rng(0), 40)).save(src)
    run = subprocess.run([sys.executable, "-m", "lia_upscale", str(src.parent), str(tmp_path / "out"), "--scale", "2",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(int)
    with Image.open(src) as im:
        want = np.asarray(Upscaler(model="lia-photo-x2", device="cpu").upscale(im)).astype(int)
        clean = np.asarray(Upscaler(model="lia-u-x2", device="cpu").upscale(im)).astype(int)
    # the child may run another thread count than this process: float sums differ in order
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - clean).mean() > 20 * max(np.abs(got - want).mean(), 0.01)


def test_eval_without_a_model_keeps_the_clean_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(2):
        hr = _image(rng, 48)
        Image.fromarray(hr).save(tmp_path / f"p{i}_HR.png")
        Image.fromarray(matlab_downscale_uint8(hr, 2)).save(tmp_path / f"p{i}_LR.png")
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "lia-u-x2"


def test_models_command_says_which_model_is_for_what() -> None:
    result = CliRunner().invoke(main, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0].startswith(("lia-", "plainusr-")):
            rows[cells[0]] = cells
    # the bare name labels the version it resolves to; earlier ones are pinned
    assert rows["lia-photo-x4"][1] == "L x4 photo" and rows["lia-photo-x4@3"][1] == "base x4 photo"
    assert rows["lia-photo-x2"][1] == "M x2 photo" and rows["lia-photo-x2@1"][1] == "S x2 photo"
    assert rows["lia-u-x4"][1] == "U x4 clean"
    assert rows["plainusr-base-x4"][1] == "base x4 clean"
