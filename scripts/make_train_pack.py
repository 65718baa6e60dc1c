"""Make the compact training pack that travels to a GPU machine: JPEG-97 tiles of the training photos.

    python scripts/make_train_pack.py [--out runs/train_pack] [--budget-mib 38] [SOURCE ...]

SOURCE folders (default: ../shared/datasets/train/bsd200, ../shared/datasets/train/t91 and
../shared/datasets/photos) are cut into tiles of at most ``--tile`` pixels a side (an image
smaller than a tile stays whole; an edge strip too small for a training patch is dropped), so
every tile is about the same area and a 2040-px photo gives many tiles where a 300-px one
gives one: drawing tiles by area (``scripts/train_gpu.py``) is drawing the photos by area. The
tiles are shuffled with ``--seed`` and written as JPEG quality ``--quality`` (4:4:4) until
``--budget-mib`` would be passed, so a pack that cannot hold everything is an unbiased sample of it.
Writes OUT/NNNNN_SOURCE_NAME.jpg and OUT/pack.json (sources, counts, bytes, the arguments).
The pack is made of ../shared data: it is not committed (see the report on where it lives).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from lia_upscale import images

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_SOURCES = [SHARED / "train" / "bsd200", SHARED / "train" / "t91", SHARED / "photos"]
SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", type=Path, default=DEFAULT_SOURCES)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "train_pack")
    ap.add_argument("--budget-mib", type=float, default=38.0,
                    help="bytes of JPEG in the pack; 38 MiB leaves the tree and the validation set room "
                         "under a 64-MiB transfer")
    ap.add_argument("--tile", type=int, default=384)
    ap.add_argument("--least", type=int, default=160,
                    help="smallest tile edge kept: an HR training patch (LR 40 at x4)")
    ap.add_argument("--quality", type=int, default=97)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; give a new folder")
    args.out.mkdir(parents=True, exist_ok=True)

    found = []  # (source label, path): the tiles are cut when written, so memory stays one image
    for source in args.sources:
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in SUFFIXES:
                found.append((source.name, path))
    plan = []
    for label, path in found:
        h, w = images.decode(path).rgb.shape[:2]
        for y in range(0, h, args.tile):
            for x in range(0, w, args.tile):
                if min(min(args.tile, h - y), min(args.tile, w - x)) >= args.least:
                    plan.append((label, path, y, x))
    order = np.random.default_rng(args.seed).permutation(len(plan))
    budget = int(args.budget_mib * 2**20)
    spent, written, counts = 0, 0, {}
    cache: tuple[Path, np.ndarray] | None = None
    for k in order:
        label, path, y, x = plan[k]
        if cache is None or cache[0] != path:
            cache = (path, (images.decode(path).rgb * 255).round().astype(np.uint8))
        part = cache[1][y : y + args.tile, x : x + args.tile]
        buf = io.BytesIO()
        Image.fromarray(part).save(buf, format="JPEG", quality=args.quality, subsampling=0)
        if spent + buf.tell() > budget:
            break
        name = f"{written:05d}_{label}_{path.stem}_{y}_{x}.jpg"
        (args.out / name).write_bytes(buf.getvalue())
        spent += buf.tell()
        written += 1
        counts[label] = counts.get(label, 0) + 1
    manifest = {"tiles": written, "of": len(plan), "bytes": spent, "per_source": counts,
                "sources": [str(s) for s in args.sources], "tile": args.tile, "least": args.least,
                "quality": args.quality, "seed": args.seed}
    (args.out / "pack.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {written} of {len(plan)} tiles, {spent / 2**20:.1f} MiB, to {args.out}: {counts}")


if __name__ == "__main__":
    main()
