"""Peak memory of upscaling one camera photo x4 on the CPU: tiled (default) vs whole image.

Each case runs in its own process and reports its peak resident set (VmHWM) and time, so
the figures do not contaminate each other. Usage:

    python scripts/memory_large.py [PHOTO] [--weights FILE]

Defaults: the first photo of ../shared/datasets/large/sceaux and the official base x4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time, io
from lia_upscale import Upscaler, images
from lia_upscale.pipeline import OutputSpec, ToPil, start
photo, weights, tile = sys.argv[1], sys.argv[2], int(sys.argv[3])
up = Upscaler(weights=weights, device="cpu", precision="fp32", tile=None if tile < 0 else tile)
pic = images.decode(photo)
t = time.perf_counter()
out = start(up, pic, ToPil(), OutputSpec())()
seconds = time.perf_counter() - t
buf = io.BytesIO()
out.save(buf, "JPEG")
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"tile": "default" if tile < 0 else tile, "in": [pic.width, pic.height], "out": [out.width, out.height],
                  "seconds": round(seconds, 1), "peak_rss_gb": round(int(peak) / 2**20, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", default=str(next((ROOT.parent / "shared/datasets/large/sceaux").glob("*.JPG"))))
    ap.add_argument("--weights", default=str(ROOT.parent / "shared/weights/plainusr/PlainUSR_Rep_x4.pth"))
    args = ap.parse_args()
    for name, tile in (("tiled (CPU default)", -1), ("whole image", 0)):
        run = subprocess.run([sys.executable, "-c", CHILD, args.photo, args.weights, str(tile)],
                             capture_output=True, text=True, check=True)
        print(json.dumps({"case": name, **json.loads(run.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    main()
