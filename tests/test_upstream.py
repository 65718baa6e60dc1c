"""The benchmark's baseline is a faithful port of the upstream inference network, not a strawman."""

from __future__ import annotations

import pytest
import torch

from conftest import OFFICIAL, need, official_files
from lia_upscale.errors import WeightsError
from lia_upscale.models import load_model
from lia_upscale.nn import VARIANTS, PlainUSR
from lia_upscale.tools.measure import synthetic_image
from lia_upscale.tools.upstream import UpstreamPlainUSR, load_upstream, upstream_from_state_dict


@pytest.mark.parametrize("name", official_files())
def test_upstream_port_reproduces_our_module_on_official_weights(name: str) -> None:
    """Loaded straight from the official .pth: float32, 64x64 input, within 1e-4 of PlainUSR
    (measured: 0 for U/T, below 1e-6 for the LIA variants)."""
    path = need(OFFICIAL / name)
    upstream, ours = load_upstream(path), load_model(path).module
    assert isinstance(upstream, UpstreamPlainUSR)
    assert upstream.scale == ours.scale and upstream.im_feat == ours.config.widths
    x = synthetic_image(64, 64, seed=1)[None]
    with torch.inference_mode():
        a, b = upstream(x), ours(x)
    assert a.shape == b.shape == (1, 3, 64 * ours.scale, 64 * ours.scale)
    assert float((a - b).abs().max()) < 1e-4


@pytest.mark.parametrize(("variant", "scale"), [("U", 2), ("S", 4), ("L", 2)])
def test_upstream_port_from_our_state_dict(variant: str, scale: int) -> None:
    """Any of our models (random weights here) maps onto the port by state-dict name."""
    torch.manual_seed(0)
    ours = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.05)
    upstream = upstream_from_state_dict(ours.state_dict())
    x = synthetic_image(30, 36)[None]
    with torch.inference_mode():
        assert float((upstream(x) - ours(x)).abs().max()) < 1e-5


def test_upstream_port_rejects_other_state_dicts() -> None:
    state = PlainUSR(VARIANTS["S"]).state_dict()
    del state["block2.body.0.bias"]
    with pytest.raises(WeightsError, match="upstream"):
        upstream_from_state_dict(state)
    with pytest.raises(WeightsError, match="upstream"):
        upstream_from_state_dict({"conv.weight": torch.zeros(1)})
