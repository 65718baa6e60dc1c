"""Training-form PlainUSR checkpoints -> the deploy form: fold the re-parameterisable blocks.

Upstream's training network (``icandle/PlainUSR``, ``archs/PlainUSR_train_arch.py``) builds
each block from *MBConv* units instead of plain 3x3 convolutions, plus a one-channel
*PConv* before the attention. All of it is linear between the activations, so it folds
exactly (up to float rounding) into the deploy network's 3x3 convolutions:

- MBConv(x) = x + k2 * (e + a * (k1 *valid pad_b0(e))) with e = k0 * x + b0 (1x1, n -> 2n),
  k1 a 3x3 convolution on e padded with the bias b0 (so it equals a 3x3 convolution of
  the zero-padded x), a = sigmoid(W3 silu(W1 t)) a learned per-channel scale (ASR), and
  k2 a 1x1 convolution 2n -> n: one 3x3 convolution n -> n.
- PConv replaces channel 0 by a 1x1 convolution of all channels: folded into row 0 of
  the preceding convolution.

Key layout of a training block (``block1.body.0.expand_conv.weight`` ...): MBConv units
at body indices 0, 2[, 4] (LeakyReLU between), then PConv (``body.K.conv``) and the
attention (``body.K+1.body.*``) in the blocks that have attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import WeightsError

__all__ = ["is_training_form", "fold_training_state", "folded_shapes"]

_MB_PARTS = ("expand_conv.weight", "expand_conv.bias", "fea_conv.weight", "fea_conv.bias",
             "reduce_conv.weight", "reduce_conv.bias", "se.tensor", "se.se.1.weight", "se.se.3.weight")


def is_training_form(state: Mapping[str, object]) -> bool:
    """True when ``state`` holds upstream's training-form blocks (MBConv units)."""
    return any(isinstance(k, str) and ".expand_conv." in k for k in state)


def _get(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise WeightsError(f"training-form checkpoint: missing {key}")
    tensor = state[key].detach()
    return tensor.to(torch.float64) if tensor.is_meta else tensor.to("cpu", torch.float64)


def _fold_mbconv(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x3 convolution (weight (n, n, 3, 3), bias (n,)) equal to the MBConv at ``prefix``."""
    k0, b0, k1, b1, k2, b2, t, w1, w3 = (_get(state, f"{prefix}.{part}") for part in _MB_PARTS)
    n, m = k0.shape[1], k0.shape[0]
    r = w1.shape[0] if w1.ndim == 2 else -1
    if (k0.shape != (m, n, 1, 1) or k1.shape != (m, m, 3, 3) or k2.shape != (n, m, 1, 1) or t.numel() != m
            or b0.shape != (m,) or b1.shape != (m,) or b2.shape != (n,)
            or not 1 <= r <= m or w1.shape != (r, m) or w3.shape != (m, r) or m > _MAX_EXPANSION * n):
        raise WeightsError(f"training-form checkpoint: {prefix} has shapes that are not an MBConv")
    a = torch.sigmoid(w3 @ F.silu(w1 @ t.reshape(m)))  # ASR: a learned constant per channel
    # k1 on e padded with b0 == (k1 o k0) on x zero-padded, with bias b1 + sum(k1) . b0
    k01 = torch.einsum("omhw,mc->ochw", k1, k0[:, :, 0, 0])
    b01 = b1 + torch.einsum("omhw,m->o", k1, b0)
    # a * (.) + e: the scale, and the 1x1 expand on the centre tap
    ks = a.view(m, 1, 1, 1) * k01
    ks[:, :, 1, 1] += k0[:, :, 0, 0]
    bs = a * b01 + b0
    # the 1x1 reduce, then the identity around the unit
    k = torch.einsum("nm,mchw->nchw", k2[:, :, 0, 0], ks)
    b = k2[:, :, 0, 0] @ bs + b2
    k[:, :, 1, 1] += torch.eye(n, dtype=k.dtype)
    return k, b


#: The widest MBConv expansion read (upstream's is 2): bounds what a header may declare.
_MAX_EXPANSION = 8


def folded_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """The deploy-form shapes a training-form state with these tensor shapes folds into,
    found without any tensor data (the fold runs on shape-only "meta" tensors): a header
    can be checked before a byte of its tensors is read. Raises WeightsError as
    :func:`fold_training_state` does, and for shapes no MBConv has."""
    meta = {k: torch.empty(tuple(v), dtype=torch.float32, device="meta") for k, v in shapes.items()}
    try:
        folded = fold_training_state(meta)
    except (RuntimeError, ValueError, IndexError) as exc:  # shapes the fold's algebra cannot join
        raise WeightsError(f"training-form checkpoint: tensor shapes that are not PlainUSR's ({exc})") from None
    return {k: tuple(v.shape) for k, v in folded.items()}


def _block_names(state: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in state if k.startswith("block")})


def fold_training_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The deploy-form state dict (float32) of a training-form one, folded as upstream's
    ``switch_to_deploy`` does. Head and tail are copied; raises WeightsError on keys
    that fit neither form."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key in ("head.weight", "head.bias", "tail.0.weight", "tail.0.bias"):
        out[key] = _get(state, key)
        used.add(key)
    for block in _block_names(state):
        indices = sorted({int(k.split(".")[2]) for k in state if k.startswith(f"{block}.body.")})
        units = [i for i in indices if f"{block}.body.{i}.expand_conv.weight" in state]
        if not units or units != list(range(0, 2 * len(units), 2)):
            raise WeightsError(f"training-form checkpoint: {block} has no MBConv units at body.0, body.2, ...")
        convs = []
        for i in units:
            convs.append(_fold_mbconv(state, f"{block}.body.{i}"))
            used.update(f"{block}.body.{i}.{part}" for part in _MB_PARTS)
        pconv = 2 * len(units) - 1
        if f"{block}.body.{pconv}.conv.weight" in state:
            w, b = (_get(state, f"{block}.body.{pconv}.conv.{p}") for p in ("weight", "bias"))
            k, kb = convs[-1]
            if w.shape != (1, k.shape[0], 1, 1):
                raise WeightsError(f"training-form checkpoint: {block}.body.{pconv}.conv is not a 1-channel 1x1 conv")
            k, kb = k.clone(), kb.clone()
            k[0] = torch.einsum("c,cihw->ihw", w[0, :, 0, 0], convs[-1][0])
            kb[0] = w[0, :, 0, 0] @ convs[-1][1] + b[0]
            convs[-1] = (k, kb)
            used.update(f"{block}.body.{pconv}.conv.{p}" for p in ("weight", "bias"))
            # the attention follows PConv in training and takes its place in deploy
            att = f"{block}.body.{pconv + 1}."
            for key in state:
                if key.startswith(att):
                    out[f"{block}.body.{pconv}." + key[len(att):]] = _get(state, key)
                    used.add(key)
        for j, (k, b) in enumerate(convs):
            out[f"{block}.body.{2 * j}.weight"], out[f"{block}.body.{2 * j}.bias"] = k, b
    left = sorted(set(state) - used)
    if left:
        shown = ", ".join(left[:8]) + (f" and {len(left) - 8} more" if len(left) > 8 else "")
        raise WeightsError(f"training-form checkpoint: unexpected keys {shown}")
    return {k: v.float().contiguous() for k, v in out.items()}
