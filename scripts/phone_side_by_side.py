"""Side-by-side x4 crops of an unmodified phone JPEG: bicubic, a "before" model, an "after" model.

    python scripts/phone_side_by_side.py [--before W] [--after W] [--out docs/phone_side_by_side.png]

W is a weight file or a model name (default for both: weights/lia-photo-x4.v4.safetensors,
today's photo model at full strength; give the new one as --after). The input is
../shared/datasets/phone/phone_1063.jpg (a 12-MP phone photo: the phone's own noise
reduction, sharpening and JPEG; EXIF orientation applied), never trained on. Rows: lichen bark,
soil and moss (foliage), 96 x 96 LR pixels each; columns: MATLAB-style bicubic, before, after, all
x4, each panel labelled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lia_upscale import images
from lia_upscale.api import Upscaler
from lia_upscale.tools.bicubic import matlab_resize

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "datasets" / "phone" / "phone_1063.jpg"
EDGE = 96
#: LR crops (left, top) in the upright 3024 x 4032 picture
CROPS = {"bark": (2520, 1560), "soil": (120, 3000), "moss": (2400, 1250)}


def _upscaler(weights: str) -> Upscaler:
    if Path(weights).is_file():
        return Upscaler(weights=weights, device="cpu", precision="fp32", tile=0)
    return Upscaler(model=weights, device="cpu", precision="fp32", tile=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = str(ROOT / "weights" / "lia-photo-x4.v4.safetensors")
    ap.add_argument("--before", default=default)
    ap.add_argument("--after", default=default)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "phone_side_by_side.png")
    args = ap.parse_args()
    rgb = images.decode(PHOTO).rgb
    columns = [("bicubic", lambda lr: np.clip(matlab_resize(lr, 4), 0, 1))]
    for label, weights in (("before", args.before), ("after", args.after)):
        up = _upscaler(weights)
        columns.append((f"{label}: {Path(weights).name}", lambda lr, up=up: up.upscale_tensor(lr).permute(1, 2, 0).numpy()))
    side, gap, head = EDGE * 4, 8, 22
    sheet = Image.new("RGB", (len(columns) * (side + gap) - gap, len(CROPS) * (side + head)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, (x, y)) in enumerate(CROPS.items()):
        lr = np.ascontiguousarray(rgb[y : y + EDGE, x : x + EDGE])
        top = r * (side + head)
        for c, (label, fn) in enumerate(columns):
            left = c * (side + gap)
            sheet.paste(Image.fromarray(np.round(np.clip(fn(lr), 0, 1) * 255).astype(np.uint8)), (left, top + head))
            draw.text((left + 4, top + 4), f"{name}, {label}", fill="black")
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
