"""The one way an input image file is opened and read: without blocking, only a regular
file, and never more bytes than an image of its header's size can hold."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from ..errors import ImageError, byte_count
from ..files import NotRegularFileError, open_regular

__all__ = ["open_input", "read_input", "file_limit", "header_window", "METADATA_ALLOWANCE", "UNKNOWN_HEADER_LIMIT"]

#: Bytes an image file may hold beyond its pixels' worth: ICC, EXIF, XMP, thumbnails.
METADATA_ALLOWANCE = 64 * 2**20
#: The most read of a file whose header we cannot read (the decoder then names the problem).
UNKNOWN_HEADER_LIMIT = 256 * 2**20
#: Compressed data may exceed the raw samples (stored blocks, other frames of the file):
#: a file may hold this many times the raw bytes of its largest image at 16-bit RGBA.
_RAW_FACTOR = 4
_MAX_BYTES_PER_PIXEL = 8


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading without blocking (a named pipe with no writer, a device)
    and check the open descriptor with fstat: only a regular file is returned, so a file
    swapped for a pipe or a link to ``/dev/zero`` after planning fails here, at once.

    Raises:
        ImageError: missing, unreadable, or not a regular file (one line).
    """
    name = str(path)
    try:
        return open_regular(path)
    except NotRegularFileError as exc:
        raise ImageError(f"{name}: is {exc.what}, not an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None


def file_limit(width: int, height: int) -> int:
    """The most bytes a file holding a ``width`` x ``height`` image may have."""
    return _RAW_FACTOR * _MAX_BYTES_PER_PIXEL * width * height + METADATA_ALLOWANCE


def read_input(fp: BinaryIO, name: str, limit: int, size_text: str) -> bytes:
    """All bytes of the open regular file ``fp`` when it holds at most ``limit``, read from
    its start; ImageError (nothing read) when its size says more, or when it grows past the
    limit while read. ``size_text`` names the image in the message (``"a 64x48 image"``)."""
    size = os.fstat(fp.fileno()).st_size
    if size > limit:
        raise ImageError(f"{name}: a {byte_count(size)} file is more than {size_text} can hold "
                         f"(at most {byte_count(limit)}); refused unread")
    try:
        fp.seek(0)
        data = fp.read(limit + 1)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ImageError(f"{name}: the file grew past {byte_count(limit)} while it was read; refused")
    return data


class _Window(io.RawIOBase):
    """The first ``limit`` bytes of a seekable binary file, as a file of its own (its end
    is the limit): a header parser reading past it meets end-of-file, not the rest."""

    def __init__(self, fp: BinaryIO, limit: int, owns: bool) -> None:
        super().__init__()
        self._fp, self._limit, self._pos, self._owns = fp, limit, 0, owns
        self.name = getattr(fp, "name", "<stream>")

    def close(self) -> None:
        if self._owns and not self.closed:
            self._fp.close()
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._limit}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        room = max(0, min(len(buffer), self._limit - self._pos))
        if not room:
            return 0
        self._fp.seek(self._pos)
        data = self._fp.read(room)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def header_window(fp: BinaryIO, *, owns: bool = False) -> BinaryIO:
    """``fp`` (an open regular file) seen only as far as a header may reach
    (:data:`METADATA_ALLOWANCE`): what a header parser reads stays bounded. ``owns``:
    closing the window closes ``fp`` too."""
    size = os.fstat(fp.fileno()).st_size
    return io.BufferedReader(_Window(fp, min(size, METADATA_ALLOWANCE), owns))
