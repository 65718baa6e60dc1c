"""The command line: click commands and the rich display, one module per command group.

The work happens in the library; these modules parse options, call it and show results.
"""

from __future__ import annotations

from . import bench, evaluate, models, train, upscale  # noqa: F401  (each registers its commands)
from .app import main

__all__ = ["main"]
