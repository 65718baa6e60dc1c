"""The one way to write a file safely, used by every writer (images, weights).

A temporary file in the target folder, fsync, then an atomic rename; the result gets the
permissions a plain ``open(path, "w")`` would (0666 less the user's umask), not
``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "atomic_write"]


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file in the same folder, moved in place on success.

    Yields a binary file. On any error or interrupt the temporary file is removed and
    ``path`` is left as it was: the old file, absent, or (after success) the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would stick
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(dst: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(fp)`` on a temporary file that replaces ``dst`` when it returns (see :func:`atomic_writer`)."""
    with atomic_writer(dst) as fp:
        write(fp)
