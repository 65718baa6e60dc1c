"""Why --tta tiles each orientation over the whole turned image (docs/tta.md, "With tiles").

Compares whole-image TTA with (a) what lia-upscale does, each orientation tiled on its own,
and (b) TTA around the tile function: each tile transformed and run with its origin in
the transformed image, rounded down to LIA's 6-px alignment where it is not aligned.
Prints PSNR (dB) and the largest difference (of 255) against whole-image TTA, 8-bit.

    python scripts/tta_tile_alignment.py PlainUSRS_Rep_x4.pth
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_tiling import BENCHMARK, load_official, load_rgb  # noqa: E402

from lia_upscale.engine import Engine, tiling  # noqa: E402
from lia_upscale.engine.tta import TRANSFORMS, ensemble, forward_transform, inverse_transform  # noqa: E402
from lia_upscale.nn import LIA_ALIGNMENT, Placement  # noqa: E402
from lia_upscale.nn.inference import infer  # noqa: E402


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    to8 = lambda x: x.clamp(0, 1).mul(255).round()
    d = to8(a) - to8(b)
    mse = float(d.pow(2).mean())
    return (math.inf if mse == 0 else 10 * math.log10(255**2 / mse)), int(d.abs().max())


def main(name: str, tile: int = 48) -> None:
    torch.set_num_threads(1)
    model = load_official(name)
    image = load_rgb(BENCHMARK / "Set14" / "x4" / "img_003_SRF_4_LR.png")[:, :100, :125]
    cpu = torch.device("cpu")
    whole = ensemble(image, Engine(model, cpu, torch.float32, 0).run)
    engine = Engine(model, cpu, torch.float32, tile)
    print("each orientation tiled:   %.1f dB, %d/255 at most" % compare(ensemble(image, engine.run), whole))

    counts = {"aligned": 0, "unaligned": 0}

    def origin(region: tiling.Region, full: tuple[int, int], k: int) -> tuple[int, int, tuple[int, int]]:
        mask = torch.zeros(full)
        mask[region.top : region.bottom, region.left : region.right] = 1
        turned = forward_transform(mask, k)
        ys, xs = torch.nonzero(turned, as_tuple=True)
        return int(ys.min()), int(xs.min()), tuple(turned.shape)

    def per_tile(batch: torch.Tensor, regions, full: tuple[int, int]) -> torch.Tensor:
        acc = torch.zeros(0)
        with torch.inference_mode():
            for k in range(TRANSFORMS):
                places = []
                for r in regions:
                    top, left, size = origin(r, full, k)
                    aligned = top % LIA_ALIGNMENT == 0 and left % LIA_ALIGNMENT == 0
                    counts["aligned" if aligned else "unaligned"] += 1
                    a = LIA_ALIGNMENT
                    places.append(Placement(top // a * a, left // a * a, *size))
                y = inverse_transform(infer(model, forward_transform(batch, k).contiguous(), places), k)
                acc = y if k == 0 else acc + y
        return acc / TRANSFORMS

    tiled = tiling.upscale(image, per_tile, engine.contract, tile).image
    print("each tile transformed:    %.1f dB, %d/255 at most" % compare(tiled, whole))
    print(f"transformed tiles: {counts['aligned']} aligned, {counts['unaligned']} not")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "PlainUSRS_Rep_x4.pth")
