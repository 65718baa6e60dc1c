"""PlainUSR for spandrel (chaiNNer, ComfyUI): importing this module registers the architecture.

After ``import lia_upscale.integrations.spandrel``, ``spandrel.ModelLoader().load_from_file``
loads the official PlainUSR checkpoints, lia-upscale's ``.safetensors`` files and the
third-party layouts spandrel unwraps itself (``params_ema`` ..., ``module.``), including
upstream's training form (folded into the deploy form), as an ``ImageModelDescriptor``.
The variant and scale come from the tensor shapes (:func:`lia_upscale.models.detect_config`).

Needs the ``spandrel`` extra: ``pip install 'lia-upscale[spandrel]'``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from spandrel import (
    MAIN_REGISTRY,
    ArchRegistry,
    ArchSupport,
    Architecture,
    ImageModelDescriptor,
    ModelTiling,
    SizeRequirements,
)

from ..errors import WeightsError
from ..models import detect_config, fold_training_state, is_training_form
from ..nn import LIA_MIN_SIZE, PlainUSR
from ..nn.inference import infer

__all__ = ["PlainUSRArch", "ARCHITECTURE", "register"]


def _detect(state_dict: Mapping[str, object]) -> bool:
    """True for a PlainUSR state dict (deploy or training form) whose shapes name a network."""
    if "head.weight" not in state_dict or "tail.0.weight" not in state_dict:
        return False
    try:
        state = fold_training_state(state_dict) if is_training_form(state_dict) else state_dict
        detect_config({k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)})
    except (WeightsError, ValueError, KeyError, IndexError, AttributeError):  # detection never raises
        return False
    return True


class PlainUSRArch(Architecture[PlainUSR]):
    """spandrel's view of PlainUSR (ACCV 2024), deploy form, every size (U, T, S, M, base, L)."""

    def __init__(self) -> None:
        super().__init__(id="PlainUSR", name="PlainUSR", detect=_detect)

    def load(self, state_dict: Mapping[str, torch.Tensor]) -> ImageModelDescriptor[PlainUSR]:
        """Build the network the shapes describe and load ``state_dict`` into it strictly."""
        state = fold_training_state(state_dict) if is_training_form(state_dict) else dict(state_dict)
        config, variant = detect_config({k: tuple(v.shape) for k, v in state.items()})
        lia = config.attention == "lia"
        return ImageModelDescriptor(
            PlainUSR(config),
            state,
            architecture=self,
            purpose="SR",
            tags=[variant, f"{config.features}nf"],
            supports_half=True,
            supports_bfloat16=True,
            scale=config.scale,
            input_channels=3,
            output_channels=3,
            # LIA pools 7x7 windows; padding to 7 is what lia-upscale does too
            size_requirements=SizeRequirements(minimum=LIA_MIN_SIZE if lia else 0),
            # LIA's importance map is anchored to the whole image: tiles cut without their
            # position (as generic tilers do) differ slightly at the seams
            tiling=ModelTiling.DISCOURAGED if lia else ModelTiling.SUPPORTED,
            call_fn=lambda model, image: infer(model, image),
        )


#: The architecture instance registered with spandrel.
ARCHITECTURE = PlainUSRArch()


def register(registry: ArchRegistry = MAIN_REGISTRY) -> None:
    """Add PlainUSR to ``registry`` (spandrel's main registry by default); a no-op if it is there."""
    registry.add(ArchSupport.from_architecture(ARCHITECTURE), ignore_duplicates=True)


register()
