"""Weight files as tensors: our safetensors format read and written, any PlainUSR safetensors, conversion."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_save
from torch import nn

from ..errors import WeightsError
from ..files import NotRegularFileError, atomic_writer
from .destination import check_destination
from .detect import check_values, detect_config
from .pthfile import MODULE_PREFIX, read_pth, strip_prefix
from .reparam import folded_shapes, is_training_form
from .weightheader import (
    ARCHITECTURE,
    FLOAT_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    WeightHeader,
    file_error,
    first_line,
    open_weight_file,
    parse_header,
    validate_header,
)

__all__ = ["read_safetensors", "read_any_safetensors", "save_weights", "convert"]

_RESERVED = ("format", "format_version", "architecture", "variant", "scale")


def read_safetensors(path: str | os.PathLike[str]) -> tuple[WeightHeader, dict[str, torch.Tensor]]:
    """Validate the header (see :func:`read_header`), then load the tensors on the CPU.

    Returns the header and a state dict of float32 tensors.
    """
    path = Path(path)
    with open_weight_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        header = validate_header(path, *parse_header(f, size, path))
        return header, _load_tensors(path, f)


def read_any_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Any PlainUSR ``.safetensors`` file: float32 tensors on the CPU and notes on what was adapted.

    A file whose metadata ``format`` is ours is read strictly by :func:`read_safetensors`
    (no notes). Any other (another trainer's: no or foreign metadata) has its container
    checked, a ``module.`` prefix removed and, unless it holds upstream's training form
    (folded by the caller), the network detected from the shapes, all before any tensor
    is read; its notes say so (``"no lia-upscale metadata"``, ``"module. prefix"``).
    Raises WeightsError.
    """
    path = Path(path)
    with open_weight_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        metadata, shapes, dtypes = parse_header(f, size, path)
        if metadata.get("format") == FORMAT:
            header = validate_header(path, metadata, shapes, dtypes)
            return _load_tensors(path, f), []
        notes = ["no lia-upscale metadata"]
        renamed = strip_prefix(shapes)
        if renamed is not shapes:
            notes.append(f"{MODULE_PREFIX} prefix")
        for name, dtype in dtypes.items():
            if dtype not in FLOAT_DTYPES:
                raise file_error(path, f"tensor {name!r} has dtype {dtype}; expected floating point")
        try:
            # every tensor's shape is checked before any is read, the training form's too
            detect_config(folded_shapes(renamed) if is_training_form(renamed) else renamed)
        except WeightsError as e:
            raise file_error(path, str(e)) from None
        tensors = _load_tensors(path, f)
    return strip_prefix(tensors), notes


def _load_tensors(path: Path, f: BinaryIO) -> dict[str, torch.Tensor]:
    """All tensors of the open file ``f`` as float32 (its header already checked)."""
    f.seek(0)
    data = f.read()
    try:
        tensors = _safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise file_error(path, f"unreadable tensor data ({first_line(e)})") from None
    return {k: v.float() for k, v in tensors.items()}


def _state_of(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = (
        module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"not a state dict: entry {key!r} is a {type(value).__name__}")
        if not value.is_floating_point():
            raise WeightsError(f"{key} has dtype {value.dtype}; expected floating point")
        out[key] = value.detach().to("cpu", torch.float32).contiguous()
    check_values(out)  # a NaN written now would only fail at load time
    return out


def save_weights(
    path: str | os.PathLike[str],
    module_or_state: nn.Module | Mapping[str, torch.Tensor],
    variant: str | None = None,
    scale: int | None = None,
    *,
    extra: Mapping[str, str] | None = None,
    overwrite: bool | None = None,
) -> WeightHeader:
    """Write a PlainUSR module or state dict as a lia-upscale ``.safetensors`` file, atomically.

    The network is detected from the tensor shapes; ``variant`` and ``scale``, when given,
    must agree with it. Tensors are stored as float32 and must be finite. ``extra`` adds string metadata (it
    cannot override the reserved keys). ``overwrite``: False refuses an existing ``path``,
    True replaces a regular file, None replaces only one that was there when the write
    began (see :meth:`~lia_upscale.files.StagedFile.commit`); a path that is not a regular
    file is never replaced. Returns the header of the written file.
    """
    path = Path(path)
    state = _state_of(module_or_state)
    config, detected = detect_config({k: tuple(v.shape) for k, v in state.items()})
    if variant not in (None, detected) or scale not in (None, config.scale):
        raise WeightsError(
            f"asked to save variant {variant} x{scale} but the tensors are "
            f"variant {detected} x{config.scale}"
        )
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise WeightsError(f"extra metadata may not set {', '.join(clash)}")
    metadata = {
        **extra,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "variant": detected,
        "scale": str(config.scale),
    }
    data = _safetensors_save(state, metadata=metadata)
    try:
        with atomic_writer(path, overwrite=overwrite) as f:
            f.write(data)
    except OSError as e:
        raise _write_error(path, e) from None
    return WeightHeader(
        path,
        metadata,
        {k: tuple(v.shape) for k, v in state.items()},
        {k: "F32" for k in state},
        config,
        detected,
    )


def _write_error(path: Path, error: OSError) -> WeightsError:
    if isinstance(error, NotRegularFileError):
        return WeightsError(f"{path}: {error.strerror}")
    if isinstance(error, FileExistsError):
        return WeightsError(f"{path}: exists; not replaced without --overwrite")
    return WeightsError(f"{path}: cannot write ({error.strerror or error})")


def convert(
    src_pth: str | os.PathLike[str], dst_safetensors: str | os.PathLike[str], *, overwrite: bool = False
) -> WeightHeader:
    """Convert a PlainUSR ``.pth`` checkpoint to a lia-upscale ``.safetensors`` file.

    The variant and scale are detected from the shapes; the file is written atomically.
    An existing destination is refused unless ``overwrite``; the source itself and a path
    that is not a regular file (a device, a pipe) always are (see :func:`check_destination`),
    before anything is read. Returns the written header.
    """
    src = Path(src_pth)
    check_destination(dst_safetensors, [src], overwrite=overwrite)  # before anything is read
    state = read_pth(src)
    try:
        detect_config({k: tuple(v.shape) for k, v in state.items()})
        check_values(state)
    except WeightsError as e:
        raise file_error(src, str(e)) from None
    return save_weights(dst_safetensors, state, overwrite=overwrite)
