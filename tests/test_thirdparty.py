"""Third-party PlainUSR weights (issue 13): other trainers' layouts and upstream's training form.

BasicSR-style trainers (neosr and others) save ``params_ema``/``params``/``state_dict``
wrappers, ``module.`` prefixes or safetensors without our metadata; upstream's training
code saves re-parameterisable blocks. All load by shape detection with one warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from conftest import BENCHMARK, OFFICIAL, need
from lia_upscale.api import Upscaler
from lia_upscale.cli import main
from lia_upscale.errors import WeightsError
from lia_upscale.models import fold_training_state, is_training_form, load_model
from lia_upscale.nn import VARIANTS, PlainUSR, block_names
from lia_upscale.tools.evaluate import evaluate, find_pairs


def _random_state(variant: str = "U", scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    module = PlainUSR(VARIANTS[variant].with_scale(scale))
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.1)
    return {k: v.contiguous() for k, v in module.state_dict().items()}


def _layouts(state: dict[str, torch.Tensor], folder: Path) -> dict[str, Path]:
    """The third-party layouts of ``state``, written into ``folder``."""
    zeros = {k: torch.zeros_like(v) for k, v in state.items()}
    prefixed = {f"module.{k}": v for k, v in state.items()}
    files = {
        # params_ema is the one to use when both are present
        "params_ema": (folder / "ema.pth", {"params": zeros, "params_ema": state}),
        "params": (folder / "params.pth", {"params": state}),
        "state_dict": (folder / "sd.pth", {"state_dict": state, "optimizer": {}}),
        "module.": (folder / "dp.pth", prefixed),
    }
    for path, obj in files.values():
        torch.save(obj, path)
    save_file(state, folder / "bare.safetensors")
    save_file(prefixed, folder / "pt.safetensors", metadata={"format": "pt"})
    return {**{k: p for k, (p, _) in files.items()}, "bare": folder / "bare.safetensors",
            "module. safetensors": folder / "pt.safetensors"}


@pytest.mark.parametrize("layout", ["params_ema", "params", "state_dict", "module.", "bare", "module. safetensors"])
def test_third_party_layouts_load_with_one_warning(tmp_path: Path, layout: str) -> None:
    state = _random_state()
    path = _layouts(state, tmp_path)[layout]
    warnings: list[str] = []
    model = load_model(path, on_warning=warnings.append)
    assert (model.variant, model.scale) == ("U", 4)
    loaded = model.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"{path}: third-party PlainUSR weights") and "variant U x4" in warnings[0]
    assert ("metadata" in warnings[0]) == layout.startswith(("bare", "module. s"))


def test_our_files_and_flat_checkpoints_load_silently(tmp_path: Path) -> None:
    from lia_upscale.models import save_weights

    state = _random_state()
    torch.save(state, tmp_path / "flat.pth")
    save_weights(tmp_path / "ours.safetensors", state)
    for name in ("flat.pth", "ours.safetensors"):
        warnings: list[str] = []
        load_model(tmp_path / name, on_warning=warnings.append)
        assert warnings == []


def test_foreign_safetensors_still_checked_before_tensors_load(tmp_path: Path, monkeypatch) -> None:
    from lia_upscale.models import weightfile

    state = _random_state()
    state["stray"] = torch.zeros(2)
    save_file(state, tmp_path / "bad.safetensors")
    monkeypatch.setattr(weightfile, "_safetensors_load", lambda *a: pytest.fail("tensors read before the check"))
    with pytest.raises(WeightsError, match=r"bad.safetensors: state dict does not fit|unexpected keys: stray"):
        load_model(tmp_path / "bad.safetensors")


def test_cli_prints_exactly_one_warning_line(tmp_path: Path) -> None:
    state = _random_state("U", 2)
    path = _layouts(state, tmp_path)["params_ema"]
    Image.new("RGB", (12, 10), (120, 60, 30)).save(tmp_path / "in.png")
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), str(tmp_path / "out"),
                                       "--weights", str(path), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len([line for line in lines if "warning:" in line]) == 1, result.stderr
    assert any("third-party PlainUSR weights (params_ema wrapper)" in line for line in lines), result.stderr
    assert (tmp_path / "out" / "in.png").is_file()


# --- upstream's training form -----------------------------------------------------------
# Built from the structure of icandle/PlainUSR archs/PlainUSR_train_arch.py (same state-dict
# names, same forward), written here independently: the fold is checked against it.


class _ASR(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.tensor = nn.Parameter(torch.rand(1, c, 1, 1))
        self.se = nn.Sequential(nn.Identity(), nn.Linear(c, c // 4, bias=False), nn.SiLU(),
                                nn.Linear(c // 4, c, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.tensor.mean((2, 3))).view(1, -1, 1, 1) * x


class _MBConv(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.expand_conv = nn.Conv2d(n, 2 * n, 1)
        self.fea_conv = nn.Conv2d(2 * n, 2 * n, 3)
        self.reduce_conv = nn.Conv2d(2 * n, n, 1)
        self.se = _ASR(2 * n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand_conv(x)
        b0 = self.expand_conv.bias.view(1, -1, 1, 1)
        padded = F.pad(e - b0, (1, 1, 1, 1)) + b0  # the border is the bias, as upstream pads
        return self.reduce_conv(self.se(self.fea_conv(padded)) + e) + x


class _PConv(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), x[:, 1:]], 1)


class _SoftPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x)
        return F.avg_pool2d(e * x, 7, 3) / F.avg_pool2d(e, 7, 3)


class _LIA(nn.Module):
    def __init__(self, c: int, f: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, f, 1), _SoftPool(), nn.Conv2d(f, f, 3, 2, 1),
                                  nn.Conv2d(f, c, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.interpolate(self.body(x), x.shape[-2:], mode="bilinear", align_corners=False)
        return x * w * torch.sigmoid(x[:, :1])


class _Light(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x[:, :1]) * self.body(x)


class _TrainNet(nn.Module):
    """Training-form PlainUSR (ultra: Blockv1/Blockv3; general/large: Blockv2/Blockv4)."""

    def __init__(self, variant: str, scale: int) -> None:
        super().__init__()
        cfg = VARIANTS[variant]
        self.widths, self.names = cfg.widths, block_names(len(cfg.widths))
        self.head = nn.Conv2d(3, cfg.features + 3, 3, 1, 1)
        for i, (name, c) in enumerate(zip(self.names, cfg.widths)):
            units: list[nn.Module] = [_MBConv(c)]
            for _ in range(cfg.convs - 1):
                units += [nn.LeakyReLU(0.05), _MBConv(c)]
            if cfg.attention == "lia":
                units += [_PConv(c), _LIA(c, cfg.lia_channels)]
            elif i == len(self.names) // 2:
                units += [_PConv(c), _Light(c)]
            block = nn.Module()
            block.body = nn.Sequential(*units)
            self.add_module(name, block)
        self.tail = nn.Sequential(nn.Conv2d(cfg.features + 3, 3 * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for name, c in zip(self.names, self.widths):
            x = torch.cat([getattr(self, name).body(x[:, :c]), x[:, c:]], 1)
        return self.tail(x)


@pytest.mark.parametrize(("variant", "scale"), [("U", 2), ("S", 4), ("L", 2)])
def test_training_form_folds_into_the_deploy_form(tmp_path: Path, variant: str, scale: int) -> None:
    torch.manual_seed(1)
    train = _TrainNet(variant, scale).eval()
    with torch.no_grad():
        for p in train.parameters():
            p.normal_(0.0, 0.1)  # random ASR scales and PConv rows too, not upstream's init
    state = train.state_dict()
    assert is_training_form(state) and not is_training_form(fold_training_state(state))
    torch.save({"params_ema": state}, tmp_path / "train.pth")
    warnings: list[str] = []
    model = load_model(tmp_path / "train.pth", on_warning=warnings.append)
    assert (model.variant, model.scale) == (variant, scale)
    assert len(warnings) == 1 and "training form folded" in warnings[0] and "params_ema wrapper" in warnings[0]
    x = torch.rand(2, 3, 29, 34, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = train(x), model.module(x)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max(), float((got - want).abs().max())


def test_training_form_with_stray_keys_is_refused(tmp_path: Path) -> None:
    state = _TrainNet("U", 2).state_dict()
    state["block1.body.0.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match=r"odd.pth: training-form checkpoint: unexpected keys block1.body.0.extra$"):
        load_model(tmp_path / "odd.pth")


# --- third-party layouts of an official checkpoint reproduce its reference PSNR ---------


@pytest.mark.parametrize("layout", ["params_ema", "module.", "bare"])
def test_third_party_layouts_reproduce_reference_psnr(tmp_path: Path, layout: str) -> None:
    name = "PlainUSRS_Rep_x2.pth"
    official = torch.load(need(OFFICIAL / name), map_location="cpu", weights_only=True)
    reference = json.loads(need(BENCHMARK / "reference_psnr.json").read_text())["results"][name]["Set5"]
    state = {k: v.contiguous() for k, v in official.items()}
    path = _layouts(state, tmp_path)[layout]
    warnings: list[str] = []
    up = Upscaler(weights=path, device="cpu", precision="fp32", tile=0, on_warning=warnings.append)
    assert len(warnings) == 1
    got = evaluate(find_pairs(need(BENCHMARK / "Set5" / "x2")),
                   lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy(), 2)
    assert got.images == reference["images"]
    assert got.psnr_y == pytest.approx(reference["psnr_y"], abs=0.01)
