"""Side-by-side crops from a real camera photo at x4: bicubic, the clean model, the photo model.

    python scripts/photo_side_by_side.py [OUT]   (default docs/photo_side_by_side.png)

The input is a crop of an unmodified camera JPEG from ../shared/datasets/large/ (its own
sensor noise, noise reduction and JPEG blocks; no synthetic degradation), upscaled x4 by
MATLAB-style bicubic, `lia-u-x4` (bicubic-trained) and `lia-photo-x4`, each panel labelled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lia_upscale.api import Upscaler
from sheet import save_sheet
from lia_upscale.tools.bicubic import matlab_resize

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "datasets" / "large" / "sceaux" / "100_7100.JPG"
BOX = (1480, 1120, 1480 + 144, 1120 + 108)  # LR crop (left, top, right, bottom): windows, brick, stone


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "photo_side_by_side.png"
    with Image.open(PHOTO) as im:
        lr = np.asarray(im.convert("RGB").crop(BOX)).astype(np.float32) / 255.0
    panels = [("bicubic", np.clip(matlab_resize(lr, 4), 0, 1))]
    for name in ("lia-u-x4", "lia-photo-x4"):
        up = Upscaler(model=name, device="cpu", precision="fp32", tile=0)
        panels.append((name, up.upscale_tensor(lr).permute(1, 2, 0).numpy()))
    save_sheet(panels, out)


if __name__ == "__main__":
    main()
