"""Weight files read before any tensor: their kind by the first bytes, and our safetensors header checked.

:func:`read_header` checks the container (length prefix, JSON, dtypes, offsets, file size)
and our metadata against the network detected from the tensor shapes; :func:`parse_header`
and :func:`validate_header` are its two halves, shared with the readers that go on to load.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import WeightsError
from ..files import NotRegularFileError, open_regular
from ..nn import VARIANTS, PlainUSRConfig
from .detect import Shape, detect_config

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ARCHITECTURE",
    "FLOAT_DTYPES",
    "WeightHeader",
    "file_error",
    "first_line",
    "open_weight_file",
    "parse_header",
    "validate_header",
    "read_header",
    "sniff_weight_file",
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
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


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


def file_error(path: Path, why: str) -> WeightsError:
    """The WeightsError for a problem with the file at ``path``: ``"{path}: {why}"``."""
    return WeightsError(f"{path}: {why}")


def parse_header(
    f: BinaryIO, size: int, path: Path
) -> tuple[dict[str, str], dict[str, Shape], dict[str, str]]:
    """Parse and check the raw safetensors header at the start of ``f`` (``size`` bytes long)."""
    if size < 8:
        raise file_error(path, f"not a safetensors file (only {size} bytes)")
    (length,) = struct.unpack("<Q", f.read(8))
    if length < 2 or length > _MAX_HEADER_BYTES:
        raise file_error(path, f"not a safetensors file (header length {length} is implausible)")
    if 8 + length > size:
        raise file_error(path, f"truncated: header of {length} bytes but the file has {size}")
    raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise file_error(path, "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise file_error(path, "not a safetensors file (header is not a JSON object)")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise file_error(path, "__metadata__ must map strings to strings")
    if len(header) > _MAX_TENSORS:
        raise file_error(path, f"{len(header)} tensors is more than a PlainUSR holds")

    shapes: dict[str, Shape] = {}
    dtypes: dict[str, str] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise file_error(path, f"tensor {name!r} has no description")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise file_error(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= _MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise file_error(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise file_error(path, f"tensor {name!r} has invalid data offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * _ITEMSIZE[dtype]:
            raise file_error(path, f"tensor {name!r}: data offsets do not match shape {shape} {dtype}")
        shapes[name] = tuple(shape)
        dtypes[name] = dtype
        spans.append((offsets[0], offsets[1], name))

    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise file_error(path, f"tensor {name!r}: data is not contiguous (gap or overlap)")
        end = stop
    available = size - 8 - length
    if available < end:
        raise file_error(
            path, f"truncated: tensors need {end} bytes of data, the file holds {available}"
        )
    if available > end:
        raise file_error(path, f"{available - end} unexpected bytes after the tensor data")
    return metadata, shapes, dtypes


def validate_header(
    path: Path, metadata: dict[str, str], shapes: dict[str, Shape], dtypes: dict[str, str]
) -> WeightHeader:
    """Check our metadata, detect the network from the shapes and require that they agree."""
    if metadata.get("format") != FORMAT:
        raise file_error(
            path,
            f"not a lia-upscale weight file (metadata format is {metadata.get('format')!r}, "
            f"expected {FORMAT!r}); convert .pth checkpoints with convert()",
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise file_error(
            path,
            f"unsupported format_version {metadata.get('format_version')!r} "
            f"(this lia-upscale reads {FORMAT_VERSION!r})",
        )
    if metadata.get("architecture") != ARCHITECTURE:
        raise file_error(
            path, f"architecture is {metadata.get('architecture')!r}, expected {ARCHITECTURE!r}"
        )
    variant, scale = metadata.get("variant"), metadata.get("scale")
    if variant not in VARIANTS:
        raise file_error(path, f"metadata variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if scale is None or not scale.isdecimal() or len(scale) > 3:
        raise file_error(path, f"metadata scale {scale!r} is not a whole number")
    for name, dtype in dtypes.items():
        if dtype not in FLOAT_DTYPES:
            raise file_error(path, f"tensor {name!r} has dtype {dtype}; expected floating point")
    try:
        config, detected = detect_config(shapes)
    except WeightsError as e:
        raise file_error(path, str(e)) from None
    if (detected, config.scale) != (variant, int(scale)):
        raise file_error(
            path,
            f"metadata says variant {variant} x{scale} but the tensors are "
            f"variant {detected} x{config.scale}",
        )
    return WeightHeader(path, dict(metadata), shapes, dtypes, config, detected)


def open_weight_file(path: Path) -> BinaryIO:
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
    with open_weight_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        return validate_header(path, *parse_header(f, size, path))


def sniff_weight_file(path: str | os.PathLike[str]) -> str | None:
    """``"safetensors"`` or ``"torch"`` by the file's first bytes (a JSON header after the
    8-byte length; a torch.save zip or pickle), None when neither."""
    with open_weight_file(Path(path)) as f:
        magic = f.read(9)
    if len(magic) == 9 and magic[8:] == b"{":
        return "safetensors"
    return "torch" if magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80" else None


def first_line(error: BaseException) -> str:
    """The first line of an error's text (colour codes removed, at most 200 characters) for a one-line message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

