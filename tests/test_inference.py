"""The inference path (nn.inference.infer) is the reference network within float rounding."""

from __future__ import annotations

import copy
import platform
import sys

import pytest
import torch

from conftest import DEVICE
from lia_upscale.engine.allocator import available, reuse_freed_memory
from lia_upscale.engine import Engine
from lia_upscale.nn import VARIANTS, Placement, PlainUSR
from lia_upscale.nn.inference import _routes, infer

CASES = [(v, s) for v in VARIANTS for s in (2, 4)]


def random_model(variant: str, scale: int) -> PlainUSR:
    torch.manual_seed(0)
    module = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    return module.to(DEVICE)  # torch's default initialisation: activations stay O(1)


@pytest.mark.parametrize(("variant", "scale"), CASES)
def test_infer_is_the_reference_forward(variant: str, scale: int) -> None:
    model = random_model(variant, scale)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 37, 50, device=DEVICE)
    placements = [Placement(6, 12, 80, 90), Placement(0, 0, 80, 90)]
    with torch.no_grad():
        ref = model(x)
        ref_placed = model(x, placements)
    scale_of = ref.abs().max()
    assert (infer(model, x) - ref).abs().max() <= 1e-5 * scale_of  # NCHW module, no copy
    assert (infer(fast, x) - ref).abs().max() <= 1e-5 * scale_of
    assert (infer(fast, x, placements) - ref_placed).abs().max() <= 1e-5 * scale_of
    assert model.head.weight.is_contiguous()  # the caller's module is left as it was


def test_infer_refuses_what_the_reference_refuses() -> None:
    model = random_model("S", 2)
    x = torch.rand(1, 3, 20, 20, device=DEVICE)
    with pytest.raises(ValueError, match="one placement per batch element"):
        infer(model, x, [Placement(0, 0, 20, 20)] * 2)
    with pytest.raises(ValueError, match="multiples of 6"):
        infer(model, x, [Placement(3, 0, 40, 40)])


def test_routes_send_every_channel_to_its_next_reader() -> None:
    # base: head -> block1 (0..64) and the tail (64..67); block1 -> block2 (0..48), block4 (48..64)
    routes = _routes((64, 48, 32, 48, 64), 67)
    assert [(r.start, r.stop, r.consumer) for r in routes[0]] == [(0, 64, 1), (64, 67, 6)]
    assert [(r.start, r.stop, r.consumer) for r in routes[1]] == [(0, 48, 2), (48, 64, 5)]
    assert [(r.start, r.stop, r.consumer) for r in routes[2]] == [(0, 32, 3), (32, 48, 4)]
    assert [(r.start, r.stop, r.consumer) for r in routes[5]] == [(0, 64, 6)]
    # U: the three-block order, the middle block narrowest
    assert [(r.start, r.stop, r.consumer) for r in _routes((16, 8, 16), 19)[1]] == [(0, 8, 2), (8, 16, 3)]


def test_half_precision_inference_stays_close() -> None:
    model = random_model("M", 4)
    x = torch.rand(1, 3, 30, 42, device=DEVICE)
    with torch.no_grad():
        ref = model(x)
    half = copy.deepcopy(model).to(dtype=torch.float16, memory_format=torch.channels_last)
    got = infer(half, x.half()).float()
    assert torch.isfinite(got).all()
    assert (got - ref).abs().max() <= 0.02 * ref.abs().max()


def test_reuse_freed_memory_nests_and_restores() -> None:
    model = random_model("S", 2)
    x = torch.rand(1, 3, 40, 40, device=DEVICE)
    with reuse_freed_memory():
        with reuse_freed_memory():
            inner = infer(model, x)
        outer = infer(model, x)
    after = infer(model, x)
    assert torch.equal(inner, outer) and torch.equal(outer, after)


def test_allocator_is_tuned_exactly_where_glibc_is() -> None:
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert available() is glibc


@pytest.mark.parametrize(
    ("variant", "scale", "tile", "size", "reuse"),
    [
        ("base", 4, None, (1000, 1000), True),  # up to 2 MP: always
        ("base", 4, None, (2128, 2832), True),  # a 6-MP photo: 12 tiles of one shape, 778 x 780
        ("base", 4, None, (3024, 4032), False),  # a 12-MP photo: 3 grid rows of 195 MP out
        ("base", 2, 1032, (2128, 2832), False),  # 0.29 GB of output, still 2.05 GB of maps
        ("base", 2, None, (2128, 2832), True),  # base's default 744 tiles: half the maps
        ("U", 4, None, (2128, 2832), True),  # 1.16 GB of output + 6 maps of 97 MB
        ("S", 2, None, (2128, 2832), True),
        ("U", 4, 0, (2128, 2832), False),  # the whole photo in one call
    ],
)
def test_heap_reuse_only_where_the_peak_it_adds_fits_the_budget(variant, scale, tile, size, reuse) -> None:
    engine = Engine(random_model(variant, scale), torch.device("cpu"), torch.float32, tile)
    assert engine._reuse_memory(size) is reuse
