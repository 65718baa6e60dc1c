"""Ctrl-C (and SIGTERM) around a batch: hold an interrupt back while an outcome is being reported."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupt_after"]

#: The signals that stop a batch the way Ctrl-C does (the CLI makes SIGTERM raise too).
_STOPS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM back until the block is done (main thread only): an outcome
    is then reported exactly once. Any other thread can receive the signal, but Python runs
    its handler in the main thread, so blocking the signal would not do."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple] = []
    previous = {sig: signal.signal(sig, lambda *args: caught.append(args)) for sig in _STOPS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0][0]]
            if callable(handler):
                handler(*caught[0])
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0][0])
