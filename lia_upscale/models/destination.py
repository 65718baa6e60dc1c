"""Where weights are written: never over their own source, an unrelated file or a device."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import WeightsError
from ..files import NotRegularFileError, check_writable_target

__all__ = ["check_destination"]


def check_destination(dst: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], *,
                      overwrite: bool) -> None:
    """Refuse, before any work, to write ``dst`` when it is one of ``inputs`` (always), an
    existing file (unless ``overwrite``) or an existing path that is not a regular file
    (always). Raises WeightsError with one line."""
    dst = Path(dst)
    try:
        exists = check_writable_target(dst)
    except NotRegularFileError as e:
        raise WeightsError(f"{dst}: {e.strerror}") from None
    except OSError as e:
        raise WeightsError(f"{dst}: cannot write ({e.strerror or e})") from None
    if not exists:
        return
    for src in inputs:
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
        if same:
            raise WeightsError(f"{dst}: is the input {src}; refused (a file is never written over its own source)")
    if not overwrite:
        raise WeightsError(f"{dst}: exists; not replaced without --overwrite")
