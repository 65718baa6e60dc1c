"""Cross-fading tile outputs into finished output rectangles, band by band.

The tiler hands each tile's output to an :class:`Assembler` in row-major grid order. The
assembler blends it into a float32 work area the size of that tile's output span, seeded
with what earlier tiles left in the overlaps: the band at the bottom of the previous grid
row (``carry``, full width, 2 x band rows high) and the strip at the right of the previous
tile in this row. As soon as a pixel can get no later contribution it goes to the
:class:`Sink` as a finished rectangle; :meth:`Sink.done` then says which rows are complete.
So float accumulation lives only over the overlap bands and one tile, and a sink can
quantise, keep or stream the rows (a PNG written row by row) as they finish.

The blend (see :mod:`~lia_upscale.engine.tiling`): along each axis a tile's weight is a
difference of smooth ramps, the weights form a partition of unity, and each tile is
merged with ``lerp(out, tile, w / W)``, ``W`` the weight of the tiles merged so far. Where
tiles agree the result equals them bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

__all__ = ["AxisBlend", "Assembler", "Sink", "FullImage"]


class Sink(Protocol):
    """Receives finished output pixels from an :class:`Assembler`."""

    def put(self, top: int, left: int, block: torch.Tensor) -> None:
        """Finished (C, h, w) float32 pixels (any device, not clamped) at (top, left)."""

    def done(self, rows: int) -> None:
        """Output rows ``[0, rows)`` are complete; no later :meth:`put` touches them."""

    def restart(self) -> None:
        """The image starts over (an out-of-memory retry): every row comes again."""


class FullImage:
    """A sink that keeps the whole float32 output: (C, H, W) view of (H, W, C) storage."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.image = torch.zeros((height, width, channels), dtype=torch.float32).permute(2, 0, 1)

    def put(self, top: int, left: int, block: torch.Tensor) -> None:
        """Copy ``block`` into place (clipped to the image)."""
        h = min(block.shape[1], self.image.shape[1] - top)
        w = min(block.shape[2], self.image.shape[2] - left)
        if h > 0 and w > 0:
            self.image[:, top : top + h, left : left + w] = block[:, :h, :w]

    def done(self, rows: int) -> None:
        """Nothing to do: the image is whole at the end."""

    def restart(self) -> None:
        """Nothing to do: every pixel is written again."""


class AxisBlend:
    """Per-axis weights of the tiles of one grid axis, in output pixels.

    Boundary k (between cores k-1 and k, at output position P) gets a ramp R_k rising
    smoothly from 0 to 1 across [P - B, P + B); core i's weight is R_i - R_{i+1} (with
    R_0 = 1, R_n = 0), nonzero on its ``span``. B is the band, capped to half of each
    neighbouring core so a pixel blends at most two tiles per axis.
    """

    def __init__(self, cores: Sequence[tuple[int, int]], scale: int, band: int) -> None:
        size = cores[-1][1] * scale
        pos = torch.arange(size, dtype=torch.float64) + 0.5
        ramps = [torch.ones(size, dtype=torch.float64)]
        spans_lo, spans_hi = [0], []
        for (a0, a1), (b0, b1) in zip(cores, cores[1:]):
            b = min(band, (a1 - a0) // 2, (b1 - b0) // 2) * scale
            p = a1 * scale
            if b == 0:
                ramps.append((pos > p).double())
            else:
                u = ((pos - (p - b)) / (2 * b)).clamp(0.0, 1.0)
                ramps.append(u * u * (3 - 2 * u))
            spans_hi.append(p + b)
            spans_lo.append(p - b)
        ramps.append(torch.zeros(size, dtype=torch.float64))
        spans_hi.append(size)
        #: [lo, hi) output span of each core's tile
        self.spans = list(zip(spans_lo, spans_hi))
        self.weights = [(ramps[i] - ramps[i + 1]).float() for i in range(len(cores))]
        self.size = size

    def final_stop(self, i: int) -> int:
        """Where pixels stop being final after tile ``i`` (the next tile's span starts)."""
        return self.spans[i + 1][0] if i + 1 < len(self.spans) else self.size


class Assembler:
    """Blends tile outputs, given in row-major grid order, into finished rectangles.

    ``ys``/``xs``: the grid's :class:`AxisBlend` per axis; ``channels``: of the output;
    ``sink``: where finished pixels go. Call :meth:`add` for every tile (row by row, left
    to right) with its output cropped to its span.
    """

    def __init__(self, ys: AxisBlend, xs: AxisBlend, channels: int, sink: Sink) -> None:
        self.ys, self.xs, self.channels, self.sink = ys, xs, channels, sink
        self._carry: torch.Tensor | None = None  # bottom band of the previous grid row
        self._next_carry: torch.Tensor | None = None
        self._strip: torch.Tensor | None = None  # right strip of the previous tile in this row
        self._row = -1
        self._col = -1

    def _weight_total(self, row: int, col: int, w: torch.Tensor) -> torch.Tensor:
        """``w`` plus the weights of the earlier tiles that reach this tile's span."""
        (y0, y1), (x0, x1) = self.ys.spans[row], self.xs.spans[col]
        total = w.clone()
        earlier = [(row, col - 1)] + [(row - 1, c) for c in (col - 1, col, col + 1)]
        for r, c in earlier:
            if r < 0 or c < 0 or c >= len(self.xs.spans):
                continue
            (ry0, ry1), (rx0, rx1) = self.ys.spans[r], self.xs.spans[c]
            if ry1 <= y0 or rx1 <= x0 or rx0 >= x1:
                continue
            total.addr_(self.ys.weights[r][y0:y1], self.xs.weights[c][x0:x1])
        return total

    def add(self, row: int, col: int, part: torch.Tensor) -> None:
        """Merge tile (``row``, ``col``)'s output over its span: (C, span height, span width)."""
        if (row, col) != ((self._row, self._col + 1) if col else (self._row + 1, 0)):
            raise ValueError(f"tiles must come in row-major order; got ({row}, {col}) after ({self._row}, {self._col})")
        ys, xs = self.ys, self.xs
        (y0, y1), (x0, x1) = ys.spans[row], xs.spans[col]
        fy, fx = ys.final_stop(row), xs.final_stop(col)
        dev = part.device
        if col == 0:
            self._row, self._carry, self._strip = row, self._next_carry, None
            self._next_carry = (torch.zeros((self.channels, y1 - fy, xs.size), dtype=torch.float32, device=dev)
                                if fy < y1 else None)
        self._col = col
        work = torch.zeros((self.channels, y1 - y0, x1 - x0), dtype=torch.float32, device=dev)
        if self._carry is not None:
            work[:, : self._carry.shape[1]] = self._carry[:, :, x0:x1]
        if self._strip is not None:
            work[:, :, : self._strip.shape[2]] = self._strip
        w = torch.outer(ys.weights[row][y0:y1], xs.weights[col][x0:x1])
        total = self._weight_total(row, col, w)
        # w / total is exactly 1 where no earlier tile reaches, so those pixels are copied
        alpha = w.div_(total).nan_to_num_(0.0).to(dev)
        del total
        work.lerp_(part.to(torch.float32), alpha)
        del alpha
        self.sink.put(y0, x0, work[:, : fy - y0, : fx - x0])
        self._strip = work[:, :, fx - x0 :].clone() if fx < x1 else None
        if self._next_carry is not None:
            self._next_carry[:, :, x0:x1] = work[:, fy - y0 :]
        if col == len(xs.spans) - 1:
            self.sink.done(fy)
