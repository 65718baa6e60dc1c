"""Training checkpoints: written by the one atomic writer, read weights-only and checked."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import LiaError
from ..files import atomic_write
from ..models import read_torch_file

__all__ = ["save_checkpoint", "load_checkpoint"]

#: What a checkpoint of ``train`` holds (``ema`` too when the run averages weights).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": Mapping, "optim": Mapping, "generator": torch.Tensor, "iteration": int, "config": Mapping,
}


def save_checkpoint(path: Path, state: Mapping[str, object]) -> None:
    """``torch.save(state)`` to ``path`` atomically, with the user's umask; raises LiaError."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    try:
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
    except OSError as e:
        raise LiaError(f"{path}: cannot write ({e.strerror or e})") from None


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded weights-only (no code runs).

    Raises LiaError (a WeightsError) for a file that needs arbitrary objects, is not a
    torch file, or lacks the fields of a training checkpoint.
    """
    state = read_torch_file(path)
    wrong = sorted(k for k, kind in _FIELDS.items()
                   if not isinstance(state, Mapping) or not isinstance(state.get(k), kind)
                   or isinstance(state.get(k), bool))
    if wrong:
        raise LiaError(f"{path}: not a lia-upscale training checkpoint (missing or wrong: {', '.join(wrong)})")
    return dict(state)
