"""A weight file or model name -> a ready PlainUSR module on the CPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import WeightsError
from ..nn import PlainUSR, PlainUSRConfig
from .blend import blend_states, check_strength
from .detect import detect_config, load_state
from .cards import CARDS, ModelCard, get_card
from .descriptor import ModelDescriptor, describe
from .registry import resolve, resolve_clean_endpoint
from .reparam import fold_training_state, folded_shapes, is_training_form
from .pthfile import read_torch_file, unwrap_checkpoint
from .weightfile import read_any_safetensors
from .weightheader import sniff_weight_file

__all__ = ["Model", "load_model"]

_PTH_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin"}


@dataclass(frozen=True, eq=False)
class Model:
    """A loaded network and what it is.

    ``module``: the PlainUSR in eval mode, float32, on the CPU (move it as needed).
    ``source``: the model name or the path it was loaded from, as given.
    ``path``: the weight file actually read. ``denoise``: the strength of a photo model
    blended with its clean endpoint (1: the photo model itself), None for a model that has
    no clean endpoint.
    """

    module: PlainUSR
    variant: str
    scale: int
    source: str
    path: Path
    card: ModelCard | None = None
    denoise: float | None = None

    @property
    def descriptor(self) -> ModelDescriptor:
        """What the engine needs to know: scale, tile contract, precisions, purpose."""
        return describe(self.module, self.card, variant=self.variant)

    @property
    def config(self) -> PlainUSRConfig:
        """The network's hyperparameters."""
        return self.module.config


def _read(path: Path) -> tuple[PlainUSRConfig, str, dict[str, torch.Tensor], list[str]]:
    """The network, variant and deploy-form state dict of a weight file, and notes on what
    was adapted to read it (empty for our files and flat official checkpoints). The
    content decides the reader: a safetensors file named ``.pth`` is read as safetensors."""
    suffix = path.suffix.lower()
    kind = sniff_weight_file(path)
    if kind == "safetensors" or (kind is None and suffix not in _PTH_SUFFIXES):
        state, notes = read_any_safetensors(path)
    else:
        state, notes = unwrap_checkpoint(read_torch_file(path), path)
    try:
        if is_training_form(state):
            folded_shapes({k: tuple(v.shape) for k, v in state.items()})  # every shape before any data
            state = fold_training_state(state)
            notes.append("training form folded into the deploy form")
        config, variant = detect_config({k: tuple(v.shape) for k, v in state.items()})
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    return config, variant, state, notes


def load_model(
    path_or_name: str | os.PathLike[str],
    *,
    on_warning: Callable[[str], None] | None = None,
    denoise: float | None = None,
) -> Model:
    """Load a model by registry name (``"lia-u-x4"``, ``"plainusr-m-x2"``) or weight file.

    A ``.safetensors`` file has its header validated before any tensor is read; a
    ``.pth`` is read with ``weights_only=True``. The variant and scale are detected from
    the tensor shapes and the weights are loaded strictly. Raises WeightsError.

    Third-party PlainUSR weights load too: a ``.safetensors`` without our metadata, a
    ``.pth`` wrapped in ``params_ema``/``params``/``state_dict`` or with ``module.``
    prefixes, and upstream's training form (folded into the deploy form, see
    :mod:`~lia_upscale.models.reparam`). Such a file is reported by one call of
    ``on_warning`` with a one-line notice (nothing is printed).

    ``denoise``: the strength of a photo model, from 0 (the clean network it was
    fine-tuned from, its card's ``clean_endpoint``) to 1 (the photo model): the network
    whose weights are the straight-line blend of the two
    (:func:`~lia_upscale.models.blend.blend_states`). None: the card's default strength.
    ValueError for a strength that is not a finite number in [0, 1]; WeightsError for a
    strength asked of a model without a clean endpoint (a file, a clean model).
    """
    if denoise is not None:
        denoise = check_strength(denoise)
    source = os.fspath(path_or_name)
    if not str(source).strip():
        raise WeightsError("an empty model name or weight path names no model (see `lia-upscale models`)")
    if isinstance(path_or_name, str) and source.split("@", 1)[0] in CARDS:
        card = get_card(source)
        path = resolve(source)
    else:
        path = Path(source).expanduser()
        card = None
        if not path.is_file():
            if isinstance(path_or_name, str) and len(path.parts) == 1 and not path.suffix:
                resolve(source)  # an unknown name: raises listing the known ones
            raise WeightsError(f"{source}: no such weight file")
    if denoise is not None and card is None:
        raise WeightsError(f"{source}: a denoise strength needs a named photo model with a clean "
                           "endpoint (e.g. lia-photo-x4), not a weight file")
    if denoise is not None and card.clean_endpoint is None:
        resolve_clean_endpoint(card)  # raises: this model has none
    config, variant, state, notes = _read(path)
    if card is not None and (variant, config.scale) != (card.variant, card.scale):
        raise WeightsError(
            f"{path}: holds variant {variant} x{config.scale} but model {card.name} "
            f"is {card.variant} x{card.scale}"
        )
    strength = None
    if card is not None and card.clean_endpoint is not None:
        strength = card.denoise if denoise is None else denoise
    if strength is not None and strength != 1.0:
        end = resolve_clean_endpoint(card)
        end_config, end_variant, end_state, _ = _read(end)
        if end_config != config:
            raise WeightsError(f"{end}: the clean endpoint of {card.pinned} is variant {end_variant} "
                               f"x{end_config.scale}, another network than the model's")
        state = blend_states(end_state, state, strength)
    module = PlainUSR(config)
    try:
        load_state(module, state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    module.float().eval()
    if notes and on_warning is not None:
        on_warning(f"{path}: third-party PlainUSR weights ({', '.join(notes)}); "
                   f"loaded by shape detection as variant {variant} x{config.scale}")
    return Model(module, variant, config.scale, source, path, card, strength)
