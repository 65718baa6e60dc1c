"""Inference-only forward pass of PlainUSR: the same weights and numbers, far fewer memory passes.

:meth:`PlainUSR.forward` is the readable reference (and what training differentiates).
:func:`infer` computes the same function from the same modules, within float rounding,
but is written for memory traffic, which is what limits the CPU once the convolutions run
channels-last:

- no ``torch.cat``: every block writes its result straight into the input buffers of
  the layers that read it next (the untouched channels of the running map are written
  once, by their producer, into the slice where their consumer expects them);
- LIA's importance map is never materialised at full resolution: it is interpolated
  along the width on its coarse rows, then along the height a few rows at a time, gated
  and multiplied into the block output while those rows are still in cache;
- soft pooling, the gates and the activations run in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .attention import LIA, LIA_ALIGNMENT, LightAttention, importance_taps
from .placement import Placement
from .plainusr import PlainUSR
from .softpool import SOFTPOOL_FLOOR, SOFTPOOL_TINY, SoftPool2d, soft_pool2d_exact

__all__ = ["infer"]

# Rows of the full-resolution importance map built at a time on the CPU: ~4 MiB of it, so
# the gathers, the interpolation and the multiplication stay in cache (measured on base
# x4 512x512: 1.03x faster than the whole map at once, 1.3x faster than 256 KiB chunks,
# whose Python overhead shows) and the full-size map never exists.
_CPU_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class _Route:
    """Channels ``[start, stop)`` of a producer's output go to ``consumer``'s input."""

    start: int
    stop: int
    consumer: int


@lru_cache(maxsize=None)
def _routes(widths: tuple[int, ...], channels: int) -> tuple[tuple[_Route, ...], ...]:
    """For the head (index 0) and each block (1..B): where its output channels are read next.

    Consumer ``j`` in 1..B is block ``j``, consumer ``B + 1`` the tail. Channel ``k`` of a
    producer is read next by the first later block wider than ``k`` (which also overwrites
    it), else by the tail.
    """
    readers = list(widths) + [channels]  # consumer j (1-based) reads readers[j - 1] channels
    producer_widths = [channels, *widths]
    routes = []
    for p, width in enumerate(producer_widths):
        spans: list[_Route] = []
        for k in range(width):
            consumer = next(j for j in range(p + 1, len(readers) + 1) if readers[j - 1] > k)
            if spans and spans[-1].consumer == consumer and spans[-1].stop == k:
                spans[-1] = _Route(spans[-1].start, k + 1, consumer)
            else:
                spans.append(_Route(k, k + 1, consumer))
        routes.append(tuple(spans))
    return tuple(routes)


class _Buffers:
    """The consumers' input tensors, allocated as late as possible.

    A consumer's buffer is allocated when the producer of its first channels writes
    (always the last producer before the consumer runs); parts written earlier by
    other producers wait in tensors of their own and are copied in then, so that only
    a few full-width buffers are alive at a time.
    """

    def __init__(self, like: torch.Tensor, widths: Sequence[int]) -> None:
        self._like = like
        self._widths = widths
        self._buf: dict[int, torch.Tensor] = {}
        self._pending: dict[int, list[tuple[int, torch.Tensor]]] = {}

    def _empty(self, channels: int) -> torch.Tensor:
        n, _, h, w = self._like.shape
        return torch.empty(
            (n, channels, h, w), dtype=self._like.dtype, device=self._like.device,
            memory_format=torch.channels_last,
        )

    def whole(self, consumer: int, value: torch.Tensor) -> None:
        self._buf[consumer] = value

    def put(self, consumer: int, start: int, value: torch.Tensor) -> None:
        """Hand over ``value`` as channels ``start..`` of ``consumer``'s input."""
        if consumer in self._buf or start == 0:
            self.slice(consumer, start, start + value.shape[1]).copy_(value)
        else:
            self._pending.setdefault(consumer, []).append((start, value))

    def slice(self, consumer: int, start: int, stop: int) -> torch.Tensor:
        """Where channels ``start..stop`` of ``consumer``'s input are to be written."""
        buf = self._buf.get(consumer)
        if buf is None and start > 0:
            part = self._empty(stop - start)
            self._pending.setdefault(consumer, []).append((start, part))
            return part
        if buf is None:
            buf = self._buf[consumer] = self._empty(self._widths[consumer - 1])
            for at, part in self._pending.pop(consumer, []):
                buf[:, at : at + part.shape[1]].copy_(part)
        return buf[:, start:stop]

    def take(self, consumer: int) -> torch.Tensor:
        if self._pending.get(consumer):
            raise AssertionError("a consumer ran before its buffer was complete")
        return self._buf.pop(consumer)


def _deliver(y: torch.Tensor, routes: Sequence[_Route], bufs: _Buffers, readers: Sequence[int]) -> None:
    """Hand a producer's finished output to its consumers (no copy when one takes it all)."""
    if len(routes) == 1 and routes[0].start == 0 and readers[routes[0].consumer - 1] == y.shape[1]:
        bufs.whole(routes[0].consumer, y)
        return
    for r in routes:
        bufs.put(r.consumer, r.start, y[:, r.start : r.stop])


def _soft_pool(t: torch.Tensor, pool: SoftPool2d, recompute) -> torch.Tensor:
    """:func:`~lia_upscale.nn.soft_pool2d` on a tensor we own, in place (same shift and
    fallback); ``recompute()`` gives ``t`` again for the rare starved window."""
    tf = t.float()
    # the per-channel max, exactly either way: on the CPU a global max pool (9x faster than amax
    # channels-last, 1.3 vs 11 ms for 16x512x512); on CUDA a reduction, since the pool's kernel
    # scans each channel in one thread (19 ms a call, 82% of the GPU time of a 6-MP photo on an H200)
    shift = F.adaptive_max_pool2d(tf, 1) if tf.device.type == "cpu" else tf.amax(dim=(2, 3), keepdim=True)
    d = tf.sub_(shift).clamp_min_(SOFTPOOL_FLOOR)
    e = torch.exp(d)
    den = F.avg_pool2d(e, pool.kernel, pool.stride)
    out = F.avg_pool2d(d.mul_(e), pool.kernel, pool.stride).div_(den).add_(shift)
    del d, e
    starved = den < SOFTPOOL_TINY
    if bool(starved.any()):
        out = torch.where(starved, soft_pool2d_exact(recompute().float(), pool.kernel, pool.stride), out)
    return out.to(t.dtype)


def _importance(lia: LIA, y: torch.Tensor) -> torch.Tensor:
    """LIA's coarse importance map ``sigmoid(conv3(conv2_s2(softpool(conv1x1(y)))))``."""
    conv1, pool, conv2, conv3 = lia.body
    pooled = _soft_pool(conv1(y), pool, lambda: conv1(y))
    return torch.sigmoid_(conv3(conv2(pooled)))


class _Taps:
    """Bilinear taps of the importance map for every batch element, shared by all blocks."""

    def __init__(self, placements: Sequence[Placement], height: int, width: int, coarse: tuple[int, int], device) -> None:
        self.y0, self.y1, self.ly = importance_taps(placements, height, coarse[0], True, device)
        self.x0, self.x1, self.lx = importance_taps(placements, width, coarse[1], False, device)


def _lia_out(
    lia: LIA,
    y: torch.Tensor,
    taps_for,
    routes: Sequence[_Route],
    bufs: _Buffers,
) -> None:
    """``y * resize(importance) * sigmoid(y[:, :1])`` written into the consumers' buffers."""
    w = _importance(lia, y)
    taps: _Taps = taps_for(tuple(w.shape[-2:]))
    n, c, height, width = y.shape
    # NHWC views: channels-last tensors are contiguous this way round
    yn = y.permute(0, 2, 3, 1)
    wn = w.permute(0, 2, 3, 1).contiguous()
    dsts = [(r, bufs.slice(r.consumer, r.start, r.stop).permute(0, 2, 3, 1)) for r in routes]
    if y.device.type == "cpu":
        rows = max(1, _CPU_CHUNK_BYTES // (width * c * y.element_size()))
    else:
        rows = height
    for i in range(n):
        lx = taps.lx[i].to(w.dtype).view(1, width, 1)
        # along the width, on the coarse rows only (one sixth of the pixels)
        left = wn[i].index_select(1, taps.x0[i])
        u = left.lerp_(wn[i].index_select(1, taps.x1[i]), lx)
        ly = taps.ly[i].to(w.dtype)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            top = u.index_select(0, taps.y0[i, r0:r1])
            m = top.lerp_(u.index_select(0, taps.y1[i, r0:r1]), ly[r0:r1].view(-1, 1, 1))
            part = yn[i, r0:r1]
            m.mul_(torch.sigmoid(part[..., :1]))
            for r, dst in dsts:
                torch.mul(part[..., r.start : r.stop], m[..., r.start : r.stop], out=dst[i, r0:r1])


def _light_out(att: LightAttention, y: torch.Tensor, routes: Sequence[_Route], bufs: _Buffers) -> None:
    """``y * sigmoid(y[:, :1]) * sigmoid(conv(y))`` written into the consumers' buffers."""
    a = torch.sigmoid_(att.body[0](y))
    a.mul_(torch.sigmoid(y[:, :1]))
    for r in routes:
        torch.mul(y[:, r.start : r.stop], a[:, r.start : r.stop], out=bufs.slice(r.consumer, r.start, r.stop))


def _conv_split(conv: nn.Conv2d, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    bias = None if conv.bias is None else conv.bias[start:stop]
    return F.conv2d(x, conv.weight[start:stop], bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def infer(
    model: PlainUSR, x: torch.Tensor, placements: Sequence[Placement] | None = None
) -> torch.Tensor:
    """``model(x, placements)`` for inference only (no autograd), within float rounding.

    ``x``: (N, 3, H, W) in the model's dtype and device, channels-last preferred (the
    model too: ``model.to(memory_format=torch.channels_last)``). Returns (N, 3, sH, sW),
    not clamped. Without ``placements`` the image is treated as whole (each batch element
    its own image at the origin), like the reference.
    """
    n, _, height, width = x.shape
    if placements is None:
        placements = [Placement(0, 0, height, width)] * n
    elif len(placements) != n:
        raise ValueError("one placement per batch element")
    if any(p.top % LIA_ALIGNMENT or p.left % LIA_ALIGNMENT for p in placements) and model.config.attention == "lia":
        raise ValueError(f"tile origins must be multiples of {LIA_ALIGNMENT}")
    widths = model.config.widths
    channels = model.config.features + 3
    readers = [*widths, channels]
    routes = _routes(tuple(widths), channels)
    blocks = [getattr(model, name) for name in model._block_names]
    taps_cache: dict[tuple[int, int], _Taps] = {}

    def taps_for(coarse: tuple[int, int]) -> _Taps:
        if coarse not in taps_cache:
            taps_cache[coarse] = _Taps(placements, height, width, coarse, x.device)
        return taps_cache[coarse]

    with torch.inference_mode():
        x = x.contiguous(memory_format=torch.channels_last)
        bufs = _Buffers(x, readers)
        head = model.head
        for r in routes[0]:
            part = _conv_split(head, x, r.start, r.stop)
            if r.start == 0 and r.stop == readers[r.consumer - 1]:
                bufs.whole(r.consumer, part)
            else:
                bufs.put(r.consumer, r.start, part)
            del part
        for b, block in enumerate(blocks, start=1):
            y = bufs.take(b)
            layers = list(block.body)
            att = layers.pop() if isinstance(layers[-1], (LIA, LightAttention)) else None
            for layer in layers:
                if isinstance(layer, nn.LeakyReLU):
                    y = F.leaky_relu_(y, layer.negative_slope)
                else:
                    y = layer(y)
            if isinstance(att, LIA):
                _lia_out(att, y, taps_for, routes[b], bufs)
            elif isinstance(att, LightAttention):
                _light_out(att, y, routes[b], bufs)
            else:
                _deliver(y, routes[b], bufs, readers)
            del y
        y = model.tail[0](bufs.take(len(blocks) + 1))
        return F.pixel_shuffle(y, model.scale)
