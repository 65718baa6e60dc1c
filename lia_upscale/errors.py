"""One exception tree for everything lia-upscale raises on purpose."""

from __future__ import annotations

__all__ = ["LiaError", "WeightsError", "ImageError", "DeviceError", "OutputError", "OutputExistsError", "byte_count"]


class LiaError(Exception):
    """Base of every error lia-upscale raises deliberately; its message is one line."""


class WeightsError(LiaError):
    """A weight file is missing, unreadable, unverified or matches no known network."""


class ImageError(LiaError):
    """An input image cannot be decoded, is too large, or is of an unsupported kind."""


class DeviceError(LiaError):
    """The requested device or precision is not available on this machine."""


class OutputError(LiaError):
    """An output file cannot be written (permissions, full disk, bad format choice)."""


class OutputExistsError(OutputError):
    """An output's path was taken after the run was planned (another program, another run):
    the file there is kept, not replaced, as overwrite was not asked for."""


def byte_count(n: float) -> str:
    """A byte count for a message, in the largest unit that still shows its number
    (``"1000 bytes"``, ``"64.0 MiB"``, ``"1.30 GiB"``), never ``"0.0 GiB"``."""
    n = float(n)
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{n:.0f} bytes"
