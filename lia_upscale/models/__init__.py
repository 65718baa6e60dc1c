"""Weight files -> a ready model: variant detection, strict loading, safetensors, cards, registry,
descriptor, and the denoise strength (a photo model blended with its clean endpoint)."""

from __future__ import annotations

from .detect import check_shapes, check_values, describe_config, detect_config, expected_shapes, load_state
from .blend import blend_states, check_strength
from .loader import Model, load_model
from .cards import ALL_CARDS, CARDS, PURPOSES, ModelCard, card_for_file, default_model_name, get_card
from .descriptor import ModelDescriptor, describe
from .reparam import fold_training_state, is_training_form
from .registry import (
    ProgressCallback,
    embedded_weights_dir,
    install,
    list_models,
    resolve,
    resolve_clean_endpoint,
    user_weights_dir,
)
from .destination import check_destination
from .pthfile import read_pth, read_torch_file, unwrap_checkpoint
from .weightfile import convert, read_any_safetensors, read_safetensors, save_weights
from .weightheader import FORMAT, FORMAT_VERSION, WeightHeader, read_header

__all__ = [
    "check_shapes",
    "check_values",
    "describe_config",
    "detect_config",
    "expected_shapes",
    "load_state",
    "Model",
    "load_model",
    "blend_states",
    "check_strength",
    "ALL_CARDS",
    "CARDS",
    "PURPOSES",
    "ModelDescriptor",
    "describe",
    "ModelCard",
    "ProgressCallback",
    "card_for_file",
    "default_model_name",
    "embedded_weights_dir",
    "get_card",
    "install",
    "list_models",
    "resolve",
    "resolve_clean_endpoint",
    "user_weights_dir",
    "FORMAT",
    "FORMAT_VERSION",
    "WeightHeader",
    "convert",
    "check_destination",
    "read_any_safetensors",
    "read_header",
    "read_pth",
    "read_safetensors",
    "read_torch_file",
    "save_weights",
    "unwrap_checkpoint",
    "fold_training_state",
    "is_training_form",
]
