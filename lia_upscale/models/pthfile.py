""".pth checkpoints, read weights-only: ``torch.load`` that never unpickles code, wrappers unwrapped."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError
from .weightheader import file_error, first_line, open_weight_file, sniff_weight_file

__all__ = ["WRAPPERS", "MODULE_PREFIX", "unwrap_checkpoint", "strip_prefix", "read_pth", "read_torch_file"]

#: Checkpoint wrappers, most preferred first: BasicSR/neosr keep ``params_ema`` (the EMA
#: weights, the ones to use) beside ``params``; other trainers save ``state_dict``.
WRAPPERS = ("params_ema", "params", "state_dict")
MODULE_PREFIX = "module."


def unwrap_checkpoint(obj: object, path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A flat state dict from what a ``.pth`` holds, and notes on what was adapted.

    Removes a ``params_ema`` / ``params`` / ``state_dict`` wrapper (the first present, in
    that order) and a ``module.`` prefix on every key (a DataParallel model). Notes name
    each adaptation (``"params_ema wrapper"``, ``"module. prefix"``); none for a flat
    state dict. Raises WeightsError when the result is not a state dict of tensors.
    """
    path = Path(path)
    notes = []
    if isinstance(obj, Mapping):
        for wrapper in WRAPPERS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                notes.append(f"{wrapper} wrapper")
                break
    if not isinstance(obj, Mapping) or not obj:
        raise file_error(path, f"not a state dict (found {type(obj).__name__})")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise file_error(path, f"not a state dict: entry {key!r} is a {type(value).__name__}")
        state[key] = value
    stripped = strip_prefix(state)
    if stripped is not state:
        notes.append(f"{MODULE_PREFIX} prefix")
    return stripped, notes


def strip_prefix(state: dict[str, object]) -> dict:
    """``state`` without a ``module.`` prefix shared by every key (the same object if none)."""
    if state and all(k.startswith(MODULE_PREFIX) for k in state):
        return {k[len(MODULE_PREFIX) :]: v for k, v in state.items()}
    return state


def read_pth(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` checkpoint with ``torch.load(weights_only=True)``; never unpickles code.

    Accepts a flat state dict or one wrapped in ``params_ema``/``params``/``state_dict``,
    with or without a ``module.`` prefix (see :func:`unwrap_checkpoint`). Returns the
    tensors as they are (CPU). A file that needs arbitrary objects, or is not a
    checkpoint, raises WeightsError; there is no fallback to a full unpickle.
    """
    path = Path(path)
    return unwrap_checkpoint(read_torch_file(path), path)[0]


def _is_zip(path: Path) -> bool:
    with open_weight_file(path) as f:
        return f.read(4) == b"PK\x03\x04"


def read_torch_file(path: str | os.PathLike[str]) -> object:
    """What a ``torch.save`` file holds, loaded on the CPU with ``weights_only=True`` (tensors,
    containers, numbers, strings); a file that needs any other object raises WeightsError,
    as does a safetensors file (named like a checkpoint), with a message that says so."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    kind = sniff_weight_file(path)
    if kind == "safetensors":
        raise file_error(path, "is a safetensors file, not a torch checkpoint; name it .safetensors "
                          "(lia-upscale loads it as it is)")
    try:
        with warnings.catch_warnings():  # torch's two-line notices are not the user's business
            warnings.simplefilter("ignore")
            # a zip checkpoint is mapped, not read: its tensors' shapes are checked before their data is touched
            zipped = kind == "torch" and _is_zip(path)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        raise file_error(path, _refusal(e)) from None
    except Exception as e:  # noqa: BLE001 - any failure of an untrusted file is a WeightsError
        raise file_error(path, f"not a readable torch checkpoint ({first_line(e)})") from None


def _refusal(error: pickle.UnpicklingError) -> str:
    """One line from torch's long weights-only refusal."""
    text = str(error)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        what = f"the Python object {match.group(1)}"
    else:
        match = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        what = (
            f"pickle features outside plain tensors ({match.group(1).strip()[:100]})"
            if match
            else "arbitrary Python objects"
        )
    return f"refused: the checkpoint needs {what}, and weights are only ever loaded weights-only"

