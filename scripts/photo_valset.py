"""Write the photo validation sets: HR images degraded by one fixed member of the family.

    python scripts/photo_valset.py [OUT]   (default runs/photo_val)

For x2 and x4 it writes OUT/x{2,4}/set14/ (the 14 Set14 HR images), OUT/x{2,4}/set14_heldout/
(the same images degraded by `HELD_OUT_RECIPE`, a member never used to choose checkpoints)
and OUT/x{2,4}/camera/
(crops of the camera photos in ../shared/datasets/large/, first halved with area averaging so
the camera's own noise and JPEG blocks fall below the pixel grid) as NAME_HR.png / NAME_LR.png
pairs that `lia-upscale eval` reads. The LR side is
`degradations.apply(VALIDATION_RECIPE, hr, scale, numpy.random.default_rng(seed))` with a seed
fixed per image, so the sets are the same on every machine. Nothing here is committed.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from lia_upscale.tools.degradations import HELD_OUT_RECIPE, VALIDATION_RECIPE, apply

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CROP = 384  # HR crop edge of the camera photos, a multiple of 2, 4 and 6


def _set14_hr() -> list[tuple[str, np.ndarray]]:
    folder = SHARED / "datasets" / "benchmark" / "Set14" / "x4"
    out = []
    for path in sorted(folder.glob("*_HR.png")):
        with Image.open(path) as im:
            out.append((path.name[: -len("_HR.png")], np.asarray(im.convert("RGB"))))
    return out


def _camera_hr() -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sorted((SHARED / "datasets" / "large").rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg"}:
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            half = im.resize((im.width // 2, im.height // 2), Image.Resampling.BOX)
        arr = np.asarray(half)
        h, w = arr.shape[:2]
        for k, (fy, fx) in enumerate(((0.5, 0.5), (0.3, 0.25), (0.7, 0.75))):
            y = int((h - CROP) * fy)
            x = int((w - CROP) * fx)
            out.append((f"{path.stem}_{k}", np.ascontiguousarray(arr[y : y + CROP, x : x + CROP])))
    return out


def write_set(images: list[tuple[str, np.ndarray]], scale: int, folder: Path, recipe=VALIDATION_RECIPE) -> None:
    """Write NAME_HR.png / NAME_LR.png for each image, HR cropped to a multiple of ``scale``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, hr in images:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = np.ascontiguousarray(hr[:h, :w])
        seed = zlib.crc32(f"{name}/x{scale}".encode())
        lr = apply(recipe, hr, scale, np.random.default_rng(seed))
        Image.fromarray(hr).save(folder / f"{name}_HR.png")
        Image.fromarray(lr).save(folder / f"{name}_LR.png")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "photo_val"
    set14, camera = _set14_hr(), _camera_hr()
    for scale in (2, 4):
        write_set(set14, scale, out / f"x{scale}" / "set14")
        write_set(camera, scale, out / f"x{scale}" / "camera")
        write_set(set14, scale, out / f"x{scale}" / "set14_heldout", HELD_OUT_RECIPE)
    print(f"wrote {len(set14)} Set14 and {len(camera)} camera pairs per scale under {out}")


if __name__ == "__main__":
    main()
