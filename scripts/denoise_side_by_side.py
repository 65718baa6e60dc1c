"""Side-by-side crops of a real camera photo at x4 across the denoise strength of lia-photo-x4.

    python scripts/denoise_side_by_side.py [OUT]   (default docs/denoise_strength.png)

The input is a crop of an unmodified camera JPEG from ../shared/datasets/large/ (its own
sensor noise, noise reduction and JPEG blocks), upscaled x4 by `lia-photo-x4` at strengths
0 (the official PlainUSR-L x4 it was fine-tuned from), 0.5, 0.9 (the default) and 1 (the
full photo model), each panel labelled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lia_upscale.api import Upscaler
from sheet import save_sheet

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "datasets" / "large" / "sceaux" / "100_7101.JPG"
BOX = (2440, 1200, 2440 + 128, 1200 + 112)  # LR crop (left, top, right, bottom): stone, windows, a tree, sky
STRENGTHS = (0.0, 0.5, 0.9, 1.0)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "denoise_strength.png"
    with Image.open(PHOTO) as im:
        lr = np.asarray(im.convert("RGB").crop(BOX)).astype(np.float32) / 255.0
    panels = []
    for s in STRENGTHS:
        up = Upscaler(model="lia-photo-x4", denoise=s, device="cpu", precision="fp32", tile=0)
        panels.append((f"--denoise {s:g}", up.upscale_tensor(lr).permute(1, 2, 0).numpy()))
    save_sheet(panels, out)


if __name__ == "__main__":
    main()
