"""Keep the decoders' own warnings off the user's terminal: a bad file is reported, not warned about.

Pillow warns (``warnings.warn``) about corrupt EXIF, truncated tags and the like and logs
some (``PIL.TiffImagePlugin``), and tifffile logs them (logger ``tifffile``); a decoder here
either copes with the file or raises ImageError, so those notices are noise. :func:`quietly`
silences both for the code it wraps, and only while some thread is inside it: the warning
filters are shared by all threads, so the first thread in saves them and the last one out
restores them; log records are dropped only for threads inside.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quietly"]

_lock = threading.Lock()
_inside = threading.local()
_state: dict[str, object] = {"depth": 0, "guard": None}


class _DropWhileDecoding(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_inside, "depth", 0)


#: Where the decoders log (a filter acts on records of its own logger only, not its children's).
_LOGGERS = ("tifffile", "PIL.Image", "PIL.TiffImagePlugin", "PIL.TiffTags", "PIL.PngImagePlugin",
            "PIL.JpegImagePlugin", "PIL.WebPImagePlugin", "PIL.BmpImagePlugin")
for _name in _LOGGERS:
    logging.getLogger(_name).addFilter(_DropWhileDecoding())


@contextmanager
def quietly() -> Iterator[None]:
    """Run the block with Python warnings ignored and tifffile's log records dropped."""
    with _lock:
        if _state["depth"] == 0:
            guard = warnings.catch_warnings()
            guard.__enter__()
            warnings.simplefilter("ignore")
            _state["guard"] = guard
        _state["depth"] = int(_state["depth"]) + 1  # type: ignore[call-overload]
    _inside.depth = getattr(_inside, "depth", 0) + 1
    try:
        yield
    finally:
        _inside.depth -= 1
        with _lock:
            _state["depth"] = int(_state["depth"]) - 1  # type: ignore[call-overload]
            if _state["depth"] == 0:
                _state["guard"].__exit__(None, None, None)  # type: ignore[union-attr]
                _state["guard"] = None
