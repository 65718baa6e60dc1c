"""Weight files: our safetensors format (header first), safe ``.pth`` reading, conversion."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_save
from torch import nn

from ..errors import WeightsError
from ..files import NotRegularFileError, atomic_writer, open_regular
from ..nn import VARIANTS, PlainUSRConfig
from .destination import check_destination
from .detect import Shape, check_values, detect_config
from .reparam import folded_shapes, is_training_form

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "WeightHeader",
    "read_header",
    "read_safetensors",
    "read_any_safetensors",
    "save_weights",
    "read_pth",
    "read_torch_file",
    "sniff_weight_file",
    "unwrap_checkpoint",
    "convert",
    "WRAPPERS",
]

#: ``format`` and ``format_version`` in the metadata of every file we write.
FORMAT = "lia-upscale"
FORMAT_VERSION = "1"
ARCHITECTURE = "PlainUSR"

# Sanity limits for untrusted headers: a PlainUSR header is a few kilobytes.
_MAX_HEADER_BYTES = 8 * 1024 * 1024
_MAX_TENSORS = 10_000
_MAX_DIMS = 8

_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_RESERVED = ("format", "format_version", "architecture", "variant", "scale")


@dataclass(frozen=True)
class WeightHeader:
    """What a validated lia-upscale ``.safetensors`` header says, read without its tensors.

    ``shapes``/``dtypes``: tensor name -> shape / safetensors dtype (``"F32"``, ...).
    ``config``/``variant``/``scale``: detected from the shapes and equal to the metadata.
    ``metadata``: the whole ``__metadata__`` table (strings).
    """

    path: Path
    metadata: Mapping[str, str]
    shapes: Mapping[str, Shape]
    dtypes: Mapping[str, str]
    config: PlainUSRConfig
    variant: str

    @property
    def scale(self) -> int:
        """Upscaling factor."""
        return self.config.scale

    def __str__(self) -> str:
        return f"PlainUSR variant {self.variant} x{self.scale}, {len(self.shapes)} tensors"


def _fail(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path}: {why}")


def _parse_header(
    f: BinaryIO, size: int, path: Path
) -> tuple[dict[str, str], dict[str, Shape], dict[str, str]]:
    """Parse and check the raw safetensors header at the start of ``f`` (``size`` bytes long)."""
    if size < 8:
        raise _fail(path, f"not a safetensors file (only {size} bytes)")
    (length,) = struct.unpack("<Q", f.read(8))
    if length < 2 or length > _MAX_HEADER_BYTES:
        raise _fail(path, f"not a safetensors file (header length {length} is implausible)")
    if 8 + length > size:
        raise _fail(path, f"truncated: header of {length} bytes but the file has {size}")
    raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _fail(path, "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file (header is not a JSON object)")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _fail(path, "__metadata__ must map strings to strings")
    if len(header) > _MAX_TENSORS:
        raise _fail(path, f"{len(header)} tensors is more than a PlainUSR holds")

    shapes: dict[str, Shape] = {}
    dtypes: dict[str, str] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise _fail(path, f"tensor {name!r} has no description")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise _fail(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= _MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise _fail(path, f"tensor {name!r} has invalid data offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * _ITEMSIZE[dtype]:
            raise _fail(path, f"tensor {name!r}: data offsets do not match shape {shape} {dtype}")
        shapes[name] = tuple(shape)
        dtypes[name] = dtype
        spans.append((offsets[0], offsets[1], name))

    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _fail(path, f"tensor {name!r}: data is not contiguous (gap or overlap)")
        end = stop
    available = size - 8 - length
    if available < end:
        raise _fail(
            path, f"truncated: tensors need {end} bytes of data, the file holds {available}"
        )
    if available > end:
        raise _fail(path, f"{available - end} unexpected bytes after the tensor data")
    return metadata, shapes, dtypes


def _validate(
    path: Path, metadata: dict[str, str], shapes: dict[str, Shape], dtypes: dict[str, str]
) -> WeightHeader:
    """Check our metadata, detect the network from the shapes and require that they agree."""
    if metadata.get("format") != FORMAT:
        raise _fail(
            path,
            f"not a lia-upscale weight file (metadata format is {metadata.get('format')!r}, "
            f"expected {FORMAT!r}); convert .pth checkpoints with convert()",
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise _fail(
            path,
            f"unsupported format_version {metadata.get('format_version')!r} "
            f"(this lia-upscale reads {FORMAT_VERSION!r})",
        )
    if metadata.get("architecture") != ARCHITECTURE:
        raise _fail(
            path, f"architecture is {metadata.get('architecture')!r}, expected {ARCHITECTURE!r}"
        )
    variant, scale = metadata.get("variant"), metadata.get("scale")
    if variant not in VARIANTS:
        raise _fail(path, f"metadata variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if scale is None or not scale.isdecimal() or len(scale) > 3:
        raise _fail(path, f"metadata scale {scale!r} is not a whole number")
    for name, dtype in dtypes.items():
        if dtype not in _FLOAT_DTYPES:
            raise _fail(path, f"tensor {name!r} has dtype {dtype}; expected floating point")
    try:
        config, detected = detect_config(shapes)
    except WeightsError as e:
        raise _fail(path, str(e)) from None
    if (detected, config.scale) != (variant, int(scale)):
        raise _fail(
            path,
            f"metadata says variant {variant} x{scale} but the tensors are "
            f"variant {detected} x{config.scale}",
        )
    return WeightHeader(path, dict(metadata), shapes, dtypes, config, detected)


def _open_checked(path: Path) -> BinaryIO:
    """``path`` open for reading: a regular file, opened without blocking (see ``open_regular``)."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weight file") from None
    except NotRegularFileError as e:
        raise WeightsError(f"{path}: is {e.what}, not a weight file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None


def read_header(path: str | os.PathLike[str]) -> WeightHeader:
    """Read and validate a lia-upscale ``.safetensors`` header without loading any tensor.

    Checks the container (length prefix, JSON, dtypes, offsets, file size), our metadata
    (format, version, architecture, variant, scale) and that the tensor shapes are exactly
    those of the named variant at that scale. Raises WeightsError otherwise.
    """
    path = Path(path)
    with _open_checked(path) as f:
        size = os.fstat(f.fileno()).st_size
        return _validate(path, *_parse_header(f, size, path))


def read_safetensors(path: str | os.PathLike[str]) -> tuple[WeightHeader, dict[str, torch.Tensor]]:
    """Validate the header (see :func:`read_header`), then load the tensors on the CPU.

    Returns the header and a state dict of float32 tensors.
    """
    path = Path(path)
    with _open_checked(path) as f:
        size = os.fstat(f.fileno()).st_size
        header = _validate(path, *_parse_header(f, size, path))
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
    with _open_checked(path) as f:
        size = os.fstat(f.fileno()).st_size
        metadata, shapes, dtypes = _parse_header(f, size, path)
        if metadata.get("format") == FORMAT:
            header = _validate(path, metadata, shapes, dtypes)
            return _load_tensors(path, f), []
        notes = ["no lia-upscale metadata"]
        renamed = _strip_prefix(shapes)
        if renamed is not shapes:
            notes.append(f"{_PREFIX} prefix")
        for name, dtype in dtypes.items():
            if dtype not in _FLOAT_DTYPES:
                raise _fail(path, f"tensor {name!r} has dtype {dtype}; expected floating point")
        try:
            # every tensor's shape is checked before any is read, the training form's too
            detect_config(folded_shapes(renamed) if is_training_form(renamed) else renamed)
        except WeightsError as e:
            raise _fail(path, str(e)) from None
        tensors = _load_tensors(path, f)
    return _strip_prefix(tensors), notes


def _load_tensors(path: Path, f: BinaryIO) -> dict[str, torch.Tensor]:
    """All tensors of the open file ``f`` as float32 (its header already checked)."""
    f.seek(0)
    data = f.read()
    try:
        tensors = _safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise _fail(path, f"unreadable tensor data ({_first_line(e)})") from None
    return {k: v.float() for k, v in tensors.items()}


def _first_line(error: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


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


#: Checkpoint wrappers, most preferred first: BasicSR/neosr keep ``params_ema`` (the EMA
#: weights, the ones to use) beside ``params``; other trainers save ``state_dict``.
WRAPPERS = ("params_ema", "params", "state_dict")
_PREFIX = "module."


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
        raise _fail(path, f"not a state dict (found {type(obj).__name__})")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _fail(path, f"not a state dict: entry {key!r} is a {type(value).__name__}")
        state[key] = value
    stripped = _strip_prefix(state)
    if stripped is not state:
        notes.append(f"{_PREFIX} prefix")
    return stripped, notes


def _strip_prefix(state: dict[str, object]) -> dict:
    """``state`` without a ``module.`` prefix shared by every key (the same object if none)."""
    if state and all(k.startswith(_PREFIX) for k in state):
        return {k[len(_PREFIX) :]: v for k, v in state.items()}
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


def sniff_weight_file(path: str | os.PathLike[str]) -> str | None:
    """``"safetensors"`` or ``"torch"`` by the file's first bytes (a JSON header after the
    8-byte length; a torch.save zip or pickle), None when neither."""
    with _open_checked(Path(path)) as f:
        magic = f.read(9)
    if len(magic) == 9 and magic[8:] == b"{":
        return "safetensors"
    return "torch" if magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80" else None


def _is_zip(path: Path) -> bool:
    with _open_checked(path) as f:
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
        raise _fail(path, "is a safetensors file, not a torch checkpoint; name it .safetensors "
                          "(lia-upscale loads it as it is)")
    try:
        with warnings.catch_warnings():  # torch's two-line notices are not the user's business
            warnings.simplefilter("ignore")
            # a zip checkpoint is mapped, not read: its tensors' shapes are checked before their data is touched
            zipped = kind == "torch" and _is_zip(path)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        raise _fail(path, _refusal(e)) from None
    except Exception as e:  # noqa: BLE001 - any failure of an untrusted file is a WeightsError
        raise _fail(path, f"not a readable torch checkpoint ({_first_line(e)})") from None


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
        raise _fail(src, str(e)) from None
    return save_weights(dst_safetensors, state, overwrite=overwrite)
