"""The job spec: what a job makes of each image, built once by the CLI, the API or the Ray driver."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .. import images

__all__ = ["OutputSpec"]


@dataclass(frozen=True)
class OutputSpec:
    """Per-job output settings; a new per-job option is a field here and a flag on the CLI.

    ``fmt``: ``"same"`` (a file destination's suffix, else the input's format) or a format
    name or suffix (``"png"``, ``"JPEG"``, ``"tif"``). ``quality``: JPEG/WebP/HEIC/AVIF
    quality 1..100 (None: the format's default). ``outscale``: a final factor (the model's
    scale, then an antialiased bicubic resample to ``floor(side * F + 0.5)``), None for the
    model's own. ``overwrite``: replace an existing output; otherwise a file that exists at
    the moment of the write is kept (the job is skipped). Raises TypeError or ValueError for
    values of the wrong type or range.
    """

    fmt: str = "same"
    quality: int | None = None
    outscale: float | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, str):
            raise TypeError(f"fmt must be a format name such as 'png', not {type(self.fmt).__name__}")
        if self.fmt != "same":
            images.format_name(self.fmt)  # OutputError (a ValueError-like LiaError) if unknown
        if self.quality is not None:
            if isinstance(self.quality, bool) or not isinstance(self.quality, int):
                raise TypeError(f"quality must be an int from 1 to 100, not {self.quality!r}")
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality must be from 1 to 100, not {self.quality}")
        if self.outscale is not None:
            if isinstance(self.outscale, bool) or not isinstance(self.outscale, (int, float)):
                raise TypeError(f"outscale must be a number, not {self.outscale!r}")
            if not (math.isfinite(self.outscale) and self.outscale > 0):
                raise ValueError(f"outscale must be a finite number above 0, not {self.outscale}")

    def format_for(self, named: Path | None, input_format: str) -> str:
        """The format name to write: ``fmt``, or for ``same`` the suffix of ``named`` (a file
        destination) or else ``input_format``."""
        if self.fmt != "same":
            return images.format_name(self.fmt)
        if named is not None:
            return images.format_for_suffix(named)
        return images.format_name(input_format)
