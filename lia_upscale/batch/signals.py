"""Ctrl-C around a batch: hold an interrupt back while an outcome is being reported."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupt_after"]


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is done (main thread only): an outcome is then
    reported exactly once. Any other thread can receive the signal, but Python runs its
    handler in the main thread, so blocking the signal would not do."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple] = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
