"""LIA as the plug-and-play module it was published as: dropped into a toy residual block, it trains."""

from __future__ import annotations

import torch
from torch import nn

from lia_upscale.nn import LIA, LIA_MIN_SIZE


class Residual(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, c, 3, padding=1)
        self.lia = LIA(c, hidden=8)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.lia(torch.relu(self.inp(x))))


def test_a_toy_network_with_lia_trains_on_the_cpu() -> None:
    torch.manual_seed(0)
    net = Residual()
    x = torch.rand(4, 3, 24, 24)
    target = x.flip(-1)  # something the identity path alone cannot produce
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.l1_loss(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses[::5]
    assert net.lia.body[0].weight.grad is not None and net.lia.body[0].weight.grad.abs().sum() > 0


def test_lia_keeps_shape_and_is_finite_in_half_precision() -> None:
    lia = LIA(8, hidden=8)
    x = torch.randn(2, 8, LIA_MIN_SIZE, 13) * 20
    assert lia(x).shape == x.shape
    assert torch.isfinite(lia.to(torch.bfloat16)(x.to(torch.bfloat16))).all()
