"""`Upscaler.upscale(PIL)` against `Engine.run` on the same pixels (issue 14's API figure).

    python scripts/api_overhead.py [--size 1024] [--repeats 3] [--model lia-photo-x4]

One process, one Upscaler; the two cases alternate, best of the repeats each. The input is
a size x size crop of the first camera photo in ../shared/datasets/large/. `Engine.run`
gets the decoded float array (the network and the tile merge only); `upscale` takes the
PIL image and returns a PIL image of the same mode, quantising bands as they finish.
Prints one JSON object: both times, their ratio, and whether upscale's pixels equal
Engine.run's output clamped and rounded to 8 bits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lia_upscale import Upscaler

LARGE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "large"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="default: the photo model x4")
    args = ap.parse_args()
    src = next(p for p in sorted(LARGE.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg"))
    with Image.open(src) as im:
        crop = im.convert("RGB").crop((0, 0, args.size, args.size))
    up = Upscaler(model=args.model, device="cpu")
    rgb = np.asarray(crop).astype(np.float32) * np.float32(1.0 / 255.0)
    times: dict[str, list[float]] = {"upscale(PIL)": [], "Engine.run": []}
    out_pil = out_run = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        out_pil = up.upscale(crop)
        times["upscale(PIL)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        out_run = up.engine.run(rgb)
        times["Engine.run"].append(time.perf_counter() - t)
    ref = np.rint(out_run.clamp(0, 1).mul(255).permute(1, 2, 0).numpy()).astype(np.uint8)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({
        "model": up.model.name if hasattr(up.model, "name") else str(up.model.source),
        "input": [args.size, args.size],
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "upscale_over_run": round(best["upscale(PIL)"] / best["Engine.run"], 3),
        "pixels_equal": bool(np.array_equal(np.asarray(out_pil), ref)),
    }))


if __name__ == "__main__":
    main()
