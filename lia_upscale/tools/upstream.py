"""A minimal port of the upstream PlainUSR inference network: the benchmark's baseline.

The authors' deploy code (``icandle/PlainUSR``, ``2024_PlainUSR_ACCV/archs/
PlainUSR_inference_arch.py``) written again with plain torch, without basicsr or einops,
and nothing of ours: ``nn.Sequential`` blocks, each written back into the leading
channels of the running map by slice assignment (``x[:, :c] = block(x[:, :c])``), LIA's
importance map resized with ``F.interpolate`` (bilinear, ``align_corners=False``) and
soft pooling as upstream computes it (``avgpool(exp(x) * x) / avgpool(exp(x))``, no
shift). It loads the official deploy ``.pth`` files as they are (same state-dict names),
so ``UpstreamPlainUSR(...)(x)`` is what a user of the upstream code would run; the
benchmark's speed-ups are measured against it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

__all__ = ["UpstreamPlainUSR", "upstream_from_state_dict", "load_upstream"]


class _SoftPooling2D(nn.Module):
    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(kernel_size, stride, 0, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_exp = torch.exp(x)
        return self.avgpool(x_exp * x) / self.avgpool(x_exp)


class _LocalAttention(nn.Module):
    """Upstream ``LocalAttention`` (LIA): importance from a 1/6 grid, resized, gated."""

    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, f, 1),
            _SoftPooling2D(7, stride=3),
            nn.Conv2d(f, f, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(f, channels, 3, padding=1),
            nn.Sigmoid(),
        )
        self.gate = nn.Sequential(nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x[:, :1])
        w = F.interpolate(self.body(x), (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        return x * w * g


class _LocalAttentionSpeed(nn.Module):
    """Upstream ``LocalAttentionSpeed``: the U/T middle block's full-resolution gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.Sigmoid())
        self.gate = nn.Sequential(nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x[:, :1]) * self.body(x)


class _Block(nn.Module):
    """Upstream ``Blockv1``-``Blockv4``: conv, LeakyReLU(0.05, inplace), conv[, ...][, attention]."""

    def __init__(self, n_feat: int, convs: int, attention: nn.Module | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(n_feat, n_feat, 3, 1, 1)]
        for _ in range(convs - 1):
            layers += [nn.LeakyReLU(0.05, True), nn.Conv2d(n_feat, n_feat, 3, 1, 1)]
        if attention is not None:
            layers.append(attention)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpstreamPlainUSR(nn.Module):
    """The upstream deploy network (``PlainUSR_{ultra,general,large}_inference``) in one class.

    ``n_feat``: head width minus 3; ``im_feat``: block widths in forward order (3 blocks:
    ``block1, blockm, block2``, LocalAttentionSpeed in the middle one only; 5 blocks:
    ``block1, block2, blockm, block3, block4``, LIA with ``attn_feat`` hidden channels in
    each); ``convs``: 3x3 convolutions per block (3 for L). Input (N, 3, H, W) float in
    [0, 1], H, W >= 7 with LIA; output (N, 3, sH, sW), not clamped. The upstream
    ``init_weights`` (identity RGB path) is not run: weights come from a checkpoint.
    """

    def __init__(self, *, n_feat: int, im_feat: tuple[int, ...], attn_feat: int, scale: int, convs: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.im_feat = tuple(im_feat)
        self.head = nn.Conv2d(3, n_feat + 3, 3, 1, 1)
        if len(im_feat) == 3:
            self.names = ("block1", "blockm", "block2")
            for name, width in zip(self.names, im_feat):
                att = _LocalAttentionSpeed(width) if name == "blockm" else None
                self.add_module(name, _Block(width, convs, att))
        elif len(im_feat) == 5:
            self.names = ("block1", "block2", "blockm", "block3", "block4")
            for name, width in zip(self.names, im_feat):
                self.add_module(name, _Block(width, convs, _LocalAttention(width, attn_feat)))
        else:
            raise ValueError(f"PlainUSR has 3 or 5 blocks, not {len(im_feat)}")
        self.tail = nn.Sequential(nn.Conv2d(n_feat + 3, 3 * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        for name, width in zip(self.names, self.im_feat):
            x[:, :width] = getattr(self, name)(x[:, :width])
        return self.tail(x)


def upstream_from_state_dict(state: Mapping[str, torch.Tensor]) -> UpstreamPlainUSR:
    """Build the upstream network for a deploy state dict (hyperparameters from its shapes) and load it strictly.

    Accepts the official checkpoints' flat state dicts and, since the names are the same,
    ``PlainUSR.state_dict()``. Returns the float32 module in eval mode. Raises WeightsError.
    """
    try:
        head = state["head.weight"]
        names = [n for n in ("block1", "block2", "blockm", "block3", "block4") if f"{n}.body.0.weight" in state]
        if len(names) == 3:
            names = ["block1", "blockm", "block2"]
        widths = tuple(int(state[f"{n}.body.0.weight"].shape[0]) for n in names)
        convs = 3 if f"{names[0]}.body.4.weight" in state else 2
        att = f"{names[0]}.body.{2 * convs - 1}.body.0.weight"
        attn_feat = int(state[att].shape[0]) if att in state else 0
        scale = math.isqrt(int(state["tail.0.weight"].shape[0]) // 3)
        module = UpstreamPlainUSR(n_feat=int(head.shape[0]) - 3, im_feat=widths, attn_feat=attn_feat,
                                  scale=scale, convs=convs)
        module.load_state_dict(dict(state), strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f"not an upstream PlainUSR deploy state dict: {e}") from None
    return module.float().eval()


def load_upstream(path: str | os.PathLike[str]) -> UpstreamPlainUSR:
    """Load an official deploy ``.pth`` (``torch.load(..., weights_only=True)``; a BasicSR
    ``params_ema``/``params`` wrapper is unwrapped) into :class:`UpstreamPlainUSR`."""
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    for key in ("params_ema", "params"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict")
    try:
        return upstream_from_state_dict(state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
