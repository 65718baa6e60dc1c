"""Export the moving-average weights of a photo training checkpoint as a shipped model file.

    python scripts/export_photo.py SCALE [CHECKPOINT [NAME]]
    (defaults: runs/photo_x{SCALE}.ckpt, lia-photo-x{SCALE}.v3)

Writes weights/NAME.safetensors (the variant the checkpoint was trained as) and prints its iteration and sha256.
"""

import hashlib
import sys
from pathlib import Path

import torch

from lia_upscale.models import save_weights
from lia_upscale.nn import VARIANTS, PlainUSR

scale = int(sys.argv[1])
ckpt = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(f"runs/photo_x{scale}.ckpt")
state = torch.load(ckpt, map_location="cpu", weights_only=True)
variant = state["config"]["variant"]
module = PlainUSR(VARIANTS[variant].with_scale(scale))
module.load_state_dict(state["ema"])
name = sys.argv[3] if len(sys.argv) > 3 else f"lia-photo-x{scale}.v3"
out = Path(__file__).resolve().parents[1] / "weights" / f"{name}.safetensors"
save_weights(out, module.eval(), variant=variant, scale=scale)
print(f"{out.name}: iteration {state['iteration']}, {out.stat().st_size} bytes, "
      f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")
