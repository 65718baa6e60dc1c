"""Markdown table of PSNR-Y / SSIM-Y on Set5 and Set14: bicubic, our defaults, official checkpoints.

    python scripts/quality_table.py [--official] [--scales 2 4]

Every figure is measured here by `lia_upscale.tools.evaluate` (the code behind `lia-upscale eval`),
whole-image float32 on the CPU; bicubic is MATLAB-style bicubic upsampling of the same LR files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lia_upscale.api import Upscaler
from lia_upscale.tools.bicubic import matlab_resize
from lia_upscale.tools.evaluate import evaluate, find_pairs

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "datasets" / "benchmark"
OFFICIAL = ROOT.parent / "shared" / "weights" / "plainusr"
VARIANT_FILE = {"u": "U", "t": "T", "s": "S", "m": "M", "base": "", "l": "L"}


def _row(name: str, fn, scale: int) -> str:
    cells = []
    for bench in ("Set5", "Set14"):
        r = evaluate(find_pairs(BENCH / bench / f"x{scale}"), fn, scale)
        cells.append(f"{r.psnr_y:.2f} / {r.ssim_y:.4f}")
    return f"| {name} | x{scale} | " + " | ".join(cells) + " |"


def _model(up: Upscaler):
    return lambda rgb: up.upscale_tensor(rgb).permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", action="store_true", help="all six official variants, not just U")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    args = ap.parse_args()
    print("| model | scale | Set5 PSNR / SSIM | Set14 PSNR / SSIM |")
    print("|---|---|---|---|")
    for s in args.scales:
        print(_row("bicubic", lambda rgb, s=s: np.clip(matlab_resize(rgb, s), 0, 1), s))
        print(_row(f"lia-u-x{s} (ours, embedded default)", _model(Upscaler(model=f"lia-u-x{s}", device="cpu", precision="fp32", tile=0)), s))
        for v in (VARIANT_FILE if args.official else {"u": "U"}):
            path = OFFICIAL / f"PlainUSR{VARIANT_FILE[v]}_Rep_x{s}.pth"
            up = Upscaler(weights=path, device="cpu", precision="fp32", tile=0)
            print(_row(f"plainusr-{v}-x{s} (official)", _model(up), s))


if __name__ == "__main__":
    main()
