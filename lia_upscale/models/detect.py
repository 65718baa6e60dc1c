"""Tensor shapes -> PlainUSR hyperparameters and variant name; the strict load check."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import WeightsError
from ..nn import VARIANTS, PlainUSR, PlainUSRConfig, block_names

__all__ = ["detect_config", "expected_shapes", "check_shapes", "check_values", "load_state", "describe_config"]

Shape = tuple[int, ...]

#: How many names an error message lists before summarising the rest.
_LIST_LIMIT = 8


def describe_config(config: PlainUSRConfig) -> str:
    """A compact one-line description, e.g. ``n=16 widths=16-8-16 convs=2 light x4``."""
    widths = "-".join(str(w) for w in config.widths)
    att = f"lia f={config.lia_channels}" if config.attention == "lia" else config.attention
    return f"n={config.features} widths={widths} convs={config.convs} {att} x{config.scale}"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = len(names) - _LIST_LIMIT
    return f"{shown} and {more} more" if more > 0 else shown


def _as_shape(value: object) -> Shape | None:
    """``value`` as a tuple of non-negative ints, or None when it is not a shape."""
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        return tuple(value)
    return None


def _shape(shapes: Mapping[str, Shape], key: str, ndim: int = 4) -> Shape | None:
    """The shape under ``key`` if present; a present shape of the wrong rank is an error."""
    shape = shapes.get(key)
    if shape is not None and len(shape) != ndim:
        raise WeightsError(f"{key} has shape {shape}; expected {ndim} dimensions")
    return shape


def _block_attention(
    shapes: Mapping[str, Shape], block: str, index: int, width: int
) -> tuple[str, int]:
    """(kind, lia channels) of the attention at ``<block>.body.<index>``: lia, light or none."""
    prefix = f"{block}.body.{index}.body"
    first = _shape(shapes, f"{prefix}.0.weight")
    if first is None:
        return "none", 0
    if f"{prefix}.2.weight" in shapes or f"{prefix}.3.weight" in shapes:
        if first[2:] != (1, 1):
            raise WeightsError(
                f"{prefix}.0.weight has shape {first}; LIA expects a 1x1 convolution ({width} -> f)"
            )
        return "lia", first[0]
    if first[2:] != (3, 3):
        raise WeightsError(
            f"{prefix}.0.weight has shape {first}; light attention expects a 3x3 convolution"
        )
    return "light", 0


def _detect(shapes: Mapping[str, Shape]) -> PlainUSRConfig:
    """Every hyperparameter from the shapes; raises WeightsError on anything unreadable."""
    if not shapes:
        raise WeightsError("empty state dict: expected PlainUSR tensors (head, blocks, tail)")
    head = _shape(shapes, "head.weight")
    if head is None:
        found = _listing(sorted(shapes))
        raise WeightsError(f"not a PlainUSR state dict: no head.weight (found {found})")
    if head[1:] != (3, 3, 3) or head[0] <= 3:
        raise WeightsError(f"head.weight has shape {head}; expected (n+3, 3, 3, 3) with n >= 1")
    features = head[0] - 3

    found_blocks = sorted({k.split(".", 1)[0] for k in shapes if k.startswith("block")})
    names: tuple[str, ...] | None = None
    for count in (3, 5):
        if sorted(block_names(count)) == found_blocks:
            names = block_names(count)
    if names is None:
        raise WeightsError(
            "expected blocks block1, blockm, block2 or block1, block2, blockm, block3, block4; "
            f"found {', '.join(found_blocks) or 'none'}"
        )

    widths: list[int] = []
    convs_per_block: list[int] = []
    attention: list[tuple[str, int]] = []
    for name in names:
        first = _shape(shapes, f"{name}.body.0.weight")
        if first is None:
            raise WeightsError(f"{name} has no body.0.weight, so its width is unknown")
        width = first[0]
        convs = 3 if f"{name}.body.4.weight" in shapes else 2
        widths.append(width)
        convs_per_block.append(convs)
        attention.append(_block_attention(shapes, name, 2 * convs - 1, width))

    if len(set(convs_per_block)) != 1:
        per = ", ".join(f"{n}={c}" for n, c in zip(names, convs_per_block))
        raise WeightsError(f"blocks disagree on their convolution count: {per}")
    middle = len(names) // 2
    kinds = [kind for kind, _ in attention]
    if all(kind == "lia" for kind in kinds) and len({f for _, f in attention}) == 1:
        kind, lia_channels = "lia", attention[0][1]
    elif kinds[middle] == "light" and kinds.count("none") == len(kinds) - 1:
        kind, lia_channels = "light", 0
    else:
        per = ", ".join(
            f"{n}={k}" + (f"(f={f})" if k == "lia" else "") for n, (k, f) in zip(names, attention)
        )
        raise WeightsError(
            "unsupported attention layout (expected LIA in every block with one f, or light "
            f"attention in the middle block only): {per}"
        )

    tail = _shape(shapes, "tail.0.weight")
    if tail is None:
        raise WeightsError("no tail.0.weight, so the scale is unknown")
    out = tail[0]
    scale = math.isqrt(out // 3) if out >= 3 else 0
    if scale < 1 or 3 * scale * scale != out:
        raise WeightsError(
            f"tail.0.weight has {out} output channels; expected 3*s^2 (12 for x2, 48 for x4)"
        )
    return PlainUSRConfig(features, tuple(widths), convs_per_block[0], kind, lia_channels, scale)


def expected_shapes(config: PlainUSRConfig) -> dict[str, Shape]:
    """Name -> shape of every tensor a ``PlainUSR(config)`` state dict holds (nothing allocated)."""
    with torch.device("meta"):
        module = PlainUSR(config)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_shapes(expected: Mapping[str, Shape], found: Mapping[str, Shape]) -> None:
    """Raise one WeightsError naming missing and unexpected keys (sorted) and wrong shapes."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    wrong = sorted(
        f"{k} (expected {tuple(expected[k])}, found {tuple(found[k])})"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong)}")
    if problems:
        raise WeightsError("state dict does not fit the network: " + "; ".join(problems))


def detect_config(shapes: Mapping[str, Sequence[int]]) -> tuple[PlainUSRConfig, str]:
    """Read a PlainUSR config from tensor shapes alone and name its variant.

    ``shapes``: tensor name -> shape, as in a state dict or a safetensors header. Returns
    the config and the name of the matching entry of ``VARIANTS`` (``"U"`` ... ``"L"``).
    Raises one WeightsError when the shapes are unreadable, match no published variant,
    or do not fit that variant exactly (missing, unexpected or wrongly shaped tensors).
    """
    normalised: dict[str, Shape] = {}
    for key, value in shapes.items():
        shape = _as_shape(value)
        if not isinstance(key, str) or shape is None:
            raise WeightsError(f"not a state dict: entry {key!r} has no tensor shape ({value!r})")
        normalised[key] = shape
    config = _detect(normalised)
    for name, variant in VARIANTS.items():
        if variant.with_scale(config.scale) == config:
            check_shapes(expected_shapes(config), normalised)
            return config, name
    known = "; ".join(
        f"{n}: {describe_config(c.with_scale(config.scale))}" for n, c in VARIANTS.items()
    )
    raise WeightsError(
        f"weights match no PlainUSR variant: found {describe_config(config)}; "
        f"expected one of {known}"
    )


def check_values(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise WeightsError unless every tensor is floating point and finite (no NaN, no infinity)."""
    for key, value in state_dict.items():
        if not value.is_floating_point():
            raise WeightsError(f"{key} has dtype {value.dtype}; expected floating point")
        if not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{key} contains NaN or infinite values")


def load_state(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state_dict`` into ``module`` strictly.

    Every key must be present with its exact shape, nothing extra, every tensor floating
    point and finite; all key and shape problems are reported in one WeightsError before
    anything is copied. Values are converted to each parameter's dtype.
    """
    found: dict[str, Shape] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"not a state dict: entry {key!r} is a {type(value).__name__}")
        found[key] = tuple(value.shape)
    check_shapes({k: tuple(v.shape) for k, v in module.state_dict().items()}, found)
    check_values(state_dict)
    module.load_state_dict(dict(state_dict), strict=True)
