"""Output pixels as they finish: quantised into one sample array, or streamed as file rows.

An upscaler hands finished rectangles of float RGB (h, w, 3) to a sink in bands of rows
(see :mod:`lia_upscale.engine.assembly`). :class:`SampleStore` quantises them at once into
the integer samples a format stores (JPEG and WEBP then hold only the 8-bit image, never a
float copy); :class:`PngStream` and :class:`TiffStream` filter, compress and write each band
of finished rows to the file, so their memory does not grow with the image's height.
Everything here is numpy and the standard library (torch-free).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Final

import numpy as np

from .xmp import png_xmp_chunk

__all__ = ["Layout", "quantize", "luma", "SampleStore", "AlphaPlane", "quantize_value", "PngStream", "RowBands", "png_filter_rows", "write_png"]

_LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_IDAT: Final = 1 << 20  # bytes of compressed data per IDAT chunk


@dataclass(frozen=True)
class Layout:
    """How a file stores samples: ``gray`` (one colour channel, luma) or RGB, with or
    without an ``alpha`` channel, in ``bits`` 8 or 16."""

    gray: bool
    alpha: bool
    bits: int

    @property
    def color_channels(self) -> int:
        """1 for gray, 3 for RGB."""
        return 1 if self.gray else 3

    @property
    def channels(self) -> int:
        """Colour channels plus alpha."""
        return self.color_channels + int(self.alpha)

    @property
    def dtype(self) -> np.dtype:
        """uint8 or uint16."""
        return np.dtype(np.uint16 if self.bits == 16 else np.uint8)

    def bytes_per_pixel(self) -> int:
        """Bytes of one pixel's samples."""
        return self.channels * self.dtype.itemsize


def quantize(x: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Clip to [0, 1] (NaN -> 0), scale and round to uint8/uint16, a band of rows at a time
    so that a 96-MP picture needs no second full-size float copy. ``out``: where to write
    (same shape), e.g. a slice of a larger sample array."""
    top = np.float32(65535.0 if bits == 16 else 255.0)
    if out is None:
        out = np.empty(x.shape, dtype=np.uint16 if bits == 16 else np.uint8)
    rows = max(1, (1 << 18) // max(1, x[0].size))  # ~1 MB bands: in cache, 2x faster than 16 MB
    for r in range(0, x.shape[0], rows):
        band = np.clip(x[r : r + rows], 0.0, 1.0, dtype=np.float32)
        np.nan_to_num(band, copy=False, nan=0.0)
        band *= top
        np.rint(band, out=band)
        out[r : r + rows] = band
    return out


def quantize_value(x: float, bits: int) -> int:
    """One value in [0, 1] as :func:`quantize` rounds it."""
    return int(quantize(np.array([[x]], dtype=np.float32), bits)[0, 0])


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 1) BT.601 luma, float32."""
    return (rgb @ _LUMA)[..., None]


def _sample_bits(layout: Layout) -> int | None:
    return None if layout.gray else layout.bits


def _color(layout: Layout, block: np.ndarray) -> np.ndarray:
    # gray: luma of the clamped colour, as the float path (clamp, then encode) computes it
    return luma(np.clip(block, 0.0, 1.0)) if layout.gray else block


class SampleStore:
    """The whole output as integer samples: (H, W, ``channels``) of ``layout.dtype``, in
    memory of its own outside the malloc heap (given back whole when the store goes).

    ``channels``: ``layout.channels`` (the default) or, for 8-bit RGB, 4 (RGBX: an encoder
    that reads the samples in place; the padding stays 0). :meth:`put` quantises finished
    RGB pixels into the colour channels; an :class:`AlphaPlane` on ``samples[..., -1]``
    fills the alpha channel (opaque until then).
    """

    def __init__(self, height: int, width: int, layout: Layout, channels: int | None = None) -> None:
        self.layout = layout
        self.samples = _mapped((height, width, channels or layout.channels), layout.dtype)
        if layout.alpha:
            self.samples[..., -1] = np.iinfo(layout.dtype).max

    @property
    def sample_bits(self) -> int | None:
        """Bits of the ready-quantised RGB samples :meth:`put_samples` takes (None for gray:
        luma is computed from the float pixels)."""
        return _sample_bits(self.layout)

    def put(self, top: int, left: int, block: np.ndarray) -> None:
        """Quantise finished (h, w, 3) float pixels into place."""
        h, w = block.shape[:2]
        n = self.layout.color_channels
        quantize(_color(self.layout, block), self.layout.bits, self.samples[top : top + h, left : left + w, :n])

    def put_samples(self, top: int, left: int, samples: np.ndarray) -> None:
        """Place finished (h, w, 3) RGB samples, already quantised as :func:`quantize` does."""
        h, w = samples.shape[:2]
        self.samples[top : top + h, left : left + w, :3] = samples

    def done(self, rows: int) -> None:
        """Nothing to do: the samples are whole at the end."""

    def restart(self) -> None:
        """Nothing to do: every pixel is written again."""


class AlphaPlane:
    """A sink for the alpha pass: the network's 3-channel output of the alpha plane,
    averaged and quantised into ``plane`` (H, W) of uint8/uint16 (e.g. a view of a
    :class:`SampleStore`'s last channel)."""

    def __init__(self, plane: np.ndarray, bits: int) -> None:
        self.plane, self.bits = plane, bits

    def put(self, top: int, left: int, block: np.ndarray) -> None:
        """Average, quantise and place finished (h, w, 3) float pixels."""
        h, w = block.shape[:2]
        # clamped before the mean, as the float path (Upscaler.finish_picture) does
        mean = np.clip(block, 0.0, 1.0).mean(axis=2, dtype=np.float32)
        quantize(mean, self.bits, self.plane[top : top + h, left : left + w])

    def done(self, rows: int) -> None:
        """Nothing to do."""

    def restart(self) -> None:
        """Nothing to do: every pixel is written again."""


def png_filter_rows(raw: np.ndarray, bpp: int, previous: np.ndarray | None = None) -> Iterator[bytes]:
    """Filtered scanlines (filter byte + bytes) of ``raw`` (rows, stride) uint8, per row
    the filter with the least sum of absolute residuals (libpng's heuristic), computed a
    block of rows at a time. ``previous``: the scanline above the first row (None: the
    first row of the image)."""
    height, stride = raw.shape
    step = max(1, (1 << 18) // max(stride, 1))  # 256 KiB of rows: the scratch below stays ~10 MB
    for start in range(0, height, step):
        stop = min(height, start + step)
        x = raw[start:stop].astype(np.int16)
        b = np.empty_like(x)
        if start:
            b[0] = raw[start - 1]
        else:
            b[0] = 0 if previous is None else previous
        b[1:] = x[:-1]
        a = np.zeros_like(x)
        a[:, bpp:] = x[:, :-bpp]
        c = np.zeros_like(x)
        c[:, bpp:] = b[:, :-bpp]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        candidates = (x, x - a, x - b, x - ((a + b) >> 1), x - paeth)
        best = np.zeros(stop - start, dtype=np.int64)
        best_cost = np.full(stop - start, np.iinfo(np.int64).max)
        residuals = []
        for kind, r in enumerate(candidates):
            r8 = r.astype(np.uint8)
            residuals.append(r8)
            cost = np.abs(r8.view(np.int8).astype(np.int64)).sum(axis=1)
            better = cost < best_cost
            best[better], best_cost[better] = kind, cost[better]
        stack = np.stack(residuals)
        rows = stack[best, np.arange(stop - start)]
        block = np.empty((stop - start, stride + 1), dtype=np.uint8)
        block[:, 0] = best
        block[:, 1:] = rows
        yield block.tobytes()


class _PngWriter:
    """PNG chunks to a stream: header, then scanlines in bands, then the end."""

    def __init__(self, fp: BinaryIO, width: int, height: int, layout: Layout, icc: bytes | None,
                 exif: bytes | None, dpi: tuple[float, float] | None, xmp: bytes | None = None) -> None:
        self.fp, self.layout, self.width = fp, layout, width
        color_type = {1: 0, 2: 4, 3: 2, 4: 6}[layout.channels]
        fp.write(PNG_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, layout.bits, color_type, 0, 0, 0))
        if icc:
            self._chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
        if dpi is not None:
            self._chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
        if exif is not None:
            self._chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
        if xmp:
            self._chunk(b"iTXt", png_xmp_chunk(xmp))
        self._packer = zlib.compressobj(6)
        self._pending = bytearray()
        self._previous: np.ndarray | None = None

    def _chunk(self, ctype: bytes, body: bytes) -> None:
        self.fp.write(struct.pack(">I", len(body)) + ctype + body)
        self.fp.write(struct.pack(">I", zlib.crc32(ctype + body)))

    def rows(self, samples: np.ndarray) -> None:
        """Append (n, width, channels) samples of ``layout.dtype``."""
        n = samples.shape[0]
        big = samples.astype(">u2") if self.layout.bits == 16 else np.ascontiguousarray(samples)
        raw = big.view(np.uint8).reshape(n, -1)
        for block in png_filter_rows(raw, self.layout.bytes_per_pixel(), self._previous):
            self._pending += self._packer.compress(block)
            # IDAT chunks of exactly _IDAT bytes: the file does not depend on the bands' sizes
            while len(self._pending) >= _IDAT:
                self._chunk(b"IDAT", bytes(self._pending[:_IDAT]))
                del self._pending[:_IDAT]
        self._previous = raw[-1].copy()

    def close(self) -> None:
        """Flush the compressor and write the end."""
        self._pending += self._packer.flush()
        while len(self._pending) > _IDAT:
            self._chunk(b"IDAT", bytes(self._pending[:_IDAT]))
            del self._pending[:_IDAT]
        self._chunk(b"IDAT", bytes(self._pending))
        self._chunk(b"IEND", b"")


def write_png(fp: BinaryIO, samples: np.ndarray, layout: Layout, icc: bytes | None, exif: bytes | None,
              dpi: tuple[float, float] | None, xmp: bytes | None = None) -> None:
    """A whole PNG of (H, W, C) samples: adaptive row filters, zlib level 6."""
    writer = _PngWriter(fp, samples.shape[1], samples.shape[0], layout, icc, exif, dpi, xmp)
    writer.rows(samples)
    writer.close()


def _mapped(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array in its own anonymous memory map, outside the malloc heap."""
    size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class RowBands:
    """Finished pixels gathered into bands of whole rows, for writers that go row by row.

    Every tile of a grid row puts the same rows (the assembler's contract), so the first
    :meth:`put` of a band sizes it and later puts quantise straight into it; :meth:`done`
    completes the band (alpha rows added) and hands it to :meth:`write_band`. With one
    band being filled and one being written, memory is two bands, whatever the height.
    """

    def __init__(self, width: int, height: int, layout: Layout, alpha: np.ndarray | None) -> None:
        if layout.alpha and (alpha is None or alpha.shape != (height, width)):
            raise ValueError("a layout with alpha needs the (H, W) alpha samples first")
        self.width, self.height, self.layout = width, height, layout
        self._alpha = alpha
        self._reset()

    def _reset(self) -> None:
        self._flushed = 0
        self._band: np.ndarray | None = None

    def _new_band(self, rows: int) -> np.ndarray:
        """Samples for the next band of ``rows`` rows: a memory map of its own, outside the
        malloc heap, where a fresh array per grid row would sit between the network's freed
        blocks and make the heap grow band after band."""
        return _mapped((rows, self.width, self.layout.channels), self.layout.dtype)

    @property
    def sample_bits(self) -> int | None:
        """Bits of the ready-quantised RGB samples :meth:`put_samples` takes (None for gray)."""
        return _sample_bits(self.layout)

    def _slot(self, top: int, left: int, h: int, w: int) -> np.ndarray:
        """The colour samples of rows ``top`` .. ``top + h``, columns ``left`` .. ``left + w`` in the band."""
        if self._band is None:
            if top != self._flushed:
                raise ValueError(f"rows from {top} put before rows from {self._flushed} were done")
            self._band = self._new_band(h)
        off = top - self._flushed
        if off < 0 or off + h > self._band.shape[0]:
            raise ValueError(f"rows {top}..{top + h} fall outside the band being gathered")
        return self._band[off : off + h, left : left + w, : self.layout.color_channels]

    def put(self, top: int, left: int, block: np.ndarray) -> None:
        """Quantise finished (h, w, 3) float pixels into the band of their rows."""
        h, w = block.shape[:2]
        quantize(_color(self.layout, block), self.layout.bits, self._slot(top, left, h, w))

    def put_samples(self, top: int, left: int, samples: np.ndarray) -> None:
        """Place finished (h, w, 3) RGB samples, already quantised as :func:`quantize` does."""
        h, w = samples.shape[:2]
        self._slot(top, left, h, w)[...] = samples

    def done(self, rows: int) -> None:
        """Rows up to ``rows`` are complete: write the band."""
        if rows <= self._flushed:
            return
        band = self._band
        if band is None or band.shape[0] != rows - self._flushed:
            raise ValueError(f"rows {self._flushed}..{rows} were not put as one band")
        if self._alpha is not None:
            band[..., -1] = self._alpha[self._flushed : rows]
        self._band, self._flushed = None, rows
        self.write_band(band)

    def write_band(self, band: np.ndarray) -> None:
        """Write (n, width, channels) samples, the next rows of the file."""
        raise NotImplementedError


class PngStream(RowBands):
    """A sink that writes a PNG to ``fp`` band by band as rows finish.

    Finished RGB is quantised per :class:`Layout`; ``alpha`` (H, W) samples, when the
    layout has alpha, must be complete before the colour pass starts (run the alpha pass
    into an (H, W) array first). Compression of one band runs in a worker thread while the
    next band is computed. Call :meth:`close` at the end (or :meth:`abort`).
    """

    def __init__(self, fp: BinaryIO, width: int, height: int, layout: Layout, *, icc: bytes | None = None,
                 exif: bytes | None = None, dpi: tuple[float, float] | None = None,
                 xmp: bytes | None = None, alpha: np.ndarray | None = None) -> None:
        super().__init__(width, height, layout, alpha)
        self.fp = fp
        self._meta = (icc, exif, dpi, xmp)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="png-rows")
        self._start()

    def _start(self) -> None:
        self.fp.seek(0)
        self.fp.truncate()
        self._writer = _PngWriter(self.fp, self.width, self.height, self.layout, *self._meta)
        self._job: Future | None = None
        # two band buffers for the whole image: the one being filled and the one the worker
        # compresses; a finished job's buffer is the next band's
        self._filling: np.ndarray | None = None
        self._in_job: np.ndarray | None = None
        self._spare: np.ndarray | None = None
        self._reset()

    def _new_band(self, rows: int) -> np.ndarray:
        buffer, self._spare = self._spare, None
        if buffer is None or buffer.shape[0] < rows:
            buffer = super()._new_band(rows)
        self._filling = buffer
        return buffer[:rows]

    def write_band(self, band: np.ndarray) -> None:
        """Compress and write ``band`` in the worker thread (after the previous band)."""
        self._wait()
        self._in_job, self._filling = self._filling, None
        self._job = self._pool.submit(self._writer.rows, band)

    def _wait(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            job.result()
            self._spare, self._in_job = self._in_job, None

    def restart(self) -> None:
        """Start the file over (the image is computed again)."""
        self._wait()
        self._start()

    def close(self) -> None:
        """Finish the file; raises ValueError if rows are missing."""
        try:
            self._wait()
            if self._flushed != self.height:
                raise ValueError(f"only {self._flushed} of {self.height} rows were written")
            self._writer.close()
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop without finishing (the caller removes the file)."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        self._pool.shutdown(wait=True)
