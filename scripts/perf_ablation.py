"""What each CPU optimisation of the engine is worth, measured in one process, alternating.

    python scripts/perf_ablation.py [--weights FILE] [--size 512] [--repeats 5] [--threads 1] [--compile]

Variants, each timed ``--repeats`` times after a warm-up, all alternating; medians and
ratios to the naive forward are printed as one JSON object:

- ``naive``: the module as loaded, NCHW, ``torch.no_grad`` (the baseline);
- ``channels_last_module``: the module's own forward on a channels-last copy with
  placements (the engine's forward before ``nn.inference``);
- ``infer``: :func:`lia_upscale.nn.inference.infer` (no concatenation, fused LIA);
- ``infer_reuse_memory``: the same inside ``reuse_freed_memory()`` entered and left per
  call (so each call pays its first-touch page faults again, as one ``Engine.run`` does);
- ``engine_whole``: ``Engine(tile=0).run``: the above plus the tiler's paste;
- with ``--compile``, ``compiled_infer``: ``torch.compile`` of ``infer`` (inductor; its
  compile time, paid at the first call, is reported as ``compile_seconds``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from lia_upscale.engine.allocator import reuse_freed_memory
from lia_upscale.tools.measure import macs_per_pixel, synthetic_image
from lia_upscale.engine import Engine
from lia_upscale.models import load_model
from lia_upscale.nn import Placement
from lia_upscale.nn.inference import infer

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "plainusr" / "PlainUSR_Rep_x4.pth"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="add torch.compile of infer (needs a C++ compiler)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    m = model.module
    cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    image = synthetic_image(args.size, args.size)
    x = image[None].contiguous()
    xc = x.contiguous(memory_format=torch.channels_last)
    placed = [Placement(0, 0, args.size, args.size)]
    engine = Engine(m, torch.device("cpu"), torch.float32, 0)

    def naive():
        with torch.no_grad():
            return m(x)

    def cl_module():
        with torch.inference_mode():
            return cl(xc, placed)

    def reused():
        with reuse_freed_memory():
            return infer(cl, xc, placed)

    variants = {
        "naive": naive,
        "channels_last_module": cl_module,
        "infer": lambda: infer(cl, xc, placed),
        "infer_reuse_memory": reused,
        "engine_whole": lambda: engine.run(image),
    }
    compile_seconds = None
    if args.compile:
        compiled = torch.compile(lambda t: infer(cl, t, placed))
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled(xc)
        compile_seconds = time.perf_counter() - t0

        def compiled_infer():
            with torch.inference_mode():  # as at the first call, so no recompile
                return compiled(xc)

        variants["compiled_infer"] = compiled_infer
    reference = naive()[0]
    diffs = {k: float((f().reshape(reference.shape) - reference).abs().max()) for k, f in variants.items()}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    flop = 2 * macs_per_pixel(m) * args.size**2
    print(json.dumps({
        "weights": args.weights, "size": args.size, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "compile_seconds": compile_seconds, "seconds": med, "gflop_s": {k: flop / v / 1e9 for k, v in med.items()},
        "vs_naive": {k: med["naive"] / v for k, v in med.items()},
        "max_abs_diff": diffs, "samples": samples,
    }, indent=1))


if __name__ == "__main__":
    main()
