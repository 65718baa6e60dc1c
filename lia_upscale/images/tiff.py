"""TIFF out: 8 or 16 bits, deflate with the horizontal predictor, EXIF/GPS IFDs, via tifffile.

:func:`write_tiff` writes whole sample arrays; :class:`TiffStream` is a sink (see
:mod:`lia_upscale.images.rows`) that encodes strips as rows finish and hands them to
tifffile in a worker thread, so memory does not grow with the image's height.

tifffile cannot write EXIF or GPS sub-IFDs, so it writes placeholder tags one below their
codes; the sub-IFDs are then serialised (by Pillow) at the end of the file and the
placeholders patched into real pointers.
"""

from __future__ import annotations

import io
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image

from .picture import EXIF_IFD_TAG, GPS_IFD_TAG, ORIENTATION_TAG, TIFF_DESCRIPTIVE_TAGS
from .rows import Layout, RowBands

__all__ = ["write_tiff", "TiffStream"]

#: bytes of samples per strip the stream aims at
_STRIP_BYTES = 1 << 18


def _options(channels: int, icc: bytes | None, exif: Image.Exif | None,
             dpi: tuple[float, float] | None, xmp: bytes | None) -> tuple[dict[str, object], bool]:
    """tifffile keyword arguments for the metadata, and whether EXIF pointers need patching."""
    extratags: list[tuple[int, str, int, object, bool]] = []
    software: str | bool = False
    description: str | None = None
    pointers = False
    if exif is not None:
        for tag in sorted(TIFF_DESCRIPTIVE_TAGS):
            value = exif.get(tag)
            if not isinstance(value, str) or not value.isascii() or not value:
                continue
            if tag == 0x0131:
                software = value
            elif tag == 0x010E:
                description = value
            elif tag != 0x0132:
                extratags.append((tag, "s", 0, value, True))
        if ORIENTATION_TAG in exif:
            extratags.append((ORIENTATION_TAG, "H", 1, 1, True))
        for tag in (EXIF_IFD_TAG, GPS_IFD_TAG):
            if tag in exif and exif.get_ifd(tag):
                pointers = True
                extratags.append((tag - 1, "I", 1, 0, True))
    if xmp:
        extratags.append((700, "B", len(xmp), xmp, True))
    datetime = exif.get(0x0132) if exif is not None else None
    kwargs: dict[str, object] = dict(
        photometric="rgb" if channels >= 3 else "minisblack",
        planarconfig="contig" if channels > 1 else None,
        compression="zlib",
        predictor=True,
        iccprofile=icc or None,
        description=description,
        datetime=datetime if isinstance(datetime, str) and len(datetime) == 19 and datetime[16] == ":" else None,
        software=software,
        metadata=None,
        extratags=extratags,
        byteorder="<",
    )
    if dpi is not None:
        kwargs["resolution"] = dpi
        kwargs["resolutionunit"] = "INCH"
    if channels in (2, 4):
        kwargs["extrasamples"] = ("UNASSALPHA",)
    return kwargs, pointers


def write_tiff(
    buf: BinaryIO,
    samples: np.ndarray,
    icc: bytes | None,
    exif: Image.Exif | None,
    dpi: tuple[float, float] | None,
    xmp: bytes | None = None,
) -> None:
    """A whole TIFF of (H, W, C) uint8/uint16 samples (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""
    import tifffile

    channels = samples.shape[2]
    kwargs, pointers = _options(channels, icc, exif, dpi, xmp)
    tifffile.imwrite(buf, samples[..., 0] if channels == 1 else samples, **kwargs)
    if pointers:
        _patch_exif_pointers(buf, exif)  # type: ignore[arg-type]


class _Unnamed(io.RawIOBase):
    """A file seen without its name (tifffile treats an ``os.fdopen`` file's int name as a path)."""

    def __init__(self, fp: BinaryIO) -> None:
        super().__init__()
        self._fp = fp

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._fp.read(len(b))
        b[: len(data)] = data
        return len(data)

    def write(self, b) -> int:
        return self._fp.write(b)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def flush(self) -> None:
        self._fp.flush()


def _strip(rows: np.ndarray) -> bytes:
    """One strip: horizontal differencing (predictor 2) per sample, little-endian, deflated."""
    s = rows.astype(rows.dtype.newbyteorder("<"), copy=False)
    d = s.copy()
    d[:, 1:] -= s[:, :-1]  # unsigned: wraps modulo 2^bits, as the predictor wants
    return zlib.compress(d.tobytes(), 6)


class TiffStream(RowBands):
    """A sink that writes a TIFF to ``fp`` as rows finish (strips, deflate, predictor).

    Like :class:`~lia_upscale.images.rows.PngStream`: finished RGB is quantised per
    ``layout``; ``alpha`` (H, W) samples come complete beforehand when the layout has
    alpha; call :meth:`close` at the end (or :meth:`abort`). ``fp`` must be seekable.
    tifffile runs in a worker thread and pulls the strips as bands arrive.
    """

    def __init__(self, fp: BinaryIO, width: int, height: int, layout: Layout, *, icc: bytes | None = None,
                 exif: Image.Exif | None = None, dpi: tuple[float, float] | None = None,
                 xmp: bytes | None = None, alpha: np.ndarray | None = None) -> None:
        super().__init__(width, height, layout, alpha)
        self.fp = fp
        self._icc, self._exif, self._dpi, self._xmp = icc, exif, dpi, xmp
        self.rows_per_strip = max(1, _STRIP_BYTES // (width * layout.bytes_per_pixel()))
        self._start()

    def _start(self) -> None:
        import tifffile

        self.fp.seek(0)
        self.fp.truncate()
        self._reset()
        self._rest: np.ndarray | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        kwargs, self._pointers = _options(self.layout.channels, self._icc, self._exif, self._dpi, self._xmp)
        shape = (self.height, self.width) + ((self.layout.channels,) if self.layout.channels > 1 else ())

        def strips() -> Iterator[bytes]:
            while True:
                band = self._queue.get()
                if band is None:
                    return
                for r in range(0, band.shape[0], self.rows_per_strip):
                    yield _strip(band[r : r + self.rows_per_strip])

        def write() -> None:
            try:
                tifffile.imwrite(_Unnamed(self.fp), strips(), shape=shape, dtype=self.layout.dtype,
                                 rowsperstrip=self.rows_per_strip, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the producer
                self._error = exc
                while self._queue.get() is not None:  # let the producer finish
                    pass

        self._thread = threading.Thread(target=write, name="tiff-rows", daemon=True)
        self._thread.start()

    def _send(self, band: np.ndarray | None) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(band, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError("the TIFF writer stopped") from self._error

    def write_band(self, band: np.ndarray) -> None:
        """Send the whole strips of ``band`` (and what was left of the last) to the writer."""
        if self._rest is not None:
            band = np.concatenate([self._rest, band])
        last = self._flushed == self.height
        whole = band.shape[0] if last else band.shape[0] // self.rows_per_strip * self.rows_per_strip
        self._rest = band[whole:].copy() if whole < band.shape[0] else None
        if whole:
            self._send(band[:whole])

    def restart(self) -> None:
        """Start the file over (the image is computed again)."""
        self.abort()
        self._start()

    def close(self) -> None:
        """Finish the file; raises ValueError if rows are missing."""
        if self._flushed != self.height:
            self.abort()
            raise ValueError(f"only {self._flushed} of {self.height} rows were written")
        self._send(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._pointers:
            _patch_exif_pointers(self.fp, self._exif)  # type: ignore[arg-type]

    def abort(self) -> None:
        """Stop without finishing (the caller removes the file)."""
        self._error = self._error or RuntimeError("aborted")
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
            except queue.Full:
                pass
            self._thread.join(timeout=0.1)


def _patch_exif_pointers(fp: BinaryIO, exif: Image.Exif) -> None:
    """Append the EXIF/GPS sub-IFDs at the end of the TIFF in ``fp`` and point IFD0's
    placeholder tags (one below the real codes) at them. Reads only IFD0."""
    fp.seek(0, 2)
    end = fp.tell()
    if end % 2:
        fp.write(b"\0")
        end += 1
    sub = Image.Exif()
    sub.load(exif.tobytes())
    for tag in list(sub):
        if tag not in (EXIF_IFD_TAG, GPS_IFD_TAG):
            del sub[tag]
    sub.endian = "<"
    blob = sub.tobytes(offset=end)[14:]  # "Exif\0\0" + header, then IFDs placed at ``end``
    fp.write(blob)
    targets = {}
    count = struct.unpack_from("<H", blob, 0)[0]
    for i in range(count):
        tag, _, _, value = struct.unpack_from("<HHII", blob, 2 + 12 * i)
        targets[tag] = value
    fp.seek(4)
    ifd0 = struct.unpack("<I", fp.read(4))[0]
    fp.seek(ifd0)
    count = struct.unpack("<H", fp.read(2))[0]
    entries = fp.read(12 * count)
    for i in range(count):
        tag = struct.unpack_from("<H", entries, 12 * i)[0]
        if tag + 1 in targets:
            fp.seek(ifd0 + 2 + 12 * i)
            fp.write(struct.pack("<HHII", tag + 1, 4, 1, targets[tag + 1]))
    fp.seek(0, 2)
