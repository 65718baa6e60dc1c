"""PSNR-Y table for the photo models: degraded validation sets and clean benchmarks.

    python scripts/photo_valset.py && python scripts/photo_quality.py [--weights-x4 F] [--weights-x2 F] [--new-only]
    python scripts/photo_quality.py --denoise 0 0.25 0.5 0.75 1   (the strength rows only)

Rows: bicubic (MATLAB-style upsampling of the LR), our clean default `lia-u-x{s}`, the
official S, M, base and L checkpoints (from ../shared/weights/plainusr), the photo model's
earlier versions (`@N`) and the photo model (`lia-photo-x{s}`, or the file given; `--new-only`: only
official L and that one, the other rows being deterministic and already known). Columns: the degraded Set14 and camera-crop sets of
scripts/photo_valset.py (one fixed member of the degradation family), then clean Set5 and
Set14. `--denoise S...`: instead, one row per strength S of `lia-photo-x{s}` (0: its clean
endpoint, 1: the photo model; see `Upscaler(denoise=S)`). Every figure comes from `lia_upscale.tools.evaluate` (the code behind `lia-upscale eval`),
whole image, float32, CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lia_upscale.api import Upscaler
from lia_upscale.models import ALL_CARDS, get_card
from lia_upscale.tools.bicubic import matlab_resize
from lia_upscale.tools.evaluate import evaluate, find_pairs

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "runs" / "photo_val"
BENCH = ROOT.parent / "shared" / "datasets" / "benchmark"
OFFICIAL = ROOT.parent / "shared" / "weights" / "plainusr"
COLUMNS = ("degraded Set14", "degraded camera", "held-out Set14", "clean Set5", "clean Set14")


def _folders(scale: int) -> list[Path]:
    return [VAL / f"x{scale}" / "set14", VAL / f"x{scale}" / "camera", VAL / f"x{scale}" / "set14_heldout",
            BENCH / "Set5" / f"x{scale}",
            BENCH / "Set14" / f"x{scale}"]


def _default_label(name: str) -> str:
    """The row name of a model run at its card's default strength: ``name (denoise S)`` unless S is 1."""
    strength = get_card(name).denoise
    return name if strength == 1 else f"{name} (denoise {strength:g})"


def _model(**kw):
    up = Upscaler(device="cpu", precision="fp32", tile=0, **kw)
    return lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--weights-x4", default=None, help="photo weights to score instead of lia-photo-x4")
    ap.add_argument("--weights-x2", default=None, help="photo weights to score instead of lia-photo-x2")
    ap.add_argument("--new-only", action="store_true", help="only the official L row and the photo model's")
    ap.add_argument("--denoise", type=float, nargs="+", default=None,
                    help="only the rows of lia-photo-x{s} at these strengths")
    args = ap.parse_args()
    print("| model | scale | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for s in args.scales:
        photo = getattr(args, f"weights_x{s}")
        rows = [
            ("bicubic", lambda rgb, s=s: np.clip(matlab_resize(rgb, s), 0, 1)),
            (f"lia-u-x{s} (clean default)", _model(model=f"lia-u-x{s}")),
            (f"plainusr-s-x{s} (official)", _model(weights=OFFICIAL / f"PlainUSRS_Rep_x{s}.pth")),
            (f"plainusr-m-x{s} (official)", _model(weights=OFFICIAL / f"PlainUSRM_Rep_x{s}.pth")),
            (f"plainusr-base-x{s} (official)", _model(weights=OFFICIAL / f"PlainUSR_Rep_x{s}.pth")),
            (f"plainusr-l-x{s} (official)", _model(weights=OFFICIAL / f"PlainUSRL_Rep_x{s}.pth")),
            *[(f"{c.pinned} ({c.variant})", _model(model=c.pinned)) for c in ALL_CARDS
              if c.name == f"lia-photo-x{s}" and c != get_card(c.name)],
            (photo or _default_label(f"lia-photo-x{s}"),
             _model(weights=photo) if photo else _model(model=f"lia-photo-x{s}")),
        ]
        if args.new_only:
            rows = [rows[5], rows[-1]]
        if args.denoise is not None:
            rows = [(f"lia-photo-x{s} --denoise {d:g}", _model(model=f"lia-photo-x{s}", denoise=d))
                    for d in args.denoise]
        for name, fn in rows:
            cells = [f"{evaluate(find_pairs(f), fn, s).psnr_y:.2f}" for f in _folders(s)]
            print(f"| {name} | x{s} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
