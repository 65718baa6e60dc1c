"""One exception tree for everything lia-upscale raises on purpose."""

from __future__ import annotations

__all__ = ["LiaError", "WeightsError", "ImageError", "DeviceError", "OutputError"]


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
