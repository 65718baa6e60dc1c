"""Strength: one network between a photo model and the clean network it was fine-tuned from.

Two networks fine-tuned from one start lie close together in weight space, so a point on
the straight line between them is a working network that does part of what the fine-tune
learned (weight interpolation). A blend costs nothing at inference time: it is one set of
weights of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..errors import WeightsError

__all__ = ["check_strength", "blend_states"]


def check_strength(strength: float) -> float:
    """``strength`` as a float if it is a finite number in [0, 1]; else ValueError."""
    try:
        if isinstance(strength, bool):
            raise TypeError  # True is not a strength
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"the denoise strength must be a number from 0 to 1, not {strength!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"the denoise strength must be a number from 0 to 1, not {strength!r}")
    return value


def blend_states(
    clean: Mapping[str, torch.Tensor], photo: Mapping[str, torch.Tensor], strength: float
) -> dict[str, torch.Tensor]:
    """The state dict ``clean + strength * (photo - clean)``, tensor by tensor, in float32.

    ``strength`` 0 gives ``clean`` and 1 gives ``photo`` exactly (``torch.lerp`` is exact at
    both ends). Both must hold the same keys with the same shapes (two networks of one
    variant and scale); otherwise WeightsError names what differs. ValueError for a strength
    outside [0, 1].
    """
    strength = check_strength(strength)
    if clean.keys() != photo.keys():
        only = sorted(set(clean) ^ set(photo))
        raise WeightsError(f"the two networks hold different tensors: {', '.join(only[:6])}"
                           f"{' ...' if len(only) > 6 else ''}")
    shapes = sorted(k for k in clean if tuple(clean[k].shape) != tuple(photo[k].shape))
    if shapes:
        raise WeightsError(f"the two networks differ in the shape of {', '.join(shapes[:6])}"
                           f"{' ...' if len(shapes) > 6 else ''}")
    return {k: torch.lerp(clean[k].float(), photo[k].float(), strength) for k in clean}
