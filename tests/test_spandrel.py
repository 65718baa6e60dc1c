"""The spandrel integration, against the real spandrel package (the ``spandrel`` extra).

Skipped without spandrel. spandrel imports torchvision at import time (for two of its
architectures, LaMa and RestoreFormer). Where the installed torchvision cannot load (a
CUDA build of it beside a CPU build of torch, as CI's wheels are: "operator
torchvision::nms does not exist"), the test gives spandrel a stand-in for the three
torchvision functions those architectures import; nothing PlainUSR touches uses them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BENCHMARK, OFFICIAL, need
from lia_upscale.api import Upscaler
from lia_upscale.models import embedded_weights_dir


def _torchvision_stand_in() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "spandrel")]:
        del sys.modules[name]

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stand-in: not available in this test environment")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    functional.rotate = functional.normalize = unavailable
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    sys.modules.update({"torchvision": package, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


@pytest.fixture(scope="module")
def spandrel():
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed (pip install 'lia-upscale[spandrel]')")
    try:
        module = importlib.import_module("spandrel")
    except RuntimeError as exc:
        if "torchvision" not in str(exc):
            raise
        _torchvision_stand_in()
        module = importlib.import_module("spandrel")
    importlib.import_module("lia_upscale.integrations.spandrel")
    return module


def _lr(scale: int) -> np.ndarray:
    from PIL import Image

    with Image.open(need(BENCHMARK / "Set5" / f"x{scale}" / f"img_001_SRF_{scale}_LR.png")) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)[:96, :80] / 255


def _compare(spandrel, path: Path, scale: int, variant: str) -> None:
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert descriptor.architecture.id == "PlainUSR" and descriptor.purpose == "SR"
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, 3, 3)
    assert variant in descriptor.tags
    rgb = _lr(scale)
    theirs = descriptor(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0]
    ours = Upscaler(weights=path, device="cpu", precision="fp32", tile=0).upscale_tensor(rgb)
    assert theirs.shape == ours.shape == (3, 96 * scale, 80 * scale)
    assert (theirs - ours).abs().max() <= 1 / 255


@pytest.mark.parametrize(("name", "variant"), [("PlainUSRU_Rep_x2.pth", "U"), ("PlainUSRS_Rep_x4.pth", "S"),
                                               ("PlainUSR_Rep_x2.pth", "base"), ("PlainUSRL_Rep_x4.pth", "L")])
def test_spandrel_loads_official_checkpoints_like_our_engine(spandrel, name: str, variant: str) -> None:
    _compare(spandrel, need(OFFICIAL / name), int(name[-5]), variant)


@pytest.mark.parametrize("name", ["lia-u-x4", "lia-u-x2", "lia-photo-x4"])
def test_spandrel_loads_our_safetensors_like_our_engine(spandrel, name: str) -> None:
    path = embedded_weights_dir() / f"{name}.safetensors"
    _compare(spandrel, path, int(name[-1]), "U" if name.startswith("lia-u") else load_variant(path))


def load_variant(path: Path) -> str:
    from lia_upscale.models import read_header

    return read_header(path).variant


def test_spandrel_loads_third_party_and_training_form(spandrel, tmp_path: Path) -> None:
    from test_thirdparty import _TrainNet

    train = _TrainNet("S", 2).eval()
    torch.save({"params_ema": train.state_dict()}, tmp_path / "train.pth")
    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / "train.pth")
    assert descriptor.architecture.id == "PlainUSR" and descriptor.scale == 2
    x = torch.rand(1, 3, 20, 23)
    with torch.no_grad():
        want = train(x).clamp(0, 1)
    assert (descriptor(x) - want).abs().max() <= 1e-4


def test_registration_is_idempotent_and_detection_is_specific(spandrel) -> None:
    from lia_upscale.integrations import spandrel as bridge

    before = len(spandrel.MAIN_REGISTRY)
    bridge.register()
    assert len(spandrel.MAIN_REGISTRY) == before and "PlainUSR" in spandrel.MAIN_REGISTRY
    support = spandrel.MAIN_REGISTRY["PlainUSR"]
    assert not support.detect({"head.weight": torch.zeros(5, 3, 3, 3), "tail.0.weight": torch.zeros(12, 5, 3, 3)})
    assert not support.detect({"body.0.weight": torch.zeros(64, 3, 3, 3)})
