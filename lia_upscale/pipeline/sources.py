"""Reading one image for the pipeline: a path, bytes, a capped binary stream, a PIL image."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from PIL import Image

from .. import images
from ..errors import ImageError
from ..images.picture import one_line
from .plan import over_budget

__all__ = ["read", "read_stream", "HEAD_BYTES", "STREAM_SLACK"]

#: Bytes of a stream read before its header must have said what the image is.
HEAD_BYTES = 16 << 20
#: Bytes a stream may hold beyond 8 per pixel of its image (metadata: ICC, EXIF, XMP).
STREAM_SLACK = 16 << 20
_CHUNK = 1 << 20

#: PIL modes an in-memory image may have (what a PNG file of it would be read as)
PIL_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBX", "RGBA", "RGBa", "CMYK",
             "I;16", "I;16B", "I;16L", "I;16N")


def _read_upto(fp: BinaryIO, limit: int, into: bytearray) -> bool:
    """Append to ``into`` until it holds ``limit`` bytes or the stream ends; True if it ended."""
    while len(into) < limit:
        chunk = fp.read(min(_CHUNK, limit - len(into)))
        if not chunk:
            return True
        into += chunk
    return False


def read_stream(fp: BinaryIO, name: str = "standard input") -> bytes:
    """The bytes of one image file from the stream ``fp``, read no further than it needs.

    The header must lie in the first :data:`HEAD_BYTES`; the whole stream may then hold 8
    bytes per pixel of the image it names plus :data:`STREAM_SLACK` (uncompressed 16-bit
    RGBA and its metadata), at most :data:`HEAD_BYTES` when the header cannot be read (the
    decoder then says why). Raises ImageError for a stream that holds more.
    """
    data = bytearray()
    ended = _read_upto(fp, HEAD_BYTES, data)
    size = images.header_size(bytes(data))
    if ended:
        return bytes(data)
    if not (size[0] and size[1]):
        raise ImageError(f"{name}: no image header in the first {HEAD_BYTES >> 20} MiB")
    cap = 8 * size[0] * size[1] + STREAM_SLACK
    if len(data) > cap or not _read_upto(fp, cap + 1, data) or len(data) > cap:
        raise ImageError(f"{name}: more than {cap >> 20} MiB of data for a {size[1]}x{size[0]} image")
    return bytes(data)


def _check_header(upscaler, source: Path | bytes, budget: int) -> None:
    """Refuse, from the header, an image that no tile lets fit ``budget`` for any output
    format, before its pixels are decoded (which for a huge image would take more)."""
    size = images.header_size(source)
    if size[0] and size[1]:
        memory = upscaler.engine.memory
        # the least an output holds until written: nothing beyond bands (a streamed file), or
        # 1 byte a pixel (gray samples the JPEG encoder reads in place); see images.held_bytes
        need = min(memory.least_bytes(size, kept) for kept in (0.0, 1.0))
        if need > budget:
            s = upscaler.engine.scale
            raise over_budget(size, (size[0] * s, size[1] * s), s, need, budget)


def _from_pil(image: Image.Image) -> images.Picture:
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, not {type(image).__name__}")
    if image.mode not in PIL_MODES:
        raise ValueError(f"PIL mode {image.mode!r} is not supported: convert the image to RGB, RGBA, L, LA "
                         f"or I;16 first (e.g. image.convert('RGB'))")
    try:
        image.load()  # a lazily opened file is decoded here: its errors name it
    except (OSError, SyntaxError, ValueError) as exc:
        name = getattr(image, "filename", "") or "<PIL image>"
        raise ImageError(f"{name}: truncated or corrupt image data ({one_line(exc)})") from None
    picture = images.from_pil(image.convert("RGB") if image.mode == "CMYK" else image)
    assert picture is not None  # every mode in PIL_MODES has a picture
    return picture


def read(upscaler, source, *, budget: int | None = None) -> images.Picture:
    """Decode ``source`` for upscaling: a path, a file's bytes, a binary stream (read by
    :func:`read_stream`), a PIL image, or an already decoded :class:`~lia_upscale.images.Picture`.

    8-bit colour is kept as its samples. The header's size is checked against ``budget``
    (default ``upscaler.max_memory``) before any pixel is decoded. Raises ImageError (and
    the budget's LiaError) with a one-line message; TypeError/ValueError for a PIL image of
    a mode that has no picture.
    """
    if isinstance(source, images.Picture):
        return source
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, str):
        source = Path(source)
    if not isinstance(source, (Path, bytes, bytearray, memoryview)):
        if not hasattr(source, "read"):
            raise TypeError(f"cannot read an image from {type(source).__name__}")
        source = read_stream(source)
    _check_header(upscaler, source, upscaler.max_memory if budget is None else budget)
    return images.decode(source, samples=True)


